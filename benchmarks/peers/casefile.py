"""Shared by the peer measurements (DTensor, XLA): reshard's case files and types read into
plain Python values, random triples in the same language, and `reshard plan --json` called on
one case. Nothing here imports torch or jax, so each peer script pays only for its own peer."""
import json
import random
import re
import subprocess
from dataclasses import dataclass, field

ITEM_BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1}


@dataclass
class Type:
    dtype: str
    dims: list  # [(size, [axis, ...]), ...], axes major first, as written
    op: str = ""  # reduce op of a pending reduction: sum, max, min, prod, or ""
    reduce: list = field(default_factory=list)  # axes of the pending reduction, as written

    def text(self):
        body = ", ".join(f"{n}{{{','.join(a)}}}" if a else str(n) for n, a in self.dims)
        red = f" {self.op}{{{','.join(self.reduce)}}}" if self.reduce else ""
        return f"{self.dtype}[{body}]{red}"


@dataclass
class Case:
    name: str
    mesh: list  # [(axis, size), ...], major first
    src: Type
    dst: Type
    tight: bool = False

    def mesh_text(self):
        return ",".join(f"{a}={s}" for a, s in self.mesh)

    def devices(self):
        n = 1
        for _, s in self.mesh:
            n *= s
        return n


def parse_mesh(text):
    mesh = []
    for part in text.split(","):
        name, _, size = part.partition("=")
        if "@" in size:
            raise ValueError(f"mesh '{text}': meshes on chosen ranks are not compared with peers")
        mesh.append((name.strip(), int(size)))
    return mesh


def parse_type(text):
    m = re.fullmatch(r"\s*(\w+)\s*\[(.*)\]\s*(?:(sum|max|min|prod)\s*\{([^}]*)\})?\s*", text)
    if not m or m.group(1) not in ITEM_BYTES:
        raise ValueError(f"bad type '{text}'")
    dims = []
    for size, axes in re.findall(r"(\d+)\s*(?:\{([^}]*)\})?", m.group(2)):
        dims.append((int(size), [a.strip() for a in axes.split(",") if a.strip()]))
    reduce = [a.strip() for a in m.group(4).split(",")] if m.group(4) else []
    return Type(m.group(1), dims, m.group(3) or "", reduce)


def read_cases(path):
    """Cases of a case file (name | mesh | from | to [| to-mesh]); cross-mesh lines are skipped."""
    cases = []
    for line in open(path):
        body, _, comment = line.partition("#")
        if not body.strip():
            continue
        fields = [f.strip() for f in body.split("|")]
        if len(fields) > 4 and fields[4]:
            continue
        name, mesh, src, dst = fields[:4]
        if "@" in mesh:
            continue
        cases.append(Case(name, parse_mesh(mesh), parse_type(src), parse_type(dst),
                          comment.strip().startswith("tight")))
    return cases


def random_case(rng: random.Random, index, allow_reduce=True, max_devices=64):
    """A random valid triple: 1-3 mesh axes of size 1-4, rank 1-3, dims often uneven, each axis
    used at most once per type, sometimes a pending sum on the source."""
    while True:
        names = ["a", "b", "c"][: rng.randint(1, 3)]
        mesh = [(n, rng.choice([1, 2, 2, 3, 4])) for n in names]
        if Case("", mesh, None, None).devices() <= max_devices:
            break
    rank = rng.randint(1, 3)
    sizes = [rng.choice([8, 12, 16, 24, 32, 48, 64, 6, 10]) * rng.choice([1, 2, 4]) for _ in range(rank)]
    dtype = rng.choice(["f32", "bf16", "f64", "i32"])

    def one(reduce_ok):
        axes = names[:]
        rng.shuffle(axes)
        dims = [[] for _ in range(rank)]
        reduce = []
        for a in axes:
            r = rng.random()
            if reduce_ok and r < 0.15:
                reduce.append(a)
            elif r < 0.75:
                dims[rng.randrange(rank)].append(a)
        return Type(dtype, [(n, d) for n, d in zip(sizes, dims)], "sum" if reduce else "", reduce)

    return Case(f"random_{index}", mesh, one(allow_reduce), one(False))


def reshard_plan(binary, case, strategy="reshard"):
    """`reshard plan --json` of one case with one strategy, as a dict."""
    out = subprocess.run([binary, "plan", "--mesh", case.mesh_text(), "--from", case.src.text(),
                          "--to", case.dst.text(), "--strategy", strategy, "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
