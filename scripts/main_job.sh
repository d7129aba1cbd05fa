#!/usr/bin/env bash
# The main job: set up, build, and run the resharding benchmark on CPU with MPI (4 ranks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
NP=${NP:-4}
if build/bin/reshard bench --help >/dev/null 2>&1 && ! build/bin/reshard bench --help 2>&1 | grep -q "needs the MPI"; then
  mkdir -p results
  mpirun -np "$NP" build/bin/reshard bench --suite benchmarks/suites/bench.txt --json results/bench.json
else
  # Until the benchmark lands: every public plan, checked by the independent reading.
  python3 tests/tools/check_cases.py plan tests/cases/public.txt build/bin/reshard
fi
