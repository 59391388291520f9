//! In-process regret check (the quick version of `bench/bo/regret.py`, without Optuna):
//! Branin and Hartmann-6, 64 evaluations, batches of q, for BO and random search.
//!
//! `cargo run --release -p tuner --example regret -- [SEEDS] [Q] [bo|random|mc-qei] [branin|hartmann6]`

use tuner::space::{ParamKind, ParamSpec, Space};
use tuner::{BatchStrategy, Direction, Observation, Strategy, SuggestConfig, suggest};

mod common;
use common::hartmann6;

fn branin(x: &[f64]) -> f64 {
    let (x1, x2) = (x[0], x[1]);
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// An objective on decoded values.
type Objective = fn(&[f64]) -> f64;

fn float(name: &str, low: f64, high: f64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Float {
            low,
            high,
            log: false,
        },
        default: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seeds: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let q: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let method = args.get(3).cloned().unwrap_or_else(|| "bo".into());
    let function = args.get(4).cloned().unwrap_or_else(|| "branin".into());
    let (space, f, optimum): (Space, Objective, f64) = if function == "branin" {
        (
            Space::new(vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)])?,
            branin,
            0.397887,
        )
    } else {
        (
            Space::new((0..6).map(|i| float(&format!("x{i}"), 0.0, 1.0)).collect())?,
            hartmann6,
            -3.32237,
        )
    };
    let mut cfg = SuggestConfig::new(
        if method == "random" {
            Strategy::Random
        } else {
            Strategy::Bo
        },
        Direction::Minimize,
    );
    if method == "mc-qei" {
        cfg.batch = BatchStrategy::McQei;
    }
    let mut regrets = Vec::new();
    for seed in 0..seeds {
        let mut observations: Vec<Observation> = Vec::new();
        let mut call = 0u64;
        while observations.len() < 64 {
            let k = q.min(64 - observations.len());
            for c in suggest(&space, &observations, &[], k, &cfg, seed * 1000 + call)? {
                let x: Vec<f64> = space
                    .params()
                    .iter()
                    .map(|p| c.params[&p.name].as_f64().unwrap_or(0.0))
                    .collect();
                observations.push(Observation {
                    params: c.params,
                    value: f(&x),
                });
            }
            call += 1;
        }
        let best = observations
            .iter()
            .map(|o| o.value)
            .fold(f64::INFINITY, f64::min);
        println!(
            "{function} q={q} {method} seed {seed}: regret {:.3e}",
            best - optimum
        );
        regrets.push(best - optimum);
    }
    regrets.sort_by(f64::total_cmp);
    println!(
        "{function} q={q} {method}: median regret {:.3e}",
        regrets[regrets.len() / 2]
    );
    Ok(())
}
