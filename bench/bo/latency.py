"""Suggestion latency at n = 200 observations of Hartmann-6 (issue 13's latency goal).

With 200 random observations in 6-D, ask for q points (untimed: the first fit), then run
`ROUNDS` rounds that tell the results of the last q suggestions and ask for q more, as a tuning
loop does from 200 results on; the time a point of a round is (tell + ask) / q, so both methods
time fits that can start from the previous one, on the data their own suggestions make (a
noise-free objective's suggestions cluster near its optima, which random points do not). The
figure is the median over every round of `repeats` sessions. Measured in the same run for
Optuna's GPSampler (ask/tell in-process), tunefleet through `tunectl ask-tell` (includes JSON and
pipe overhead, small against the fit) and, when the binary is given, tunefleet in-process from
`target/release/examples/suggest_latency` (its fit + propose, no I/O, random new points).
"""

import json
import os
import re
import subprocess
import time

import numpy as np

from problems import BY_NAME


def _random_points(n, seed):
    rng = np.random.default_rng(seed)
    return [{f"x{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 6))} for _ in range(n)]


ROUNDS = 5


def optuna_gp(q, points=200, repeats=3):
    import optuna
    import torch
    from methods import _optuna_dists, optuna_sampler
    # Every core, as tunefleet's rounds use (regret.py sets one thread a process for its runs).
    torch.set_num_threads(os.cpu_count() or 1)
    problem = BY_NAME["hartmann6"]
    dists = _optuna_dists(problem)
    per_point = []
    for r in range(repeats):
        study = optuna.create_study(sampler=optuna_sampler("gp", r), direction="minimize")
        for params in _random_points(points, r):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=problem.f(params)))
        pending = [study.ask(dists) for _ in range(q)]
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for trial in pending:
                study.tell(trial, problem.f(trial.params))
            pending = [study.ask(dists) for _ in range(q)]
            per_point.append((time.perf_counter() - start) / q * 1000)
    return float(np.median(per_point))


def tunefleet_ask_tell(tunectl, q, points=200, repeats=3):
    problem = BY_NAME["hartmann6"]
    space = json.dumps({"name": "hartmann6", "direction": "minimize", "params": problem.params})
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(space)
        path = f.name
    per_point = []
    try:
        for r in range(repeats):
            proc = subprocess.Popen([tunectl, "ask-tell", "--space", path, "--seed", str(r)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

            def request(obj):
                proc.stdin.write(json.dumps(obj) + "\n")
                proc.stdin.flush()
                return json.loads(proc.stdout.readline())

            pts = _random_points(points, r)
            ok = request({"observe": [{"params": p, "value": problem.f(p)} for p in pts]})
            assert ok == {"ok": True}, ok
            # As for Optuna above: one untimed suggestion (the first fit), then rounds that tell
            # the last suggestions' results and ask for q more.
            pending = request({"suggest": q})["suggestions"]
            for _ in range(ROUNDS):
                start = time.perf_counter()
                request({"observe": [{"id": s["id"], "value": problem.f(s["params"])} for s in pending]})
                pending = request({"suggest": q})["suggestions"]
                per_point.append((time.perf_counter() - start) / q * 1000)
                assert len(pending) == q, pending
            proc.stdin.close()
            proc.wait(timeout=60)
    finally:
        os.unlink(path)
    return float(np.median(per_point))


def tunefleet_in_process(binary, q, repeats=5):
    out = subprocess.run([binary, str(repeats), str(q)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"median ([0-9.]+) ms a point", out)
    return float(m.group(1)) if m else None


def report(tunectl, suggest_latency=None):
    """Times every method at q = 1 and q = 8; returns the rows and prints a markdown table."""
    rows = []
    for q in (1, 8):
        rows.append(("optuna-gp", q, optuna_gp(q)))
        rows.append(("tunefleet-bo (ask-tell)", q, tunefleet_ask_tell(tunectl, q)))
        if suggest_latency:
            rows.append(("tunefleet-bo (in-process, suggest_latency)", q, tunefleet_in_process(suggest_latency, q)))
    lines = ["| method | q | ms a point (median) |", "|---|---|---|"]
    lines += [f"| {m} | {q} | {ms:.1f} |" for m, q, ms in rows]
    text = (f"Latency from 200 observations of Hartmann-6 (6-D): observe the last q results, suggest q, "
            f"median over {ROUNDS} rounds of 3 sessions; goal < 40 ms at q = 1, < 20 ms a point at q = 8.\n\n"
            + "\n".join(lines))
    print(text)
    return rows, text
