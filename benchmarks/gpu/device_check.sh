#!/usr/bin/env bash
# The device check, for a machine with one NVIDIA GPU: builds reshard with CUDA (and NCCL when
# found), then runs, writing every log and JSON under OUTDIR:
#   1. the GPU tests (ctest -L gpu): CUDA kernels against the host kernels, every public case on
#      device buffers over MPI (pinned staging, 4 and 8 ranks on the one GPU), the NCCL backend on
#      one rank, and the virtual-devices harness;
#   2. every public case and strategy with all of its mesh's virtual devices on the GPU (local
#      kernels on the device, data moved between virtual devices as device-to-device copies),
#      checked against the index fill: virtual_devices.{log,json};
#   3. the pack/unpack bandwidth benchmark against cudaMemcpy D2D at 64 MiB and 1 GiB;
#   4. single-rank `reshard run --backend nccl --iters 20 --json --check` on a few cases, and a
#      short `reshard bench --backend nccl` on one-device meshes.
# Then prints a summary (also OUTDIR/summary.txt). Exit 0 when nothing failed; parts that need a
# device report "skipped" without one (the build and the CPU parts still count).
#
#   bash benchmarks/gpu/device_check.sh OUTDIR
#
# Environment: RESHARD_DEVICE_BUILD (build folder, default build-device in the repository),
# RESHARD_CUDA_ARCH (CMAKE_CUDA_ARCHITECTURES, default 90: H100/H200), JOBS (default nproc).
# Installs nothing unless Debian packages it needs are missing and it runs as root.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1" && OUT=$(cd "$1" && pwd)
BUILD=${RESHARD_DEVICE_BUILD:-$ROOT/build-device}
ARCH=${RESHARD_CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
START=$(date +%s)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=0

note() { echo "[device_check $(( $(date +%s) - START ))s] $*"; }
# record PART STATUS DETAIL: STATUS is ok, FAILED or skipped.
record() {
  printf '%-28s %-8s %s\n' "$1" "$2" "$3" >>"$SUMMARY"
  [ "$2" = FAILED ] && FAILED=1
  note "$1: $2 $3"
}

# --- dependencies (as on the CI machine); install only what is missing, only as root ----------
missing=()
[ -f /usr/include/fmt/format.h ] || missing+=(libfmt-dev)
[ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
[ -f /usr/include/CLI/CLI.hpp ] || missing+=(libcli11-dev)
[ -f /usr/include/catch2/catch.hpp ] || missing+=(catch2)
command -v mpicxx >/dev/null || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null || missing+=(openmpi-bin)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    note "installing missing packages: ${missing[*]}"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } \
      >"$OUT/apt.log" 2>&1 || { record dependencies FAILED "apt-get install ${missing[*]} (apt.log)"; }
  else
    record dependencies FAILED "missing: ${missing[*]} (not root: install them first)"
  fi
fi
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
source "$ROOT/scripts/env.sh"  # Open MPI as root, oversubscription, shared memory only
export RESHARD_TIMEOUT_S=${RESHARD_TIMEOUT_S:-120}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files"
  echo "host: $(uname -a), $(nproc) CPUs"
  command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 || echo "nvidia-smi: not found"
} >"$OUT/machine.txt" 2>&1

# --- build ------------------------------------------------------------------------------------
note "configure ($BUILD, CUDA architectures $ARCH)"
if ! cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DRESHARD_WITH_CUDA=ON -DRESHARD_BUILD_EXAMPLES=OFF >"$OUT/configure.log" 2>&1; then
  record configure FAILED "see configure.log"
  cat "$SUMMARY"
  exit 1
fi
grep -o 'reshard: MPI [A-Z]*, CUDA [A-Z]*, NCCL [A-Z]*' "$OUT/configure.log" | tail -1 >>"$OUT/machine.txt"
record configure ok "$(grep -o 'MPI [A-Z]*, CUDA [A-Z]*, NCCL [A-Z]*' "$OUT/configure.log" | tail -1)"

available=$(cmake --build "$BUILD" --target help 2>/dev/null)
targets=()
for t in reshard_cli test_device_kernels test_virtual_devices test_device_exec_mpi test_nccl_single_rank pack_bandwidth; do
  grep -q "^$t:" <<<"$available" && targets+=("$t")
done
note "build: ${targets[*]}"
t0=$(date +%s)
if cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >"$OUT/build.log" 2>&1; then
  record build ok "$(( $(date +%s) - t0 )) s: ${targets[*]}"
else
  record build FAILED "see build.log"
  tail -30 "$OUT/build.log"
  cat "$SUMMARY"
  exit 1
fi
BIN=$BUILD/bin

# --- virtual devices (also tells whether there is a device) -----------------------------------
note "virtual devices: every public case and strategy"
timeout 300 "$BIN/test_virtual_devices" --cases "$ROOT/tests/cases/public.txt" --json "$OUT/virtual_devices.json" \
  >"$OUT/virtual_devices.log" 2>&1
rc=$?
HAVE_GPU=1
case $rc in
  0) record virtual_devices ok "$(tail -1 "$OUT/virtual_devices.log")" ;;
  77) HAVE_GPU=0; record virtual_devices skipped "$(head -1 "$OUT/virtual_devices.log")" ;;
  *) record virtual_devices FAILED "exit $rc: $(grep -c FAILED "$OUT/virtual_devices.log") failing rows (virtual_devices.log)" ;;
