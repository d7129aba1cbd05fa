#!/usr/bin/env python3
"""XLA's SPMD partitioner as a peer: for each case, the collectives XLA emits to reshard an array
from the source sharding to the target one, the bytes its busiest device receives and its largest
local buffer, side by side with `reshard plan --json`.

How a case reaches XLA (jax on CPU, N devices in one process via
XLA_FLAGS=--xla_force_host_platform_device_count=N):
- The mesh becomes a jax Mesh with the same axis names and sizes over devices 0..N-1 in order,
  so partition id = row-major mesh coordinate, first axis major, exactly reshard's device
  numbering. Every case checks this: jax's index map of each device must equal reshard's block.
- A dim split over {a,b} becomes P(('a','b')): a major, like reshard.
- jax refuses uneven shardings on jit arguments and results, though XLA itself pads uneven
  shards (ceiling blocks, the layout reshard uses). So the argument is the source padded to
  whole blocks, the function slices it to the real shape, pins the source sharding, pins the
  target sharding, and pads the result to whole blocks again. That wrapper alone (source to
  source, target to target) is compiled too as a control: if it emits any collective, the case
  is skipped, so every collective counted belongs to the resharding.
- A pending reduction (`sum{x}` etc.) is handed over as what a jax user would write: the
  partials stacked along a new leading dim split over the reduce axes, each device holding
  exactly its partial, and a `sum` (max, min, prod) over that dim inside the function.

What is counted, per device, from the compiled HLO (as reshard counts `bytes_recv`: a device's
own block does not count, and XLA's padding does, since it is sent):
- all-gather: (g-1) x the operand; all-to-all: (g-1)/g of the operand (array form) or all tuple
  parts but one; collective-permute: the operand, on each target whose source is another device;
  reduce-scatter: (g-1) x the result; all-reduce: 2(g-1)/g of the operand, as reshard counts a
  ring all-reduce.
- peak: the largest array an instruction of the entry computation produces (a tuple counts as the
  sum of its parts, since they are live together); XLA's own `temp_size_in_bytes` is kept beside.

Usage:
  python3 benchmarks/peers/xla_plans.py --reshard build/bin/reshard \\
      --cases tests/cases/public.txt benchmarks/suites/bench.txt benchmarks/suites/bench_extra.txt \\
      --random 40 --seed 11 --json tests/peers/xla_plans.json
"""
import argparse
import atexit
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import casefile  # noqa: E402

HLO_ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                  "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "token": 0}
COLLECTIVES = {"all-gather", "all-gather-start", "all-to-all", "collective-permute", "collective-permute-start",
               "reduce-scatter", "all-reduce", "all-reduce-start"}
LOCAL_OPS_KEPT = {"dynamic-slice", "dynamic-update-slice", "pad", "slice", "concatenate", "transpose", "select"}


# ---------------------------------------------------------------- HLO text

