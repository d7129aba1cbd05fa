#!/usr/bin/env python3
"""Writes the batched and cross-mesh suites of this folder (docs/batched.md):

  batch_small_tensors.txt  256 arrays of 4-64 KiB on x=8 (optimizer states and gradients of a
                           training step: row-sharded to column-sharded), one batched call
  transformer_params.txt   every weight of a small transformer, FSDP x TP training layout to a
                           fully sharded checkpoint layout on the same 8 ranks
  weight_sync.txt          the same weights from the trainer (fsdp=2,tp=2 on ranks 0-3) to two
                           TP=2 inference replicas on ranks 4-7 (disjoint)
  weight_sync_overlap.txt  the trainer on ranks 0-5, inference replicas on ranks 2-7 (overlapping)

Deterministic: run it again to get the same files.
"""
import os, re

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, header, rows):
    w = max(len(r[0]) for r in rows)
    with open(os.path.join(HERE, name), "w") as f:
        f.write("".join(f"# {h}\n" for h in header))
        for r in rows:
            f.write(" | ".join([r[0].ljust(w)] + list(r[1:])) + "\n")


def small_tensors():
    rows = []
    for i in range(256):
        kib = 4 + (i * 37) % 61                     # 4 .. 64 KiB
        cols = [16, 32, 64, 128][i % 4]
        rows_ = kib * 1024 // 4 // cols              # f32
        rows.append((f"t{i:03d}", "x=8", f"f32[{rows_}{{x}},{cols}]", f"f32[{rows_},{cols}{{x}}]"))
    return rows


def transformer(H=256, F=1024, V=1000, L=4):
    p = [("embed", f"f32[{V}{{fsdp,tp}},{H}]", f"f32[{V}{{tp}},{H}]")]
    for l in range(L):
        p += [(f"l{l}_qkv", f"f32[{H}{{fsdp}},{3*H}{{tp}}]", f"f32[{H},{3*H}{{tp}}]"),
              (f"l{l}_o", f"f32[{H}{{tp}},{H}{{fsdp}}]", f"f32[{H}{{tp}},{H}]"),
              (f"l{l}_w1", f"f32[{H}{{fsdp}},{F}{{tp}}]", f"f32[{H},{F}{{tp}}]"),
              (f"l{l}_w2", f"f32[{F}{{tp}},{H}{{fsdp}}]", f"f32[{F}{{tp}},{H}]"),
              (f"l{l}_ln1", f"f32[{H}{{fsdp,tp}}]", f"f32[{H}]"),
              (f"l{l}_ln2", f"f32[{H}{{fsdp,tp}}]", f"f32[{H}]")]
    return p


def main():
    write("batch_small_tensors.txt",
          ["256 arrays of 4-64 KiB on 8 ranks, one batched call (make_batch_suites.py).",
           "run --batch FILE --compare times it against 256 single calls."],
          small_tensors())
    tf = transformer()
    ckpt = []
    for name, t, _ in tf:
        # Checkpoint layout: every weight fully sharded over all 8 ranks along its first dim.
        sizes = re.findall(r"(\d+)(?:\{[^}]*\})?", t[t.index("[") + 1:t.index("]")])
        ckpt.append((name, "fsdp=4,tp=2", t, "f32[" + ",".join([sizes[0] + "{fsdp,tp}"] + sizes[1:]) + "]"))
    write("transformer_params.txt",
          ["Every weight of a 4-layer transformer (H=256, F=1024, V=1000): FSDP x TP training layout to a",
           "fully sharded checkpoint layout on the same 8 ranks (make_batch_suites.py)."],
          ckpt)
    write("weight_sync.txt",
          ["RL weight sync: the transformer's weights from the trainer (FSDP x TP, ranks 0-3) to two TP=2",
           "inference replicas (ranks 4-7), disjoint ranks (make_batch_suites.py)."],
          [(n, "fsdp=2,tp=2@0-3", t, i, "r=2,tp=2@4-7") for n, t, i in tf])
    write("weight_sync_overlap.txt",
          ["Weight sync on overlapping ranks: trainer fsdp=3,tp=2 on ranks 0-5, inference replicas",
           "r=3,tp=2 on ranks 2-7 (make_batch_suites.py)."],
          [(n, "fsdp=3,tp=2@0-5", t, i, "r=3,tp=2@2-7") for n, t, i in tf])


if __name__ == "__main__":
    main()
