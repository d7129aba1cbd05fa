"""reshard.Context under mpirun (1, 2 and 4 ranks): NumPy arrays through every case that fits the
world, checked against the global array and the index fill; errors on every rank; input untouched."""
import numpy as np
import pytest

import reshard
from conftest import all_agree, all_cases

pytest.importorskip("mpi4py")
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def contexts(world):
    """One Context per mesh text (creating one is collective), closed at the end."""
    made = {}

    def get(mesh_text):
        if mesh_text not in made:
            made[mesh_text] = reshard.Context(reshard.Mesh(mesh_text), comm=world)
        return made[mesh_text]

    yield get
    for c in made.values():
        c.close()


def fitting_cases(world):
    return [c for c in all_cases() if reshard.Mesh(c[1]).num_devices <= world.Get_size()]


def test_contract_names(world):
    mesh = reshard.Mesh("x=2,y=2") if world.Get_size() >= 4 else reshard.Mesh(f"x={world.Get_size()},y=1")
    ctx = reshard.Context(mesh, comm=None)
    src = reshard.Type("f32[30{x,y},7]", mesh)
    dst = reshard.Type("f32[30,7{x}]", mesh)
    g = np.arange(30 * 7, dtype=np.float32).reshape(30, 7)
    local = g[ctx.local_slices(src)].copy()
    assert ctx.local_block(src) == [s for s in map(lambda s: (s.start, s.stop), ctx.local_slices(src))]
    out = ctx.reshard(local, src, dst)
    ok = type(out) is np.ndarray and np.array_equal(out, g[ctx.local_slices(dst)])
    assert all_agree(world, ok)
    ctx.close()
    with pytest.raises(reshard.Error, match="closed"):
        ctx.reshard(local, src, dst)


def test_every_case_numpy(world, contexts):
    """Every case whose mesh fits: index-filled source, reshard, check the target on every rank."""
    bad = []
    for name, mesh_text, src_text, dst_text in fitting_cases(world):
        ctx = contexts(mesh_text)
        src, dst = ctx.type(src_text), ctx.type(dst_text)
        x = ctx.index_array(src)
        before = x.copy()
        out = ctx.reshard(x, src, dst)
        wrong = ctx.count_index_mismatches(dst, out, source=src)
        if wrong or not np.array_equal(x, before, equal_nan=True) or out.shape != ctx.local_shape(dst):
            bad.append((name, wrong))
    assert all_agree(world, not bad), bad


def test_against_the_global_array(world, contexts):
    """Types without a pending reduction: the result is the global array's block, for every dtype."""
    n = world.Get_size()
    mesh_text = {1: "x=1", 2: "x=2", 4: "x=2,y=2"}.get(n, f"x={n}")
    ctx = contexts(mesh_text)
    axes = ctx.mesh.axis_names
    pairs = [(f"[13{{{axes[0]}}},5]", "[13,5]"), ("[13,5]", f"[13,5{{{','.join(axes)}}}]"),
             (f"[13{{{','.join(axes)}}},5]", f"[13,5{{{axes[-1]}}}]")]
    ok = True
    for dt in ["f64", "f32", "f16", "i64", "i32", "i16", "i8", "u8"]:
        for a, b in pairs:
            src, dst = ctx.type(dt + a), ctx.type(dt + b)
            g = (np.arange(13 * 5) % 100).astype(reshard.numpy_dtype(dt)).reshape(13, 5)
            out = ctx.reshard(g[ctx.local_slices(src)], src, dst)  # a view: copied to contiguous
            ok &= out.dtype == g.dtype and np.array_equal(out, g[ctx.local_slices(dst)])
            into = ctx.empty(dst)
            assert ctx.reshard_into(np.ascontiguousarray(g[ctx.local_slices(src)]), into, src, dst) is into
            ok &= np.array_equal(into, g[ctx.local_slices(dst)])
    assert all_agree(world, ok)


