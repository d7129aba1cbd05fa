"""PartitionSpec and DTensor placements <-> Types: round trips over random types, every case's
types, DTensor's chunking checked against torch.chunk itself, and the errors."""
import itertools
import math
import random

import pytest

import reshard
from reshard import ConversionError, Partial, Replicate, Shard, StridedShard
from conftest import all_cases, random_mesh, random_type

SWEEP = 3000


def test_contract_examples():
    mesh = reshard.Mesh("x=2,y=2")
    t = reshard.from_partition_spec((("x", "y"), None), mesh, (30, 7), "f32")
    assert t == reshard.Type("f32[30{x,y},7]", mesh)
    # 30 rows over 2x2: DTensor chunks [0,8) [8,15) [15,23) [23,30), ceil blocks [0,8) [8,16) ...
    # The contract's example returns the type the placements spell; uneven="raise" refuses it.
    assert reshard.from_placements([Shard(0), Shard(0)], mesh, (30, 7), "f32") == t
    with pytest.raises(ConversionError, match="dim 0"):
        reshard.from_placements([Shard(0), Shard(0)], mesh, (30, 7), "f32", uneven="raise")
    assert reshard.from_placements([Shard(0), Shard(0)], mesh, (32, 7), "f32") == reshard.Type("f32[32{x,y},7]", mesh)


def test_partition_spec_forms():
    mesh = reshard.Mesh("x=2,y=2,z=2")
    f = reshard.from_partition_spec
    assert str(f(("x",), mesh, (8, 4), "f32")) == "f32[8{x}, 4]"
    assert str(f((None, ("z", "x")), mesh, (8, 4), "bf16")) == "bf16[8, 4{z,x}]"
    assert str(f(("x",), mesh, (8, 4), "f32", unreduced={"z", "y"})) == "f32[8{x}, 4] sum{y,z}"
    assert str(f(reshard.PartitionSpec("y", unreduced=("z", "x")), mesh, (8,), "i32")) == "i32[8{y}] sum{z,x}"
    np = pytest.importorskip("numpy")
    assert f((), mesh, (3,), np.float64).dtype == "f64"
    spec = reshard.to_partition_spec(reshard.Type("f32[8{x,y}, 4, 2{z}]", mesh), jax=False)
    assert tuple(spec) == (("x", "y"), None, "z") and spec.unreduced == ()


@pytest.mark.parametrize("spec,kw,words", [
    (("q",), {}, "'q' is not an axis"), (("x", "x"), {}, "already used"), (("x", None, None), {}, "3 entries"),
    ((3,), {}, "expected None"), (("x",), {"unreduced": {"x"}}, "already used"),
])
def test_partition_spec_errors(spec, kw, words):
    with pytest.raises(ConversionError, match=words):
        reshard.from_partition_spec(spec, reshard.Mesh("x=2,y=2"), (8, 8), "f32", **kw)


def test_partition_spec_has_no_pending_max():
    t = reshard.Type("f32[8] max{x}", reshard.Mesh("x=2"))
    with pytest.raises(ConversionError, match="pending max"):
        reshard.to_partition_spec(t)


def test_partition_spec_round_trip_sweep():
    rng = random.Random(14)
    n = 0
    for _ in range(SWEEP):
        mesh = random_mesh(rng)
        t = random_type(rng, mesh, ops=("sum",) * 6 + ("max",))
        if t.reduce_op not in (None, "sum"):
            with pytest.raises(ConversionError):
                reshard.to_partition_spec(t)
            continue
        spec = reshard.to_partition_spec(t, jax=False)
        assert reshard.from_partition_spec(spec, mesh, t.shape, t.dtype) == t, (t, spec)
        n += 1
    assert n > SWEEP // 2


def in_mesh_order(t):
    """t with its reduce clause's axes in mesh order."""
    if t.reduce_op is None:
        return t
    axes = sorted(t.reduce_axes, key=t.mesh.axis_index)
    return reshard.Type(str(t).rsplit(" ", 1)[0] + f" {t.reduce_op}{{{','.join(axes)}}}", t.mesh)


def dtensor_blocks_by_torch(torch, t, placements, order=None):
    """Each device's global indices per dim, computed with torch.chunk itself the way DTensor
    shards: mesh dims in order (or `order` per dim), each chunking the current local piece."""
    mesh = t.mesh
    sizes = mesh.shape
    out = {}
    for dev in range(mesh.num_devices):
        coords = mesh.coords(dev)
        per_dim = []
        for d, n in enumerate(t.shape):
            idx = torch.arange(n)
            ms = [m for m, p in enumerate(placements) if isinstance(p, (Shard, StridedShard)) and p.dim == d]
            if order and d in order:
                ms = order[d]
            for m in ms:
                p = placements[m]
                sf = p.split_factor if isinstance(p, StridedShard) else 1
                pieces = list(torch.chunk(idx, sf)) if len(idx) else []
                pieces += [idx[:0]] * (sf - len(pieces))
                taken = []
                for piece in pieces:
                    chunks = list(torch.chunk(piece, sizes[m])) if len(piece) else []
                    chunks += [idx[:0]] * (sizes[m] - len(chunks))
                    taken.append(chunks[coords[m]])
                idx = torch.cat(taken)
            per_dim.append(idx.tolist())
        out[dev] = per_dim
    return out


