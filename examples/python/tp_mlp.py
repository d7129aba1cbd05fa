"""A tensor-parallel MLP training step (Megatron-LM style) on torch CPU tensors whose every
communication is a reshard call, checked against the same step in one process.

    source scripts/env.sh
    PYTHONPATH=build/python mpirun -np 4 python3 examples/python/tp_mlp.py

The block is y = gelu(x @ W1) @ W2 on a mesh tp=N (N = the number of ranks):
  - W1 is column-parallel, f64[H, F{tp}]: each rank holds F/N columns, so h = x @ W1 needs the
    whole x and leaves h split over its last dim, f64[B, S, F{tp}], with no communication;
  - W2 is row-parallel, f64[F{tp}, H]: each rank's g @ W2 is a partial sum, f64[B, S, H] sum{tp}.
Sequence parallel (the default): activations outside the block are split over the sequence,
f64[B, S{tp}, H]. Entering, an all-gather (S{tp} -> replicated); leaving, a reduce-scatter
(sum{tp} -> S{tp}). Without it (--no-sp) the input is replicated and the output all-reduced.

Backward passes are reshards too, between the gradients' types: a tensor that every rank used
whole gets a partial gradient from each (sum{tp}), and a partial sum's gradient is the whole
gradient on every rank. So the all-gather's backward is a reduce-scatter and the other way
round; Megatron's f (identity forward) has an all-reduce backward, its g the reverse.
"""
import argparse
import sys

try:
    import torch
except ImportError:  # exit code 77: CTest reports the example as skipped
    print("tp_mlp: needs torch (pip install torch)")
    sys.exit(77)

import reshard


class Reshard(torch.autograd.Function):
    """y = x resharded from `src` to `dst`; the gradient goes from `grad_dst` to `grad_src`."""

    @staticmethod
    def forward(fctx, x, ctx, src, dst, grad_src, grad_dst):
        fctx.args = (ctx, grad_src, grad_dst)
        return x if src == dst else ctx.reshard(x, src, dst)

    @staticmethod
    def backward(fctx, grad):
        ctx, grad_src, grad_dst = fctx.args
        g = grad.contiguous()
        return (g if grad_src == grad_dst else ctx.reshard(g, grad_dst, grad_src)), None, None, None, None, None


def types(ctx, B, S, H, F, sp):
    t = ctx.type
    return {
        "x": t(f"f64[{B}, {S}{{tp}}, {H}]") if sp else t(f"f64[{B}, {S}, {H}]"),
        "x_full": t(f"f64[{B}, {S}, {H}]"),
        "x_full_grad": t(f"f64[{B}, {S}, {H}] sum{{tp}}"),  # every rank's share of dL/dx
        "w1": t(f"f64[{H}, {F}{{tp}}]"),
        "w2": t(f"f64[{F}{{tp}}, {H}]"),
        "z": t(f"f64[{B}, {S}, {H}] sum{{tp}}"),
        "y": t(f"f64[{B}, {S}{{tp}}, {H}]") if sp else t(f"f64[{B}, {S}, {H}]"),
        "loss_part": t("f64[] sum{tp}"),
        "loss": t("f64[]"),
    }