def test_pending_sum_and_text_types(world, contexts):
    n = world.Get_size()
    mesh_text = {1: "x=1", 2: "x=2", 4: "x=4"}.get(n, f"x={n}")
    ctx = contexts(mesh_text)
    part = np.full((8, 3), float(ctx.device + 1), dtype=np.float64)
    out = ctx.reshard(part, "f64[8,3] sum{x}", "f64[8{x},3]")
    total = n * (n + 1) / 2
    assert all_agree(world, np.all(out == total) and out.shape == ctx.local_shape("f64[8{x},3]"))
    plan = ctx.plan("f64[8,3] sum{x}", "f64[8{x},3]")
    assert plan.steps and ctx.explain(plan) != "" and ctx.workspace_bytes(plan) >= 0


def test_errors_raise_on_every_rank_and_leave_input_alone(world, contexts):
    n = world.Get_size()
    ctx = contexts({1: "x=1", 2: "x=2", 4: "x=4"}.get(n, f"x={n}"))
    src, dst = ctx.type("f32[16{x},4]"), ctx.type("f32[16,4{x}]")
    x = ctx.index_array(src)
    keep = x.copy()
    # wrong dtype on rank 0 only: every rank raises (none waits), nothing moves
    bad = x.astype(np.float64) if world.Get_rank() == 0 else x
    with pytest.raises(reshard.MismatchError) as e:
        ctx.reshard(bad, src, dst)
    assert ("float64" in str(e.value)) if world.Get_rank() == 0 else ("rank 0" in str(e.value))
    # wrong shape everywhere
    with pytest.raises(reshard.MismatchError, match="shape"):
        ctx.reshard(x.reshape(-1), src, dst)
    out = np.zeros(ctx.local_shape(dst), np.float32)
    with pytest.raises(reshard.MismatchError, match="read-only"):
        ro = out.copy()
        ro.flags.writeable = False
        ctx.reshard_into(x, ro, src, dst)
    with pytest.raises(reshard.MismatchError, match="contiguous"):
        ctx.reshard_into(x, np.zeros((16, 2 * out.shape[1]), np.float32)[:, ::2], src, dst)
    with pytest.raises(reshard.MismatchError, match="mesh"):
        ctx.reshard(x, reshard.Type("f32[16,4]", reshard.Mesh("q=1")), dst)
    with pytest.raises(reshard.MismatchError):
        ctx.reshard(x, src, "f32[17,4]")
    with pytest.raises(reshard.ParseError) as pe:
        ctx.reshard(x, src, "f32[16,4{z}]")
    assert pe.value.position == 9
    with pytest.raises(TypeError):
        reshard.Context(ctx.mesh, comm="world")
    assert np.array_equal(x, keep)
    # the Context still works after all of that
    out = ctx.reshard(x, src, dst)
    assert all_agree(world, ctx.count_index_mismatches(dst, out, source=src) == 0)


def test_ranks_outside_the_mesh(world):
    if world.Get_size() < 2:
        pytest.skip("needs 2 ranks")
    ctx = reshard.Context("x=1", comm=world)
    x = ctx.index_array("i32[5{x},2]")
    out = ctx.reshard(x, "i32[5{x},2]", "i32[5,2{x}]")
    inside = world.Get_rank() == 0
    assert ctx.participates == inside and ctx.device == (0 if inside else -1)
    ok = out.shape == ((5, 2) if inside else (0, 0)) and (not inside or np.array_equal(out.ravel(), np.arange(10)))
    assert all_agree(world, ok)
    ctx.close()


def test_sub_communicator(world):
    """A Context over an mpi4py communicator other than the world (the even ranks)."""
    sub = world.Split(world.Get_rank() % 2, world.Get_rank())
    ctx = reshard.Context(f"x={sub.Get_size()}", comm=sub)
    x = ctx.index_array("f32[9{x},2]")
    out = ctx.reshard(x, "f32[9{x},2]", "f32[9,2]")
    ok = np.array_equal(out.ravel(), np.arange(18, dtype=np.float32))
    ctx.close()
    sub.Free()
    assert all_agree(world, ok)


def test_mesh_larger_than_world(world):
    with pytest.raises(reshard.MismatchError, match="devices"):
        reshard.Context(f"x={world.Get_size() + 1}", comm=world)
