//! The fit's tests: likelihood gradients, warm and cold fits, the noise and mean choices, and
//! determinism for a seed.

use super::*;
use crate::gradcheck::GradCheck;

/// `n` Latin-hypercube points in `d` dimensions of a smooth test function, standardized.
pub(crate) fn data(n: usize, d: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let x = rng.latin_hypercube(n, d);
    let y: Vec<f64> = x
        .iter()
        .map(|p| (4.0 * p[0]).sin() + p.iter().map(|v| v * v).sum::<f64>())
        .collect();
    let (mean, std) = standardization(&y);
    (x, y.iter().map(|v| (v - mean) / std).collect())
}

#[test]
fn likelihood_gradient_matches_finite_differences() {
    let (x, y) = data(14, 3, 4);
    let theta = [-1.1, -0.4, 0.3, 0.2, -4.0];
    let mut grad = vec![0.0; 5];
    log_marginal_likelihood(&x, &y, &theta, &mut grad).expect("factors");
    let mut scratch = vec![0.0; 5];
    GradCheck::SMOOTH.assert(
        |t| log_marginal_likelihood(&x, &y, t, &mut scratch).expect("factors"),
        &theta,
        &grad,
        "log marginal likelihood in θ",
    );
}

#[test]
fn fit_improves_on_the_default_start() {
    let (x, y) = data(25, 2, 5);
    let gp = fit_gp(&x, &y, 3, 1).expect("fits");
    let default = Gp::new(Matern52::new(2, 0.3, 1.0), 1e-3, x.clone(), &y).expect("factors");
    assert!(gp.log_marginal_likelihood() >= default.log_marginal_likelihood() - 1e-6);
    assert!(
        gp.noise_variance() < 1e-2,
        "noise-free data gets small noise: {}",
        gp.noise_variance()
    );
}

#[test]
fn screening_matches_running_every_start_to_the_end() {
    let (x, y) = data(FULL_FIT_MAX_POINTS + 20, 3, 7);
    let (lower, upper) = bounds(3);
    let full = fit_options(MAX_ITERATIONS);
    let mut likelihood = Likelihood::new(&x, &y);
    let best_full = starts(3, 4, &mut Rng::with_stream(3, 2))
        .iter()
        .map(|s| {
            let f = |t: &[f64], g: &mut [f64]| objective(&mut likelihood, t, g);
            minimize(f, s, &lower, &upper, &full).value
        })
        .fold(f64::INFINITY, f64::min);
    let (found, _) = map_estimate(&mut likelihood, 3, 4, 3, &FitOptions::default()).expect("fits");
    let screened = found.value;
    assert!(
        screened <= best_full + 1e-3 * best_full.abs().max(1.0),
        "screened {screened} vs full {best_full}"
    );
}

/// A fit warm-started from `theta`.
pub(crate) fn warm_fit(
    x: &[Vec<f64>],
    y: &[f64],
    restarts: usize,
    seed: u64,
    theta: &[f64],
) -> Result<Gp> {
    let options = FitOptions {
        warm: Some(theta),
        ..FitOptions::default()
    };
    fit_gp_opts(x, y, restarts, seed, &options)
}

/// `θ` of a fitted GP (what [`crate::Model::hyperparameters`] returns).
pub(crate) fn theta_of(gp: &Gp) -> Vec<f64> {
    let mut theta = gp.kernel().params();
    theta.push(gp.noise_variance().ln());
    theta
}

#[test]
fn a_warm_fit_reaches_at_least_the_cold_fits_log_posterior() {
    for (d, seed) in [(3, 11), (6, 12)] {
        let (x, y) = data(FULL_FIT_MAX_POINTS + 30, d, seed);
        let n = x.len();
        let previous = fit_gp(&x[..n - 1], &y[..n - 1], 4, 1).expect("fits");
        let cold = fit_gp(&x, &y, 4, 2).expect("fits");
        let warm = warm_fit(&x, &y, 4, 2, &theta_of(&previous)).expect("fits");
        let mut likelihood = Likelihood::new(&x, &y);
        let mut grad = vec![0.0; d + 2];
        let cold_value = objective(&mut likelihood, &theta_of(&cold), &mut grad);
        let warm_value = objective(&mut likelihood, &theta_of(&warm), &mut grad);
        assert!(
            warm_value <= cold_value + 1e-4,
            "d = {d}: warm −log posterior {warm_value} vs cold {cold_value}"
        );
    }
}

