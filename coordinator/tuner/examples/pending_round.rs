//! The cost of one BO round while many trials run: `N` results of Hartmann-6 (random points),
//! `P` pending points (random, running now), and a batch of `Q`, timed from the cold fit to the
//! last point. A fleet at the coordinator's largest parallelism has 10,000 trials pending.
//!
//! `cargo run --release -p tuner --example pending_round N P Q` (for example `1000 10000 16`,
//! the coordinator's largest round; docs/BENCHMARKS.md §2, "Large experiments").
//! `TUNER_MAX_MODEL_POINTS=M` sets [`SuggestConfig::max_model_points`].

use std::time::Instant;

use tuner::space::Space;
use tuner::{SuggestConfig, suggest};

mod common;
use common::{env_number, hartmann6_observations};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = std::env::args()
        .skip(1)
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    let [n, pending_count, q] = args[..] else {
        return Err("usage: pending_round N P Q (results, pending points, batch size)".into());
    };
    let space = Space::unit_cube(6)?;
    let mut rng = tuner::rng::Rng::new(42);
    let observations = hartmann6_observations(&space, &mut rng, n);
    let pending: Vec<_> = (0..pending_count)
        .map(|_| space.decode(&rng.point(6)))
        .collect();
    let mut cfg = SuggestConfig::default();
    if let Some(cap) = env_number("TUNER_MAX_MODEL_POINTS")? {
        cfg.max_model_points = cap;
    }
    let start = Instant::now();
    let batch = suggest(&space, &observations, &pending, q, &cfg, 7)?;
    println!(
        "{n} results, {pending_count} pending, q = {q}: {:.2} s, {} points",
        start.elapsed().as_secs_f64(),
        batch.len()
    );
    Ok(())
}
