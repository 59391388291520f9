#!/usr/bin/env python3
"""Simple-regret benchmark of tunefleet's tuner against Optuna (issue 2, "What it must show").

Runs Branin (2-D) and Hartmann-6 for 64 evaluations at q = 1 and q = 8 with 10 seeds for
tunefleet BO and random search (through `tunectl ask-tell`, a subprocess speaking JSON lines)
and Optuna's GPSampler and TPESampler(constant_liar=True) (ask/tell batches of q), then prints
and writes the median and interquartile range of the simple regret (best value found minus the
known optimum: Branin 0.397887, Hartmann-6 -3.32237).

Usage (from the repository root):
    cargo build -p tunectl
    .venv/bin/python bench/bo/regret.py --tunectl target/debug/tunectl --out bench/bo/results-DATE.md
    .venv/bin/python bench/bo/regret.py --latency      # Optuna GPSampler's time per point
Small check: --seeds 1 --evals 12 --functions branin --methods tunefleet-bo,optuna-tpe
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

OPTIMA = {"branin": 0.397887, "hartmann6": -3.32237}

HARTMANN_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                              [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(p):
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(HARTMANN_ALPHA * np.exp(-np.sum(HARTMANN_A * (x - HARTMANN_P) ** 2, axis=1))))


FUNCTIONS = {
    "branin": (branin, [("x1", -5.0, 10.0), ("x2", 0.0, 15.0)]),
    "hartmann6": (hartmann6, [(f"x{i}", 0.0, 1.0) for i in range(6)]),
}


def run_tunefleet(tunectl, strategy, fname, q, evals, seed, extra):
    fn, bounds = FUNCTIONS[fname]
    space = {"name": fname, "direction": "minimize",
             "params": [{"name": n, "type": "float", "low": lo, "high": hi} for n, lo, hi in bounds]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(space, f)
        path = f.name
    cmd = [tunectl, "ask-tell", "--space", path, "--seed", str(seed), "--strategy", strategy] + extra
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    best = math.inf
    try:
        done = 0
        while done < evals:
            k = min(q, evals - done)
            proc.stdin.write(json.dumps({"suggest": k}) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            if "suggestions" not in reply:
                raise RuntimeError(f"tunectl replied {reply}")
            results = []
            for s in reply["suggestions"]:
                value = fn(s["params"])
                best = min(best, value)
                results.append({"id": s["id"], "params": s["params"], "value": value})
            proc.stdin.write(json.dumps({"observe": results}) + "\n")
            proc.stdin.flush()
            ok = json.loads(proc.stdout.readline())
            if ok != {"ok": True}:
                raise RuntimeError(f"tunectl replied {ok}")
            done += k
        proc.stdin.write('{"stop": true}\n')
        proc.stdin.flush()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        os.unlink(path)
    return best


def run_optuna(kind, fname, q, evals, seed):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn, bounds = FUNCTIONS[fname]
    if kind == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    dists = {n: optuna.distributions.FloatDistribution(lo, hi) for n, lo, hi in bounds}
    best, done = math.inf, 0
    while done < evals:
        k = min(q, evals - done)
        trials = [study.ask(dists) for _ in range(k)]
        for t in trials:
            value = fn(t.params)
            best = min(best, value)
            study.tell(t, value)
        done += k
    return best


def one_run(job):
    method, fname, q, evals, seed, tunectl, extra = job
    start = time.time()
    if method == "tunefleet-bo":
        best = run_tunefleet(tunectl, "bo", fname, q, evals, seed, extra)
    elif method == "tunefleet-random":
        best = run_tunefleet(tunectl, "random", fname, q, evals, seed, [])
    elif method == "optuna-gp":
        best = run_optuna("gp", fname, q, evals, seed)
    elif method == "optuna-tpe":
        best = run_optuna("tpe", fname, q, evals, seed)
    else:
        raise ValueError(method)
    return method, fname, q, seed, best - OPTIMA[fname], time.time() - start


def latency(points=200, batch=8, repeats=3):
    """Optuna GPSampler: tell one result, then ask a batch of 8, with 200 results in 6-D."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn, bounds = FUNCTIONS["hartmann6"]
    dists = {n: optuna.distributions.FloatDistribution(lo, hi) for n, lo, hi in bounds}
    rng = np.random.default_rng(0)
    per_point = []
    for r in range(repeats):
        study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=r), direction="minimize")
        for _ in range(points):
            params = {n: float(rng.uniform(lo, hi)) for n, lo, hi in bounds}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=fn(params)))
        pending = study.ask(dists)
        start = time.perf_counter()
        study.tell(pending, fn(pending.params))
        for _ in range(batch):
            study.ask(dists)
        per_point.append((time.perf_counter() - start) / batch * 1000)
    print(f"optuna GPSampler {optuna.__version__}: {np.median(per_point):.1f} ms a point "
          f"(median of {repeats}; {points} observations, 6-D, batch {batch})")


def table(results, methods, functions, qs):
    lines = ["| function | q | method | median regret | IQR (25%–75%) | runs | mean s/run |", "|---|---|---|---|---|---|---|"]
    for fname in functions:
        for q in qs:
            for method in methods:
                rows = [r for r in results if r[0] == method and r[1] == fname and r[2] == q]
                if not rows:
                    continue
                regrets = np.array([r[4] for r in rows])
                q25, q50, q75 = np.percentile(regrets, [25, 50, 75])
                secs = np.mean([r[5] for r in rows])
                lines.append(f"| {fname} | {q} | {method} | {q50:.3g} | {q25:.3g} – {q75:.3g} | {len(rows)} | {secs:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tunectl", default="target/debug/tunectl")
    ap.add_argument("--functions", default="branin,hartmann6")
    ap.add_argument("--methods", default="tunefleet-bo,tunefleet-random,optuna-gp,optuna-tpe")
    ap.add_argument("--qs", default="1,8")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evals", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--batch", default=None, help="tunefleet --batch (cl-min, cl-mean, cl-max, mc-qei)")
    ap.add_argument("--out", default=None, help="write the markdown table (and raw JSON next to it)")
    ap.add_argument("--latency", action="store_true", help="only time Optuna GPSampler per point")
    args = ap.parse_args()
    if args.latency:
        latency()
        return
    methods, functions = args.methods.split(","), args.functions.split(",")
    qs = [int(q) for q in args.qs.split(",")]
    extra = ["--batch", args.batch] if args.batch else []
    jobs = [(m, f, q, args.evals, s, args.tunectl, extra) for f in functions for q in qs for m in methods for s in range(args.seeds)]
    results = []
    started = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(one_run, jobs):
            results.append(r)
            print(f"{r[0]:>16} {r[1]:>9} q={r[2]} seed={r[3]} regret={r[4]:.3g} ({r[5]:.1f} s)", file=sys.stderr, flush=True)
    text = table(results, methods, functions, qs)
    header = (f"Simple regret after {args.evals} evaluations, {args.seeds} seeds "
              f"(seeds 0..{args.seeds - 1}; total {time.time() - started:.0f} s; tunectl {args.tunectl}).\n\n")
    print(header + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(header + text + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump([dict(zip(["method", "function", "q", "seed", "regret", "seconds"], r)) for r in results], f, indent=1)


if __name__ == "__main__":
    main()
