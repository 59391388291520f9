//! Suggestion latency (issue 2): with 200 observations of Hartmann-6 in 6-D (or
//! `TUNER_LATENCY_N`), observe one more result and suggest a batch of 8, timing the GP fit and
//! the proposal separately.
//!
//! Run on an idle machine: `cargo run --release -p tuner --example suggest_latency [REPEATS] [BATCH]`
//! (batches are q-LogEI, the default; set `TUNER_BATCH=cl-min` for the constant liar).
//! `TUNER_LATENCY_N=N` sets the number of observations (200 by default) and
//! `TUNER_MAX_MODEL_POINTS=M` [`SuggestConfig::max_model_points`].
//!
//! By default each repeat replaces the newest observation with a random point, so every repeat
//! fits `N + 1` observations. `TUNER_LATENCY_FOLLOW=1` runs a tuning loop instead: each repeat
//! observes the results of the previous repeat's suggestions, so the data grow by `BATCH` a
//! repeat and cluster where the tuner searches. Only this mode shows what a real loop pays once
//! a noise-free objective's fit pins the noise (random points never pin it; docs/BENCHMARKS.md
//! §2, 2026-12-07).
//!
//! As the coordinator does, each fit is warm-started from the previous round's hyperparameters
//! (the first from a fit of the points before the first result, timed apart): set
//! `TUNER_COLD=1` to time cold fits instead.

use std::time::Instant;

use tuner::space::Space;
use tuner::{BatchStrategy, Observation, SuggestConfig, fit, fit_warm, propose};

mod common;
use common::{env_number, hartmann6, hartmann6_observations};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let space = Space::unit_cube(6)?;
    let mut cfg = SuggestConfig::default();
    match std::env::var("TUNER_BATCH").as_deref() {
        Ok("cl-min") => cfg.batch = BatchStrategy::ClMin,
        Ok("mc-qei") | Err(_) => cfg.batch = BatchStrategy::McQei,
        Ok(other) => return Err(format!("TUNER_BATCH={other}: expected cl-min or mc-qei").into()),
    }
    let mut rng = tuner::rng::Rng::new(42);
    let n: usize = env_number("TUNER_LATENCY_N")?.unwrap_or(200);
    let mut observations = hartmann6_observations(&space, &mut rng, n + 1);
    if let Some(cap) = env_number("TUNER_MAX_MODEL_POINTS")? {
        cfg.max_model_points = cap;
    }
    let cold = std::env::var("TUNER_COLD").is_ok_and(|c| c == "1");
    let follow = std::env::var("TUNER_LATENCY_FOLLOW").is_ok_and(|c| c == "1");
    let mut warm = if cold {
        None
    } else {
        let start = Instant::now();
        let first = fit(&space, &observations[..n], &cfg, 1000)?.hyperparameters();
        println!(
            "first (cold) fit of {n} observations: {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
        first
    };
    let mut per_point_ms = Vec::with_capacity(repeats);
    for repeat in 0..repeats {
        if !follow {
            let extra = observations.pop().map(|o| vec![o]).unwrap_or_default();
            observations.truncate(n);
            observations.extend(extra);
        }
        let start = Instant::now();
        let model = fit_warm(&space, &observations, &cfg, repeat as u64, warm.as_deref())?;
        let fitted = Instant::now();
        if !cold {
            warm = model.hyperparameters();
        }
        let batch_points = propose(&model, &[], batch, &cfg, repeat as u64)?;
        let done = Instant::now();
        let total_ms = (done - start).as_secs_f64() * 1000.0;
        per_point_ms.push(total_ms / batch as f64);
        println!(
            "repeat {repeat}: {} fit {:.1} ms, propose {:.1} ms, {:.1} ms a point ({} points, {} observations)",
            if cold { "cold" } else { "warm" },
            (fitted - start).as_secs_f64() * 1000.0,
            (done - fitted).as_secs_f64() * 1000.0,
            total_ms / batch as f64,
            batch_points.len(),
            observations.len()
        );
        if follow {
            for point in batch_points {
                let value = hartmann6(&space.encode(&point.params)?);
                observations.push(Observation {
                    params: point.params,
                    value,
                });
            }
        } else {
            let x = rng.point(6);
            observations.push(Observation {
                params: space.decode(&x),
                value: hartmann6(&x),
            });
        }
    }
    per_point_ms.sort_by(f64::total_cmp);
    println!(
        "median {:.1} ms a point over {repeats} repeats",
        per_point_ms[repeats / 2]
    );
    Ok(())
}
