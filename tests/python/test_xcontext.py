"""reshard.XContext and reshard.plan_batch under mpirun (1, 2 and 4 ranks): meshes on chosen
ranks, batches across equal, overlapping and disjoint rank sets, uneven shapes, pending
reductions, NumPy and torch, synchronous and asynchronous, every element checked against the
global array; errors raised on every rank, nothing written."""
import random

import numpy as np
import pytest

import reshard
from conftest import all_agree, np_ranks, random_mesh, random_type

# -- symbolic (no MPI) ----------------------------------------------------------------------


def test_mesh_on_ranks():
    m = reshard.Mesh("tp=2@4,6")
    assert m.ranks == [4, 6] and m.device_of(6) == 1 and m.device_of(5) == -1
    assert m.without_ranks() == reshard.Mesh("tp=2")
    assert reshard.Mesh("x=2@0-1") == reshard.Mesh("x=2")  # the first ranks: the plain mesh
    with pytest.raises(reshard.ParseError) as e:
        reshard.Mesh("x=2@3,3")
    assert "twice" in str(e.value) and e.value.position > 0
    with pytest.raises(reshard.ParseError):
        reshard.Mesh("x=2@3-1")


def test_plan_batch_symbolic():
    a, b = "fsdp=2,tp=2@0-3", "r=2,tp=2@4-7"
    p = reshard.plan_batch(a, b, ["f32[130{fsdp},33{tp}]", "bf16[64,96{tp}]", "f32[7] sum{tp}"],
                           ["f32[130,33{tp}]", "bf16[64{tp},96]", "f32[7{tp}]"], ["w1", "w2", "g"], verify=True)
    assert p.verified is True
    assert len(p) == 3 and p.names == ["w1", "w2", "g"] and p.world == 8
    assert p.src_mesh == reshard.Mesh(a) and str(p.dsts[1]) == "bf16[64{tp}, 96]"
    s = p.stats
    assert s["bytes_recv_max"] == s["lower_bound_bytes"] > 0
    assert s["bytes_recv"] == s["lower_bound"] and len(s["bytes_recv"]) == 8
    assert "w1" in str(p) and "BatchPlan" in repr(p)
    # A memory cap: buckets, and staging within it on every rank.
    capped = reshard.plan_batch(a, b, ["f32[130{fsdp},33{tp}]"], ["f32[130,33{tp}]"], memory_cap=2048, verify=True)
    assert capped.verified and capped.buckets > 1 and max(capped.stats["workspace"]) <= 2048


def test_plan_batch_errors():
    with pytest.raises(reshard.MismatchError, match="global shapes differ"):
        reshard.plan_batch("x=2", "y=2@2-3", ["f32[8{x}]"], ["f32[9{y}]"])
    with pytest.raises(reshard.MismatchError, match="dtypes differ"):
        reshard.plan_batch("x=2", "y=2@2-3", ["f32[8{x}]"], ["f64[8{y}]"])
    with pytest.raises(reshard.MismatchError, match="2 source types and 1 target types"):
        reshard.plan_batch("x=2", "y=2", ["f32[8{x}]", "f32[8]"], ["f32[8{y}]"])
    with pytest.raises(reshard.MismatchError, match="not on the source mesh"):
        reshard.plan_batch("x=2", "y=2", [reshard.Type("f32[8{x}]", reshard.Mesh("x=2@2-3"))], ["f32[8{y}]"])
    with pytest.raises(reshard.ParseError):  # an axis of the other mesh
        reshard.plan_batch("x=2", "y=2", ["f32[8{y}]"], ["f32[8{y}]"])
    with pytest.raises(reshard.Error, match="cap"):
        reshard.plan_batch("x=2", "y=2@2-3", ["f32[64{x}]"], ["f32[64{y}]"], memory_cap=1)


# -- over MPI -------------------------------------------------------------------------------
mpi = pytest.mark.mpi


def _global(t):
    """The global array of t's index fill (element i holds i, as its dtype stores it)."""
    n = int(np.prod(t.shape)) if t.ndim else 1
    return np.arange(n, dtype=np.float64).reshape(t.shape)


def _expected(x, t):
    """This rank's block of the global index array in t's target dtype (integers wrap)."""
    d = x.dst_device
    if d < 0:
        return None
    g = _global(t)[tuple(slice(lo, hi) for lo, hi in t.block(d))]
    return g


def _placements(np_, rng):
    """(source ranks, target ranks): equal, disjoint halves (np >= 2) and overlapping."""
    ranks = list(range(np_))
    out = [(ranks, ranks[::-1])]
    if np_ >= 2:
        h = np_ // 2
        out.append((ranks[:h], ranks[h:]))
        out.append((ranks[h:], ranks[:h]))
    if np_ >= 3:
        out.append((ranks[:np_ - 1], ranks[1:]))
    return out


def _on(mesh, ranks):
    return reshard.Mesh(f"{mesh}@{','.join(map(str, ranks))}")


