"""The optimizers the benchmark compares, each as `run(problem, q, evals, seed) -> best value`.

- tunefleet-bo / tunefleet-random: `tunectl ask-tell` as a subprocess speaking JSON lines
  (`{"suggest": q}`, then `{"observe": [...]}` with the q results);
- optuna-gp: `GPSampler(seed)`, asked q trials before any is told;
- optuna-tpe: `TPESampler(seed, constant_liar=True)`, the same ask/tell batches;
- skopt-gp: `Optimizer(base_estimator="GP", random_state=seed)`, `ask(n_points=q, strategy="cl_min")`;
- hyperopt: `fmin(tpe.suggest, max_queue_len=q)`: at q > 1 hyperopt draws q points from the same
  model without fantasies (it has no liar), so its q = 8 is a weaker batch method by design;
- botorch-qlogei (a reference, not one of the issue's peers; `pip install botorch`): BoTorch's
  documented loop, `SingleTaskGP` (or `MixedSingleTaskGP` with categoricals) with its default
  priors, `qLogExpectedImprovement` optimized jointly over the q points (`optimize_acqf`, or
  `optimize_acqf_mixed_alternating` with integers or categoricals), after a scrambled Sobol'
  design of max(q, d + 1) points; botorch-qlogei-noiseless is the same with the noise fixed at
  1e-6 (`train_Yvar`), for noise-free objectives.
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


def _botorch_columns(problem):
    """Each parameter as a column of BoTorch's raw space: (low, high, kind, values)."""
    cols = []
    for s in problem.params:
        if s["type"] == "float" and s.get("log"):
            cols.append((math.log10(s["low"]), math.log10(s["high"]), "log", None))
        elif s["type"] == "float":
            cols.append((s["low"], s["high"], "float", None))
        elif s["type"] == "int":
            cols.append((s["low"], s["high"], "int", None))
        else:
            cols.append((0, len(s["choices"]) - 1, "cat", s["choices"]))
    return cols


def _botorch_decode(problem, cols, row):
    """The assignment a row of BoTorch's raw space stands for (clipped to the bounds)."""
    out = {}
    for s, (low, high, kind, choices), v in zip(problem.params, cols, row.tolist()):
        v = min(max(v, low), high)
        if kind == "log":
            out[s["name"]] = 10.0 ** v
        elif kind == "float":
            out[s["name"]] = v
        elif kind == "int":
            out[s["name"]] = int(round(v))
        else:
            out[s["name"]] = choices[int(round(v))]
    return out


def run_botorch(problem, q, evals, seed, noise=None):
    """BoTorch's documented q-LogEI loop (module docstring); `noise`: a fixed noise variance
    (standardized units) instead of the inferred one. Floats and log floats are optimized in
    their own (log10) scale, integers on their values, categoricals as indices."""
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from botorch.optim import optimize_acqf
    from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
    from gpytorch.mlls import ExactMarginalLogLikelihood
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cols = _botorch_columns(problem)
    d = len(cols)
    bounds = torch.tensor([[c[0] for c in cols], [c[1] for c in cols]], dtype=torch.double)
    cats = [i for i, c in enumerate(cols) if c[2] == "cat"]
    ints = {i: [float(v) for v in range(int(c[0]), int(c[1]) + 1)] for i, c in enumerate(cols) if c[2] == "int"}
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
    x = bounds[0] + (bounds[1] - bounds[0]) * sobol.draw(min(max(q, d + 1), evals)).double()
    for i in list(ints) + cats:
        x[:, i] = x[:, i].round()
    ys = [problem.f(_botorch_decode(problem, cols, row)) for row in x]
    while len(ys) < evals:
        k = min(q, evals - len(ys))
        y = -torch.tensor(ys, dtype=torch.double).unsqueeze(-1)
        norm = Normalize(d, bounds=bounds)
        yvar = None if noise is None else torch.full_like(y, noise)
        if cats:
            model = MixedSingleTaskGP(x, y, cat_dims=cats, train_Yvar=yvar, input_transform=norm)
        else:
            model = SingleTaskGP(x, y, train_Yvar=yvar, input_transform=norm)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acq = qLogExpectedImprovement(model, best_f=y.max())
        if cats or ints:
            new, _ = optimize_acqf_mixed_alternating(
                acq, bounds, discrete_dims=ints, cat_dims={i: [float(v) for v in range(int(cols[i][1]) + 1)] for i in cats},
                q=k, num_restarts=10, raw_samples=512)
        else:
            new, _ = optimize_acqf(acq, bounds, q=k, num_restarts=10, raw_samples=512)
        new = new.detach()
        ys.extend(problem.f(_botorch_decode(problem, cols, row)) for row in new)
        x = torch.cat([x, new])
    return min(ys[:evals])


METHODS = ["tunefleet-bo", "tunefleet-random", "optuna-gp", "optuna-tpe", "skopt-gp", "hyperopt"]
# References run only when named in --methods (slow on a small machine, and not the peers).
OPTIONAL_METHODS = ["botorch-qlogei", "botorch-qlogei-noiseless"]


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
    if method == "botorch-qlogei":
        return run_botorch(problem, q, evals, seed)
    if method == "botorch-qlogei-noiseless":
        return run_botorch(problem, q, evals, seed, noise=1e-6)
    raise ValueError(f"unknown method {method!r}; known: {METHODS + OPTIONAL_METHODS}")


def versions():
    """The installed versions of the peer packages (None where one is missing)."""
    out = {}
    for mod in ["numpy", "optuna", "torch", "scipy", "sklearn", "skopt", "hyperopt", "botorch"]:
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal
            out[mod] = None
    return out
