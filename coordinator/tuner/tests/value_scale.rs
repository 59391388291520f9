//! Objective values of any finite size: BO standardizes and warps the values, so multiplying
//! every value by a power of two must not change a single suggestion, even where the values'
//! squares or differences would overflow an `f64` (values near `10³⁰⁰`, or spanning
//! `±1.7·10³⁰⁸`) or vanish (values near `10⁻³⁰⁰`). Before the standardization was made
//! overflow-safe such values failed every BO fit ("kernel matrix is not positive definite"):
//! `tunectl ask-tell` answered with that error, and the coordinator fell back to random search
//! for the round; tiny values were modelled as a constant.

use tuner::rng::Rng;
use tuner::space::{Assignment, ParamKind, ParamSpec, Space};
use tuner::{BatchStrategy, Direction, Observation, SuggestConfig, suggest};

/// A float, a wider float and a log-scaled float.
fn space() -> Space {
    let float = |name: &str, low: f64, high: f64, log: bool| ParamSpec {
        name: name.into(),
        kind: ParamKind::Float { low, high, log },
        default: None,
    };
    Space::new(vec![
        float("rate", 1e-3, 1.0, true),
        float("x", 0.0, 1.0, false),
        float("y", -2.0, 2.0, false),
    ])
    .expect("valid space")
}

/// A smooth objective with values in about `[−1, 1]`, both signs.
fn objective(x: &[f64]) -> f64 {
    (3.0 * x[0]).sin() * (2.0 * x[1] - 1.0) + (x[2] - 0.4).powi(2) - 0.3
}

/// Twenty observations of `objective`, every value multiplied by `scale`.
fn observations(space: &Space, scale: f64) -> Vec<Observation> {
    let mut rng = Rng::new(17);
    (0..20)
        .map(|_| {
            let x = rng.point(3);
            Observation {
                params: space.decode(&x),
                value: objective(&x) * scale,
            }
        })
        .collect()
}

fn proposals(scale: f64, cfg: &SuggestConfig) -> Vec<Assignment> {
    let space = space();
    suggest(&space, &observations(&space, scale), &[], 3, cfg, 5)
        .unwrap_or_else(|e| panic!("values scaled by {scale:e}: {e}"))
        .into_iter()
        .map(|c| c.params)
        .collect()
}

#[test]
fn a_power_of_two_scale_of_the_values_changes_no_suggestion() {
    // 2^1020 puts the largest values near 1.1e307 (differences near f64::MAX); 2^-1000 near
    // 1e-301 (squares underflow to zero).
    let scales = [2f64.powi(1020), 2f64.powi(990), 2f64.powi(-1000)];
    for direction in [Direction::Minimize, Direction::Maximize] {
        for batch in [
            BatchStrategy::McQei,
            BatchStrategy::ClMin,
            BatchStrategy::ClMean,
        ] {
            let cfg = SuggestConfig {
                direction,
                batch,
                ..SuggestConfig::default()
            };
            let plain = proposals(1.0, &cfg);
            assert_eq!(plain.len(), 3);
            for scale in scales {
                assert_eq!(
                    proposals(scale, &cfg),
                    plain,
                    "{direction:?}, {batch:?}: values scaled by {scale:e}"
                );
            }
        }
    }
}

#[test]
fn values_spanning_the_whole_f64_range_still_get_suggestions() {
    let space = space();
    let mut observations = observations(&space, 1.0);
    // One value at each end of the range: their difference is not an f64.
    observations[0].value = 1.7e308;
    observations[1].value = -1.7e308;
    let suggested = suggest(&space, &observations, &[], 4, &SuggestConfig::default(), 9)
        .expect("suggests despite values at both ends of the range");
    assert_eq!(suggested.len(), 4);
}
