//! In-process regret check (the quick version of `bench/bo/regret.py`, without the peers): the
//! problems of `common/problems.rs` (issue 13's judge and tune sets), 64 evaluations in batches
//! of q, for BO and random search. Prints each run's regret, then the median, interquartile range
//! and the fraction of runs stuck above the problem's threshold.
//!
//! `cargo run --release -p tuner --example regret -- [SEEDS] [Q] [bo|bo-mixed|random|mc-qei|cl-min] [PROBLEM|judge|tune|all] [EVALS]`
//! (`bo-mixed` is BO with [`SuggestConfig::mixed_search`]).
//! `cargo run --release -p tuner --example regret -- --check` prints every problem's value at
//! fixed points (to compare with `bench/bo/problems.py`).
//!
//! Each round fits with the previous round's hyperparameters as a warm start, as the
//! coordinator does (`TUNER_COLD=1`: cold fits, as before issue 13).
//!
//! A noisy variant: with `REGRET_NOISE=SD` in the environment each observation is the problem's
//! value plus Gaussian noise of standard deviation `SD` (seeded per run), and the regret is that
//! of the best noise-free value among the points evaluated. `REGRET_DETERMINISTIC=1` sets
//! [`SuggestConfig::deterministic`], and `REGRET_INITIAL=N` the initial design's size
//! ([`SuggestConfig::initial_trials`]; 0 or unset: automatic), `REGRET_REFINE_STARTS=N` the
//! acquisition starts refined by L-BFGS ([`SuggestConfig::refine_starts`]) and
//! `REGRET_MAX_MODEL_POINTS=N` the most results the GP is fitted to
//! ([`SuggestConfig::max_model_points`]); `REGRET_SAMPLE_CHOICES=0` turns off
//! [`SuggestConfig::sample_choices`].
//!
//! `REGRET_TRACE=1` prints a `TRACE` line to stderr after every round: the evaluations so far,
//! the best regret, the fitted noise variance (standardized; `NaN` during the design), the
//! regret of each point of the round's batch in the order proposed, and the fitted length-scales.

use tuner::rng::Rng;
use tuner::space::Space;
use tuner::{BatchStrategy, Direction, Observation, Strategy, SuggestConfig, fit_warm, propose};

mod common;
use common::env_number;
#[path = "common/problems.rs"]
mod problems;

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--check") {
        for problem in problems::all() {
            for point in problems::check_points(&problem) {
                println!(
                    "{} {} {:.12e}",
                    problem.name,
                    serde_json::to_string(&point)?,
                    (problem.f)(&point)
                );
            }
        }
        return Ok(());
    }
    let seeds: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let q: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let method = args.get(3).cloned().unwrap_or_else(|| "bo".into());
    let which = args.get(4).cloned().unwrap_or_else(|| "branin".into());
    let evals: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let chosen: Vec<problems::Problem> = problems::all()
        .into_iter()
        .filter(|p| match which.as_str() {
            "all" => true,
            "judge" => p.judge,
            "tune" => !p.judge,
            name => p.name == name,
        })
        .collect();
    if chosen.is_empty() {
        return Err(format!("no problem named '{which}' (see common/problems.rs)").into());
    }
    let mut cfg = SuggestConfig::new(
        if method == "random" {
            Strategy::Random
        } else {
            Strategy::Bo
        },
        Direction::Minimize,
    );
    match method.as_str() {
        "mc-qei" => cfg.batch = BatchStrategy::McQei,
        "cl-min" => cfg.batch = BatchStrategy::ClMin,
        _ => {}
    }
    let trace = std::env::var("REGRET_TRACE").is_ok_and(|v| v == "1");
    let cold = std::env::var("TUNER_COLD").is_ok_and(|c| c == "1");
    let noise_sd: f64 = env_number("REGRET_NOISE")?.unwrap_or(0.0);
    cfg.deterministic = std::env::var("REGRET_DETERMINISTIC").is_ok_and(|v| v == "1");
    cfg.mixed_search = method == "bo-mixed";
    cfg.sample_choices = env_number::<u8>("REGRET_SAMPLE_CHOICES")?.unwrap_or(1) != 0;
    cfg.initial_trials = env_number("REGRET_INITIAL")?.unwrap_or(0);
    if let Some(starts) = env_number("REGRET_REFINE_STARTS")? {
        cfg.refine_starts = starts;
    }
    if let Some(cap) = env_number("REGRET_MAX_MODEL_POINTS")? {
        cfg.max_model_points = cap;
    }
    for problem in chosen {
        let space = Space::new(problem.params.clone())?;
        let mut regrets = Vec::new();
        let started = std::time::Instant::now();
        for seed in 0..seeds {
            let mut observations: Vec<Observation> = Vec::new();
            let mut noise = Rng::with_stream(seed, 77);
            let mut best = f64::INFINITY;
            let mut call = 0u64;
            let mut warm: Option<Vec<f64>> = None;
            while observations.len() < evals {
                let k = q.min(evals - observations.len());
                let call_seed = seed * 1000 + call;
                let model = fit_warm(&space, &observations, &cfg, call_seed, warm.as_deref())?;
                if !cold {
                    warm = model.hyperparameters().or(warm);
                }
                let mut batch_regrets = Vec::new();
                for c in propose(&model, &[], k, &cfg, call_seed)? {
                    let value = (problem.f)(&c.params);
                    batch_regrets.push(value - problem.optimum);
                    best = best.min(value);
                    observations.push(Observation {
                        params: c.params,
                        value: value + noise_sd * noise.normal(),
                    });
                }
                call += 1;
                if trace {
                    let batch: Vec<String> =
                        batch_regrets.iter().map(|r| format!("{r:.1e}")).collect();
                    let scales: Vec<String> = tuner::length_scales(&model)
                        .unwrap_or_default()
                        .iter()
                        .map(|(_, l)| format!("{l:.2}"))
                        .collect();
                    eprintln!(
                        "TRACE {} q={q} seed {seed} evals {} regret {:.3e} noise {:.1e} batch [{}] length-scales [{}]",
                        problem.name,
                        observations.len(),
                        best - problem.optimum,
                        model.gp().map_or(f64::NAN, |g| g.noise_variance()),
                        batch.join(" "),
                        scales.join(" "),
                    );
                }
            }
            println!(
                "{} q={q} {method} seed {seed}: regret {:.3e}",
                problem.name,
                best - problem.optimum
            );
            regrets.push(best - problem.optimum);
        }
        regrets.sort_by(f64::total_cmp);
        let stuck = regrets.iter().filter(|r| **r > problem.stuck_above).count();
        println!(
            "SUMMARY {} q={q} {method}: median {:.3e} IQR {:.3e} - {:.3e} stuck {}/{} (> {}) {:.1} s/run",
            problem.name,
            quantile(&regrets, 0.5),
            quantile(&regrets, 0.25),
            quantile(&regrets, 0.75),
            stuck,
            regrets.len(),
            problem.stuck_above,
            started.elapsed().as_secs_f64() / seeds as f64
        );
    }
    Ok(())
}
