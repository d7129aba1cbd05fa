#!/usr/bin/env python3
"""`reshard auto` and `reshard exec` from the command line (issue 16): the JSON contract of
`auto --json` on every example, and the error paths (no fit, bad program text, bad options,
a mesh larger than the ranks), each a message naming the problem and a non-zero exit, fast.

usage: check_auto_cli.py RESHARD PROGRAMS_DIR [MPIEXEC]
"""
import json
import os
import subprocess
import sys
import tempfile

reshard, programs = sys.argv[1], sys.argv[2]
mpiexec = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
failures = []


def run(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def parse_types(path):
    names = []
    for line in open(path):
        line = line.split("#")[0].strip()
        if not line or line.startswith(("mesh", "output")):
            continue
        if line.startswith(("input", "param")):
            names.append(line.split()[1])
        else:
            names.append(line.split("=")[0].strip())
    return names


for name, cap in (("mlp", "400KiB"), ("attention", "230000"), ("transformer2", "700000")):
    prog = os.path.join(programs, name + ".prog")
    for extra in ([], ["--memory", cap], ["--topology", "tp=nvlink,dp=ib", "--memory", cap]):
        r = run([reshard, "auto", "--program", prog, "--json"] + extra)
        check(r.returncode == 0, f"auto {name} {extra}: exit {r.returncode}: {r.stderr}")
        if r.returncode:
            continue
        j = json.loads(r.stdout)
        for field in ("types", "reshards", "predicted_time_s", "peak_bytes", "memory_limit_bytes"):
            check(field in j, f"auto {name}: no '{field}' in the JSON")
        check(sorted(j["types"]) == sorted(parse_types(prog)), f"auto {name}: types do not name every tensor")
        for r_ in j["reshards"]:
            check(set(("tensor", "from", "to", "steps")) <= set(r_), f"auto {name}: reshard fields {sorted(r_)}")
            check(r_["tensor"] in j["types"], f"auto {name}: reshard of unknown tensor {r_['tensor']}")
            check(all("op" in s for s in r_["steps"]), f"auto {name}: steps without op")
        check(j["predicted_time_s"] > 0, f"auto {name}: predicted time {j['predicted_time_s']}")
        if "--memory" in extra:
            check(j["memory_limit_bytes"] is not None and j["peak_bytes"] <= j["memory_limit_bytes"],
                  f"auto {name}: peak {j['peak_bytes']} over the cap {j['memory_limit_bytes']}")
            check(len(j["reshards"]) > 0, f"auto {name}: a cap that forbids replicated weights needs reshards")
        else:
            check(j["memory_limit_bytes"] is None, f"auto {name}: memory_limit_bytes without a cap")

# No assignment fits: the message says by how much.
r = run([reshard, "auto", "--program", os.path.join(programs, "mlp.prog"), "--memory", "1000"])
check(r.returncode != 0 and "over the cap" in r.stderr and "leanest found needs" in r.stderr,
      f"auto under a tiny cap: exit {r.returncode}, stderr {r.stderr!r}")

with tempfile.TemporaryDirectory() as tmp:
    bad = os.path.join(tmp, "bad.prog")
    with open(bad, "w") as f:
        f.write("mesh x=2\ninput a : f32[4, 6]\nb = einsum(\"ij,kj->ik\", a, c)\noutput b\n")
    r = run([reshard, "auto", "--program", bad])
    check(r.returncode != 0 and "line 3, column 28" in r.stderr and "'c' is not defined" in r.stderr,
          f"auto of a bad program: exit {r.returncode}, stderr {r.stderr!r}")
    r = run([reshard, "auto", "--program", os.path.join(tmp, "missing.prog")])
    check(r.returncode != 0 and "cannot read program" in r.stderr, f"auto of a missing file: {r.stderr!r}")
    for opt, msg in ((["--memory", "12 parsecs"], "unknown unit"), (["--memory", "-5"], "must be positive"),
                     (["--mesh", "x=2,x=2"], "x"), (["--flops", "0"], "--flops"), (["--beam", "0"], "--beam"),
                     (["--assign", os.path.join(tmp, "missing")], "cannot read assignment")):
        r = run([reshard, "auto", "--program", os.path.join(programs, "mlp.prog")] + opt)
        check(r.returncode != 0 and msg in r.stderr and "internal error" not in r.stderr,
              f"auto {opt}: exit {r.returncode}, stderr {r.stderr!r}")

if mpiexec:
    # A mesh with more devices than ranks, and a program that does not parse: every rank ends,
    # with a message, quickly.
    r = run([mpiexec, "-np", "2", reshard, "exec", "--program", os.path.join(programs, "mlp.prog")], timeout=60)
    check(r.returncode != 0 and "8 devices but mpirun started 2 ranks" in r.stderr,
          f"exec on too few ranks: exit {r.returncode}, stderr {r.stderr[-400:]!r}")
    r = run([mpiexec, "-np", "2", reshard, "exec", "--program", os.path.join(programs, "mlp.prog"),
             "--mesh", "dp=2", "--memory", "10"], timeout=60)
    check(r.returncode != 0 and "over the cap" in r.stderr, f"exec under a tiny cap: {r.stderr[-400:]!r}")
    r = run([mpiexec, "-np", "3", reshard, "exec", "--program", os.path.join(programs, "attention.prog"),
             "--mesh", "dp=1,tp=2", "--json"], timeout=120)
    check(r.returncode == 0, f"exec with a rank outside the mesh: exit {r.returncode}, {r.stderr[-400:]!r}")
    if r.returncode == 0:
        j = json.loads(r.stdout)
        check(j["matches_single_process"] and j["max_relative_error"] < 1e-4, f"exec --json: {j}")
        check(j["measured_time_s"] > 0 and j["predicted_time_s"] > 0, "exec --json: times")

print(f"check_auto_cli: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