def _matching(text, i, open_c, close_c):
    """Index just past the bracket that closes text[i] (== open_c)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_c:
            depth += 1
        elif text[j] == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced '{open_c}' in HLO: {text[i:i + 80]}")


def shape_parts(shape):
    """[(dtype, [dims])] of an HLO shape text: one array or a tuple of arrays."""
    parts = re.findall(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]", shape)
    out = []
    for dt, dims in parts:
        if dt not in HLO_ITEM_BYTES:
            raise ValueError(f"unknown HLO element type '{dt}' in {shape}")
        out.append((dt, [int(d) for d in dims.split(",") if d]))
    return out


def shape_bytes(shape):
    return sum(HLO_ITEM_BYTES[dt] * math.prod(dims) for dt, dims in shape_parts(shape))


def parse_instructions(hlo):
    """(computation, name, shape, opcode, operand names, attribute text) of every instruction."""
    out = []
    comp = None
    for line in hlo.splitlines():
        s = re.sub(r"/\*.*?\*/", "", line).strip()
        if not s or s.startswith("//") or s.startswith("HloModule"):
            continue
        if s == "}":
            comp = None
            continue
        if comp is None:  # a computation header: "ENTRY %main (...) -> ... {" or "%fused (...) -> ... {"
            if s.endswith("{"):
                comp = "ENTRY" if s.startswith("ENTRY") else s.split()[0].lstrip("%")
            continue
        m = re.match(r"(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*", s)
        if not m:
            raise ValueError(f"unreadable HLO line: {s[:120]}")
        rest = s[m.end():]
        if rest.startswith("("):
            end = _matching(rest, 0, "(", ")")
        else:
            end = rest.index(" ")
        shape, rest = rest[:end], rest[end:].lstrip()
        # Layouts like {1,0} follow the array shape; skip them before the opcode.
        while rest.startswith("{"):
            rest = rest[_matching(rest, 0, "{", "}"):].lstrip()
        op = re.match(r"([\w\-]+)\(", rest)
        if not op:
            raise ValueError(f"no opcode in HLO line: {s[:120]}")
        close = _matching(rest, op.end() - 1, "(", ")")
        operands = [o.strip().split()[-1].lstrip("%") for o in _split_top(rest[op.end():close - 1]) if o.strip()]
        out.append((comp, m.group(1), shape, op.group(1), operands, rest[close:]))
    return out


def _split_top(text):
    """Split at commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _iota(dims, perm):
    """Device ids of an iota tile: iota(prod dims) reshaped to dims, transposed by perm, flat."""
    n = math.prod(dims)
    strides = [math.prod(dims[i + 1:]) for i in range(len(dims))]
    tdims = [dims[p] for p in perm]
    out = []
    for flat in range(n):
        idx, rem = [], flat
        for d in reversed(tdims):
            idx.append(rem % d)
            rem //= d
        idx.reverse()
        out.append(sum(idx[k] * strides[perm[k]] for k in range(len(perm))))
    return out


def _tile_ids(text):
    """Ids of '[2,2,2]T(0,2,1)', '[8]' or '0,2,1,3'."""
    m = re.fullmatch(r"\[([0-9,]+)\](?:T\(([0-9,]+)\))?", text.strip())
    if m:
        dims = [int(d) for d in m.group(1).split(",")]
        perm = [int(p) for p in m.group(2).split(",")] if m.group(2) else list(range(len(dims)))
        return _iota(dims, perm)
    return [int(x) for x in text.replace("[", "").replace("]", "").split(",") if x.strip()]


