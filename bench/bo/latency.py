"""Suggestion latency at n = 200 observations of Hartmann-6 (issue 13's latency goal).

With 200 random observations in 6-D, ask for one point (untimed: the first fit), then tell its
result and ask for q = 1 or q = 8 points; the time a point is (tell + ask) / q, so both methods
time a fit that can start from the previous one. Measured in the same run for Optuna's GPSampler
(ask/tell in-process), tunefleet through `tunectl ask-tell` (includes JSON and pipe overhead,
small against the fit) and, when the binary is given, tunefleet in-process from
`target/release/examples/suggest_latency` (its fit + propose, no I/O).
"""

import json
import re
import subprocess
import time

import numpy as np

from problems import BY_NAME


def _random_points(n, seed):
    rng = np.random.default_rng(seed)
    return [{f"x{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 6))} for _ in range(n)]


def optuna_gp(q, points=200, repeats=3):
    import optuna
    from methods import _optuna_dists, optuna_sampler
    problem = BY_NAME["hartmann6"]
    dists = _optuna_dists(problem)
    per_point = []
    for r in range(repeats):
        study = optuna.create_study(sampler=optuna_sampler("gp", r), direction="minimize")
        for params in _random_points(points, r):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=problem.f(params)))
        pending = study.ask(dists)
        start = time.perf_counter()
        study.tell(pending, problem.f(pending.params))
        for _ in range(q):
            study.ask(dists)
        per_point.append((time.perf_counter() - start) / q * 1000)
    return float(np.median(per_point))


def tunefleet_ask_tell(tunectl, q, points=200, repeats=3):
    problem = BY_NAME["hartmann6"]
    space = json.dumps({"name": "hartmann6", "direction": "minimize", "params": problem.params})
    import os
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
            # As for Optuna above: one untimed suggestion (the first fit), then its result and
            # q more suggestions are timed.
            first = request({"suggest": 1})["suggestions"][0]
            start = time.perf_counter()
            request({"observe": [{"id": first["id"], "value": problem.f(first["params"])}]})
            reply = request({"suggest": q})
            per_point.append((time.perf_counter() - start) / q * 1000)
            assert len(reply["suggestions"]) == q, reply
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
    text = ("Latency at 200 observations of Hartmann-6 (6-D): observe one result, suggest q; "
            "goal < 40 ms at q = 1, < 20 ms a point at q = 8.\n\n" + "\n".join(lines))
    print(text)
    return rows, text
