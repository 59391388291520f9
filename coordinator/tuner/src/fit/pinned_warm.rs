//! The warm fit of an experiment whose last fit pinned the noise at its floor.
//!
//! The general warm fit ([`super::fit_theta`]) maximizes over a free noise first and only then
//! tests the floor against it. Started from a pinned `θ`, that free fit has to climb the noise
//! from `10⁻⁸` back to where its prior holds it (about `e⁻⁷`): a trace of `tunectl ask-tell`
//! on Hartmann-6 past 200 results showed it gaining 75 to 80 nats a round without converging
//! in its 12 iterations, then the floor winning the test again and a pinned refit, 25 to 30
//! likelihood evaluations a round (docs/BENCHMARKS.md §2). Here the pinned fit runs first, from
//! the warm `θ`, and the data are then asked whether they now show noise: at the pinned kernel
//! hyperparameters, the floor's likelihood must still beat, by
//! [`super::NOISE_FREE_EVIDENCE_NATS`] or more, that of the noise which maximizes likelihood plus
//! noise prior over a grid of `ln σₙ²` (one Cholesky factorization each, no gradient), the rule
//! the general fit applies. If it does not, or on one seeded round in
//! [`NOISE_RETEST_ROUNDS`] (so that an early, mistaken pin is re-examined by the full test),
//! the general fit runs instead.

use crate::error::Result;
use crate::lbfgs::{LbfgsOptions, minimize};
use crate::lml::Likelihood;
use crate::rng::Rng;

use super::{
    LOG_NOISE, NOISE_FREE_EVIDENCE_NATS, bounds_noise_pinned, noise_log_prior, objective,
    warm_fit_options, warm_start,
};

/// One warm round in this many (chosen by the round's seed) runs the general fit even after a
/// pinned one.
pub(super) const NOISE_RETEST_ROUNDS: u64 = 8;

/// The improvement floor of the pinned fit (the general warm fit's is `10⁻⁴` nats). With the
/// noise at `10⁻⁸` the posterior's valley is narrow and curved, and an iteration that gains little
/// can precede ones that gain more: on the warm-fit tests' data, stopping at `10⁻⁴` left the fit
/// 0.014 nats short of the cold fit's, `10⁻⁵` 6·10⁻⁴, and `10⁻⁶` under `10⁻⁴` (at 9 to 14
/// likelihood evaluations a round past 200 Hartmann-6 results, against 7 to 11).
const PINNED_IMPROVEMENT_FLOOR: f64 = 1e-6;

/// Spacing of the grid of `ln σₙ²` the data are asked at (see [`noise_grid`]).
const NOISE_GRID_STEP: f64 = 2.0;
/// The lowest `ln σₙ²` of the grid above the floor. Lower noises are not searched: the noise
/// prior there is 24.5 nats or more below its mode (`ln σₙ² = −5`), so a free fit would end
/// below −12 only on data whose likelihood climbs that much further, which pin anyway; a grid
/// that stops at −12 only understates such a free fit, which keeps the pin.
const NOISE_GRID_LOW: f64 = -12.0;

/// What a pinned warm fit found.
#[derive(Debug, PartialEq)]
pub(super) enum PinnedWarm {
    /// The data still show no noise: the pinned `θ`.
    Kept(Vec<f64>),
    /// The general fit should run, from this `θ` (the pinned kernel hyperparameters with the
    /// grid's best noise, or the warm `θ` itself on a re-test round).
    Refit(Vec<f64>),
}

/// Whether `warm` (a previous fit's `θ` over `dim` inputs) has its noise at the floor.
pub(super) fn is_pinned(warm: &[f64], dim: usize) -> bool {
    warm.get(dim + 1)
        .is_some_and(|log_noise| *log_noise <= LOG_NOISE.0 + 1e-9)
}

