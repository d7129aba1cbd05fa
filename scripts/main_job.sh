#!/usr/bin/env bash
# The main job: set up, build, and run the resharding benchmark on CPU with MPI (4 ranks): every
# case of benchmarks/suites/bench.txt under every strategy, verified, with the table on stdout and
# results/bench.{json,csv,svg} (NP, ITERS, WARMUP, SUITE and STRATEGIES override the defaults;
# the main job adds the dtensor baseline to bench's default strategies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
NP=${NP:-4}
if build/bin/reshard bench --help >/dev/null 2>&1 && ! build/bin/reshard bench --help 2>&1 | grep -q "needs the MPI"; then
  mkdir -p results
  mpirun -np "$NP" build/bin/reshard bench --suite "${SUITE:-benchmarks/suites/bench.txt}" \
    --strategies "${STRATEGIES:-reshard,naive,greedy_per_axis,dtensor,exchange,raw}" \
    --iters "${ITERS:-20}" --warmup "${WARMUP:-3}" \
    --json results/bench.json --csv results/bench.csv --svg results/bench.svg
  echo "results: results/bench.json, results/bench.csv, results/bench.svg"
else
  # Without the MPI backend: every public plan, checked by the independent reading.
  python3 tests/tools/check_cases.py plan tests/cases/public.txt build/bin/reshard
fi
