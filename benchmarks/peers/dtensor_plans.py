#!/usr/bin/env python3
"""What the real PyTorch DTensor `redistribute` plans for reshard's cases, and how reshard's
`dtensor` baseline and its default plan compare (docs/peers.md, "PyTorch DTensor 2.15").

Every case runs through DTensor's own `redistribute_local_tensor` once per rank, on a fake process
group (no communication) with a DeviceMesh of the case's axes, while a dispatch mode records each
collective DTensor issues: its kind, its group (turned back into mesh axes) and its padded shapes.
So the figures are DTensor's, with its padding and its nested per-mesh-dim chunking, not a model of
it. Bytes are counted as reshard counts `bytes_recv` (docs/stats.md): an all-gather receives the
other members' (padded) inputs, an all-to-all (g-1)/g of its padded input, a reduce-scatter (g-1)
padded shares, an all-reduce 2 (g-1)/g of the array (ring). `max_intermediate_bytes` is the largest
local array between steps (source and target shards included, as reshard reports it);
`peak_buffer_bytes` also counts the padded buffers inside a collective.

How reshard types map to DTensor: the mesh's axes are the DeviceMesh's dims, in order (reshard
and DeviceMesh both number devices row-major). An axis that splits dim d is Shard(d) on its mesh
dim; several axes of one dim are that dim's shard order (major first, DTensor's ShardOrderEntry),
given as an explicit `shard_order` in the spec (the public API encodes the same order as
_StridedShard, which cannot tell an order apart when a size-1 mesh dim is involved); an axis of
`sum{...}` is Partial("sum") (max, min, prod: "max", "min", "product"); size-1 axes stay.

    python3 benchmarks/peers/dtensor_plans.py --reshard build/bin/reshard \
        --random 300 --seed 11 --json tests/peers/dtensor_2_15.json
    python3 benchmarks/peers/dtensor_plans.py --reshard build/bin/reshard --fixture tests/peers/dtensor_2_15.json

The second form re-measures the cases of a fixture and fails if DTensor's figures changed.
Needs torch (2.15); nothing in reshard's build or CI does."""
import argparse
import json
import logging
import os
import random
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import casefile  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.device_mesh import DeviceMesh  # noqa: E402
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402
from torch.distributed.tensor import _redistribute as redis  # noqa: E402
from torch.distributed.tensor import placement_types  # noqa: E402
from torch.distributed.tensor._dtensor_spec import DTensorSpec, ShardOrderEntry, TensorMeta  # noqa: E402
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

DTYPES = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
          "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8}
