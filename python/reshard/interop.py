"""JAX PartitionSpec and PyTorch DTensor placements to and from reshard Types (docs/python.md).

Both notations are accepted as the libraries' own objects (duck-typed: nothing here imports jax
or torch) or as plain Python values: a PartitionSpec as a tuple of None / axis name / tuple of
axis names per dim; placements as Shard/StridedShard/Replicate/Partial objects of this module
or strings such as "S(0)", "_S(0, 2)", "R", "P(sum)".

Layouts differ where sizes do not divide: reshard (like XLA and JAX) uses ceil blocks of the
whole dim over all its axes, DTensor chunks the dim per mesh dim, nested (torch.chunk of the
parent chunk). Conversions check, for every device, that both give the same global indices,
and raise ConversionError naming the dim where they do not.
"""
from __future__ import annotations

import itertools
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ._core import Error, Mesh, Type
from ._dtypes import dtype_name


class ConversionError(Error, ValueError):
    """A type that the other notation cannot express (or the other way round); names the dim."""


# ---------------------------------------------------------------------------------------------
# Meshes


def mesh_from(mesh: Any) -> Mesh:
    """A reshard.Mesh from a Mesh, mesh text, a jax.sharding.Mesh (axis_names, shape) or a torch
    DeviceMesh with mesh_dim_names."""
    if isinstance(mesh, Mesh):
        return mesh
    if isinstance(mesh, str):
        return Mesh(mesh)
    names = getattr(mesh, "axis_names", None)
    if names is not None:  # jax.sharding.Mesh: shape is an OrderedDict name -> size
        shape = mesh.shape
        sizes = [shape[n] for n in names] if isinstance(shape, Mapping) else list(shape)
        return Mesh(",".join(f"{n}={s}" for n, s in zip(names, sizes)))
    names = getattr(mesh, "mesh_dim_names", None)
    if names is not None:  # torch DeviceMesh
        return Mesh(",".join(f"{n}={s}" for n, s in zip(names, tuple(mesh.shape))))
    raise TypeError(f"cannot make a reshard.Mesh from {type(mesh).__name__}; pass text such as 'dp=2,tp=4'")


def _make_type(mesh: Mesh, shape: Sequence[int], dtype: Any, dim_axes: Sequence[Sequence[str]],
               op: str | None, reduce_axes: Sequence[str]) -> Type:
    dims = []
    for n, axes in zip(shape, dim_axes):
        dims.append(f"{int(n)}{{{','.join(axes)}}}" if axes else f"{int(n)}")
    text = f"{dtype_name(dtype)}[{', '.join(dims)}]"
    if op is not None:
        text += f" {op}{{{','.join(reduce_axes)}}}"
    return Type(text, mesh)


def _check_shape(shape: Sequence[int]) -> list[int]:
    out = []
    for i, n in enumerate(shape):
        if int(n) != n or n < 1:
            raise ValueError(f"shape: dim {i} has size {n}; sizes are integers >= 1")
        out.append(int(n))
    return out