def ceil_blocks(t):
    return {dev: [list(range(lo, hi)) for lo, hi in t.block(dev)] for dev in range(t.mesh.num_devices)}


@pytest.mark.parametrize("shard_order", [False, True])
def test_placements_round_trip_sweep(shard_order):
    rng = random.Random(41 + shard_order)
    torch = None
    try:
        import torch  # noqa: F811  the independent check of the chunking, when torch is here
    except ImportError:
        pass
    converted = refused = checked = 0
    for i in range(SWEEP):
        mesh = random_mesh(rng, max_devices=24)
        t = random_type(rng, mesh, ops=("sum", "max", "min", "prod"))
        try:
            got = reshard.to_placements(t, shard_order=shard_order, torch=False)
        except ConversionError as e:
            assert "dim" in str(e)
            refused += 1
            continue
        placements, order = got if shard_order else (got, None)
        back = reshard.from_placements(placements, mesh, t.shape, t.dtype, shard_order=order)
        t = in_mesh_order(t)  # placements name no order of the Partial axes: the mesh's
        if shard_order or 1 not in mesh.shape:
            assert back == t, (t, placements, back)
        else:  # size-1 axes: their place in the order is not recorded by split factors
            assert all(back.block(d) == t.block(d) for d in range(mesh.num_devices)), (t, back)
            assert back.reduce_op == t.reduce_op
        if torch is not None and i % 5 == 0:
            assert dtensor_blocks_by_torch(torch, t, placements, order) == ceil_blocks(t), (t, placements)
            checked += 1
        converted += 1
    assert converted > SWEEP // 3 and refused > 0
    if torch is not None:
        assert checked > 50


def test_refusals_are_real():
    """Where to_placements refuses, DTensor's own chunking (torch.chunk) really differs."""
    torch = pytest.importorskip("torch")
    rng = random.Random(7)
    seen = 0
    for _ in range(600):
        mesh = random_mesh(rng, max_devices=24)
        t = random_type(rng, mesh, ops=("sum",), even=False)
        try:
            reshard.to_placements(t, shard_order=True, torch=False)
            continue
        except ConversionError:
            pass
        pl = [Replicate()] * len(mesh.axes)
        order = {}
        for d, axes in enumerate(t.dim_axes):
            for a in axes:
                pl[mesh.axis_index(a)] = Shard(d)
            if axes:
                order[d] = [mesh.axis_index(a) for a in axes]
        assert dtensor_blocks_by_torch(torch, t, pl, order) != ceil_blocks(t)
        seen += 1
    assert seen > 10


def test_strided_shard_and_names():
    mesh = reshard.Mesh("dp=2,tp=4")
    # FSDP over TP: tp shards first (major), dp within each tp shard
    t = reshard.from_placements([StridedShard(0, 4), Shard(0)], mesh, (64, 8), "f32")
    assert t == reshard.Type("f32[64{tp,dp}, 8]", mesh)
    assert reshard.to_placements(t, torch=False) == [StridedShard(0, 4), Shard(0)]
    assert reshard.from_placements(["_S(0, 4)", "S(0)"], mesh, (64, 8), "f32") == t
    assert reshard.from_placements(["_StridedShard(dim=0, sf=4)", "Shard(dim=0)"], mesh, (64, 8), "f32") == t
    assert reshard.from_placements({"tp": Shard(1)}, mesh, (64, 8), "f32") == reshard.Type("f32[64, 8{tp}]", mesh)
    assert reshard.from_placements(["P(max)", "R"], mesh, (4,), "f32") == reshard.Type("f32[4] max{dp}", mesh)
    assert reshard.from_placements([Partial("product"), Partial("prod")], mesh, (4,), "i32") == \
        reshard.Type("i32[4] prod{dp,tp}", mesh)
    assert reshard.from_placements([Shard(0), Shard(0)], mesh, (64, 8), "f32", shard_order={0: ["tp", "dp"]}) == t
    assert reshard.from_placements([Shard(-1), Replicate()], mesh, (64, 8), "f32") == reshard.Type("f32[64, 8{dp}]", mesh)
    pl, order = reshard.to_placements(t, shard_order=True, torch=False)
    assert pl == [Shard(0), Shard(0)] and order == {0: [1, 0]}
    assert [str(p) for p in reshard.to_placements(reshard.Type("f32[64{tp,dp}, 8] ", mesh))] == ["_S(0, 4)", "S(0)"]