@pytest.fixture(scope="module")
def np_world(world):
    return world.Get_size()


@mpi
def test_batch_matches_global_array(world, np_world):
    """f32 batches across every placement: each target shard equals the global array's block."""
    bad = []
    for src_ranks, dst_ranks in _placements(np_world, random.Random(1)):
        a = reshard.Mesh(f"x={len(src_ranks)}@{','.join(map(str, src_ranks))}")
        b = reshard.Mesh(f"p=1,q={len(dst_ranks)}@{','.join(map(str, dst_ranks))}")
        x = reshard.XContext(a, b, world)
        srcs = ["f32[37{x},5]", "f32[3,11{x},2]", "f32[9]"]
        dsts = ["f32[37,5{q}]", "f32[3{q},11,2{p}]", "f32[9{q,p}]"]
        plan = x.plan_batch(srcs, dsts)
        xs = []
        for s in plan.srcs:
            g = _global(s).astype(np.float32)
            xs.append(g[tuple(slice(lo, hi) for lo, hi in s.block(x.src_device))].copy() if x.src_device >= 0
                      else np.empty(x.local_shape(s), np.float32))
        before = [v.copy() for v in xs]
        outs = x.reshard_batch(xs, srcs, dsts)
        for i, (o, d) in enumerate(zip(outs, plan.dsts)):
            want = _expected(x, d)
            if o.shape != x.local_shape(d, target=True) or o.dtype != np.float32:
                bad.append((src_ranks, dst_ranks, i, "shape/dtype", o.shape, o.dtype))
            elif want is not None and not np.array_equal(o, want.astype(np.float32)):
                bad.append((src_ranks, dst_ranks, i, "values"))
        if not all(np.array_equal(v, w) for v, w in zip(xs, before)):
            bad.append((src_ranks, dst_ranks, "input changed"))
        # One array, cross-mesh.
        o = x.reshard(xs[0], srcs[0], dsts[0])
        want = _expected(x, plan.dsts[0])
        if want is not None and not np.array_equal(o, want.astype(np.float32)):
            bad.append((src_ranks, dst_ranks, "single"))
        x.close()
    assert all_agree(world, not bad), bad


@mpi
def test_random_batches_index_fill(world, np_world):
    """Random types (uneven, replicated, pending reductions, every dtype) on random placements."""
    rng = random.Random(1300 + np_world)
    bad = []
    for case in range(10):
        src_ranks, dst_ranks = rng.choice(_placements(np_world, rng))
        am = random_mesh(rng, len(src_ranks))
        while am.num_devices != len(src_ranks):
            am = random_mesh(rng, len(src_ranks))
        bm = random_mesh(rng, len(dst_ranks))
        while bm.num_devices != len(dst_ranks):
            bm = random_mesh(rng, len(dst_ranks))
        a, b = _on(am, src_ranks), _on(bm, dst_ranks)
        srcs, dsts = [], []
        for _ in range(rng.randint(1, 3)):
            s = random_type(rng, a)
            # The same shape and dtype on the target mesh, no reduction there: only the
            # random type's split of dims over axes is kept.
            d = random_type(rng, b)
            while d.ndim != s.ndim:
                d = random_type(rng, b)
            new = [f"{n}{{{','.join(ax)}}}" if ax else str(n) for n, ax in zip(s.shape, d.dim_axes)]
            srcs.append(s)
            dsts.append(reshard.Type(f"{s.dtype}[{', '.join(new)}]", b))
        x = reshard.XContext(a, b, world, memory_cap=rng.choice([0, 0, 512]))
        plan = x.plan_batch(srcs, dsts)
        xs = [x.index_array(s) for s in srcs]
        h = x.reshard_batch_async(xs, srcs, dsts)
        spins = 0
        while not h.test():
            spins += 1
        outs = h.wait()
        wrong = sum(x.count_index_mismatches(plan, i, o) for i, o in enumerate(outs))
        if wrong:
            bad.append((case, str(a), str(b), [str(s) for s in srcs], [str(d) for d in dsts], wrong))
        x.close()
    assert all_agree(world, not bad), bad