esac

# --- GPU tests --------------------------------------------------------------------------------
note "ctest -L gpu"
(cd "$BUILD" && timeout 480 ctest -L gpu --output-on-failure --timeout 300) >"$OUT/ctest_gpu.log" 2>&1
rc=$?
tests=$(grep -E '^[0-9]+% tests passed' "$OUT/ctest_gpu.log" | tail -1)
skipped=$(grep -c '\*\*\*Skipped\|Not Run (Disabled)\| Skipped ' "$OUT/ctest_gpu.log")
if [ $rc -ne 0 ]; then
  record gpu_tests FAILED "$tests; $(grep -E '\(Failed\)|\(Timeout\)|Not Run' "$OUT/ctest_gpu.log" | tr -s ' ' | tr '\n' ';')"
elif [ "$HAVE_GPU" = 0 ]; then
  record gpu_tests skipped "no device: $skipped tests reported skipped ($tests)"
else
  record gpu_tests ok "$tests; $skipped skipped"
fi

# --- pack/unpack bandwidth --------------------------------------------------------------------
note "pack_bandwidth 64 MiB and 1 GiB"
timeout 300 "$BIN/pack_bandwidth" --sizes-mib 64,1024 >"$OUT/pack_bandwidth.log" 2>&1
rc=$?
case $rc in
  0) record pack_bandwidth ok "pack|unpack / memcpy D2D: $(awk '$NF=="yes"{printf "%s %s %sB-rows %s|%s; ", $1, $2, $3, $8, $9}' "$OUT/pack_bandwidth.log")" ;;
  77) record pack_bandwidth skipped "no device" ;;
  *) record pack_bandwidth FAILED "exit $rc (pack_bandwidth.log)" ;;
esac

# --- reshard run / bench --backend nccl on one rank -------------------------------------------
if ! grep -q "NCCL ON" "$OUT/configure.log"; then
  record run_nccl skipped "built without NCCL"
elif [ "$HAVE_GPU" = 0 ]; then
  record run_nccl skipped "no device"
  # Without a device the command must still fail cleanly, saying why (not hang or crash).
  timeout 60 mpirun -np 1 "$BIN/reshard" run --backend nccl --mesh x=1 --from 'f32[64{x},8]' --to 'f32[64,8{x}]' \
    >"$OUT/run_nccl_nodevice.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "CUDA device" "$OUT/run_nccl_nodevice.log"; then
    record run_nccl_without_device ok "exit $rc with a message"
  else
    record run_nccl_without_device FAILED "exit $rc (run_nccl_nodevice.log)"
  fi
else
  runs=(
    "a2a_128MiB|x=1|f32[8192{x},4096]|f32[8192,4096{x}]"
    "rs_bf16|dp=1,tp=1|bf16[16{dp},2048,1024] sum{tp}|bf16[16{dp},2048{tp},1024]"
    "ar_i16_fallback|x=1|i16[4096,2048] sum{x}|i16[4096,2048]"
    "rs_1d_public|x=1|f32[64,6] sum{x}|f32[64{x},6]"
    "heads_to_seq|dp=1,tp=1|f32[2{dp},8{tp},4096,128]|f32[2{dp},8,4096{tp},128]"
  )
  ok=0 bad=0 detail=""
  for r in "${runs[@]}"; do
    IFS='|' read -r name mesh from to <<<"$r"
    timeout 120 mpirun -np 1 "$BIN/reshard" run --backend nccl --mesh "$mesh" --from "$from" --to "$to" \
      --iters 20 --json --check >"$OUT/run_nccl_$name.json" 2>"$OUT/run_nccl_$name.err"
    rc=$?
    if [ $rc -eq 0 ] && grep -q '"mismatches": 0' "$OUT/run_nccl_$name.json"; then
      ok=$((ok + 1))
      med=$(grep -o '"time_median_s": [0-9.e+-]*' "$OUT/run_nccl_$name.json" | awk '{print $2}')
      detail+="$name ${med}s; "
    else
      bad=$((bad + 1))
      detail+="$name FAILED (exit $rc); "
    fi
  done
  [ $bad -eq 0 ] && record run_nccl ok "$ok runs checked: $detail" || record run_nccl FAILED "$detail"

  printf '%s\n' \
    "a2a   | x=1       | f32[4096{x},4096]          | f32[4096,4096{x}]" \
    "rs    | dp=1,tp=1 | bf16[8{dp},1024,1024] sum{tp} | bf16[8{dp},1024{tp},1024]" \
    "ag    | x=1,y=1   | f32[2048{x,y},1024]        | f32[2048,1024]" >"$OUT/suite_one_gpu.txt"
  timeout 180 mpirun -np 1 "$BIN/reshard" bench --backend nccl --suite "$OUT/suite_one_gpu.txt" --iters 10 \
    --json "$OUT/bench_nccl.json" >"$OUT/bench_nccl.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] && record bench_nccl ok "$(grep -m1 'summary:' "$OUT/bench_nccl.log")" \
                || record bench_nccl FAILED "exit $rc (bench_nccl.log)"
fi

echo
echo "device check summary ($(( $(date +%s) - START )) s; logs in $OUT)"
cat "$SUMMARY"
[ -f "$OUT/pack_bandwidth.log" ] && grep -qv SKIPPED "$OUT/pack_bandwidth.log" && { echo; cat "$OUT/pack_bandwidth.log"; }
exit $FAILED
