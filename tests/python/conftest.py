"""Shared helpers of the Python tests (run under mpirun by mpi_pytest.py, or plain pytest)."""
import os
import pathlib
import random

import pytest

import reshard

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASE_FILES = [ROOT / "tests" / "cases" / "public.txt", ROOT / "benchmarks" / "suites" / "bench.txt"]


def pytest_configure(config):
    config.addinivalue_line("markers", "mpi: runs collective calls on every rank (the others run at 1 rank only)")


def pytest_collection_modifyitems(config, items):
    # Tests without MPI are the same at every rank count: run them once, in the 1-rank run.
    if np_ranks() > 1:
        skip = pytest.mark.skip(reason="no MPI: runs in the 1-rank run")
        for item in items:
            if "mpi" not in item.keywords:
                item.add_marker(skip)


def read_cases(path):
    """Case files (name | mesh | from | to [| to_mesh], '#' comments) as tuples."""
    cases = []
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("|")]
        cases.append(tuple(fields[:4]))
    return cases


def all_cases():
    out = []
    for f in CASE_FILES:
        if f.exists():
            out += read_cases(f)
    return out


@pytest.fixture(scope="session")
def world():
    MPI = pytest.importorskip("mpi4py.MPI")
    return MPI.COMM_WORLD


def all_agree(comm, ok):
    """True on every rank iff `ok` on every rank (keeps ranks in step when one fails)."""
    from mpi4py import MPI

    return comm.allreduce(bool(ok), op=MPI.LAND)


# -- random types (the Python twin of tests/random_types.hpp) -------------------------------
AXIS_NAMES = ["a", "b", "c", "d", "e"]
DTYPES = ["f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8"]


def random_mesh(rng: random.Random, max_devices=64):
    while True:
        n = rng.randint(1, 4)
        sizes = [rng.choice([1, 2, 2, 3, 4]) for _ in range(n)]
        devices = 1
        for s in sizes:
            devices *= s
        if devices <= max_devices:
            return reshard.Mesh(",".join(f"{AXIS_NAMES[i]}={s}" for i, s in enumerate(sizes)))


def random_type(rng: random.Random, mesh, ops=("sum", "max", "min", "prod"), even=None):
    names = mesh.axis_names
    rank = rng.randint(1, 3)
    axes = list(names)
    rng.shuffle(axes)
    dims = [[] for _ in range(rank)]
    red = []
    for a in axes:
        r = rng.random()
        if r < 0.55:
            dims[rng.randrange(rank)].append(a)
        elif r < 0.7:
            red.append(a)
    shape = []
    for d in range(rank):
        k = 1
        for a in dims[d]:
            k *= mesh.axis_size(a)
        if even is None:
            even_d = rng.random() < 0.6
        else:
            even_d = even
        shape.append(k * rng.randint(1, 3) if even_d else rng.randint(1, 3 * k + 2))
    text = rng.choice(DTYPES) + "[" + ", ".join(
        f"{n}{{{','.join(a)}}}" if a else str(n) for n, a in zip(shape, dims)) + "]"
    if red:
        text += f" {rng.choice(ops)}{{{','.join(red)}}}"
    return reshard.Type(text, mesh)


def np_ranks():
    return int(os.environ.get("RESHARD_TEST_NP", "1"))
