#!/usr/bin/env bash
# The Python overhead benchmark at 1 and 4 ranks, and `reshard run` on the same large case
# (the C++ CLI's own timing) for comparison. Writes results/python_overhead_np{1,4}.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
mkdir -p results
export PYTHONPATH=build/python
for np in 1 4; do
  mpirun -np $np python3 python/benchmarks/overhead.py --json results/python_overhead_np$np.json "$@"
done
mpirun -np 4 build/bin/reshard run --mesh x=4 --from 'f32[4096{x},1024]' --to 'f32[4096,1024{x}]' \
  --iters 140 --json | python3 -c "import json,sys; j=json.load(sys.stdin); print(f\"reshard run (CLI), same large case, 4 ranks: median {j['time_median_s']*1e3:.3f} ms over {j['iters']} iterations\")"