/// The pinned warm fit of `likelihood` from `warm` (pinned, see [`is_pinned`]).
///
/// # Errors
/// `Error::InvalidConfig` when `warm` does not hold one finite value per hyperparameter.
pub(super) fn fit(
    likelihood: &mut Likelihood<'_>,
    dim: usize,
    warm: &[f64],
    seed: u64,
) -> Result<PinnedWarm> {
    if Rng::with_stream(seed, 3).below(NOISE_RETEST_ROUNDS as usize) == 0 {
        return Ok(PinnedWarm::Refit(warm.to_vec()));
    }
    let (lower, upper) = bounds_noise_pinned(dim);
    let start = warm_start(warm, &lower, &upper)?;
    let pinned = minimize(
        |theta, grad| objective(likelihood, theta, grad),
        &start,
        &lower,
        &upper,
        &LbfgsOptions {
            improvement_floor: PINNED_IMPROVEMENT_FLOOR,
            ..warm_fit_options()
        },
    );
    if !pinned.value.is_finite() {
        return Ok(PinnedWarm::Refit(warm.to_vec()));
    }
    let posterior = |log_noise: f64, lml: f64| lml + noise_log_prior(log_noise);
    let grid = noise_grid();
    let Ok(values) = likelihood.values_at_noises(&pinned.x[..=dim], &grid) else {
        return Ok(PinnedWarm::Refit(warm.to_vec()));
    };
    let Some(floor) = values[0] else {
        return Ok(PinnedWarm::Refit(warm.to_vec()));
    };
    // The free fit restricted to the noise: the grid's best likelihood plus noise prior, then
    // the vertex of the parabola through it and its neighbours.
    let scored: Vec<(f64, f64)> = grid
        .iter()
        .zip(&values)
        .skip(1)
        .filter_map(|(log_noise, value)| value.map(|v| (*log_noise, v)))
        .collect();
    let Some(best) = (0..scored.len()).max_by(|a, b| {
        posterior(scored[*a].0, scored[*a].1).total_cmp(&posterior(scored[*b].0, scored[*b].1))
    }) else {
        return Ok(PinnedWarm::Kept(pinned.x));
    };
    let mut free = scored[best];
    if let (Some(left), Some(right)) =
        (best.checked_sub(1).map(|i| scored[i]), scored.get(best + 1))
    {
        let points = [left, free, *right].map(|(t, v)| (t, posterior(t, v)));
        if let Some(vertex) = parabola_vertex(points) {
            let refined = likelihood
                .values_at_noises(&pinned.x[..=dim], &[vertex])
                .ok()
                .and_then(|v| v.first().copied().flatten());
            if let Some(value) =
                refined.filter(|v| posterior(vertex, *v) > posterior(free.0, free.1))
            {
                free = (vertex, value);
            }
        }
    }
    if floor >= free.1 + NOISE_FREE_EVIDENCE_NATS {
        return Ok(PinnedWarm::Kept(pinned.x));
    }
    let mut theta = pinned.x;
    theta[dim + 1] = free.0;
    Ok(PinnedWarm::Refit(theta))
}

/// The abscissa of the maximum of the parabola through three points with increasing
/// abscissae, when it has one strictly between the outer two.
fn parabola_vertex([(x0, y0), (x1, y1), (x2, y2)]: [(f64, f64); 3]) -> Option<f64> {
    // p(x) = y0 + s0 (x − x0) + a (x − x0)(x − x1), with divided differences s0 and a.
    let s0 = (y1 - y0) / (x1 - x0);
    let s1 = (y2 - y1) / (x2 - x1);
    let a = (s1 - s0) / (x2 - x0);
    if a.is_nan() || a >= 0.0 {
        return None;
    }
    let vertex = 0.5 * (x0 + x1) - s0 / (2.0 * a);
    (vertex > x0 && vertex < x2).then_some(vertex)
}

