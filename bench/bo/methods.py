"""The optimizers the benchmark compares, each as `run(problem, q, evals, seed) -> best value`.

- tunefleet-bo / tunefleet-random: `tunectl ask-tell` as a subprocess speaking JSON lines
  (`{"suggest": q}`, then `{"observe": [...]}` with the q results);
- optuna-gp: `GPSampler(seed)`, asked q trials before any is told;
- optuna-tpe: `TPESampler(seed, constant_liar=True)`, the same ask/tell batches;
- skopt-gp: `Optimizer(base_estimator="GP", random_state=seed)`, `ask(n_points=q, strategy="cl_min")`;
- hyperopt: `fmin(tpe.suggest, max_queue_len=q)`: at q > 1 hyperopt draws q points from the same
  model without fantasies (it has no liar), so its q = 8 is a weaker batch method by design.
Every method sees the same seed and parameter kinds (log float, int, categorical).
"""

import json
import math
import os
import subprocess
import tempfile


def run_tunefleet(tunectl, strategy, problem, q, evals, seed, extra=()):
    space = {"name": problem.name, "direction": "minimize", "params": problem.params}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(space, f)
        path = f.name
    cmd = [tunectl, "ask-tell", "--space", path, "--seed", str(seed), "--strategy", strategy, *extra]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def request(obj):
        proc.stdin.write(json.dumps(obj) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(cmd)} exited before replying to {obj}")
        return json.loads(line)

    best, done = math.inf, 0
    try:
        while done < evals:
            k = min(q, evals - done)
            reply = request({"suggest": k})
            if len(reply.get("suggestions", [])) != k:
                raise RuntimeError(f"tunectl replied {reply} to suggest {k}")
            results = []
            for s in reply["suggestions"]:
                value = problem.f(s["params"])
                best = min(best, value)
                results.append({"id": s["id"], "value": value})
            ok = request({"observe": results})
            if ok != {"ok": True}:
                raise RuntimeError(f"tunectl replied {ok} to observe")
            done += k
        proc.stdin.write('{"stop": true}\n')
        proc.stdin.flush()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        os.unlink(path)
    return best


def _optuna_dists(problem):
    import optuna.distributions as d
    out = {}
    for s in problem.params:
        if s["type"] == "float":
            out[s["name"]] = d.FloatDistribution(s["low"], s["high"], log=s.get("log", False))
        elif s["type"] == "int":
            out[s["name"]] = d.IntDistribution(s["low"], s["high"], log=s.get("log", False))
        else:
            out[s["name"]] = d.CategoricalDistribution(s["choices"])
    return out


def optuna_sampler(kind, seed):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def run_optuna(kind, problem, q, evals, seed):
    import optuna
    study = optuna.create_study(sampler=optuna_sampler(kind, seed), direction="minimize")
    dists = _optuna_dists(problem)
    best, done = math.inf, 0
    while done < evals:
        k = min(q, evals - done)
        trials = [study.ask(dists) for _ in range(k)]
        for t in trials:
            value = problem.f(t.params)
            best = min(best, value)
            study.tell(t, value)
        done += k
    return best


def run_skopt(problem, q, evals, seed):
    from skopt import Optimizer
    from skopt.space import Categorical, Integer, Real
    dims = []
    for s in problem.params:
        if s["type"] == "float":
            dims.append(Real(s["low"], s["high"], prior="log-uniform" if s.get("log") else "uniform", name=s["name"]))
        elif s["type"] == "int":
            dims.append(Integer(s["low"], s["high"], name=s["name"]))
        else:
            dims.append(Categorical(s["choices"], name=s["name"]))
    opt = Optimizer(dims, base_estimator="GP", random_state=seed)
    names = [s["name"] for s in problem.params]
    best, done = math.inf, 0
    while done < evals:
        k = min(q, evals - done)
        xs = opt.ask(n_points=k, strategy="cl_min") if k > 1 else [opt.ask()]
        ys = []
        for x in xs:
            value = problem.f({n: (v.item() if hasattr(v, "item") else v) for n, v in zip(names, x)})
            best = min(best, value)
            ys.append(value)
        opt.tell(xs, ys)
        done += k
    return best


def run_hyperopt(problem, q, evals, seed):
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe
    space = {}
    for s in problem.params:
        n = s["name"]
        if s["type"] == "float" and s.get("log"):
            space[n] = hp.loguniform(n, math.log(s["low"]), math.log(s["high"]))
        elif s["type"] == "float":
            space[n] = hp.uniform(n, s["low"], s["high"])
        elif s["type"] == "int":
            space[n] = hp.uniformint(n, s["low"], s["high"])
        else:
            space[n] = hp.choice(n, s["choices"])
    ints = {s["name"] for s in problem.params if s["type"] == "int"}

    def objective(p):
        p = {n: (int(round(v)) if n in ints else v) for n, v in p.items()}
        return {"loss": problem.f(p), "status": STATUS_OK}

    trials = Trials()
    fmin(objective, space, algo=tpe.suggest, max_evals=evals, trials=trials, max_queue_len=q,
         rstate=np.random.default_rng(seed), show_progressbar=False)
    return min(trials.losses())


METHODS = ["tunefleet-bo", "tunefleet-random", "optuna-gp", "optuna-tpe", "skopt-gp", "hyperopt"]


def run_method(method, problem, q, evals, seed, tunectl, extra=()):
    """Best value found by `method` in `evals` evaluations, in batches of q."""
    if method == "tunefleet-bo":
        return run_tunefleet(tunectl, "bo", problem, q, evals, seed, extra)
    if method == "tunefleet-random":
        return run_tunefleet(tunectl, "random", problem, q, evals, seed)
    if method == "optuna-gp":
        return run_optuna("gp", problem, q, evals, seed)
    if method == "optuna-tpe":
        return run_optuna("tpe", problem, q, evals, seed)
    if method == "skopt-gp":
        return run_skopt(problem, q, evals, seed)
    if method == "hyperopt":
        return run_hyperopt(problem, q, evals, seed)
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")


def versions():
    """The installed versions of the peer packages (None where one is missing)."""
    out = {}
    for mod in ["numpy", "optuna", "torch", "scipy", "sklearn", "skopt", "hyperopt"]:
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal
            out[mod] = None
    return out
