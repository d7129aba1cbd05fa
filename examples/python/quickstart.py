"""reshard from Python: reshard a NumPy array and a torch tensor across 4 ranks and check them.

    source scripts/env.sh
    PYTHONPATH=build/python mpirun -np 4 python3 examples/python/quickstart.py   # or after pip install .
"""
import sys

import numpy as np

import reshard

mesh = reshard.Mesh("x=2,y=2")
try:
    ctx = reshard.Context(mesh)  # over MPI_COMM_WORLD (pass comm= for an mpi4py communicator)
except reshard.MismatchError as e:
    sys.exit(f"quickstart: run it with 4 ranks (mpirun -np 4): {e}")
me = ctx.device

# 1. A NumPy array: 30 rows split over x then y (uneven: blocks of 8, 8, 8, 6), to columns over x.
src = reshard.Type("f32[30{x,y},7]", mesh)
dst = reshard.Type("f32[30,7{x}]", mesh)
if me == 0:
    print(reshard.plan(mesh, src, dst))
everything = np.arange(30 * 7, dtype=np.float32).reshape(30, 7)  # the logical array (for the check)
local = everything[ctx.local_slices(src)].copy()                  # this rank's shard of it
out = ctx.reshard(local, src, dst)                                # collective
assert type(out) is np.ndarray and np.array_equal(out, everything[ctx.local_slices(dst)]), me
print(f"rank {me}: numpy block {ctx.local_block(src)} -> {ctx.local_block(dst)} ok", flush=True)

# 2. A torch tensor: a pending sum (each rank holds a partial) reduce-scattered into row blocks.
try:
    import torch
except ImportError:
    torch = None
if torch is None:
    print(f"rank {me}: torch is not installed, its part is skipped", flush=True)
else:
    partial = reshard.Type("bf16[16, 4] sum{x,y}", mesh)
    rows = reshard.Type("bf16[16{x,y}, 4]", mesh)
    mine = torch.full((16, 4), float(me + 1), dtype=torch.bfloat16)       # sum over ranks: 1+2+3+4
    got = ctx.reshard(mine, partial, rows)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bfloat16 and got.shape == (4, 4)
    assert bool(torch.all(got == 10)), (me, got)
    print(f"rank {me}: torch {tuple(mine.shape)} partial sums -> {tuple(got.shape)} rows ok", flush=True)
ctx.close()
