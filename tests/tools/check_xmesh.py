#!/usr/bin/env python3
"""An independent check of cross-mesh and batched resharding (docs/design.md 10), from the case
text alone: meshes on chosen ranks (`x=2,y=2@4-7`), the fifth field (target mesh), and
`--batch FILE`. Uses check_cases.py's reading of types and blocks.

  check_xmesh.py plan FILE BIN [--memory-cap B]   plan --batch --json --verify: lower bounds
                                                   per array and in total, bytes == bound, cap
  check_xmesh.py run  FILE BIN NP [--each]        mpirun run --batch (or, with --each, one
                                                   run --to-mesh per line) --fill index --dump
"""
import itertools, json, os, struct, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_cases import ITEM, FMT, parse_type, boxes, vol, overlap, expected_value  # noqa: E402


def parse_mesh(s):
    """(axes, ranks): ranks[d] is device d's world rank."""
    text, _, rl = s.partition("@")
    axes = [(n.strip(), int(v)) for n, v in (p.split("=") for p in text.split(","))]
    n = 1
    for _, v in axes:
        n *= v
    ranks = list(range(n))
    if rl:
        ranks = []
        for item in rl.split(","):
            lo, _, hi = item.strip().partition("-")
            ranks += list(range(int(lo), int(hi or lo) + 1))
    assert len(ranks) == n and len(set(ranks)) == n, s
    return axes, ranks


def read_batch(path):
    out = []
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        f = [x.strip() for x in line.split("|")]
        out.append(dict(name=f[0], mesh=f[1], src=f[2], dst=f[3], to_mesh=f[4] if len(f) > 4 else f[1]))
    return out


def lower_bounds(c):
    """Per world rank: bytes of its target block its own source block does not hold."""
    (sa, sr), (da, dr) = parse_mesh(c["mesh"]), parse_mesh(c["to_mesh"])
    src, dst = parse_type(c["src"]), parse_type(c["dst"])
    item = ITEM[src[0]]
    lb = {}
    for t, r in enumerate(dr):
        red = dst[3]
        coords = {}
        rem = t
        for name, size in reversed(da):
            coords[name] = rem % size
            rem //= size
        if any(coords[a] for a in red):  # non-lead of a pending reduction: holds the identity
            lb[r] = 0
            continue
        tb = boxes(da, dst, t)
        held = overlap(boxes(sa, src, sr.index(r)), tb) if r in sr and not src[3] else 0
        lb[r] = (vol(tb) - held) * item
    return lb


def check_plan(path, binary, cap):
    cases = read_batch(path)
    cmd = [binary, "plan", "--batch", path, "--json", "--verify"] + (["--memory-cap", str(cap)] if cap else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        print(f"FAIL {path}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return 1
    j = json.loads(p.stdout)
    bad = 0
    total = {}
    for c, a in zip(cases, j["arrays"]):
        lb = lower_bounds(c)
        for r, v in lb.items():
            total[r] = total.get(r, 0) + v
        want = max(lb.values())
        if a["name"] != c["name"] or (not parse_type(c["src"])[3] and a["lower_bound_bytes"] != want):
            print(f"FAIL {c['name']}: lower bound {a['lower_bound_bytes']}, expected {want}")
            bad += 1
    reductions = any(parse_type(c["src"])[3] for c in cases)
    want_total = max(total.values())
    checks = [("verified", j.get("verified") is True),
              ("arrays", len(j["arrays"]) == len(cases)),
              ("lower_bound_bytes", reductions or j["lower_bound_bytes"] == want_total),
              ("bytes_recv_max == lower_bound_bytes", reductions or j["bytes_recv_max"] == j["lower_bound_bytes"]),
              ("workspace_bytes <= cap", not cap or j["workspace_bytes"] <= cap)]
    for what, ok in checks:
        if not ok:
            print(f"FAIL {path}: {what} ({json.dumps({k: j.get(k) for k in ('verified', 'lower_bound_bytes', 'bytes_recv_max', 'workspace_bytes')})}; expected bound {want_total})")
            bad += 1
    print(f"{'ok  ' if not bad else 'FAIL'} plan {os.path.basename(path)}: {len(cases)} arrays, received {j['bytes_recv_max']} B, "
          f"bound {j['lower_bound_bytes']} B, {j['calls']} calls, workspace {j['workspace_bytes']} B")
    return bad


def check_dumps(c, d):
    """Wrong elements of one array's dumps in d (rank<r>.bin per target world rank)."""
    (da, dr) = parse_mesh(c["to_mesh"])
    dst = parse_type(c["dst"])
    if dst[0] not in FMT or dst[3]:
        return 0
    shape = [n for n, _ in dst[1]]
    fmt, item = FMT[dst[0]], ITEM[dst[0]]
    wrong = 0
    for t, r in enumerate(dr):
        box = boxes(da, dst, t)
        path = os.path.join(d, f"rank{r}.bin")
        if not os.path.exists(path):
            return 1 << 30
        raw = open(path, "rb").read()
        n = vol(box)
        if len(raw) != n * item:
            return 1 << 30
        vals = struct.unpack("<" + fmt * n, raw)
        for li, idx in enumerate(itertools.product(*[range(lo, hi) for lo, hi in box])):
            gi = 0
            for i, s in zip(idx, shape):
                gi = gi * s + i
            wrong += vals[li] != expected_value(gi, dst[0])
    # Ranks outside the target mesh write nothing.
    extra = [f for f in os.listdir(d) if f.startswith("rank") and int(f[4:-4]) not in dr]
    return wrong + len(extra)


def run(cmd, np_):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return subprocess.run(["mpirun", "-np", str(np_)] + cmd, capture_output=True, text=True, timeout=300, env=env)


def check_run(path, binary, np_, each):
    cases = [c for c in read_batch(path)
             if max(parse_mesh(c["mesh"])[1] + parse_mesh(c["to_mesh"])[1]) < np_]
    bad = 0
    if each:
        for c in cases:
            d = tempfile.mkdtemp(prefix="rb-x-")
            p = run([binary, "run", "--mesh", c["mesh"], "--from", c["src"], "--to", c["dst"], "--to-mesh",
                     c["to_mesh"], "--fill", "index", "--check", "--dump", d], np_)
            w = check_dumps(c, d) if p.returncode == 0 else -1
            print(f"{'ok  ' if w == 0 else 'FAIL'} {c['name']}: np {np_}, exit {p.returncode}, {w} wrong {p.stderr.strip()[-200:]}")
            bad += w != 0
        return bad
    if not cases:
        print(f"skip {path}: its meshes need more than {np_} ranks")
        return 0
    d = tempfile.mkdtemp(prefix="rb-xb-")
    p = run([binary, "run", "--batch", path, "--fill", "index", "--check", "--dump", d], np_)
    if p.returncode != 0:
        print(f"FAIL {path}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return 1
    for c in cases:
        w = check_dumps(c, os.path.join(d, c["name"]))
        if w:
            print(f"FAIL {c['name']}: {w} wrong elements")
            bad += 1
    print(f"{'ok  ' if not bad else 'FAIL'} run --batch {os.path.basename(path)} at np {np_}: {len(cases)} arrays")
    return bad


def main(argv):
    if argv[1] == "plan":
        cap = int(argv[argv.index("--memory-cap") + 1]) if "--memory-cap" in argv else 0
        return 1 if check_plan(argv[2], argv[3], cap) else 0
    if argv[1] == "run":
        return 1 if check_run(argv[2], argv[3], int(argv[4]), "--each" in argv) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
