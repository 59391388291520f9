#!/usr/bin/env python3
"""The cost of batching in evaluations: how many sequential (q = 1) evaluations tunefleet needs to
reach the median regret its q = 8 runs reach in their whole budget.

Reads the `TRACE` lines of the in-process regret example (stderr with `REGRET_TRACE=1`), any
number of problems and both q in one or more files:

    for q in 1 8; do REGRET_TRACE=1 target/release/examples/regret 30 $q bo judge 2>> trace.txt >/dev/null; done
    python3 bench/bo/batch_cost.py trace.txt

For each problem it prints q = 8's final median, the first evaluation at which q = 1's median
best regret (over the same seeds) is at most that, q = 1's own final median, and the ratio the
issue's goal 2 judges (q = 8 final / q = 1 final). A run's best regret counts from the round
that reached it; a seed with no round yet counts as infinite.
"""

import collections
import statistics
import sys


def read_traces(paths):
    """{(problem, q): {seed: {evaluations: best regret}}} from the TRACE lines of `paths`."""
    runs = collections.defaultdict(lambda: collections.defaultdict(dict))
    for path in paths:
        with open(path) as f:
            for line in f:
                t = line.split()
                if len(t) < 9 or t[0] != "TRACE" or not t[2].startswith("q="):
                    continue
                problem, q, seed, evals, regret = t[1], int(t[2][2:]), int(t[4]), int(t[6]), float(t[8])
                runs[(problem, q)][seed][evals] = regret
    return runs


def median_at(seeds, evals):
    """The median over seeds of the best regret after `evals` evaluations."""
    values = []
    for by_evals in seeds.values():
        reached = [e for e in by_evals if e <= evals]
        values.append(by_evals[max(reached)] if reached else float("inf"))
    return statistics.median(values)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = read_traces(sys.argv[1:])
    problems = sorted({p for p, _ in runs})
    print("| problem | q = 8 final median | q = 1 reaches it at | q = 1 final median | ratio (goal 2) |")
    print("|---|---|---|---|---|")
    for p in problems:
        if (p, 1) not in runs or (p, 8) not in runs:
            print(f"{p}: needs both q = 1 and q = 8 traces", file=sys.stderr)
            continue
        one, eight = runs[(p, 1)], runs[(p, 8)]
        budget = max(max(d) for d in eight.values())
        final8, final1 = median_at(eight, budget), median_at(one, budget)
        reach = next((e for e in range(1, budget + 1) if median_at(one, e) <= final8), None)
        reach_text = f"{reach} evaluations" if reach else f"not within {budget}"
        ratio = final8 / final1 if final1 > 0 else float("inf")
        print(f"| {p} | {final8:.3g} | {reach_text} | {final1:.3g} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
