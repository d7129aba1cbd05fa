"""What Python adds to a reshard call: the same Context and plan, called from Python and from C++
(reshard._core's in-process C++ loop), in alternating rounds of the same run.

    source scripts/env.sh
    PYTHONPATH=build/python mpirun -np 1 python3 python/benchmarks/overhead.py
    PYTHONPATH=build/python mpirun -np 4 python3 python/benchmarks/overhead.py --json out.json

Small arrays: per-call time of batches of calls (max across ranks), Python minus C++ = the
overhead per call. Large arrays: each call after a barrier, slowest rank, median over calls
(as `reshard run --iters` times), Python over C++; compare with `reshard run --json`'s
time_median_s for the same case (bash python/benchmarks/overhead.sh runs both).
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import reshard


def py_batch(fn, iters, comm):
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    dt = (time.perf_counter() - t0) / iters
    return comm.allreduce(dt, op=MPI.MAX)


def py_each(fn, iters, comm):
    times = []
    for _ in range(iters):
        comm.Barrier()
        t0 = MPI.Wtime()
        fn()
        times.append(comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small-from", default="f32[64{x},6]")
    ap.add_argument("--small-to", default="f32[64,6{x}]")
    ap.add_argument("--large-from", default="f32[4096{x},1024]")
    ap.add_argument("--large-to", default="f32[4096,1024{x}]")
    ap.add_argument("--iters", type=int, default=2000, help="calls per small-array batch")
    ap.add_argument("--large-iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", help="write the figures here (rank 0)")
    a = ap.parse_args()

    comm = MPI.COMM_WORLD
    ctx = reshard.Context(f"x={comm.Get_size()}", comm=comm)
    rows = {}

    # -- small arrays: the per-call overhead --------------------------------------------------
    src, dst = ctx.type(a.small_from), ctx.type(a.small_to)
    x = ctx.index_array(src)
    out = ctx.empty(dst)
    variants = {
        "reshard_into(numpy)": lambda: ctx.reshard_into(x, out, src, dst),
        "reshard(numpy)": lambda: ctx.reshard(x, src, dst),
        "reshard(numpy, text types)": lambda: ctx.reshard(x, a.small_from, a.small_to),
    }
    try:
        import torch

        xt, outt = torch.from_numpy(x), torch.from_numpy(out)
        variants["reshard_into(torch)"] = lambda: ctx.reshard_into(xt, outt, src, dst)
        variants["reshard(torch)"] = lambda: ctx.reshard(xt, src, dst)
    except ImportError:
        pass
    for fn in variants.values():  # warm up: plans, workspace, first-call paths
        for _ in range(50):
            fn()
    cpp, py = [], {k: [] for k in variants}
    for _ in range(a.rounds):  # alternate, so that drift in the machine's load hits both
        cpp.append(ctx._c._time_cpp_calls(x, out, src, dst, a.iters, False)[0])
        for k, fn in variants.items():
            py[k].append(py_batch(fn, a.iters, comm))
    c = statistics.median(cpp)
    rows["small"] = {"from": str(src), "to": str(dst), "ranks": comm.Get_size(), "cpp_call_s": c,
                     "python": {k: {"call_s": statistics.median(v), "overhead_s": statistics.median(v) - c}
                                for k, v in py.items()}}

    # -- large arrays: zero copy, so the same time ----------------------------------------------
    src, dst = ctx.type(a.large_from), ctx.type(a.large_to)
    x = ctx.index_array(src)
    out = ctx.empty(dst)
    ctx.reshard_into(x, out, src, dst)
    cpp_t, py_t = [], []
    for _ in range(a.rounds):
        cpp_t += ctx._c._time_cpp_calls(x, out, src, dst, a.large_iters, True)
        py_t += py_each(lambda: ctx.reshard_into(x, out, src, dst), a.large_iters, comm)
    assert ctx.count_index_mismatches(dst, out, source=src) == 0
    rows["large"] = {"from": str(src), "to": str(dst), "ranks": comm.Get_size(),
                     "bytes_per_rank": int(x.nbytes), "cpp_median_s": statistics.median(cpp_t),
                     "python_median_s": statistics.median(py_t),
                     "python_over_cpp": statistics.median(py_t) / statistics.median(cpp_t)}
    ctx.close()

    if comm.Get_rank() == 0:
        s = rows["small"]
        print(f"small {s['from']} -> {s['to']} on {s['ranks']} rank(s), median of {a.rounds} rounds of {a.iters} calls")
        print(f"  C++ Context::reshard            {s['cpp_call_s'] * 1e6:8.2f} us/call")
        for k, v in s["python"].items():
            print(f"  {k:32s}{v['call_s'] * 1e6:8.2f} us/call   overhead {v['overhead_s'] * 1e6:+7.2f} us")
        L = rows["large"]
        print(f"large {L['from']} -> {L['to']} ({L['bytes_per_rank'] / 2**20:.1f} MiB per rank), "
              f"median of {a.rounds * a.large_iters} calls, slowest rank")
        print(f"  C++ {L['cpp_median_s'] * 1e3:.3f} ms   Python {L['python_median_s'] * 1e3:.3f} ms   "
              f"Python/C++ {L['python_over_cpp']:.3f}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