REDUCE = {"sum": "sum", "max": "max", "min": "min", "prod": "product"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Unexpressible(Exception):
    """A case DTensor cannot state or plan; the message says why."""


# ---------------------------------------------------------------------------------------------
# Recording what DTensor issues

COLLECTIVES = {"all_gather_into_tensor": "all_gather", "reduce_scatter_tensor": "reduce_scatter",
               "all_reduce": "all_reduce", "all_to_all_single": "all_to_all", "broadcast": "broadcast",
               "all_gather_into_tensor_coalesced": "all_gather_coalesced",
               "reduce_scatter_tensor_coalesced": "reduce_scatter_coalesced", "all_reduce_coalesced": "all_reduce_coalesced"}


class Recorder(TorchDispatchMode):
    """Records every functional collective: (kind, group ranks, input shape, output shape, itemsize)."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.muted = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ns = func.namespace
        name = func._schema.name.split("::")[-1]
        if ns == "_c10d_functional" and not self.muted and name in COLLECTIVES:
            kind = COLLECTIVES[name]
            group = args[-1] if isinstance(args[-1], str) else kwargs.get("group_name")
            self.events.append((kind, group, tuple(args[0].shape), tuple(out.shape), args[0].element_size()))
        return out


RECORDER = None
_ORIGINAL_A2A = placement_types.shard_dim_alltoall


def _alltoall_as_on_gpu(input, gather_dim, shard_dim, mesh, mesh_dim):
    """On a CPU mesh DTensor falls back to all-gather + chunk (Gloo has no all-to-all); on GPUs
    it issues one all-to-all of the same (padded) input. Record that, run the fallback unrecorded."""
    from torch.distributed._functional_collectives import _resolve_group_name
    group = _resolve_group_name((mesh, mesh_dim))
    g = mesh.size(mesh_dim)
    out_shape = list(input.shape)
    out_shape[gather_dim] *= g
    out_shape[shard_dim] //= g
    RECORDER.events.append(("all_to_all", group, tuple(input.shape), tuple(out_shape), input.element_size()))
    RECORDER.muted += 1
    try:
        return _ORIGINAL_A2A(input, gather_dim, shard_dim, mesh, mesh_dim)
    finally:
        RECORDER.muted -= 1


placement_types.shard_dim_alltoall = _alltoall_as_on_gpu

# DTensor's cost model (MeshTopoInfo) asks the device handle how many devices a host has, and
# prices mesh dims that span hosts at 0.22 of the bandwidth. On a CPU mesh that count is 1 (every
# mesh dim "across hosts"); pin it to an 8-GPU node's, as reshard's `dtensor` baseline assumes.
DEVICES_PER_HOST = 8
torch.distributed.device_mesh._mesh_resources.num_devices_per_host = lambda device_type: DEVICES_PER_HOST


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def recv_bytes(kind, g, in_shape, out_shape, item):
    """Bytes one member receives, counted as reshard's `bytes_recv` is."""
    if g <= 1:
        return 0
    if kind == "all_gather":
        return (g - 1) * numel(in_shape) * item
    if kind == "all_to_all":
        return (g - 1) * (numel(in_shape) // g) * item
    if kind == "reduce_scatter":
        return (g - 1) * numel(out_shape) * item
    if kind == "all_reduce":
        b = numel(in_shape) * item
        return b // g * 2 * (g - 1) + b % g * 2 * (g - 1) // g
    raise RuntimeError(f"unexpected collective {kind}")


# ---------------------------------------------------------------------------------------------
# reshard types as DTensor specs

def placements_of(case, t):
    """DTensor placements and shard order of a reshard type on the case's mesh."""
    axes = [a for a, _ in case.mesh]
    placements = [Replicate()] * len(axes)
    order = []
    for d, (_, dim_axes) in enumerate(t.dims):
        for a in dim_axes:
            placements[axes.index(a)] = Shard(d)
        if dim_axes:
            order.append(ShardOrderEntry(tensor_dim=d, mesh_dims=tuple(axes.index(a) for a in dim_axes)))
    for a in t.reduce:
        placements[axes.index(a)] = Partial(REDUCE[t.op])
    return tuple(placements), tuple(order)


def local_shape(case, t, coord):
    """The local shape on a device: DTensor's nested torch.chunk per mesh dim, in shard order."""
    axes = [a for a, _ in case.mesh]
    sizes = dict(case.mesh)
    shape = []
    for n, dim_axes in t.dims:
        for a in dim_axes:
            n, _ = Shard.local_shard_size_and_offset(n, sizes[a], coord[axes.index(a)])
        shape.append(int(n))
    return shape


def check_expressible(case):
    s, t = case.src, case.dst
    if t.reduce and s.reduce and s.op != t.op:
        raise Unexpressible(f"mixed Partial reduce ops ({s.op} and {t.op}): DTensor forbids them")
    if any(n == 0 for n, _ in s.dims):
        raise Unexpressible("a zero-size dim")


# ---------------------------------------------------------------------------------------------
# One case, every rank

COMMUNICATING = {"all_gather", "all_to_all", "reduce_scatter", "all_reduce"}


def step_kind(src_p, dst_p):
    """reshard's op name for a DTensor transform (a placement change on one mesh dim)."""
    if src_p.is_partial():
        return "all_reduce" if dst_p.is_replicate() else "reduce_scatter" if dst_p.is_shard() else "local"
    if src_p.is_shard():
        if dst_p.is_replicate():
            return "all_gather"
        if dst_p.is_shard():
            return "all_to_all"
        return "local"  # Shard -> Partial("sum"): zero-fill, local
    if dst_p.is_shard():
        return "slice"
    return "local"  # Replicate -> Partial: local


def coord_of(case, rank):
    """A rank's coordinates on the mesh (row-major, as reshard and DeviceMesh number devices)."""
    c = []
    for _, size in reversed(case.mesh):
        c.append(rank % size)
        rank //= size
    return list(reversed(c))


def ranks_to_axes(case, ranks):
    """The mesh axes along which a group's ranks differ."""
    cs = [coord_of(case, r) for r in ranks]
    return [case.mesh[i][0] for i in range(len(case.mesh)) if len({c[i] for c in cs}) > 1]


def type_of(case, state):
    """A DTensor layout (placements, {tensor dim: mesh dims in shard order}) as a reshard type."""
    axes = [a for a, _ in case.mesh]
    dims = [(n, [axes[m] for m in state[1].get(d, [])]) for d, (n, _) in enumerate(case.src.dims)]
    return casefile.Type(case.src.dtype, dims)


def measure(case):
    """What DTensor plans and moves for one case; raises Unexpressible."""
    global RECORDER
    check_expressible(case)
    names = tuple(a for a, _ in case.mesh)
    sizes = tuple(s for _, s in case.mesh)
    n = case.devices()
    dtype = DTYPES[case.src.dtype]
    item = torch.empty((), dtype=dtype).element_size()
    gshape = torch.Size([d for d, _ in case.src.dims])
    src_p, src_o = placements_of(case, case.src)
    dst_p, dst_o = placements_of(case, case.dst)
    steps = None
    per_rank_total = []
    step_recv = None
    step_out = None
    max_inter = 0
    peak = 0
    coords = [coord_of(case, r) for r in range(n)]
    for rank in range(n):
        if dist.is_initialized():
            dist.destroy_process_group()
        dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=n)
        mesh = DeviceMesh("cpu", torch.arange(n).reshape(sizes), mesh_dim_names=names)
        meta = TensorMeta(gshape, torch.empty(tuple(gshape) or (), dtype=dtype, device="meta").stride(), dtype)
        try:
            cur = DTensorSpec(mesh, src_p, tensor_meta=meta, shard_order=src_o, use_strided_shard_as_shard_order=False)
            tgt = DTensorSpec(mesh, dst_p, tensor_meta=meta, shard_order=dst_o, use_strided_shard_as_shard_order=False)
            infos = redis._optimize_transform_infos(redis._gen_transform_infos_non_cached(cur, tgt), mesh,
                                                     cur.placements, tgt.placements)
        except Exception as e:  # DTensor refuses the pair
            raise Unexpressible(f"DTensor's planner refuses it: {type(e).__name__}: {e}".splitlines()[0])
        plan = [{"op": step_kind(*i.src_dst_placements), "axes": [names[i.mesh_dim]],
                 "placements": f"{i.src_dst_placements[0]}->{i.src_dst_placements[1]}"} for i in infos]
        if steps is None:
            steps = plan
            step_recv = [0] * len(steps)
            step_out = [0] * len(steps)
        elif [(s["op"], s["axes"]) for s in steps] != [(s["op"], s["axes"]) for s in plan]:
            raise RuntimeError(f"{case.name}: DTensor planned differently on rank {rank}")
        shape = local_shape(case, case.src, coords[rank])
        local = torch.zeros(shape, dtype=dtype)
        RECORDER = Recorder()
        try:
            with RECORDER:
                local = redis.redistribute_local_tensor(local, cur, tgt, is_explicit=True)
        except (RuntimeError, AssertionError, ValueError) as e:  # DTensor fails on its own plan
            raise Unexpressible(f"DTensor's redistribute fails on rank {rank}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}")
        if list(local.shape) != local_shape(case, case.dst, coords[rank]):
            raise Unexpressible(f"DTensor's result is wrong: rank {rank} ends with a local shard of shape "
                                f"{list(local.shape)}, its layout's shard is {local_shape(case, case.dst, coords[rank])}")
        # Tie each collective to its step, in order: a communicating step on a mesh dim of size
        # > 1 issues exactly one; local steps and size-1 mesh dims issue none.
        events = list(RECORDER.events)
        greedy = all(DTensorSpec.is_default_device_order(o) for o in (src_o, dst_o))
        total = 0
        state = [list(src_p), {e.tensor_dim: list(e.mesh_dims) for e in src_o}]
        max_inter = max(max_inter, numel(shape) * item)
        for k, info in enumerate(infos):
            got = 0
            if steps[k]["op"] in COMMUNICATING and sizes[info.mesh_dim] > 1:
                if not events:
                    raise RuntimeError(f"{case.name}: step {k} ({steps[k]}) issued no collective")
                kind, group, ishape, oshape, isz = events.pop(0)
                ranks = dist.get_process_group_ranks(dist.distributed_c10d._resolve_process_group(group))
                if kind != steps[k]["op"] or ranks_to_axes(case, ranks) != steps[k]["axes"]:
                    raise RuntimeError(f"{case.name}: step {k} ({steps[k]}) issued {kind} on {ranks}")
                got = recv_bytes(kind, len(ranks), ishape, oshape, isz)
                peak = max(peak, numel(ishape) * isz, numel(oshape) * isz)
                steps[k].setdefault("shapes", {})[rank] = [list(ishape), list(oshape)]
            if greedy:  # the greedy planner keeps the default order: mesh order
                state[0][info.mesh_dim] = info.src_dst_placements[1]
                state[1] = {}
                for m, p in enumerate(state[0]):
                    if p.is_shard():
                        state[1].setdefault(p.dim, []).append(m)
            else:  # the graph planner's: leave from the end, join at the end
                redis._update_shard_order_and_placements(info, state[0], state[1])
            out_bytes = numel(local_shape(case, type_of(case, state), coords[rank])) * item
            step_recv[k] = max(step_recv[k], got)
            step_out[k] = max(step_out[k], out_bytes)
            max_inter = max(max_inter, out_bytes)
            total += got
        if events:
            raise RuntimeError(f"{case.name}: collectives left over: {events}")
        per_rank_total.append(total)
    dist.destroy_process_group()
    for k, s in enumerate(steps):
        s["bytes_recv"] = step_recv[k]
        s["out_local_bytes"] = step_out[k]
        shapes = s.pop("shapes", {})
        if shapes:  # the busiest member's padded in/out shapes of the collective
            s["collective_shapes"] = shapes[max(shapes, key=lambda r: numel(shapes[r][0]))]
    return {"steps": steps, "bytes_recv_max": max(per_rank_total), "max_intermediate_bytes": max_inter,
            "peak_buffer_bytes": max(peak, max_inter)}


# ---------------------------------------------------------------------------------------------
# Comparison with reshard

def reshard_figures(binary, case, strategy):
    p = casefile.reshard_plan(binary, case, strategy)
    return {"steps": [{"op": s["op"], "axes": s.get("axes", [])} for s in p["steps"]],
            "bytes_recv_max": p["bytes_recv_max"], "max_intermediate_bytes": p["max_intermediate_bytes"]}


def op_sequence(steps, mesh=None):
    """Steps as text. With the mesh (DTensor's steps): reducing a size-1 Partial, which DTensor
    skips (one chunk), reads as reshard's relabel of it, `local`."""
    sizes = dict(mesh or [])
    out = []
    for s in steps:
        op = s["op"]
        if op in ("all_reduce", "reduce_scatter") and all(sizes.get(a) == 1 for a in s["axes"]) and sizes:
            op = "local"
        out.append(f"{op}{{{','.join(s['axes'])}}}")
    return out


def case_record(case, real, binary):
    rec = {"name": case.name, "mesh": case.mesh_text(), "from": case.src.text(), "to": case.dst.text(),
           "devices": case.devices(), "dtensor": real}
    if binary:
        rec["reshard_dtensor"] = reshard_figures(binary, case, "dtensor")
        rec["reshard"] = reshard_figures(binary, case, "reshard")
    return rec


def all_cases(args):
    out = []
    for path, tag in ((os.path.join(ROOT, "tests/cases/public.txt"), "public"),
                      (os.path.join(ROOT, "benchmarks/suites/bench.txt"), "bench"),
                      (os.path.join(ROOT, "benchmarks/suites/bench_extra.txt"), "bench_extra")):
        for c in casefile.read_cases(path):
            out.append((tag, c))
    rng = random.Random(args.seed)
    for i in range(args.random):
        out.append(("random", casefile.random_case(rng, i, max_devices=args.max_devices)))
    return out


def cases_of_fixture(path):
    data = json.load(open(path))
    out = []
    for r in data["cases"] + data.get("skipped", []):
        out.append((r["suite"], casefile.Case(r["name"], casefile.parse_mesh(r["mesh"]),
                                              casefile.parse_type(r["from"]), casefile.parse_type(r["to"]))))
    return data, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reshard", help="build/bin/reshard: add reshard's dtensor and default plans")
    ap.add_argument("--random", type=int, default=0, help="random triples (casefile.random_case)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-devices", type=int, default=24, help="largest random mesh (every rank is run)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--fixture", help="re-measure this fixture's cases; fail on any change")
    ap.add_argument("--only", help="cases whose name contains this")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    fixture = None
    if args.fixture:
        fixture, cases = cases_of_fixture(args.fixture)
    else:
        cases = all_cases(args)
    if args.only:
        cases = [(t, c) for t, c in cases if args.only in c.name]
    records, skipped = [], []
    for tag, case in cases:
        try:
            real = measure(case)
        except Unexpressible as e:
            skipped.append({"suite": tag, "name": case.name, "mesh": case.mesh_text(), "from": case.src.text(),
                            "to": case.dst.text(), "why": str(e)})
            continue
        rec = case_record(case, real, args.reshard)
        rec["suite"] = tag
        records.append(rec)
        if args.reshard:
            same = op_sequence(rec["reshard_dtensor"]["steps"]) == op_sequence(real["steps"], case.mesh)
            flag = "" if same and rec["reshard_dtensor"]["bytes_recv_max"] == real["bytes_recv_max"] else "  DIFF"
            print(f"{case.name:22} {case.mesh_text():14} dtensor {real['bytes_recv_max']:>10} B "
                  f"{' '.join(op_sequence(real['steps'], case.mesh)):40} | baseline {rec['reshard_dtensor']['bytes_recv_max']:>10} "
                  f"{' '.join(op_sequence(rec['reshard_dtensor']['steps']))} | reshard {rec['reshard']['bytes_recv_max']}{flag}",
                  flush=True)
    out = {"torch": torch.__version__, "devices_per_host": DEVICES_PER_HOST, "seed": args.seed, "random": args.random, "cases": records, "skipped": skipped}
    if fixture is not None:
        want = {(r["name"], r["mesh"], r["from"], r["to"]): r["dtensor"] for r in fixture["cases"]}
        bad = [r["name"] for r in records if want.get((r["name"], r["mesh"], r["from"], r["to"])) != r["dtensor"]]
        print(f"re-measured {len(records)} cases with torch {torch.__version__}: {len(bad)} differ from the fixture")
        for b in bad:
            print(f"  differs: {b}")
        if len(records) != len(fixture["cases"]):
            print(f"  {len(fixture['cases'])} cases in the fixture, {len(records)} measured now")
            return 1
        return 1 if bad else 0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    print(f"{len(records)} cases measured, {len(skipped)} skipped")
    for s in skipped:
        print(f"  skipped {s['name']}: {s['why']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
