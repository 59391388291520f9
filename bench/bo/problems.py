"""The benchmark problems of issue 13 (docs/bo-problems.md), in Python.

The same functions are defined in Rust in `coordinator/tuner/examples/common/problems.rs`;
`check_problems(lines)` compares the two on the points that `regret --check` prints. Every
problem is minimized; a parameter spec is the dict `tunectl ask-tell` takes in its space file:
`{"name", "type": "float"|"int"|"categorical", "low", "high", "log"}` or `{"name", "type":
"categorical", "choices"}`. An objective takes a dict of decoded values by name.

Sources of the test functions: Branin, Hartmann-3/6, Ackley, Levy, Rosenbrock and
Styblinski-Tang as defined in Surjanovic and Bingham's "Virtual Library of Simulation
Experiments" (sfu.ca/~ssurjano). `train6`/`train6b` are the project's own mixed spaces.
"""

import json
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

HARTMANN6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                        [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                               [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN3_A = np.array([[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]])
HARTMANN3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


@dataclass
class Problem:
    """One benchmark problem: its space, function, known minimum and "stuck" threshold."""
    name: str
    params: list
    f: Callable[[dict], float]
    optimum: float
    stuck_above: float
    judge: bool


def xs(p):
    """The values x0..x{d-1} of an assignment, in order."""
    out, i = [], 0
    while f"x{i}" in p:
        out.append(float(p[f"x{i}"]))
        i += 1
    return np.array(out)


def branin(p):
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def _hartmann(a, pm, x):
    return float(-np.sum(HARTMANN_ALPHA * np.exp(-np.sum(a * (x - pm) ** 2, axis=1))))


def hartmann6(p):
    return _hartmann(HARTMANN6_A, HARTMANN6_P, xs(p))


def hartmann3(p):
    return _hartmann(HARTMANN3_A, HARTMANN3_P, xs(p))


def ackley(p):
    x = xs(p)
    return float(-20 * math.exp(-0.2 * math.sqrt(np.mean(x * x))) - math.exp(np.mean(np.cos(2 * math.pi * x)))
                 + 20 + math.e)


def levy(p):
    w = 1 + (xs(p) - 1) / 4
    middle = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    last = w[-1]
    return float(math.sin(math.pi * w[0]) ** 2 + middle + (last - 1) ** 2 * (1 + math.sin(2 * math.pi * last) ** 2))


def rosenbrock(p):
    x = xs(p)
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def styblinski(p):
    x = xs(p)
    return float(0.5 * np.sum(x ** 4 - 16 * x ** 2 + 5 * x))


CHOICES = ["sgd", "adam", "rmsprop"]
TRAIN6 = dict(ustar=[-1.5, -3.3, -2.7], offset=[0.08, 0.0, 0.03], layers=4, width=256, batch=64, dropout=0.3)
TRAIN6B = dict(ustar=[-1.0, -3.8, -2.2], offset=[0.05, 0.02, 0.0], layers=3, width=128, batch=32, dropout=0.2)


def train(k, p):
    """The mixed "training run" function of docs/bo-problems.md with constants `k`."""
    o = CHOICES.index(p["optimizer"])
    u = math.log10(float(p["lr"]))
    layers, width, batch, dropout = float(p["layers"]), float(p["width"]), float(p["batch"]), float(p["dropout"])
    diverged = 0.5 if u > k["ustar"][o] + 1.5 else 0.0
    return (0.1 + k["offset"][o]
            + 0.04 * (u - k["ustar"][o] - 0.1 * math.log2(batch / k["batch"])) ** 2
            + 0.02 * (layers - k["layers"]) ** 2 / 9
            + 0.03 * (math.log2(width) - math.log2(k["width"])) ** 2 / 9
            + 0.05 * (dropout - k["dropout"] * math.log2(width) / math.log2(k["width"])) ** 2
            + 0.01 * (math.log2(batch) - math.log2(k["batch"])) ** 2 / 4
            + diverged)


def _float(name, low, high, log=False):
    return {"name": name, "type": "float", "low": low, "high": high, "log": log}


def _cube(d, low, high):
    return [_float(f"x{i}", low, high) for i in range(d)]


def _train_space():
    return [_float("lr", 1e-8, 1.0, log=True),
            {"name": "layers", "type": "int", "low": 1, "high": 8},
            {"name": "width", "type": "int", "low": 16, "high": 512},
            {"name": "batch", "type": "int", "low": 8, "high": 256},
            _float("dropout", 0.0, 0.9),
            {"name": "optimizer", "type": "categorical", "choices": list(CHOICES)}]


PROBLEMS = [
    Problem("branin", [_float("x1", -5.0, 10.0), _float("x2", 0.0, 15.0)], branin, 0.397887, 0.01, True),
    Problem("hartmann6", _cube(6, 0.0, 1.0), hartmann6, -3.32237, 0.05, True),
    Problem("ackley10", _cube(10, -5.0, 10.0), ackley, 0.0, 3.0, True),
    Problem("levy10", _cube(10, -10.0, 10.0), levy, 0.0, 5.0, True),
    Problem("rosenbrock6", _cube(6, -2.0, 2.0), rosenbrock, 0.0, 1.0, True),
    Problem("train6", _train_space(), lambda p: train(TRAIN6, p), 0.1, 0.02, True),
    Problem("hartmann3", _cube(3, 0.0, 1.0), hartmann3, -3.86278, 0.05, False),
    Problem("styblinski8", _cube(8, -5.0, 5.0), styblinski, -313.3293256, 20.0, False),
    Problem("rosenbrock4", _cube(4, -2.0, 2.0), rosenbrock, 0.0, 0.5, False),
    Problem("train6b", _train_space(), lambda p: train(TRAIN6B, p), 0.1, 0.02, False),
]
BY_NAME = {p.name: p for p in PROBLEMS}


def select(which):
    """`judge`, `tune`, `all` or a comma-separated list of names."""
    if which == "all":
        return list(PROBLEMS)
    if which in ("judge", "tune"):
        return [p for p in PROBLEMS if p.judge == (which == "judge")]
    names = which.split(",")
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown problem(s) {unknown}; known: {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def check_problems(lines, tolerance=1e-9):
    """Compares lines `NAME JSON VALUE` (from `regret --check`) with the Python functions.

    Returns (number of points checked, list of mismatch messages)."""
    failures, count = [], 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        name, rest = line.split(" ", 1)
        point_text, value_text = rest.rsplit(" ", 1)
        expected = float(value_text)
        if name not in BY_NAME:
            failures.append(f"{name}: no such problem in problems.py")
            continue
        point = json.loads(point_text)
        names = {s["name"] for s in BY_NAME[name].params}
        if set(point) != names:
            failures.append(f"{name}: the Rust point has params {sorted(point)}, problems.py {sorted(names)}")
            continue
        got = BY_NAME[name].f(point)
        count += 1
        rel = abs(got - expected) / max(abs(expected), 1e-300)
        if rel > tolerance and abs(got - expected) > 0:
            failures.append(f"{name} at {point_text}: Rust {expected!r}, Python {got!r} (relative {rel:.2e})")
    return count, failures
