#!/usr/bin/env bash
# A fuzzing session over the libFuzzer targets of tests/fuzz (README "Hardening").
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 150 s each, all four)
#   FUZZ_OUT=DIR      where logs, new inputs and crashes go (default results/fuzz)
#   FUZZ_UPDATE=1     also copy the inputs worth keeping into tests/fuzz/<corpus>
#   FUZZ_KEEP=N       how many found inputs per target are worth keeping (default 40)
#
# Builds build-fuzz with clang (-fsanitize=fuzzer,address,undefined), runs each target under nice
# from its checked-in corpus for the given time (one job, one worker), then merges what it found
# into a copy of the checked-in corpus and keeps the few inputs that reached the most code no
# input before them did, so the corpora stay small (tens of files). Prints, per target:
# executions, cov: and ft: at the end, inputs found and kept, and crashes (artifacts under
# $FUZZ_OUT/crashes). Exit 1 if any target crashed.
# Needs clang with libFuzzer (Debian: apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-150}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(fuzz_core fuzz_manifest fuzz_cases fuzz_program)
out=${FUZZ_OUT:-results/fuzz}
mkdir -p "$out/crashes"

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DRESHARD_FUZZ=ON -DRESHARD_WITH_MPI=OFF \
  -DRESHARD_WITH_CUDA=OFF -DRESHARD_BUILD_BENCHMARKS=OFF -DRESHARD_BUILD_EXAMPLES=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice -n 19 cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"

corpus_of() {  # the checked-in corpus and max_len of a target
  case $1 in
    fuzz_core) echo "tests/fuzz/corpus 256" ;;
    fuzz_manifest) echo "tests/fuzz/corpus_manifest 4096" ;;
    fuzz_cases) echo "tests/fuzz/corpus_cases 1024" ;;
    fuzz_program) echo "tests/fuzz/corpus_program 1024" ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}

status=0
summary="$out/summary.txt"; : >"$summary"
for t in "${targets[@]}"; do
  read -r corpus max_len <<<"$(corpus_of "$t")"
  found="$out/found_$t"; merged="$out/merged_$t"
  rm -rf "$found" "$merged"; mkdir -p "$found" "$merged"
  log="$out/$t.log"
  rc=0
  nice -n 19 build-fuzz/bin/"$t" -dict=tests/fuzz/reshard.dict -max_len="$max_len" -max_total_time="$secs" \
    -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" \
    "$found" "$corpus" >"$log" 2>&1 || rc=$?
  # Merge: the checked-in corpus first, then what was found. -use_counters=0 counts coverage edges
  # only (hit counts would keep hundreds of files); of the found inputs that reached new edges,
  # the FUZZ_KEEP (default 40) that reached most are worth keeping (tests/fuzz/keep_inputs.py).
  cp "$corpus"/* "$merged"/
  build-fuzz/bin/"$t" -merge=1 -use_counters=0 -max_len="$max_len" -merge_control_file="$out/$t.cf" \
    "$merged" "$found" >"$out/$t.merge.log" 2>&1
  python3 tests/fuzz/keep_inputs.py "$out/$t.cf" "${FUZZ_KEEP:-40}" >"$out/$t.keep" 2>>"$out/$t.merge.log"
  kept=$(wc -l <"$out/$t.keep")
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | tail -1); ft=$(grep -o 'ft: [0-9]*' <<<"$last" | tail -1)
  crashes=$(ls "$out/crashes" | grep -c "^$t-" || true)
  line="$t: ${secs} s, $execs execs, $cov, $ft, $(ls "$found" | wc -l) new inputs, $kept worth keeping, exit $rc, $crashes crash artifacts"
  echo "$line" | tee -a "$summary"
  [ "$rc" = 0 ] && [ "$crashes" = 0 ] || status=1
  if [ "${FUZZ_UPDATE:-0}" = 1 ]; then
    while read -r f; do cp "$f" "$corpus/"; done <"$out/$t.keep"
  fi
done
exit $status
