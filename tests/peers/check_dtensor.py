#!/usr/bin/env python3
"""reshard against the real PyTorch DTensor 2.15, from recorded figures (docs/peers.md).

    check_dtensor.py FIXTURE RESHARD            # the recorded figures (dtensor_2_15.json); no torch
    check_dtensor.py FIXTURE RESHARD --live     # measure DTensor again first (needs torch 2.15;
                                                # exit 77, skipped, without it)

For every recorded case:
- reshard's `dtensor` strategy makes DTensor's plan: the same steps (kind and mesh axis, in
  order; DTensor's reduction of a size-1 Partial, which it skips, is reshard's relabel `local`),
  the same bytes received per step and in all (bytes_recv_max) and the same largest local array.
  The one allowed exception is a plan whose steps are not exact in reshard's ceil layout (uneven
  blocks that do not nest, where DTensor's nested chunks are another layout): the plan must say
  so in its notes, and those cases are listed.
- reshard's default plan receives no more bytes than the real DTensor where bandwidth dominates
  (a source or target shard of 1 MiB or more). Every case where it receives more, of any size,
  is listed.
Exit status 1 on any failure."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FALLBACK_NOTE = "not exact in reshard's ceil layout"
BANDWIDTH_SHARD = 1 << 20


def plan(binary, rec, strategy):
    out = subprocess.run([binary, "plan", "--mesh", rec["mesh"], "--from", rec["from"], "--to", rec["to"],
                          "--strategy", strategy, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{rec['name']}: reshard plan --strategy {strategy} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def sequence(steps, sizes=None):
    """Steps as `op{axes}`; with the mesh's sizes (DTensor's steps), a reduction over a size-1
    mesh dim reads `local`, as reshard plans it."""
    out = []
    for s in steps:
        op = s["op"]
        if sizes and op in ("all_reduce", "reduce_scatter") and all(sizes[a] == 1 for a in s["axes"]):
            op = "local"
        out.append(f"{op}{{{','.join(s.get('axes', []))}}}")
    return out


def check(fixture, binary):
    data = json.load(open(fixture))
    failures, fallbacks, more, summary = [], [], [], {"fewer": 0, "equal": 0, "more": 0}
    peak = {"lower": 0, "equal": 0, "higher": 0}
    matched = 0
    for rec in data["cases"]:
        real = rec["dtensor"]
        sizes = {a: int(n) for a, n in (p.split("=") for p in rec["mesh"].split(","))}
        d = plan(binary, rec, "dtensor")
        want, got = sequence(real["steps"], sizes), sequence(d["steps"])
        tag = f"{rec['name']} ({rec['mesh']} | {rec['from']} -> {rec['to']})"
        if any(FALLBACK_NOTE in n for n in d.get("notes", [])):
            fallbacks.append(f"{tag}: DTensor {' '.join(want)} ({real['bytes_recv_max']} B), "
                             f"reshard's dtensor {' '.join(got)} ({d['bytes_recv_max']} B)")
        else:
            problems = []
            if want != got:
                problems.append(f"steps {' '.join(got)}, DTensor's {' '.join(want)}")
            else:
                for k, (a, b) in enumerate(zip(real["steps"], d["steps"])):
                    if a["bytes_recv"] != b["bytes_recv"]:
                        problems.append(f"step {k + 1} receives {b['bytes_recv']} B, DTensor's {a['bytes_recv']} B")
            for key in ("bytes_recv_max", "max_intermediate_bytes"):
                if d[key] != real[key]:
                    problems.append(f"{key} {d[key]}, DTensor's {real[key]}")
            if problems:
                failures.append(f"{tag}: " + "; ".join(problems))
            else:
                matched += 1
        r = plan(binary, rec, "reshard")
        b, rb = real["bytes_recv_max"], r["bytes_recv_max"]
        summary["fewer" if rb < b else "equal" if rb == b else "more"] += 1
        rp = r["max_intermediate_bytes"]
        peak["lower" if rp < real["max_intermediate_bytes"] else "equal" if rp == real["max_intermediate_bytes"]
             else "higher"] += 1
        if rb > b:
            big = max(r["src_local_bytes"], r["dst_local_bytes"]) >= BANDWIDTH_SHARD
            more.append((big, f"{tag}: reshard receives {rb} B, DTensor {b} B" + (" (shard >= 1 MiB)" if big else "")))
            if big:
                failures.append(f"{tag}: reshard's plan receives {rb} B, more than DTensor's {b} B, with shards >= 1 MiB")
    n = len(data["cases"])
    print(f"{n} cases recorded from torch {data['torch']} ({len(data.get('skipped', []))} DTensor cannot run, listed in the fixture)")
    print(f"dtensor strategy: DTensor's plan and figures on {matched} of {n}; "
          f"{len(fallbacks)} planned by the earlier DTensor-like rules (DTensor's steps not exact in the ceil layout):")
    for f in fallbacks:
        print(f"  {f}")
    print(f"reshard's default plan against the real DTensor, bytes received: fewer on {summary['fewer']}, "
          f"equal on {summary['equal']}, more on {summary['more']}; largest local array: smaller on "
          f"{peak['lower']}, equal on {peak['equal']}, larger on {peak['higher']}")
    for _, m in more:
        print(f"  more: {m}")
    for f in failures:
        print(f"FAIL {f}")
    # The sweep must reach the graph planner, the greedy one, reductions and uneven shapes, or
    # the comparison proves little.
    if n < 300 or matched < 0.9 * n:
        print(f"FAIL only {matched} of {n} cases matched")
        return 1
    return 1 if failures else 0


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    fixture, binary = sys.argv[1], sys.argv[2]
    if "--live" in sys.argv[3:]:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("skipped: torch is not importable (the recorded figures are checked by peers_dtensor)")
            return 77
        recorded = json.load(open(fixture))["torch"]
        if torch.__version__.split("+")[0].rsplit(".", 1)[0] != recorded.split("+")[0].rsplit(".", 1)[0]:
            print(f"skipped: torch {torch.__version__} is installed; the figures are of torch {recorded}")
            return 77
        script = os.path.join(ROOT, "benchmarks", "peers", "dtensor_plans.py")
        # Re-measure the recorded cases: DTensor's figures must be what the fixture says.
        rc = subprocess.run([sys.executable, script, "--fixture", fixture]).returncode
        if rc != 0:
            return 1
    return check(fixture, binary)


if __name__ == "__main__":
    sys.exit(main())