/// Round after round, each warm fit starting where the last one stopped (as the
/// coordinator's rounds do), the warm fits' early stop ([`warm_fit_options`]) leaves them
/// within a thousandth of a nat of a cold fit.
#[test]
fn chained_warm_fits_stay_at_the_cold_fits_log_posterior() {
    let rounds = 4;
    let (x, y) = data(FULL_FIT_MAX_POINTS + 10 + rounds, 6, 13);
    let first = x.len() - rounds;
    let mut theta = theta_of(&fit_gp(&x[..first], &y[..first], 4, 1).expect("fits"));
    for n in first + 1..=x.len() {
        let warm = warm_fit(&x[..n], &y[..n], 4, 2, &theta).expect("fits");
        theta = theta_of(&warm);
        let cold = theta_of(&fit_gp(&x[..n], &y[..n], 4, 2).expect("fits"));
        let mut likelihood = Likelihood::new(&x[..n], &y[..n]);
        let mut grad = vec![0.0; 8];
        let warm_value = objective(&mut likelihood, &theta, &mut grad);
        let cold_value = objective(&mut likelihood, &cold, &mut grad);
        assert!(
            warm_value <= cold_value + 1e-3,
            "n = {n}: warm −log posterior {warm_value} vs cold {cold_value}"
        );
    }
}

#[test]
fn a_warm_start_of_the_wrong_shape_is_an_error_and_one_out_of_bounds_is_clamped() {
    let (x, y) = data(12, 2, 6);
    let error = warm_fit(&x, &y, 2, 1, &[0.1, 0.2]).expect_err("3 values short");
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    let error = warm_fit(&x, &y, 2, 1, &[0.1, f64::NAN, 0.0, -3.0]).expect_err("not finite");
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    let gp = warm_fit(&x, &y, 2, 1, &[40.0, -40.0, 0.0, -3.0]).expect("clamped");
    let (lower, upper) = bounds(2);
    let theta = theta_of(&gp);
    assert!(
        theta
            .iter()
            .zip(lower.iter().zip(&upper))
            .all(|(t, (lo, hi))| *lo - 1e-12 <= *t && *t <= *hi + 1e-12),
        "{theta:?}"
    );
}

#[test]
fn prior_gradient_matches_finite_differences() {
    let theta = [-1.1, 0.4, 0.3, -2.5];
    let mut grad = vec![0.0; 4];
    log_prior(&theta, &mut grad);
    let mut scratch = vec![0.0; 4];
    let check = GradCheck {
        step: 1e-6,
        ..GradCheck::SMOOTH
    };
    check.assert(
        |t| log_prior(t, &mut scratch),
        &theta,
        &grad,
        "log prior in θ",
    );
    // The noise prior's density in σₙ² peaks at exp(μ − s²).
    let mut at_mode = [0.0, 0.0, NOISE_PRIOR.0 - NOISE_PRIOR.1 * NOISE_PRIOR.1];
    let mut g = vec![0.0; 3];
    log_prior(&at_mode, &mut g);
    assert!(g[2].abs() < 1e-12, "{g:?}");
    at_mode[2] -= 1.0;
    log_prior(&at_mode, &mut g);
    assert!(g[2] > 0.0, "smaller noise is pushed up: {g:?}");
}

#[test]
fn the_data_decide_whether_the_noise_is_fitted_or_pinned() {
    // Smooth noise-free values: the floor explains them better, so the noise is pinned.
    for (n, d, seed) in [(30, 2, 1), (40, 3, 2), (60, 4, 3)] {
        let (x, y) = data(n, d, seed);
        let gp = fit_gp(&x, &y, 3, 1).expect("fits");
        assert!(
            (gp.noise_variance() - NOISE_FLOOR).abs() < 1e-9,
            "{n} points, {d}-D: {}",
            gp.noise_variance()
        );
    }
    // Twelve of them do not show it yet: the prior's noise stays.
    let (x, y) = data(12, 2, 1);
    let gp = fit_gp(&x, &y, 3, 1).expect("fits");
    assert!(gp.noise_variance() > 1e-3, "{}", gp.noise_variance());
    // The same values with noise of a tenth of their spread keep a fitted noise.
    let (x, mut y) = data(40, 3, 2);
    let mut rng = Rng::new(7);
    y.iter_mut().for_each(|v| *v += 0.3 * rng.normal());
    let gp = fit_gp(&x, &y, 3, 1).expect("fits");
    assert!(gp.noise_variance() > 1e-3, "{}", gp.noise_variance());
}

