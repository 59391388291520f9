#!/usr/bin/env python3
"""Issue 13's benchmark: tunefleet against Optuna, scikit-optimize and hyperopt on the problems of
docs/bo-problems.md (bench/bo/problems.py), 64 evaluations, q = 1 and q = 8, the same seeds for all.

Per problem x q x method: median final regret (best value - optimum), interquartile range, the
fraction of runs stuck above the problem's threshold and the mean seconds a run; per problem and
q, whether tunefleet-bo's median is at most the best peer's, and its q = 8 / q = 1 median ratio.
Every finished run is appended to a JSON-lines file (`--raw`) as it ends; a later call with the
same file skips the runs already there, so a small run can be extended with more seeds.
See bench/bo/README.md for the commands.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# One BLAS/OpenMP thread a process: --jobs sets the parallelism (the peers would oversubscribe).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from methods import METHODS, OPTIONAL_METHODS, run_method, versions  # noqa: E402
from problems import BY_NAME, check_problems, select  # noqa: E402

PEERS = ["optuna-gp", "optuna-tpe", "skopt-gp", "hyperopt"]


def one_run(job):
    method, name, q, evals, seed, tunectl, extra = job
    problem = BY_NAME[name]
    start = time.time()
    best = run_method(method, problem, q, evals, seed, tunectl, extra)
    return {"method": method, "problem": name, "q": q, "seed": seed, "evals": evals,
            "regret": best - problem.optimum, "seconds": time.time() - start}


def summarize(results, problems, qs, methods):
    """Rows of statistics and per (problem, q) verdicts."""
    stats, verdicts = [], []
    for p in problems:
        for q in qs:
            medians = {}
            for m in methods:
                rows = [r for r in results if r["method"] == m and r["problem"] == p.name and r["q"] == q]
                if not rows:
                    continue
                reg = np.array([r["regret"] for r in rows])
                q25, q50, q75 = np.percentile(reg, [25, 50, 75])
                medians[m] = q50
                stats.append({"problem": p.name, "q": q, "method": m, "median": q50, "q25": q25, "q75": q75,
                              "stuck": float(np.mean(reg > p.stuck_above)), "runs": len(rows),
                              "seconds": float(np.mean([r["seconds"] for r in rows]))})
            peers = {m: v for m, v in medians.items() if m in PEERS}
            if "tunefleet-bo" in medians and peers:
                best_peer = min(peers, key=peers.get)
                # Compare on the seeds both ran (a peer cut short by --deadline-min has fewer).
                cell = [r for r in results if r["problem"] == p.name and r["q"] == q]
                peer_runs = {r["seed"]: r["regret"] for r in cell if r["method"] == best_peer}
                tf_runs = {r["seed"]: r["regret"] for r in cell if r["method"] == "tunefleet-bo"}
                common = sorted(set(peer_runs) & set(tf_runs))
                tf_common = float(np.median([tf_runs[s] for s in common])) if common else float("nan")
                peer_common = float(np.median([peer_runs[s] for s in common])) if common else float("nan")
                verdicts.append({"problem": p.name, "q": q, "tunefleet": medians["tunefleet-bo"],
                                 "best_peer": best_peer, "best_peer_median": peers[best_peer],
                                 "common_seeds": len(common), "tunefleet_common": tf_common,
                                 "peer_common": peer_common, "beats": bool(tf_common <= peer_common)})
    costs = batch_costs(stats, problems, methods)
    ratios = [{k: v for k, v in r.items() if k != "method"} for r in costs if r["method"] == "tunefleet-bo"]
    return stats, verdicts, ratios, costs


def batch_costs(stats, problems, methods):
    """Each method's q = 8 / q = 1 median ratio per problem (goal 2 judges tunefleet-bo's)."""
    out = []
    for p in problems:
        for m in methods:
            by_q = {s["q"]: s["median"] for s in stats if s["problem"] == p.name and s["method"] == m}
            if 1 in by_q and 8 in by_q:
                ratio = by_q[8] / by_q[1] if by_q[1] > 0 else float("inf")
                out.append({"method": m, "problem": p.name, "q1": by_q[1], "q8": by_q[8], "ratio": ratio,
                            "ok": bool(ratio <= 1.5)})
    return out


def markdown(stats, verdicts, ratios, costs, problems):
    thr = {p.name: p.stuck_above for p in problems}
    out = ["| problem | q | method | median regret | IQR (25%–75%) | stuck | runs | mean s/run |",
           "|---|---|---|---|---|---|---|---|"]
    for s in stats:
        out.append(f"| {s['problem']} | {s['q']} | {s['method']} | {s['median']:.3g} | {s['q25']:.3g} – {s['q75']:.3g} "
                   f"| {s['stuck']:.0%} (> {thr[s['problem']]:g}) | {s['runs']} | {s['seconds']:.1f} |")
    out += ["", "Goal 1: tunefleet-bo's median regret at most the best peer's.", "",
            "(best peer: lowest median over its own runs; the goal is judged on the seeds both ran)", "",
            "| problem | q | tunefleet-bo (all its runs) | best peer | its median | same seeds | tunefleet-bo on them "
            "| goal met |", "|---|---|---|---|---|---|---|---|"]
    out += [f"| {v['problem']} | {v['q']} | {v['tunefleet']:.3g} | {v['best_peer']} | {v['best_peer_median']:.3g} "
            f"| {v['common_seeds']} | {v['tunefleet_common']:.3g} | {'yes' if v['beats'] else 'no'} |" for v in verdicts]
    met = sum(v["beats"] for v in verdicts)
    out += ["", f"Met on {met} of {len(verdicts)} (problem, q) pairs.", "",
            "Goal 2: tunefleet-bo's q = 8 median at most 1.5x its q = 1 median.", "",
            "| problem | q = 1 median | q = 8 median | ratio | goal met |", "|---|---|---|---|---|"]
    out += [f"| {r['problem']} | {r['q1']:.3g} | {r['q8']:.3g} | {r['ratio']:.2f} | {'yes' if r['ok'] else 'no'} |"
            for r in ratios]
    if costs:
        out += ["", "The cost of batching, every method: q = 8 median / q = 1 median.", "",
                "| problem | method | q = 1 median | q = 8 median | ratio |", "|---|---|---|---|---|"]
        out += [f"| {r['problem']} | {r['method']} | {r['q1']:.3g} | {r['q8']:.3g} | {r['ratio']:.2f} |"
                for r in costs]
    return "\n".join(out)


def check_command(binary):
    lines = subprocess.run([binary, "--check"], capture_output=True, text=True, check=True).stdout.splitlines()
    count, failures = check_problems(lines)
    for f in failures:
        print("MISMATCH", f)
    names = {line.split(" ", 1)[0] for line in lines if line.strip()}
    missing = sorted(set(BY_NAME) - names)
    if missing:
        print("MISSING in the Rust check output:", missing)
    print(f"{count} points of {len(names)} problems checked against {binary}: "
          f"{'OK' if not failures and not missing and count else 'FAILED'}")
    return 0 if not failures and not missing and count else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tunectl", default="target/release/tunectl")
    ap.add_argument("--problems", default="judge", help="judge, tune, all or NAME,NAME")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--qs", default="1,8")
    ap.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1")
    ap.add_argument("--evals", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--batch", default=None, help="tunefleet --batch (cl-min, cl-mean, cl-max, mc-qei)")
    ap.add_argument("--deterministic", action="store_true",
                    help="tell tunefleet the objectives are noise-free (ask-tell --deterministic)")
    ap.add_argument("--raw", default=None, help="JSON lines of finished runs (appended; runs already there are skipped)")
    ap.add_argument("--out", default=None, help="prefix of the outputs: PREFIX.md and PREFIX.json")
    ap.add_argument("--deadline-min", type=float, default=None, help="start no new run after this many minutes")
    ap.add_argument("--check-problems", metavar="BIN", help="compare problems.py with `BIN --check` (the regret example)")
    ap.add_argument("--latency", action="store_true", help="time suggestions at n = 200 (6-D), optuna-gp vs tunefleet")
    ap.add_argument("--suggest-latency", default="target/release/examples/suggest_latency")
    args = ap.parse_args()
    if args.check_problems:
        sys.exit(check_command(args.check_problems))
    if args.latency:
        from latency import report
        binary = args.suggest_latency if os.path.exists(args.suggest_latency) else None
        report(args.tunectl, binary)
        return
    problems = select(args.problems)
    methods, qs = args.methods.split(","), [int(q) for q in args.qs.split(",")]
    for m in methods:
        if m not in METHODS + OPTIONAL_METHODS:
            sys.exit(f"unknown method {m!r}; known: {METHODS + OPTIONAL_METHODS}")
    extra = ["--batch", args.batch] if args.batch else []
    if args.deterministic:
        extra.append("--deterministic")
    # The budget lets the automatic initial design scale with it (at most a quarter).
    extra += ["--budget", str(args.evals)]
    results = []
    if args.raw and os.path.exists(args.raw):
        with open(args.raw) as f:
            results = [json.loads(line) for line in f if line.strip()]
    done = {(r["method"], r["problem"], r["q"], r["seed"], r["evals"]) for r in results}
    # Seed-major order: a run cut short still has every (problem, q, method) at the same seeds.
    jobs = [(m, p.name, q, args.evals, s, args.tunectl, extra) for s in range(args.seeds) for p in problems
            for q in qs for m in methods if (m, p.name, q, s, args.evals) not in done]
    started = time.time()
    raw = open(args.raw, "a") if args.raw else None
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        pending = list(jobs)
        running = []
        while pending or running:
            late = args.deadline_min is not None and time.time() - started > args.deadline_min * 60
            while pending and len(running) < args.jobs and not late:
                running.append(pool.submit(one_run, pending.pop(0)))
            if late:
                pending = []
            if not running:
                break
            r = running.pop(0).result()
            results.append(r)
            if raw:
                raw.write(json.dumps(r) + "\n")
                raw.flush()
            print(f"{r['method']:>16} {r['problem']:>11} q={r['q']} seed={r['seed']} regret={r['regret']:.3g} "
                  f"({r['seconds']:.1f} s)", file=sys.stderr, flush=True)
    results = [r for r in results if r["evals"] == args.evals and r["problem"] in {p.name for p in problems}
               and r["method"] in methods and r["q"] in qs]
    # Every method's seeds start at 0; a method cut short by --deadline-min has fewer (see "runs").
    complete = results
    stats, verdicts, ratios, costs = summarize(complete, problems, qs, methods)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "evals": args.evals, "seeds_asked": args.seeds, "tunectl": args.tunectl, "versions": versions(),
            "wall_seconds_this_call": round(time.time() - started)}
    header = (f"Simple regret after {args.evals} evaluations ({meta['date']}); seeds 0..runs-1 of each row "
              f"(the same seeds for every method); versions {meta['versions']}.\n\n")
    text = header + markdown(stats, verdicts, ratios, costs, problems)
    print(text)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump({"meta": meta, "stats": stats, "verdicts": verdicts, "ratios": ratios,
                       "batch_costs": costs, "runs": complete}, f, indent=1)


if __name__ == "__main__":
    main()
