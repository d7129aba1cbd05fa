"""torch CPU tensors through reshard.Context: same kind out, zero-copy, every dtype incl. bf16."""
import numpy as np
import pytest

import reshard
from conftest import all_agree

torch = pytest.importorskip("torch")
pytest.importorskip("mpi4py")
pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def ctx(world):
    n = world.Get_size()
    c = reshard.Context({1: "x=1", 2: "x=2", 4: "x=2,y=2"}.get(n, f"x={n}"), comm=world)
    yield c
    c.close()


@pytest.mark.parametrize("dt", ["f32", "f64", "bf16", "f16", "i64", "i8"])
def test_tensor_in_tensor_out(world, ctx, dt):
    axes = ",".join(ctx.mesh.axis_names)
    src, dst = ctx.type(f"{dt}[12{{{axes}}},3]"), ctx.type(f"{dt}[12,3{{{ctx.mesh.axis_names[-1]}}}]")
    g = (torch.arange(36) % 50).to(reshard.torch_dtype(dt)).reshape(12, 3)
    x = g[ctx.local_slices(src)].clone().requires_grad_(dt in ("f32", "f64", "bf16", "f16"))
    out = ctx.reshard(x, src, dst)
    ok = isinstance(out, torch.Tensor) and out.dtype == g.dtype and torch.equal(out, g[ctx.local_slices(dst)])
    assert all_agree(world, ok)


def test_zero_copy_into(world, ctx):
    src, dst = ctx.type("f32[8,4] sum{" + ",".join(ctx.mesh.axis_names) + "}"), ctx.type("f32[8,4]")
    x = torch.ones(8, 4)
    out = torch.empty(8, 4)
    ptr = out.data_ptr()
    got = ctx.reshard_into(x, out, src, dst)
    assert got.data_ptr() == ptr and out.data_ptr() == ptr
    assert all_agree(world, bool(torch.all(out == world.Get_size())))
    with pytest.raises(reshard.MismatchError, match="contiguous"):
        ctx.reshard_into(x, torch.empty(4, 8).t(), src, dst)
    with pytest.raises(reshard.MismatchError, match="float64|f32"):
        ctx.reshard(x.double(), src, dst)


def test_index_fill_tensor(world, ctx):
    t = ctx.type("i32[10{" + ctx.mesh.axis_names[0] + "},3]")
    x = ctx.index_array(t, like=torch.empty(0))
    assert isinstance(x, torch.Tensor)
    want = torch.arange(30, dtype=torch.int32).reshape(10, 3)[ctx.local_slices(t)]
    assert all_agree(world, torch.equal(x, want))
    assert np.array_equal(ctx.reshard(x.numpy(), t, "i32[10,3]").ravel(), np.arange(30))


def test_ml_dtypes_bfloat16(world, ctx):
    ml = pytest.importorskip("ml_dtypes")
    t = ctx.type("bf16[6{" + ctx.mesh.axis_names[0] + "},2]")
    g = np.arange(12, dtype=np.float32).astype(ml.bfloat16).reshape(6, 2)
    out = ctx.reshard(np.ascontiguousarray(g[ctx.local_slices(t)]), t, "bf16[6,2]")
    into = np.empty((6, 2), ml.bfloat16)
    ctx.reshard_into(np.ascontiguousarray(g[ctx.local_slices(t)]), into, t, "bf16[6,2]")
    assert all_agree(world, out.dtype == g.dtype and np.array_equal(out, g) and np.array_equal(into, g))