#[test]
fn the_prior_mean_is_the_worst_value_unless_the_values_are_noisy() {
    let worst = |y: &[f64]| y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Noise-free values: the worst one is the prior mean, so far from the data the
    // model expects it.
    let (x, y) = data(40, 3, 2);
    let gp = fit_gp(&x, &y, 3, 1).expect("fits");
    assert_eq!(gp.standardization().0, worst(&y));
    // Noisy values: their mean.
    let (x, mut y) = data(40, 3, 2);
    let mut rng = Rng::new(7);
    y.iter_mut().for_each(|v| *v += 0.3 * rng.normal());
    let gp = fit_gp(&x, &y, 3, 1).expect("fits");
    assert!(gp.noise_variance() > WORST_MEAN_MAX_NOISE);
    assert_eq!(gp.standardization().0, standardization(&y).0);
    // Declared deterministic: the worst value, whatever the values look like.
    let opts = FitOptions {
        deterministic: true,
        ..FitOptions::default()
    };
    let gp = fit_gp_opts(&x, &y, 3, 1, &opts).expect("fits");
    assert_eq!(gp.standardization().0, worst(&y));
}

#[test]
fn a_deterministic_fit_resolves_a_fine_optimum() {
    // A 2-D bowl whose values span about 0.5, sampled coarsely, plus a cluster within 0.01
    // of its minimum, where the values differ by less than 1e-4: the noise floor must be
    // small enough that the GP's mean still follows them to the minimum.
    let centre = [0.371, 0.629];
    let f = |p: &[f64]| (p[0] - centre[0]).powi(2) + 2.0 * (p[1] - centre[1]).powi(2);
    let mut rng = Rng::new(5);
    let mut x = rng.latin_hypercube(24, 2);
    for _ in 0..12 {
        x.push(
            centre
                .iter()
                .map(|c| c + 0.01 * (2.0 * rng.uniform() - 1.0))
                .collect(),
        );
    }
    let y: Vec<f64> = x.iter().map(|p| f(p)).collect();
    let opts = FitOptions {
        deterministic: true,
        ..FitOptions::default()
    };
    let gp = fit_gp_opts(&x, &y, 3, 1, &opts).expect("fits");
    let mut best = (f64::INFINITY, vec![0.0; 2]);
    for i in 0..=200 {
        for j in 0..=200 {
            let p = vec![
                centre[0] - 0.01 + 0.02 * f64::from(i) / 200.0,
                centre[1] - 0.01 + 0.02 * f64::from(j) / 200.0,
            ];
            let mean = gp.predict_standardized(&p).0;
            if mean < best.0 {
                best = (mean, p);
            }
        }
    }
    let regret = f(&best.1);
    assert!(
        regret < 1e-7,
        "the mean's minimum at {:?} has regret {regret:e}",
        best.1
    );
}

#[test]
fn deterministic_pins_the_noise_at_its_floor() {
    // Noisy data get a fitted noise well above the floor; pinned, they get the floor.
    let (x, mut y) = data(40, 3, 8);
    let mut rng = Rng::new(3);
    y.iter_mut().for_each(|v| *v += 0.3 * rng.normal());
    let free = fit_gp(&x, &y, 3, 1).expect("fits");
    assert!(
        free.noise_variance() > 1e3 * NOISE_FLOOR,
        "{}",
        free.noise_variance()
    );
    let pinned = fit_gp_opts(
        &x,
        &y,
        3,
        1,
        &FitOptions {
            deterministic: true,
            ..FitOptions::default()
        },
    )
    .expect("fits");
    assert!((pinned.noise_variance() - NOISE_FLOOR).abs() < 1e-12 * NOISE_FLOOR);
}

#[test]
fn fit_is_deterministic_for_a_seed() {
    let (x, y) = data(12, 2, 6);
    let a = fit_gp(&x, &y, 3, 9).expect("fits");
    let b = fit_gp(&x, &y, 3, 9).expect("fits");
    assert_eq!(a.kernel().params(), b.kernel().params());
}
