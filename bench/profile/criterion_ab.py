#!/usr/bin/env python3
"""Two builds of a criterion bench, alternated round by round on this noisy machine, compared by
the median of the per-round ratios (a saved `--baseline` compares against one earlier run, which
drifts with the machine).

usage: criterion_ab.py ROUNDS FILTER BEFORE_BINARY AFTER_BINARY
  e.g. criterion_ab.py 7 'demo/' /tmp/engine-before /tmp/engine-after
Each binary is a bench executable (`cargo bench -p interlock-policies --bench engine --no-run`
prints its path; build the other side in a `git worktree` with its own CARGO_TARGET_DIR)."""
import re
import statistics
import subprocess
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def run(binary: str, filt: str) -> dict:
    out = subprocess.run([binary, "--bench", filt, "--measurement-time", "2", "--warm-up-time", "1", "--noplot"],
                         capture_output=True, text=True, check=True).stdout
    # criterion prints "name  time: [low median high]", the name alone on its line when long.
    found = {}
    for m in re.finditer(r"^(\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out, re.M):
        found[m.group(1)] = float(m.group(2)) * UNITS[m.group(3)]
    if not found:
        sys.exit(f"no criterion results from {binary} for {filt!r}")
    return found


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    rounds, filt, before, after = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    seen: dict = {}
    for r in range(rounds):
        order = [("before", before), ("after", after)] if r % 2 == 0 else [("after", after), ("before", before)]
        for side, binary in order:
            for name, ns in run(binary, filt).items():
                seen.setdefault(name, {}).setdefault(side, []).append(ns)
    for name, d in seen.items():
        b, a = d.get("before", []), d.get("after", [])
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{name:40s} before {statistics.median(b):8.0f} ns  after {statistics.median(a):8.0f} ns  "
              f"after/before, median of rounds {statistics.median(ratios):.3f}  ({', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
