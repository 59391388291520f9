//! BO in ten dimensions on a smooth bowl whose minimum is inside the box: once the results show
//! where the good values are, the proposals refine that region instead of chasing the prior's
//! variance into the corners of the box, where a constant prior mean at the values' average
//! made expected improvement look best (issue 13: with that mean about a quarter of Levy-10's
//! evaluations had six or more coordinates at a bound).

use tuner::rng::Rng;
use tuner::space::{ParamKind, ParamSpec, Space, Value};
use tuner::{Direction, Observation, Strategy, SuggestConfig, fit, propose};

const DIM: usize = 10;

fn space() -> Space {
    let params = (0..DIM)
        .map(|i| ParamSpec {
            name: format!("x{i}"),
            kind: ParamKind::Float {
                low: -10.0,
                high: 10.0,
                log: false,
            },
            default: None,
        })
        .collect();
    Space::new(params).expect("valid space")
}

/// The coordinates of an assignment, in parameter order.
fn coordinates(params: &tuner::space::Assignment) -> Vec<f64> {
    (0..DIM)
        .map(|i| params[&format!("x{i}")].as_f64().expect("a float"))
        .collect()
}

/// A bowl with its minimum at 1 in every coordinate and a ripple on top (Levy-like).
fn bowl(x: &[f64]) -> f64 {
    x.iter()
        .map(|v| (v - 1.0).powi(2) * (1.0 + (v * 0.8).sin().powi(2)))
        .sum()
}

#[test]
fn proposals_refine_the_basin_instead_of_the_corners() {
    let space = space();
    let cfg = SuggestConfig {
        initial_trials: 11,
        ..SuggestConfig::new(Strategy::Bo, Direction::Minimize)
    };
    for seed in 0..3u64 {
        let mut rng = Rng::new(seed);
        // Forty results, most of them near the minimum, as a run that found it has.
        let observations: Vec<Observation> = (0..40)
            .map(|k| {
                let spread = if k < 10 { 10.0 } else { 3.0 };
                let x: Vec<f64> = (0..DIM)
                    .map(|_| (1.0 + spread * (2.0 * rng.uniform() - 1.0)).clamp(-10.0, 10.0))
                    .collect();
                let params = (0..DIM)
                    .map(|i| (format!("x{i}"), Value::Float(x[i])))
                    .collect();
                Observation {
                    params,
                    value: bowl(&x),
                }
            })
            .collect();
        let model = fit(&space, &observations, &cfg, seed).expect("fits");
        let batch = propose(&model, &[], 8, &cfg, seed).expect("proposes");
        for candidate in &batch {
            let x = coordinates(&candidate.params);
            let at_bound = x.iter().filter(|v| v.abs() > 9.99).count();
            assert!(
                at_bound < DIM / 2,
                "seed {seed}: {at_bound} of {DIM} coordinates at a bound: {x:?}"
            );
        }
        let best_seen = observations
            .iter()
            .map(|o| o.value)
            .fold(f64::INFINITY, f64::min);
        let mean_proposed = batch
            .iter()
            .map(|c| bowl(&coordinates(&c.params)))
            .sum::<f64>()
            / batch.len() as f64;
        // The batch explores near the basin: its average is within a few times the best result,
        // far below a corner's value (about 1,000).
        assert!(
            mean_proposed < 5.0 * best_seen,
            "seed {seed}: proposals average {mean_proposed}, best seen {best_seen}"
        );
    }
}
