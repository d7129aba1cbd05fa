#!/usr/bin/env python3
"""keep_inputs.py CONTROL_FILE K: the K inputs worth adding to a corpus, one path a line.

CONTROL_FILE is what `fuzzer -merge=1 -use_counters=0 -merge_control_file=CONTROL_FILE OLD NEW`
leaves: the number of files, how many of them are OLD's, their paths, then per file (old ones
first) a line "COV <index> <edge>..." listing the coverage edges that file reached first. The
NEW inputs that reached the most such edges are printed, most first (scripts/fuzz.sh).
"""
import sys


def main(argv):
    lines = open(argv[1]).read().split("\n")
    n, m = int(lines[0]), int(lines[1])
    files = lines[2:2 + n]
    gain = {}
    for line in lines[2 + n:]:
        p = line.split()
        if p and p[0] == "COV" and int(p[1]) >= m:
            gain[int(p[1])] = len(p) - 2
    best = sorted((i for i in gain if gain[i] > 0), key=lambda i: -gain[i])[: int(argv[2])]
    for i in best:
        print(files[i])
    print(f"keep_inputs: {len(gain)} new inputs reached {sum(gain.values())} new edges; "
          f"the {len(best)} kept reached {sum(gain[i] for i in best)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