@mpi
def test_async_guards_inputs_and_gives_outputs(world, np_world):
    ranks = list(range(np_world))
    x = reshard.XContext(f"x={np_world}", _on(reshard.Mesh(f"y={np_world}"), ranks[::-1]), world)
    srcs, dsts = ["f64[41{x},3]", "f64[6] sum{x}"], ["f64[41,3{y}]", "f64[6{y}]"]
    plan = x.plan_batch(srcs, dsts)
    xs = [x.index_array(s) for s in srcs]
    h1 = x.reshard_batch_async(xs, srcs, dsts)
    h2 = x.reshard_batch_async(xs, srcs, dsts)  # the same inputs read twice
    ok = True
    with pytest.raises(ValueError, match="read-only"):
        xs[0][...] = 1
    r1 = h1.wait()
    with pytest.raises(ValueError, match="read-only"):  # h2 still reads
        xs[0][...] = 1
    r2 = h2.wait()
    xs[0][...] = xs[0]  # writable again
    with pytest.raises(reshard.Error, match="already taken"):
        h1.wait()
    for outs in (r1, r2):
        ok &= sum(x.count_index_mismatches(plan, i, o) for i, o in enumerate(outs)) == 0
    # Into kept arrays, after scribbling over them.
    for o in r1:
        o[...] = 7
    back = x.reshard_batch_into(xs, r1, srcs, dsts)
    ok &= back is not None and all(a is b for a, b in zip(back, r1))
    ok &= sum(x.count_index_mismatches(plan, i, o) for i, o in enumerate(r1)) == 0
    # A dropped handle finishes its reshard.
    h3 = x.reshard_batch_async(xs, srcs, dsts)
    del h3
    xs[0][...] = xs[0]
    # Memory cap: staging within it.
    y = reshard.XContext(f"x={np_world}", f"y={np_world}", world, memory_cap=1024)
    outs = y.reshard_batch([y.index_array("f64[300{x}]")], ["f64[300{x}]"], ["f64[300] max{y}"])
    ok &= y.workspace_peak_bytes <= 1024
    ok &= y.count_index_mismatches(y.plan_batch(["f64[300{x}]"], ["f64[300] max{y}"]), 0, outs[0]) == 0
    y.close()
    x.close()
    assert all_agree(world, ok)


@mpi
def test_torch_in_torch_out(world, np_world):
    torch = pytest.importorskip("torch")
    x = reshard.XContext(f"x={np_world}", _on(reshard.Mesh(f"y={np_world}"), list(range(np_world))[::-1]), world)
    srcs, dsts = ["bf16[10{x},4]", "f32[5,9{x}]"], ["bf16[10,4{y}]", "f32[5{y},9]"]
    plan = x.plan_batch(srcs, dsts)
    ins = [torch.from_numpy(x.index_array(srcs[0]).view(np.int16)).view(torch.bfloat16),
           torch.from_numpy(x.index_array(srcs[1]))]
    outs = x.reshard_batch_async(ins, srcs, dsts).wait()
    ok = all(isinstance(o, torch.Tensor) for o in outs) and outs[0].dtype == torch.bfloat16
    ok &= sum(x.count_index_mismatches(plan, i, o) for i, o in enumerate(outs)) == 0
    # A torch input written in place before wait(): torch cannot make it read-only, so wait()
    # tells, naming the input; the next reshard of the unwritten inputs is clean again.
    h = x.reshard_batch_async(ins, srcs, dsts)
    ins[1].add_(0)  # an in-place write, even of the same values
    with pytest.raises(reshard.Error, match=r"torch input\(s\) \[1\] were written"):
        h.wait()
    outs = x.reshard_batch_async(ins, srcs, dsts).wait()
    ok &= sum(x.count_index_mismatches(plan, i, o) for i, o in enumerate(outs)) == 0
    x.close()
    assert all_agree(world, ok)


@mpi
def test_errors_on_every_rank(world, np_world):
    """Bad arrays on one rank only: every rank raises MismatchError, no output written."""
    me = world.Get_rank()
    x = reshard.XContext(f"x={np_world}", _on(reshard.Mesh(f"y={np_world}"), list(range(np_world))[::-1]), world)
    src, dst = "f32[29{x},3]", "f32[29,3{y}]"
    good = x.index_array(src)
    outs = [np.full(x.local_shape(dst, target=True), 5, np.float32)]
    cases = [
        ("dtype", good.astype(np.float64), "array '0': the input array holds float64 elements"),
        ("shape", np.zeros((good.shape[0] + 1, 3), np.float32), "array '0': the input array has shape"),
        ("kind", "not an array", "array '0': the input (str) is not a host array"),
    ]
    ok = True
    for what, bad_x, msg in cases:
        try:
            x.reshard_batch_into([bad_x if me == 0 else good], outs, [src], [dst])
            ok = False
        except reshard.MismatchError as e:
            ok &= msg in str(e) and (me == 0 or "rank 0 cannot run it" in str(e))
        ok &= bool(np.all(outs[0] == 5))
    # A type on the wrong mesh, inputs and targets that do not match in number.
    with pytest.raises(reshard.MismatchError, match="not on the target mesh"):
        x.reshard_batch([good], [src], [reshard.Type("f32[29,3]", x.src_mesh)])
    with pytest.raises(reshard.MismatchError, match="1 arrays but 2 inputs"):
        x.reshard_batch([good, good], [src], [dst])
    with pytest.raises(TypeError):
        x.reshard_batch(good, [src], [dst])
    # Still works afterwards.
    o = x.reshard(good, src, dst)
    ok &= x.count_index_mismatches(x.plan_batch([src], [dst]), 0, o) == 0
    x.close()
    assert all_agree(world, ok)
