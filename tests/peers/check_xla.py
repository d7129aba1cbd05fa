#!/usr/bin/env python3
"""reshard against XLA's SPMD partitioner, on the figures recorded in tests/peers/xla_plans.json
(written by benchmarks/peers/xla_plans.py; docs/peers.md says how they were measured).

  check_xla.py bytes FIXTURE RESHARD   reshard's plans, made now, against the recorded XLA figures:
                                       no more bytes received, no larger buffer, on every case
                                       but the listed exceptions. Needs no jax.
  check_xla.py live FIXTURE CASEFILE   XLA's figures for the case file, measured now, must equal
                                       the recorded ones. Exits 77 (skipped) without jax, or with
                                       a jax other than the one recorded.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks", "peers"))
import casefile  # noqa: E402
import xla_plans  # noqa: E402  (imports jax only when XLA is measured)

SKIP = 77

# XLA's transposes (docs/peers.md, "Where XLA receives fewer bytes"): on x=a, y=a*m it splits y
# into sub-axes y = y_hi (size a) x y_lo (size m), runs an all-to-all over y_lo that moves y_lo
# from dim 1 to the minor end of dim 0 (f32[N{x,y_lo}, N{y_hi}]), then one collective-permute
# that swaps the equal-size x and y_hi between the dims: (2 - 1/m) shards in all. reshard's types
# name whole mesh axes only, so that middle layout, and the two steps, are not in its step set;
# its best collective plan is three all_to_alls.
_SUBAXIS = ("XLA: all-to-all over a sub-axis of y, then a permute swapping x and the rest of y between "
            "dims; reshard has no sub-axis steps")

# Cases where reshard's collective-only plan (the one its notes name when it picks exchange)
# may receive more than XLA's. Its default plan (exchange, the lower bound) still wins there.
COLLECTIVE_EXCEPTIONS = {
    "transpose_2d": _SUBAXIS + ": 256 + 512 = 768 B against 960 B",
    "x_transpose_2x4": _SUBAXIS + ": 786,432 B against 983,040 B",
    "x_transpose_4x2": _SUBAXIS + " (the roles of x and y exchanged): 768 B against 960 B",
    "x_transpose_2x8": _SUBAXIS + ": 768 + 1024 = 1792 B against 1984 B",
    "x_transpose_4x2_wide": _SUBAXIS + " (the roles exchanged): 4608 B against 5760 B",
    "x_lat_8_big": "XLA splits b=4 into two halves: a permute, then one all-gather over each half; "
                   "reshard has no sub-axis steps (its exchange, the default, ties)",
    "x_lat_9_big": "blocks that do not nest (32 rows over c=3, then 12 blocks): XLA's collective-permute "
                   "sends each device the rows it lacks, a dynamic slice, not a block of one type; in "
                   "reshard's step set that is the exchange, which it picks (equal bytes)",
}
# Small shards (24 B to 48 KiB): bytes are not what the cost model minimizes there (a step's
# latency outweighs them), and reshard's plan takes fewer or cheaper steps. The same case with a
# trailing dim of 1024 or 65536 elements (x_lat_N_big / _huge), which scales every block, holds
# the bytes rule.
_LATENCY = "latency regime: shards of at most {} B; the scaled case {} receives no more than XLA"
_LAT = {"x_lat_1": (64, "x_lat_1_big"), "x_lat_2": (192, "x_lat_2_big"), "x_lat_3": (32, "x_lat_3_huge"),
        "x_lat_4": (32, "x_lat_4_huge"), "x_lat_5": (6144, "x_lat_5_big"), "x_lat_6": (24, "x_lat_6_huge"),
        "x_lat_7": (1536, "x_lat_7_big"), "x_lat_8": (49152, "x_lat_8_big"), "x_lat_9": (8448, "x_lat_9_big")}
COLLECTIVE_EXCEPTIONS.update({k: _LATENCY.format(*v) for k, v in _LAT.items()})
# Cases where reshard's default plan may receive more bytes than XLA's.
BYTES_EXCEPTIONS = {
    "x_transpose_2x8": _SUBAXIS + "; at 1 KiB shards the cost model prefers the three all_to_alls "
                       "(1984 B) to the exchange (1024 B) for latency, and the 2-step XLA plan is not among "
                       "its candidates",
}
BYTES_EXCEPTIONS.update({k: _LATENCY.format(*v) for k, v in _LAT.items()})
# Cases where reshard's largest local array may exceed XLA's largest buffer: none today.
MEMORY_EXCEPTIONS = {}


def load(path):
    with open(path) as f:
        return json.load(f)


def case_of(row):
    return casefile.Case(row["name"], casefile.parse_mesh(row["mesh"]), casefile.parse_type(row["from"]),
                         casefile.parse_type(row["to"]))


# The replica-group notations of XLA's HLO text, with groups worked out by hand from XLA's rule:
# the mesh's device array reshaped to its (sub-)axis factors, the listed ones moved last.
GROUP_NOTATIONS = [
    # transpose_2d's all-to-all: pairs that differ in y's minor half (x=2,y=4 = axis_1 x axis_0).
    ("mesh['axis_0'=4,'axis_1'=2], device_ids=([2,2,2]T(0,2,1)) {'axis_0':(2)2}", 8,
     [[0, 1], [2, 3], [4, 5], [6, 7]]),
    ("mesh['axis_0'=2,'axis_1'=4] {'axis_1'}", 8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("mesh['axis_0'=2,'axis_1'=4] {'axis_0'}", 8, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("mesh['a'=8] {'a':(1)2}", 8, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("mesh['a'=8] {'a':(4)2}", 8, [[0, 1], [2, 3], [4, 5], [6, 7]]),
    ("mesh['a'=8] {'a':(4)2,'a':(1)2}", 8, [[0, 4, 1, 5], [2, 6, 3, 7]]),
    ("mesh['a'=2,'b'=2], device_ids=(0,2,1,3) {'b'}", 4, [[0, 2], [1, 3]]),
    ("[2,4]<=[8]", 8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("[4,2]<=[2,4]T(1,0)", 8, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("{{0,2},{1,3}}", 4, [[0, 2], [1, 3]]),
]


def check_group_reader():
    bad = []
    for text, n, want in GROUP_NOTATIONS:
        got = xla_plans.replica_groups("replica_groups=" + text, n)
        if got != want:
            bad.append(f"replica_groups={text}: read as {got}, expected {want}")
    return bad


def check_bytes(fixture, binary):
    doc = load(fixture)
    failures, measured, stale = check_group_reader(), 0, []
    for row in doc["cases"]:
        x = row["xla"]
        if "skipped" in x:
            continue
        measured += 1
        try:
            p = xla_plans.reshard_figures(binary, case_of(row))
        except subprocess.CalledProcessError as e:
            failures.append(f"{row['name']}: reshard plan failed: {e.stderr.strip()}")
            continue
        coll = p["collective_bytes"]
        name = row["name"]
        checks = [("bytes received", p["bytes_recv_max"], x["bytes_recv_max_rs"], BYTES_EXCEPTIONS),
                  ("largest buffer", p["max_intermediate_bytes"], x["peak_local_bytes"], MEMORY_EXCEPTIONS)]
        if coll is not None:
            checks.append(("collective-only bytes received", coll, x["bytes_recv_max_rs"], COLLECTIVE_EXCEPTIONS))
        for what, mine, theirs, exceptions in checks:
            if mine > theirs and name not in exceptions:
                failures.append(f"{name} ({row['mesh']} | {row['from']} -> {row['to']}): reshard's {what} "
                                f"{mine} B > XLA's {theirs} B")
            elif mine <= theirs and name in exceptions:
                stale.append(f"{name}: {what} {mine} B <= XLA's {theirs} B; its exception can go")
        if p["bytes_recv_max"] > x["bytes_recv_max_rs"] and name in BYTES_EXCEPTIONS:
            print(f"known: {name}: {BYTES_EXCEPTIONS[name]}")
    for note in stale:
        print(f"note: {note}")
    print(f"{measured} recorded cases against reshard's plans now; {len(failures)} failures")
    for f in failures:
        print(f"FAIL {f}")
    if measured < 100:
        print(f"FAIL the fixture holds {measured} measured cases, fewer than the 100 expected")
        return 1
    return 1 if failures else 0


def check_live(fixture, casefile_path):
    try:
        import jax  # noqa: F401
    except ImportError:
        print("skipped: jax is not installed (pip install jax)")
        return SKIP
    doc = load(fixture)
    if jax.__version__ != doc["tool"]["jax"]:
        print(f"skipped: jax {jax.__version__} here, the fixture was recorded with jax {doc['tool']['jax']}; "
              f"regenerate it with the command in tests/peers/xla_plans.json")
        return SKIP
    suite = os.path.splitext(os.path.basename(casefile_path))[0]
    cases = casefile.read_cases(casefile_path)
    recorded = {r["name"]: r for r in doc["cases"] if r["suite"] == suite}
    xla = xla_plans.Xla(max(c.devices() for c in cases))
    failures = []
    fields = ("skipped", "bytes_recv_max", "bytes_recv_max_rs", "peak_local_bytes", "steps")
    for c in cases:
        now = xla.measure(c)
        if c.name not in recorded:
            failures.append(f"{c.name}: not in the fixture")
            continue
        then = recorded[c.name]["xla"]
        for k in fields:
            if now.get(k) != then.get(k):
                failures.append(f"{c.name}: {k} now {now.get(k)!r}, recorded {then.get(k)!r}")
    print(f"{len(cases)} cases of {suite} measured on XLA now against the fixture; {len(failures)} differ")
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("bytes", "live"):
        print(__doc__)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return check_bytes(sys.argv[2], sys.argv[3]) if sys.argv[1] == "bytes" else check_live(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    sys.exit(main())