def _check_axes_once(mesh: Mesh, used: Iterable[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for axis, where in used:
        if mesh.axis_index(axis) < 0:
            raise ConversionError(f"{where}: '{axis}' is not an axis of mesh {mesh}")
        if axis in seen:
            raise ConversionError(f"{where}: axis '{axis}' is already used by {seen[axis]}")
        seen[axis] = where


# ---------------------------------------------------------------------------------------------
# JAX PartitionSpec


class PartitionSpec(tuple):
    """A PartitionSpec without jax: one entry per dim (None, an axis name, or a tuple of names,
    major first), and `unreduced`: axes over which the value is a pending sum."""

    unreduced: tuple[str, ...]

    def __new__(cls, *entries: Any, unreduced: Iterable[str] = ()):
        self = super().__new__(cls, entries)
        self.unreduced = tuple(unreduced)
        return self

    def __repr__(self) -> str:
        inner = ", ".join(repr(e) for e in self)
        if self.unreduced:
            inner += (", " if inner else "") + f"unreduced={self.unreduced!r}"
        return f"PartitionSpec({inner})"

    def __eq__(self, other: Any) -> bool:
        return tuple(self) == tuple(other) and tuple(self.unreduced) == tuple(getattr(other, "unreduced", ()))

    def __hash__(self) -> int:
        return hash((tuple(self), self.unreduced))


def from_partition_spec(spec: Any, mesh: Any, shape: Sequence[int], dtype: Any, *,
                        unreduced: Iterable[str] | None = None) -> Type:
    """The Type of an array of `shape` and `dtype` laid out by a JAX PartitionSpec on `mesh`.

    spec: a jax.sharding.PartitionSpec or a tuple with one entry per leading dim (missing
    trailing entries are None): None (replicated), "x", or ("x", "y") (major first). Its
    `unreduced` axes (or the `unreduced` argument) make a pending sum: sum{...}.
    """
    mesh = mesh_from(mesh)
    shape = _check_shape(shape)
    # jax's PartitionSpec refuses iteration when it has unreduced axes: read .partitions there.
    # Its `reduced` axes are replicated in layout (they concern gradients): nothing to convert.
    entries = list(spec.partitions) if hasattr(spec, "partitions") else list(spec)
    if len(entries) > len(shape):
        raise ConversionError(f"the PartitionSpec has {len(entries)} entries for an array of rank {len(shape)}")
    entries += [None] * (len(shape) - len(entries))
    dim_axes: list[list[str]] = []
    used: list[tuple[str, str]] = []
    for d, e in enumerate(entries):
        if e is None:
            axes: list[str] = []
        elif isinstance(e, str):
            axes = [e]
        elif isinstance(e, (tuple, list)) and all(isinstance(a, str) for a in e):
            axes = list(e)
        else:
            raise ConversionError(f"PartitionSpec entry for dim {d} is {e!r}; expected None, an axis name or a tuple of names")
        used += [(a, f"dim {d}") for a in axes]
        dim_axes.append(axes)
    red: list[str] = []
    for group in (getattr(spec, "unreduced", None) or (), unreduced or ()):
        # JAX keeps unreduced axes as a set: without an order of its own, take the mesh's.
        axes = list(group) if isinstance(group, (tuple, list)) else sorted(group, key=mesh.axis_index)
        red += [a for a in axes if a not in red]
    used += [(a, "unreduced") for a in red]
    _check_axes_once(mesh, used)
    return _make_type(mesh, shape, dtype, dim_axes, "sum" if red else None, red)


def to_partition_spec(t: Type, *, jax: bool | None = None) -> Any:
    """The PartitionSpec of `t`: a jax.sharding.PartitionSpec when `jax` is true (None: when jax
    is already imported), else a reshard.PartitionSpec. A pending sum becomes `unreduced`;
    max, min and prod have no PartitionSpec form (ConversionError)."""
    entries: list[Any] = []
    for axes in t.dim_axes:
        entries.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    red: tuple[str, ...] = ()
    if t.reduce_op is not None:
        if t.reduce_op != "sum":
            raise ConversionError(f"{t}: a PartitionSpec can say a value is a pending sum (unreduced), not a pending {t.reduce_op}")
        red = tuple(t.reduce_axes)
    use_jax = ("jax" in sys.modules) if jax is None else jax
    if use_jax:
        from jax.sharding import PartitionSpec as P

        if red:
            try:
                return P(*entries, unreduced=frozenset(red))
            except TypeError as e:
                raise ConversionError(f"{t}: this jax's PartitionSpec has no `unreduced` axes") from e
        return P(*entries)
    return PartitionSpec(*entries, unreduced=red)


# ---------------------------------------------------------------------------------------------
# DTensor placements


@dataclass(frozen=True)
class Shard:
    """DTensor's Shard(dim): the mesh dim chunks tensor dim `dim` (torch.chunk)."""
    dim: int

    def __str__(self) -> str:
        return f"S({self.dim})"


@dataclass(frozen=True)
class StridedShard:
    """DTensor's _StridedShard(dim, split_factor): the dim is chunked into split_factor pieces,
    each piece into num_chunks chunks, and mesh coordinate c takes chunk c of every piece (how
    DTensor writes a dim split by a later mesh dim first, as FSDP over TP does)."""
    dim: int
    split_factor: int

    def __str__(self) -> str:
        return f"_S({self.dim}, {self.split_factor})"


_StridedShard = StridedShard


@dataclass(frozen=True)
class Replicate:
    def __str__(self) -> str:
        return "R"


@dataclass(frozen=True)
class Partial:
    """DTensor's Partial(reduce_op): a pending reduction over the mesh dim."""
    reduce_op: str = "sum"

    def __str__(self) -> str:
        return f"P({self.reduce_op})"


_OPS = {"sum": "sum", "max": "max", "min": "min", "prod": "prod", "product": "prod"}
_PLACEMENT_TEXT = re.compile(r"^\s*(?P<name>[A-Za-z_]+)\s*(?:\((?P<args>[^()]*)\))?\s*$")


def _parse_placement(text: str, where: str) -> tuple:
    m = _PLACEMENT_TEXT.match(text)
    if not m:
        raise ConversionError(f"{where}: cannot read placement {text!r}; write S(0), _S(0, 2), R or P(sum)")
    name, args = m["name"], [a.strip() for a in (m["args"] or "").split(",") if a.strip()]
    vals = [a.split("=", 1)[-1].strip().strip("'\"") for a in args]
    try:
        if name in ("S", "Shard") and len(vals) == 1:
            return ("shard", int(vals[0]), 1)
        if name in ("_S", "_StridedShard", "StridedShard") and len(vals) == 2:
            return ("shard", int(vals[0]), int(vals[1]))
        if name in ("R", "Replicate") and not vals:
            return ("replicate",)
        if name in ("P", "Partial") and len(vals) <= 1:
            return ("partial", vals[0] if vals else "sum")
    except ValueError:
        pass
    raise ConversionError(f"{where}: cannot read placement {text!r}; write S(0), _S(0, 2), R or P(sum)")


def _classify(p: Any, where: str) -> tuple:
    """('shard', dim, split_factor) | ('replicate',) | ('partial', op) for our classes, torch's
    (by class name and attributes) and text."""
    if isinstance(p, str):
        return _parse_placement(p, where)
    name = type(p).__name__
    if name in ("_StridedShard", "StridedShard"):
        return ("shard", int(p.dim), int(p.split_factor))
    if name == "Shard":
        return ("shard", int(p.dim), 1)
    if name == "Replicate":
        return ("replicate",)
    if name in ("Partial", "_Partial"):
        op = getattr(p, "reduce_op", "sum")
        return ("partial", getattr(op, "name", str(op)))
    raise ConversionError(f"{where}: {p!r} is not a DTensor placement (Shard, _StridedShard, Replicate, Partial)")


def _chunk(ranges: list[tuple[int, int]], pieces: int, take: Iterable[int]) -> list[tuple[int, int]]:
    """torch.chunk of the concatenation of `ranges` into `pieces` (chunk size ceil(L / pieces),
    trailing chunks short or missing), keeping chunks `take` in that order, as global ranges."""
    total = sum(hi - lo for lo, hi in ranges)
    size = -(-total // pieces) if total else 0
    out: list[tuple[int, int]] = []
    for k in take:
        a, b = min(total, k * size), min(total, (k + 1) * size)
        pos = 0
        for lo, hi in ranges:  # positions [a, b) of the concatenation
            n = hi - lo
            s, e = max(a, pos), min(b, pos + n)
            if s < e:
                g0, g1 = lo + s - pos, lo + e - pos
                if out and out[-1][1] == g0:
                    out[-1] = (out[-1][0], g1)
                else:
                    out.append((g0, g1))
            pos += n
    return out


def _dtensor_ranges(n: int, levels: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Global indices a device holds along a dim of size n: `levels` are (mesh dim size, split
    factor, coordinate) in the order DTensor applies them."""
    ranges = [(0, n)]
    for size, sf, c in levels:
        # _StridedShard (sf > 1): torch.chunk into sf pieces first, each piece into `size`
        # chunks, and coordinate c takes chunk c of every piece (DTensor's _split_tensor).
        out: list[tuple[int, int]] = []
        for j in range(sf):
            for r in _chunk(_chunk(ranges, sf, [j]), size, [c]):
                if out and out[-1][1] == r[0]:
                    out[-1] = (out[-1][0], r[1])
                else:
                    out.append(r)
        ranges = out
    return ranges


def _ceil_block(n: int, k: int, b: int) -> tuple[int, int]:
    size = -(-n // k)
    return (min(n, b * size), min(n, (b + 1) * size))


def _blocks_agree(mesh: Mesh, n: int, levels: Sequence[tuple[int, int]], order: Sequence[int]) -> tuple | None:
    """None if DTensor's nested chunks (levels: (mesh dim, split factor), applied in order) and the
    ceil blocks of a dim split over mesh dims `order` (major first) agree on every device;
    else (coords, dtensor ranges, ceil block) of the first device where they differ."""
    sizes = mesh.shape
    dims = [m for m, _ in levels]
    k = math.prod(sizes[m] for m in order)
    for coords in itertools.product(*[range(sizes[m]) for m in dims]):
        at = dict(zip(dims, coords))
        got = _dtensor_ranges(n, [(sizes[m], sf, at[m]) for m, sf in levels])
        b = 0
        for m in order:
            b = b * sizes[m] + at[m]
        lo, hi = _ceil_block(n, k, b)
        want = [(lo, hi)] if hi > lo else []
        got = [r for r in got if r[1] > r[0]]
        if got != want:
            return (at, got, (lo, hi))
    return None


def _natural_order(mesh: Mesh, levels: Sequence[tuple[int, int]]) -> list[int]:
    """The order (major first) that split factors describe: a level with split factor s sits
    below the later-applied mesh dims whose sizes multiply to s (to_placements' rule)."""
    sizes = mesh.shape
    order: list[int] = []
    for m, sf in reversed(levels):
        p, prod = 0, 1
        while prod < sf and p < len(order):
            prod *= sizes[order[p]]
            p += 1
        order.insert(p, m)
    return order


def _mesh_dim(mesh: Mesh, key: Any, where: str) -> int:
    if isinstance(key, str):
        i = mesh.axis_index(key)
        if i < 0:
            raise ConversionError(f"{where}: '{key}' is not an axis of mesh {mesh}")
        return i
    i = int(key)
    if not 0 <= i < len(mesh.axes):
        raise ConversionError(f"{where}: mesh dim {key} is out of range for mesh {mesh}")
    return i


def _shard_order_map(mesh: Mesh, shard_order: Any) -> dict[int, list[int]]:
    """{tensor dim: [mesh dims in the order they shard it]} from a dict, pairs, or DTensor's
    ShardOrderEntry objects (tensor_dim, mesh_dims)."""
    if shard_order is None:
        return {}
    items = shard_order.items() if isinstance(shard_order, Mapping) else shard_order
    out: dict[int, list[int]] = {}
    for it in items:
        if hasattr(it, "tensor_dim"):
            d, ms = it.tensor_dim, it.mesh_dims
        else:
            d, ms = it
        out[int(d)] = [_mesh_dim(mesh, m, f"shard_order of dim {d}") for m in ms]
    return out


def from_placements(placements: Any, mesh: Any, shape: Sequence[int], dtype: Any,
                    shard_order: Any = None, *, uneven: str = "ceil") -> Type:
    """The Type of a DTensor of `shape` and `dtype` with `placements` on `mesh`.

    placements: one per mesh dim, by position (a sequence) or by axis name (a mapping; axes
    left out are Replicate). Shard(d), _StridedShard(d, split_factor), Replicate(),
    Partial(op) (sum, max, min, product; not avg). shard_order: {tensor dim: mesh dims (index or
    name) in the order they shard it}, as DTensor's shard_order; default: mesh order.
    Uneven dims: DTensor nests torch.chunk per mesh dim, reshard uses ceil blocks. By default
    (uneven="ceil", as the Python contract's example expects) the type the placements spell is
    returned (axes in the order they shard, ceil blocks); where the blocks differ, the DTensor's
    local shapes differ from the type's on some ranks, so ctx.reshard refuses them with a
    MismatchError (equal sizes in block order imply equal blocks: no silent misplacement).
    uneven="raise" checks every device's block and raises ConversionError naming the dim.
    """
    if uneven not in ("raise", "ceil"):
        raise ValueError(f"uneven must be 'raise' or 'ceil', not {uneven!r}")
    mesh = mesh_from(mesh)
    shape = _check_shape(shape)
    names = mesh.axis_names
    if isinstance(placements, Mapping):
        per_dim: list[Any] = ["R"] * len(names)
        for key, p in placements.items():
            per_dim[_mesh_dim(mesh, key, "placements")] = p
    else:
        per_dim = list(placements)
        if len(per_dim) != len(names):
            raise ConversionError(f"{len(per_dim)} placements for mesh {mesh}, which has {len(names)} dims (one placement per mesh dim)")
    kinds = [_classify(p, f"placement of mesh dim {i} ({names[i]})") for i, p in enumerate(per_dim)]
    levels: dict[int, list[tuple[int, int]]] = {}
    partial: list[int] = []
    ops = set()
    for i, k in enumerate(kinds):
        where = f"placement of mesh dim {i} ({names[i]})"
        if k[0] == "shard":
            d, sf = k[1], k[2]
            if d < 0:
                d += len(shape)
            if not 0 <= d < len(shape):
                raise ConversionError(f"{where}: Shard({k[1]}) on an array of rank {len(shape)}")
            if sf < 1:
                raise ConversionError(f"{where}: split factor {sf}; it must be >= 1")
            levels.setdefault(d, []).append((i, sf))
        elif k[0] == "partial":
            op = _OPS.get(str(k[1]).lower())
            if op is None:
                raise ConversionError(f"{where}: Partial({k[1]}) has no reshard form; reshard has pending sum, max, min and prod")
            partial.append(i)
            ops.add(op)
    if len(ops) > 1:
        raise ConversionError(f"Partial placements with different ops ({', '.join(sorted(ops))}); a type has one pending reduction")
    for d, ms in _shard_order_map(mesh, shard_order).items():
        have = levels.get(d, [])
        if sorted(m for m, _ in have) != sorted(ms):
            raise ConversionError(f"shard_order of dim {d} names mesh dims {ms}, but the placements shard it over {[m for m, _ in have]}")
        sf = dict(have)
        levels[d] = [(m, sf[m]) for m in ms]
    dim_axes: list[list[str]] = [[] for _ in shape]
    for d, lv in levels.items():
        natural = _natural_order(mesh, lv)
        tried = [natural] + [list(p) for p in itertools.permutations(m for m, _ in lv) if list(p) != natural]
        first = None
        for order in tried:
            bad = _blocks_agree(mesh, shape[d], lv, order)
            if bad is None:
                dim_axes[d] = [names[m] for m in order]
                break
            first = first or bad
        else:
            if uneven == "ceil":  # no axis order gives DTensor's blocks: the spelled type
                dim_axes[d] = [names[m] for m in natural]
                continue
            at, got, want = first
            where = ", ".join(f"{names[m]}={c}" for m, c in at.items())
            raise ConversionError(
                f"dim {d}: DTensor chunks {shape[d]} over mesh dims {[names[m] for m, _ in lv]} (nested torch.chunk), "
                f"and no ceil-block layout gives the same blocks: at {where} DTensor holds {got or 'nothing'}, "
                f"a ceil block would be [{want[0]}, {want[1]})")
    return _make_type(mesh, shape, dtype, dim_axes, ops.pop() if ops else None, [names[m] for m in partial])


def to_placements(t: Type, *, shard_order: bool = False, torch: bool | None = None) -> Any:
    """DTensor placements of `t`, one per mesh dim.

    A dim split over axes out of mesh order takes _StridedShard (split_factor: the sizes of the
    later mesh dims that are more major in the type), or with shard_order=True plain Shards and
    DTensor's shard_order: returns (placements, {tensor dim: [mesh dims, major first]}).
    torch: return torch's placement classes (None: when torch.distributed.tensor is imported).
    Raises ConversionError naming the dim where DTensor's nested chunks cannot hold t's blocks.
    """
    mesh = t.mesh
    names = mesh.axis_names
    sizes = mesh.shape
    kinds: list[tuple] = [("replicate",)] * len(names)
    order: dict[int, list[int]] = {}
    shape = t.shape
    for d, axes in enumerate(t.dim_axes):
        ms = [mesh.axis_index(a) for a in axes]
        if not ms:
            continue
        order[d] = ms
        for pos, m in enumerate(ms):
            sf = 1 if shard_order else math.prod(sizes[o] for o in ms[:pos] if o > m)
            kinds[m] = ("shard", d, sf)
        lv = [(m, kinds[m][2]) for m in (ms if shard_order else sorted(ms))]
        bad = _blocks_agree(mesh, shape[d], lv, ms)
        if bad is not None:
            at, got, want = bad
            where = ", ".join(f"{names[m]}={c}" for m, c in at.items())
            raise ConversionError(
                f"dim {d}: {t} splits {shape[d]} in ceil blocks over {'{' + ','.join(axes) + '}'}, which DTensor's nested "
                f"torch.chunk cannot hold: at {where} the block is [{want[0]}, {want[1]}), DTensor would hold {got or 'nothing'}")
    if t.reduce_op is not None:
        op = "product" if t.reduce_op == "prod" else t.reduce_op
        for a in t.reduce_axes:
            kinds[mesh.axis_index(a)] = ("partial", op)
    use_torch = ("torch.distributed.tensor" in sys.modules) if torch is None else torch
    placements = [_make_placement(k, use_torch) for k in kinds]
    if shard_order:
        return placements, {d: ms for d, ms in order.items()}
    return placements


def _make_placement(k: tuple, use_torch: bool) -> Any:
    if use_torch:
        from torch.distributed.tensor import placement_types as pt

        if k[0] == "shard":
            return pt.Shard(k[1]) if k[2] == 1 else pt._StridedShard(k[1], split_factor=k[2])
        if k[0] == "partial":
            return pt.Partial(k[1])
        return pt.Replicate()
    if k[0] == "shard":
        return Shard(k[1]) if k[2] == 1 else StridedShard(k[1], k[2])
    if k[0] == "partial":
        return Partial(k[1])
    return Replicate()