def tp_step(ctx, T, x, w1, w2, lr, sp):
    """One forward, backward and SGD step on this rank's shards; returns (loss, y, grads)."""
    w1 = w1.clone().requires_grad_()
    w2 = w2.clone().requires_grad_()
    x = x.clone().requires_grad_()
    if sp:  # all-gather the sequence; backward: reduce-scatter the partial gradients
        x_full = Reshard.apply(x, ctx, T["x"], T["x_full"], T["x"], T["x_full_grad"])
    else:   # Megatron's f: identity; backward: all-reduce the partial gradients
        x_full = Reshard.apply(x, ctx, T["x"], T["x"], T["x"], T["x_full_grad"])
    h = x_full @ w1                            # column parallel: f64[B, S, F{tp}]
    z = torch.nn.functional.gelu(h) @ w2       # row parallel: f64[B, S, H] sum{tp}
    if sp:  # reduce-scatter over the sequence; backward: all-gather
        y = Reshard.apply(z, ctx, T["z"], T["y"], T["x_full"], T["y"])
    else:   # Megatron's g: all-reduce; backward: identity
        y = Reshard.apply(z, ctx, T["z"], T["y"], T["y"], T["y"])
    # With sp each rank holds a disjoint part of y: its loss is a partial sum, all-reduced for
    # the report. Without, every rank holds all of y and computes the whole (replicated) loss.
    part = (y * y).sum()
    part.backward()
    loss = ctx.reshard(part.detach().reshape(()), T["loss_part"], T["loss"]) if sp else part.detach()
    with torch.no_grad():
        w1_new, w2_new = w1 - lr * w1.grad, w2 - lr * w2.grad
    return float(loss), y.detach(), x.grad, w1_new, w2_new


def reference_step(x, w1, w2, lr):
    w1 = w1.clone().requires_grad_()
    w2 = w2.clone().requires_grad_()
    x = x.clone().requires_grad_()
    y = torch.nn.functional.gelu(x @ w1) @ w2
    loss = (y * y).sum()
    loss.backward()
    with torch.no_grad():
        return float(loss), y.detach(), x.grad, w1 - lr * w1.grad, w2 - lr * w2.grad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=10)      # uneven over 4 ranks: blocks 3, 3, 3, 1
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=24)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--no-sp", action="store_true", help="no sequence parallelism (replicated activations)")
    a = ap.parse_args()

    from mpi4py import MPI  # noqa: F401  (optional: reshard.Context works without it too)

    world = MPI.COMM_WORLD
    ctx = reshard.Context(f"tp={world.Get_size()}", comm=world)
    B, S, H, F = a.batch, a.seq, a.hidden, a.ffn
    ok = True
    for sp in ([False] if a.no_sp else [True, False]):
        T = types(ctx, B, S, H, F, sp)
        gen = torch.Generator().manual_seed(14)   # the same full tensors on every rank
        x_all = torch.randn(B, S, H, dtype=torch.float64, generator=gen)
        w1_all = torch.randn(H, F, dtype=torch.float64, generator=gen) / H ** 0.5
        w2_all = torch.randn(F, H, dtype=torch.float64, generator=gen) / F ** 0.5
        w1, w2 = w1_all[ctx.local_slices(T["w1"])].contiguous(), w2_all[ctx.local_slices(T["w2"])].contiguous()
        for step in range(a.steps):
            x = x_all[ctx.local_slices(T["x"])].contiguous()
            loss, y, dx, w1, w2 = tp_step(ctx, T, x, w1, w2, 0.01, sp)
            ref_loss, ref_y, ref_dx, w1_all, w2_all = reference_step(x_all, w1_all, w2_all, 0.01)
            close = lambda a_, b_: torch.allclose(a_, b_, rtol=1e-10, atol=1e-12)
            checks = {
                "loss": abs(loss - ref_loss) <= 1e-10 * abs(ref_loss),
                "y": close(y, ref_y[ctx.local_slices(T["y"])]),
                "dL/dx": close(dx, ref_dx[ctx.local_slices(T["x"])]),
                "W1 after SGD": close(w1, w1_all[ctx.local_slices(T["w1"])]),
                "W2 after SGD": close(w2, w2_all[ctx.local_slices(T["w2"])]),
            }
            good = world.allreduce(all(checks.values()), op=MPI.LAND)
            ok &= good
            if world.Get_rank() == 0:
                bad = [k for k, v in checks.items() if not v]
                print(f"{'sequence parallel' if sp else 'tensor parallel  '} step {step}: loss {loss:.10f} "
                      f"(one process {ref_loss:.10f}) {'matches' if good else 'DIFFERS: ' + ', '.join(bad)}")
    ctx.close()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