/// `ln σₙ²` at the floor, then from [`NOISE_GRID_LOW`] to the upper bound every
/// [`NOISE_GRID_STEP`].
fn noise_grid() -> Vec<f64> {
    let mut grid = vec![LOG_NOISE.0];
    let mut next = NOISE_GRID_LOW;
    while next <= LOG_NOISE.1 {
        grid.push(next);
        next += NOISE_GRID_STEP;
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::tests::{data, theta_of, warm_fit};
    use crate::fit::{FULL_FIT_MAX_POINTS, fit_gp};
    use crate::gp::{standardization, standardize};

    /// Seeds whose round does (`true`) or does not run the full re-test.
    fn seed_with_retest(retest: bool) -> u64 {
        (0..)
            .find(|s| (Rng::with_stream(*s, 3).below(NOISE_RETEST_ROUNDS as usize) == 0) == retest)
            .expect("a seed")
    }

    /// The targets as a noise-free fit sees them: centred on the worst value.
    fn targets(y: &[f64]) -> Vec<f64> {
        let (_, std) = standardization(y);
        let worst = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        y.iter().map(|v| standardize(*v, worst, std)).collect()
    }

    /// The negative log posterior at `theta` of the targets a noise-free fit sees.
    fn cost(x: &[Vec<f64>], y: &[f64], theta: &[f64]) -> f64 {
        let ys = targets(y);
        let mut likelihood = Likelihood::new(x, &ys);
        objective(&mut likelihood, theta, &mut vec![0.0; theta.len()])
    }

    #[test]
    fn chained_pinned_warm_fits_stay_pinned_at_the_cold_fits_log_posterior() {
        let rounds = 4;
        let (x, y) = data(FULL_FIT_MAX_POINTS + 10 + rounds, 6, 13);
        let first = x.len() - rounds;
        let mut theta = theta_of(&fit_gp(&x[..first], &y[..first], 4, 1).expect("fits"));
        assert!(
            is_pinned(&theta, 6),
            "smooth noise-free data pin the noise: {theta:?}"
        );
        let seed = seed_with_retest(false);
        for n in first + 1..=x.len() {
            let ys = targets(&y[..n]);
            let mut likelihood = Likelihood::new(&x[..n], &ys);
            let PinnedWarm::Kept(kept) = fit(&mut likelihood, 6, &theta, seed).expect("fits")
            else {
                panic!("n = {n}: the data show no noise, the pin stays");
            };
            theta = theta_of(&warm_fit(&x[..n], &y[..n], 4, seed, &theta).expect("fits"));
            assert_eq!(kept, theta, "fit_gp_opts takes the pinned warm path");
            let cold = theta_of(&fit_gp(&x[..n], &y[..n], 4, 2).expect("fits"));
            let (warm_cost, cold_cost) = (
                cost(&x[..n], &y[..n], &theta),
                cost(&x[..n], &y[..n], &cold),
            );
            assert!(
                warm_cost <= cold_cost + 1e-3,
                "n = {n}: warm −log posterior {warm_cost} vs cold {cold_cost}"
            );
        }
    }

    #[test]
    fn noisy_results_unpin_a_pinned_warm_start() {
        let (x, mut y) = data(FULL_FIT_MAX_POINTS + 20, 4, 17);
        let mut noise = Rng::new(5);
        y.iter_mut().for_each(|v| *v += 0.3 * noise.normal());
        let mut theta = theta_of(&fit_gp(&x, &y, 4, 1).expect("fits"));
        assert!(
            !is_pinned(&theta, 4),
            "noisy data keep a fitted noise: {theta:?}"
        );
        theta[5] = LOG_NOISE.0;
        let seed = seed_with_retest(false);
        let mut likelihood = Likelihood::new(&x, &y);
        let PinnedWarm::Refit(start) = fit(&mut likelihood, 4, &theta, seed).expect("fits") else {
            panic!("noise of sd 0.3 must show");
        };
        assert!(
            start[5] > -8.0,
            "the grid's noise starts the general fit: {start:?}"
        );
        let refit = theta_of(&warm_fit(&x, &y, 4, seed, &theta).expect("fits"));
        assert!(refit[5] > -5.0, "a fitted noise again: {refit:?}");
    }

    #[test]
    fn a_retest_round_runs_the_general_fit_from_the_warm_start() {
        let (x, y) = data(FULL_FIT_MAX_POINTS + 5, 3, 3);
        let theta = [-1.0, -0.5, -0.7, 0.1, LOG_NOISE.0];
        let mut likelihood = Likelihood::new(&x, &y);
        let outcome = fit(&mut likelihood, 3, &theta, seed_with_retest(true)).expect("fits");
        assert_eq!(outcome, PinnedWarm::Refit(theta.to_vec()));
    }

    #[test]
    fn the_grid_starts_at_the_floor_and_ends_at_the_bound() {
        let grid = noise_grid();
        assert_eq!(grid[..2], [LOG_NOISE.0, NOISE_GRID_LOW]);
        assert_eq!(*grid.last().expect("values"), LOG_NOISE.1);
        assert!(
            grid[1..]
                .windows(2)
                .all(|w| w[1] > w[0] && w[1] - w[0] <= NOISE_GRID_STEP)
        );
    }

    #[test]
    fn the_parabolas_vertex_is_its_maximum_between_the_outer_points() {
        let f = |x: f64| -(x - 1.3) * (x - 1.3) + 2.0;
        let vertex = parabola_vertex([0.0, 1.0, 3.0].map(|x| (x, f(x)))).expect("concave");
        assert!((vertex - 1.3).abs() < 1e-12, "{vertex}");
        // A convex or straight triple has no maximum inside.
        assert_eq!(parabola_vertex([(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)]), None);
        assert_eq!(parabola_vertex([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]), None);
        assert_eq!(
            parabola_vertex([(0.0, f64::NAN), (1.0, 1.0), (2.0, 2.0)]),
            None
        );
    }

    #[test]
    fn only_a_noise_at_the_floor_is_pinned() {
        let mut theta = vec![0.1, -0.2, 0.0, LOG_NOISE.0];
        assert!(is_pinned(&theta, 2));
        theta[3] = -12.0;
        assert!(!is_pinned(&theta, 2));
        assert!(!is_pinned(&theta[..3], 2), "too short");
    }
}