@pytest.mark.parametrize("placements,words", [
    ([Shard(0)], "1 placements"), ([Shard(2), Replicate()], "rank 2"), (["Q(1)", "R"], "cannot read"),
    ([Partial("avg"), Replicate()], "avg"), ([Partial("sum"), Partial("max")], "different ops"),
    ([object(), Replicate()], "not a DTensor placement"), ({"pp": Shard(0)}, "'pp' is not an axis"),
])
def test_placement_errors(placements, words):
    with pytest.raises(ConversionError, match=words):
        reshard.from_placements(placements, reshard.Mesh("dp=2,tp=2"), (8, 8), "f32")


def test_every_case_type_converts_or_says_why():
    """Every type of the public and bench suites converts both ways or raises ConversionError."""
    stats = {"spec": 0, "spec_refused": 0, "placements": 0, "placements_refused": 0}
    for name, mesh_text, src, dst in all_cases():
        mesh = reshard.Mesh(mesh_text)
        for text in (src, dst):
            t = reshard.Type(text, mesh)
            try:
                spec = reshard.to_partition_spec(t, jax=False)
                assert reshard.from_partition_spec(spec, mesh, t.shape, t.dtype) == t, (name, t)
                stats["spec"] += 1
            except ConversionError as e:
                assert t.reduce_op in ("max", "min", "prod"), (name, t, e)
                stats["spec_refused"] += 1
            for so in (False, True):
                try:
                    got = reshard.to_placements(t, shard_order=so, torch=False)
                except ConversionError as e:
                    assert str(e).startswith("dim "), (name, t, e)
                    stats["placements_refused"] += 1
                    continue
                pl, order = got if so else (got, None)
                back = reshard.from_placements(pl, mesh, t.shape, t.dtype, shard_order=order)
                t = in_mesh_order(t)
                assert all(back.block(d) == t.block(d) for d in range(mesh.num_devices)), (name, t, back)
                if so or 1 not in mesh.shape:
                    assert back == t, (name, t, back)
                stats["placements"] += 1
    assert stats["spec"] > 50 and stats["placements"] > 50, stats


def test_torch_placements_objects():
    pt = pytest.importorskip("torch.distributed.tensor.placement_types")
    mesh = reshard.Mesh("dp=2,tp=4")
    t = reshard.Type("f32[64{tp,dp}, 8]", mesh)
    got = reshard.to_placements(t, torch=True)
    assert isinstance(got[1], pt.Shard) and type(got[0]).__name__ == "_StridedShard"
    assert reshard.from_placements(got, mesh, t.shape, t.dtype) == t
    part = reshard.to_placements(reshard.Type("f32[8{dp}] sum{tp}", mesh), torch=True)
    assert isinstance(part[1], pt.Partial)
    assert reshard.from_placements(part, mesh, (8,), "f32") == reshard.Type("f32[8{dp}] sum{tp}", mesh)
    assert reshard.from_placements([pt.Shard(0), pt.Replicate()], mesh, (8, 8), "f32") == reshard.Type("f32[8{dp}, 8]", mesh)


def test_jax_partition_spec_objects():
    jax_sharding = pytest.importorskip("jax.sharding")
    P = jax_sharding.PartitionSpec
    mesh = reshard.Mesh("x=2,y=2")
    assert reshard.from_partition_spec(P(("x", "y"), None), mesh, (30, 7), "f32") == reshard.Type("f32[30{x,y},7]", mesh)
    spec = reshard.to_partition_spec(reshard.Type("f32[8{y}, 4{x}]", mesh), jax=True)
    assert isinstance(spec, P) and tuple(spec) == ("y", "x")
    t = reshard.Type("f32[8{x}, 4] sum{y}", mesh)
    try:
        spec = reshard.to_partition_spec(t, jax=True)
    except ConversionError:
        pytest.skip("this jax's PartitionSpec has no unreduced axes")
    assert isinstance(spec, P) and set(spec.unreduced) == {"y"}
    assert reshard.from_partition_spec(spec, mesh, t.shape, t.dtype) == t
    assert reshard.from_partition_spec(P("x", unreduced={"y"}), mesh, (8, 4), "f32") == t


def test_blocks_are_dtensors_own():
    """Where a type converts, DTensor's own shard arithmetic (torch's
    _compute_local_shape_and_global_offset) gives every device exactly the type's block."""
    pytest.importorskip("torch.distributed.tensor")
    from torch.distributed.tensor._utils import _compute_local_shape_and_global_offset as local_of

    rng = random.Random(5)
    checked = 0
    for _ in range(400):
        mesh = random_mesh(rng, max_devices=24)
        t = random_type(rng, mesh, ops=("sum",))
        try:
            pl = reshard.to_placements(t, torch=True)
        except ConversionError:
            continue
        for dev in range(mesh.num_devices):
            shape, offset = local_of(t.shape, mesh.shape, list(mesh.coords(dev)), pl)
            block = t.block(dev)
            assert tuple(shape) == tuple(hi - lo for lo, hi in block), (t, pl, dev)
            assert all(o == lo for o, (lo, hi) in zip(offset, block) if hi > lo), (t, pl, dev, offset)
        checked += 1
    assert checked > 100