def _mesh_groups(text, n):
    """Groups of the mesh-axes form: mesh['a'=4,'b'=2][, device_ids=(...)] {'a':(2)2,'b'}.
    Each listed axis (or sub-axis (pre)size of an axis) is a factor of the device array; the
    group holds the devices that differ only in the listed factors."""
    m = re.match(r"mesh\[([^\]]*)\]\s*(?:,\s*device_ids=\(([^)]*(?:\)[^)]*)?)\))?\s*\{([^}]*)\}", text)
    if not m:
        raise ValueError(f"unreadable mesh replica groups: {text[:120]}")
    axes = [(a.strip().strip("'"), int(s)) for a, s in (p.split("=") for p in m.group(1).split(","))]
    ids = _tile_ids(m.group(2)) if m.group(2) else list(range(math.prod(s for _, s in axes)))
    refs = []
    for r in _split_top(m.group(3)):
        r = r.strip()
        if not r:
            continue
        mm = re.fullmatch(r"'([^']+)'(?::\((\d+)\)(\d+))?", r)
        if not mm:
            raise ValueError(f"unreadable mesh axis reference '{r}'")
        refs.append((mm.group(1), int(mm.group(2) or 1), int(mm.group(3) or 0)))
    names = [a for a, _ in axes]
    # Factors of every mesh axis: (axis, pre, size), minor sub-axes last within the axis.
    factors, grouped = [], []
    for a, full in axes:
        mine = sorted([(pre, size or full, k) for k, (ra, pre, size) in enumerate(refs) if ra == a])
        pre_done = 1
        for pre, size, k in mine:
            if pre != pre_done:
                factors.append((a, pre // pre_done, None))
                pre_done = pre
            factors.append((a, size, k))
            pre_done *= size
        if pre_done != full:
            factors.append((a, full // pre_done, None))
    if any(r[0] not in names for r in refs):
        raise ValueError(f"mesh replica groups name an unknown axis: {text[:120]}")
    # A sub-axis (pre)size of an axis of size S is the middle factor of S = pre x size x rest,
    # major first (pre counts the coarser sub-axes), so the factors above are in device-array order.
    sizes = [f[1] for f in factors]
    if math.prod(sizes) != len(ids) or len(ids) != n:
        raise ValueError(f"mesh replica groups cover {len(ids)} devices, the module has {n}")
    gpos = sorted([i for i, f in enumerate(factors) if f[2] is not None], key=lambda i: factors[i][2])
    rest = [i for i in range(len(factors)) if factors[i][2] is None]
    perm = rest + gpos
    order = _iota(sizes, perm)  # positions of the device array, transposed
    g = math.prod(sizes[i] for i in gpos)
    flat = [ids[p] for p in order]
    return [flat[i:i + g] for i in range(0, len(flat), g)]


def replica_groups(attrs, n):
    m = re.search(r"replica_groups=", attrs)
    if not m:
        return [list(range(n))]
    text = attrs[m.end():]
    if text.startswith("{"):
        body = text[:_matching(text, 0, "{", "}")]
        groups = [[int(x) for x in g.split(",") if x.strip()] for g in re.findall(r"\{([0-9,\s]*)\}", body[1:-1])]
        return groups or [list(range(n))]
    if text.startswith("mesh"):
        return _mesh_groups(text, n)
    it = re.match(r"\[(\d+),(\d+)\]<=(\[[0-9,]+\](?:T\([0-9,]+\))?)", text)
    if it:
        ng, gs = int(it.group(1)), int(it.group(2))
        ids = _tile_ids(it.group(3))
        return [ids[i * gs:(i + 1) * gs] for i in range(ng)]
    raise ValueError(f"unreadable replica_groups: {text[:120]}")


def check_partition(groups, n, what):
    seen = sorted(d for g in groups for d in g)
    if seen != list(range(n)) or len({len(g) for g in groups}) != 1:
        raise ValueError(f"{what}: replica groups {groups} do not split the {n} devices into equal groups")


def hlo_steps(hlo, n):
    """Collectives of a compiled module, with the bytes each of the n devices receives."""
    instrs = parse_instructions(hlo)
    shapes = {name: shape for _, name, shape, _, _, _ in instrs}
    users = {}
    for comp, name, shape, op, operands, _ in instrs:
        if comp == "ENTRY":
            for o in operands:
                users.setdefault(o, []).append((name, shape, op))
    steps, local, peak = [], {}, 0
    for comp, name, shape, op, operands, attrs in instrs:
        if op.endswith("-done"):
            continue
        is_coll = op in COLLECTIVES or "all-" in op or "collective" in op or op.startswith("reduce-scatter")
        if comp != "ENTRY":
            if is_coll:
                raise ValueError(f"{op} inside computation {comp}: not counted by this script")
            continue
        if op not in ("get-tuple-element", "bitcast"):
            peak = max(peak, shape_bytes(shape))
        if not is_coll:
            if op in LOCAL_OPS_KEPT:
                local[op] = local.get(op, 0) + 1
            continue
        if op not in COLLECTIVES:
            raise ValueError(f"collective '{op}' is not counted by this script")
        kind = op.replace("-start", "")
        in_shapes = [shapes[o] for o in operands]
        in_bytes = sum(shape_bytes(s) for s in in_shapes)
        recv = [0] * n
        if kind == "collective-permute":
            pm = re.search(r"source_target_pairs=\{(.*?)\}\}", attrs)
            pairs = [tuple(int(x) for x in p.split(",")) for p in re.findall(r"\{(\d+,\d+)", pm.group(1) + "}")] if pm else []
            for s, t in pairs:
                if s != t:
                    recv[t] += in_bytes
            group, detail = None, {"moves": [[s, t] for s, t in pairs if s != t]}
        else:
            groups = replica_groups(attrs, n)
            check_partition(groups, n, f"{name}")
            g = len(groups[0])
            group, detail = g, {"first_group": sorted(groups[0]), "groups": len(groups)}
            if kind == "all-gather":
                per = (g - 1) * in_bytes
            elif kind == "all-to-all":
                if len(operands) > 1:
                    if len(operands) != g:
                        raise ValueError(f"{name}: {len(operands)} tuple parts for groups of {g}")
                    per = in_bytes - shape_bytes(in_shapes[0])
                else:
                    per = in_bytes // g * (g - 1)
            elif kind == "reduce-scatter":
                per = (g - 1) * shape_bytes(shape)
            elif kind == "all-reduce":
                per = in_bytes * 2 * (g - 1) // g if g > 1 else 0
            recv = [per] * n
        step = {"kind": kind, "group_size": group, "in": [_plain(s) for s in in_shapes], "out": _plain(shape),
                "bytes_recv": max(recv), **detail, "recv": recv, "recv_rs": recv}
        if kind == "all-reduce":
            share = _sliced_share(name, shape, group, users)
            if share is not None:
                # XLA's GPU pipeline (ReduceScatterCreator) fuses an all-reduce whose every use
                # keeps one device's 1/g into a reduce-scatter; the CPU pipeline does not.
                step["as_reduce_scatter"] = (group - 1) * share
                step["recv_rs"] = [(group - 1) * share] * n
        steps.append(step)
    return steps, local, peak


def _sliced_share(name, shape, g, users):
    """Bytes of the 1/g share that every use of an all-reduce keeps, else None. Only a
    dynamic-slice that cuts one dimension counts (through reshapes), as XLA's
    ReduceScatterCreator asks by default."""
    total, share = shape_bytes(shape), None
    todo = [(u, shape) for u in users.get(name, [])]
    if not todo:
        return None
    while todo:
        (uname, ushape, uop), parent = todo.pop()
        if uop in ("reshape", "bitcast", "copy"):
            if not users.get(uname):
                return None
            todo += [(u, ushape) for u in users[uname]]
            continue
        cut = [a != b for a, b in zip(shape_parts(parent)[0][1], shape_parts(ushape)[0][1])]
        if (uop != "dynamic-slice" or shape_bytes(ushape) * g != total or sum(cut) != 1
                or share not in (None, shape_bytes(ushape))):
            return None
        share = shape_bytes(ushape)
    return share


def _plain(shape):
    """f32[4,10]{1,0} -> f32[4,10]; tuples keep their parts."""
    parts = [f"{dt}[{','.join(map(str, d))}]" for dt, d in shape_parts(shape)]
    return parts[0] if len(parts) == 1 and not shape.startswith("(") else "(" + ", ".join(parts) + ")"


# ---------------------------------------------------------------- cases into jax

def reshard_block(case, t, rank):
    """[(lo, hi)] per dim of the block device `rank` holds in reshard's layout (docs/design.md 2)."""
    coords, rem = {}, rank
    for a, s in reversed(case.mesh):
        coords[a] = rem % s
        rem //= s
    sizes = dict(case.mesh)
    box = []
    for n, axes in t.dims:
        k, b = 1, 0
        for a in axes:
            k *= sizes[a]
            b = b * sizes[a] + coords[a]
        blk = -(-n // k)
        box.append((min(n, b * blk), min(n, (b + 1) * blk)))
    return box


def padded_shape(case, t):
    sizes = dict(case.mesh)
    return [-(-n // math.prod(sizes[a] for a in axes)) * math.prod(sizes[a] for a in axes) if axes else n
            for n, axes in t.dims]


class Xla:
    def __init__(self, devices, gspmd=False):
        # XLA's partitioner output is dumped (and read back) per compile: the CPU backend's later
        # passes rewrite it for the CPU (bf16 collectives widened to f32, all-to-alls split into
        # tuples), which is not the plan the partitioner chose.
        self.dump = tempfile.mkdtemp(prefix="xla_plans_")
        atexit.register(shutil.rmtree, self.dump, True)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={devices}"
                                   f" --xla_dump_to={self.dump} --xla_dump_hlo_pass_re=spmd-partitioning").strip()
        import jax
        import jax.numpy as jnp
        import numpy as np
        jax.config.update("jax_enable_x64", True)  # f64 and i64 stay 8 bytes
        if gspmd:  # GSPMD's sharding propagation instead of Shardy's (the partitioner is the same)
            jax.config.update("jax_use_shardy_partitioner", False)
        self.jax, self.jnp, self.np = jax, jnp, np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        self.Mesh, self.NamedSharding, self.P = Mesh, NamedSharding, PartitionSpec
        self.dtypes = {"f64": jnp.float64, "f32": jnp.float32, "f16": jnp.float16, "bf16": jnp.bfloat16,
                       "i64": jnp.int64, "i32": jnp.int32, "i16": jnp.int16, "i8": jnp.int8, "u8": jnp.uint8}
        if len(jax.devices()) < devices:
            raise RuntimeError(f"jax has {len(jax.devices())} devices, {devices} asked for (XLA_FLAGS set too late?)")

    def info(self):
        import jaxlib
        return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__, "backend": self.jax.default_backend(),
                "shardy": bool(self.jax.config.jax_use_shardy_partitioner)}

    def spec(self, t, lead=None):
        parts = [None if not axes else (axes[0] if len(axes) == 1 else tuple(axes)) for _, axes in t.dims]
        if lead is not None:
            parts = [lead] + parts
        return self.P(*parts)

    def compile(self, case, src, dst):
        """Compiled HLO text and memory stats of src -> dst through the padding wrapper."""
        jax, jnp = self.jax, self.jnp
        n = case.devices()
        mesh = self.Mesh(self.np.array(jax.devices()[:n]).reshape([s for _, s in case.mesh]), [a for a, _ in case.mesh])
        shape = [d for d, _ in src.dims]
        lax = jax.lax
        dt = self.dtypes[src.dtype]
        if jnp.issubdtype(dt, jnp.floating):
            lo, hi = -jnp.inf, jnp.inf
        else:
            lo, hi = jnp.iinfo(dt).min, jnp.iinfo(dt).max
        # lax.reduce in the array's own dtype: jnp.sum would widen bf16 to f32 before the
        # all-reduce, doubling the bytes for a reason that is jax's, not the partitioner's.
        red = {"sum": (lax.add, 0), "max": (lax.max, lo), "min": (lax.min, hi), "prod": (lax.mul, 1)}
        lead = None
        if src.reduce:
            lead = src.reduce[0] if len(src.reduce) == 1 else tuple(src.reduce)
            k = math.prod(dict(case.mesh)[a] for a in src.reduce)
        S = self.NamedSharding(mesh, self.spec(src, lead))
        D = self.NamedSharding(mesh, self.spec(dst))
        self.check_order(case, src, S, lead)
        self.check_order(case, dst, D, None)
        wsc = jax.lax.with_sharding_constraint
        dpad = padded_shape(case, dst)

        def f(a):
            cut = (slice(None),) * (lead is not None) + tuple(slice(0, k_) for k_ in shape)
            x = wsc(a[cut], S)
            if lead is not None:
                fn, init = red[src.op]
                x = lax.reduce(x, jnp.array(init, dt), fn, (0,))
            y = wsc(x, D)
            return jnp.pad(y, [(0, p - k_) for p, k_ in zip(dpad, shape)]) if shape else y

        arg_shape = ([k] if lead is not None else []) + padded_shape(case, src)
        arg = jax.ShapeDtypeStruct(tuple(arg_shape), self.dtypes[src.dtype], sharding=S)
        for name in os.listdir(self.dump):
            path = os.path.join(self.dump, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        c = jax.jit(f, out_shardings=D).lower(arg).compile()
        mem = c.memory_analysis()
        dumped = [n for n in os.listdir(self.dump) if "after_spmd-partitioning" in n and n.endswith(".txt")]
        if not dumped and n == 1:  # one device: XLA runs no partitioner, and nothing can move
            return c.as_text(), c.as_text(), getattr(mem, "temp_size_in_bytes", None)
        if len(dumped) != 1:
            raise RuntimeError(f"expected one dump of XLA's spmd-partitioning pass, found {dumped}")
        with open(os.path.join(self.dump, dumped[0])) as fh:
            partitioned = fh.read()
        return partitioned, c.as_text(), (getattr(mem, "temp_size_in_bytes", None) if mem is not None else None)

    def check_order(self, case, t, sharding, lead):
        """jax's block of device d must be reshard's block of rank d (same numbering, same ceil layout)."""
        shape = ([math.prod(dict(case.mesh)[a] for a in case.src.reduce)] if lead is not None else []) + padded_shape(case, t)
        index = sharding.devices_indices_map(tuple(shape))
        for dev, idx in index.items():
            idx = idx[1:] if lead is not None else idx
            got = [(min(n, sl.start or 0), min(n, sl.stop if sl.stop is not None else n)) for sl, (n, _) in zip(idx, t.dims)]
            want = reshard_block(case, t, dev.id)
            if got != want:
                raise AssertionError(f"{case.name}: device {dev.id} holds {got} in jax, {want} in reshard ({t.text()})")

    def measure(self, case):
        n = case.devices()
        if case.src.dtype != case.dst.dtype or [d for d, _ in case.src.dims] != [d for d, _ in case.dst.dims]:
            return {"skipped": "source and target differ in dtype or shape"}
        if case.dst.reduce:
            return {"skipped": "a pending reduction in the target has no jax sharding to name it"}
        if case.src.reduce and case.src.op not in ("sum", "max", "min", "prod"):
            return {"skipped": f"reduce op {case.src.op}"}
        # Controls: the wrapper alone must move nothing.
        for a, b, what in ((case.src, case.src, "source"), (case.dst, case.dst, "target")):
            if a.reduce:
                continue
            for hlo in self.compile(case, a, b)[:2]:
                steps, _, _ = hlo_steps(hlo, n)
                if steps:
                    return {"skipped": f"the padding wrapper alone emits {steps[0]['kind']} on the {what} type"}
        partitioned, final, temp = self.compile(case, case.src, case.dst)
        steps, local, peak = hlo_steps(partitioned, n)
        cpu_steps, _, cpu_peak = hlo_steps(final, n)
        return {"steps": [{k: v for k, v in s.items() if k not in ("recv", "recv_rs")} for s in steps],
                "local_ops": local, "bytes_recv_max": busiest(steps, n),
                "bytes_recv_max_rs": busiest(steps, n, "recv_rs"), "peak_local_bytes": peak,
                "cpu": {"bytes_recv_max": busiest(cpu_steps, n), "peak_local_bytes": cpu_peak, "temp_bytes": temp,
                        "steps": [s["kind"] for s in cpu_steps]}}


def busiest(steps, n, key="recv"):
    """Bytes the busiest device receives over all steps."""
    return max([sum(s[key][d] for s in steps) for d in range(n)] + [0])


# ---------------------------------------------------------------- reshard side and comparison

def reshard_figures(binary, case):
    p = casefile.reshard_plan(binary, case)
    # The CLI cannot be asked for the collective-only plan; where it picks exchange, its notes
    # say what the best collective plan would receive (None: no exact collective plan exists).
    exchange = any(s["op"] == "exchange" for s in p["steps"])
    coll = None if exchange else p["bytes_recv_max"]
    for note in p.get("notes", []):
        m = re.search(r"best collective plan \((.*?)\) would receive about (\d+) B", note)
        if m:
            coll = int(m.group(2))
    return {"bytes_recv_max": p["bytes_recv_max"], "max_intermediate_bytes": p["max_intermediate_bytes"],
            "lower_bound_bytes": p.get("lower_bound_bytes"), "steps": [s["op"] + "{" + ",".join(s["axes"]) + "}" for s in p["steps"]],
            "uses_exchange": exchange, "collective_bytes": coll}


def verdict(a, b):
    return "fewer" if a < b else "equal" if a == b else "more"


def run_cases(xla, binary, cases, suite, log=sys.stderr):
    rows = []
    for c in cases:
        row = {"name": c.name, "suite": suite, "mesh": c.mesh_text(), "from": c.src.text(), "to": c.dst.text()}
        try:
            row["xla"] = xla.measure(c)
        except AssertionError:
            raise
        except Exception as e:  # a case XLA (or jax) cannot take: skipped with its reason
            row["xla"] = {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        if binary:
            row["reshard"] = reshard_figures(binary, c)
            x = row["xla"]
            if "skipped" not in x:
                r = row["reshard"]
                if r["lower_bound_bytes"] is not None and x["bytes_recv_max_rs"] < r["lower_bound_bytes"]:
                    raise AssertionError(f"{c.name}: XLA counted {x['bytes_recv_max']} B, under the lower bound "
                                         f"{r['lower_bound_bytes']} B: the HLO reading is wrong")
                # Against XLA's better figure: all-reduces fused into reduce-scatters where its GPU
                # pipeline would fuse them.
                row["bytes"] = verdict(r["bytes_recv_max"], x["bytes_recv_max_rs"])
                if r["collective_bytes"] is not None:
                    row["collective_bytes"] = verdict(r["collective_bytes"], x["bytes_recv_max_rs"])
                row["memory"] = verdict(r["max_intermediate_bytes"], x["peak_local_bytes"])
        print(f"{suite:>8} {c.name:24} " + (f"skip: {row['xla']['skipped']}" if "skipped" in row["xla"] else
              f"xla {row['xla']['bytes_recv_max_rs']:>10} B peak {row['xla']['peak_local_bytes']:>10} B" +
              (f" | reshard {row['reshard']['bytes_recv_max']:>10} B ({row['bytes']}) peak "
               f"{row['reshard']['max_intermediate_bytes']:>10} B ({row['memory']})" if binary else "")), file=log)
        rows.append(row)
    return rows


def summary(rows):
    s = {"cases": len(rows), "skipped": sum("skipped" in r["xla"] for r in rows)}
    for key in ("bytes", "collective_bytes", "memory"):
        s[key] = {v: sum(r.get(key) == v for r in rows) for v in ("fewer", "equal", "more")}
    return s


def load_cases(paths, random_n, seed, max_devices):
    out = []
    for p in paths:
        out.append((os.path.splitext(os.path.basename(p))[0], casefile.read_cases(p)))
    if random_n:
        rng = random.Random(seed)
        out.append(("random", [casefile.random_case(rng, i, allow_reduce=True, max_devices=max_devices)
                               for i in range(random_n)]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reshard", help="the reshard CLI (build/bin/reshard); without it only XLA is measured")
    ap.add_argument("--cases", nargs="*", default=[], help="case files")
    ap.add_argument("--random", type=int, default=0, help="number of seeded random triples")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-devices", type=int, default=16)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--gspmd", action="store_true", help="propagate shardings with GSPMD, not Shardy")
    a = ap.parse_args()
    groups = load_cases(a.cases, a.random, a.seed, a.max_devices)
    devices = max([c.devices() for _, cs in groups for c in cs] + [1])
    xla = Xla(devices, a.gspmd)
    rows = []
    for suite, cases in groups:
        rows += run_cases(xla, a.reshard, cases, suite)
    doc = {"tool": xla.info(), "command": "python3 benchmarks/peers/xla_plans.py " + " ".join(sys.argv[1:]),
           "summary": summary(rows) if a.reshard else None, "cases": rows}
    print(json.dumps(doc["summary"], indent=1), file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
