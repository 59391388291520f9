//! Fits the GP hyperparameters by maximizing the log marginal likelihood plus weak log-priors
//! over `θ = (ln ℓ₁, …, ln ℓ_d, ln σ², ln σₙ²)`.
//!
//! With `K = L Lᵀ`, `α = K⁻¹ỹ` and `W = ααᵀ − K⁻¹`, the gradient is
//! `∂ log p(ỹ | θ) / ∂θⱼ = ½ tr(W ∂K/∂θⱼ)` (Rasmussen and Williams 2006, eq. 5.9), with
//! `∂K/∂ln σₙ² = σₙ² I`. Priors (densities evaluated at the parameter, as BoTorch does):
//! each length-scale `ℓ ~ Gamma(3, 6)` (`2 ln ℓ − 6ℓ`, the prior of BoTorch's `SingleTaskGP`
//! before 2024, mode ⅓ of the unit cube), `ln σ² ~ N(0, 1.5²)` (the targets are standardized) and
//! no prior on the noise beyond its bounds. The noise is bounded below by `10⁻⁶` (in units of the
//! data's variance), which keeps the Cholesky stable on noise-free objectives.
//!
//! The maximization is multi-start L-BFGS-B ([`crate::lbfgs`]) in log space: a fixed start
//! (`ℓ = 0.3`, `σ² = 1`, `σₙ² = 10⁻³`) plus a seeded Latin hypercube of starts in a box of
//! plausible values. Above `FULL_FIT_MAX_POINTS` points, where an evaluation costs
//! milliseconds, every start gets `SCREEN_ITERATIONS` iterations and only the best of them
//! (when it has not converged yet) continues, up to `MAX_ITERATIONS` in all: this about halves
//! the evaluations of a fit, and with that many points the likelihood is peaked enough that the
//! starts reach the same basin. Smaller fits run every start to the end. A start whose
//! Cholesky fails scores `+∞` and is skipped. Each evaluation costs one Cholesky and one
//! inverse (the private `lml` module).

use faer::Mat;

use crate::error::{Error, Result};
use crate::gp::{Gp, factor, standardization};
use crate::kernel::{Kernel, Matern52};
use crate::lbfgs::{LbfgsOptions, Minimum, minimize};
use crate::lml::Likelihood;
use crate::rng::Rng;

/// L-BFGS iterations every start gets on more than [`FULL_FIT_MAX_POINTS`] points; then only
/// the best start continues.
const SCREEN_ITERATIONS: usize = 10;
/// Up to this many points every start runs to the end (a fit is cheap there, and the
/// likelihood of few points is flatter and more often multimodal).
const FULL_FIT_MAX_POINTS: usize = 100;
/// L-BFGS iterations of the best start in all.
const MAX_ITERATIONS: usize = 60;

/// Bounds of `ln ℓ`.
const LOG_LENGTH_SCALE: (f64, f64) = (-4.605_170_185_988_091, 2.995_732_273_553_991); // ln 0.01, ln 20
/// Bounds of `ln σ²`.
const LOG_SIGNAL: (f64, f64) = (-4.605_170_185_988_091, 4.605_170_185_988_091); // ln 0.01, ln 100
/// Bounds of `ln σₙ²`.
const LOG_NOISE: (f64, f64) = (-13.815_510_557_964_274, 0.0); // ln 1e-6, ln 1

/// The box of hyperparameters (log space) for `dim` inputs: `(lower, upper)`.
pub fn bounds(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut lower = vec![LOG_LENGTH_SCALE.0; dim];
    let mut upper = vec![LOG_LENGTH_SCALE.1; dim];
    lower.extend([LOG_SIGNAL.0, LOG_NOISE.0]);
    upper.extend([LOG_SIGNAL.1, LOG_NOISE.1]);
    (lower, upper)
}

/// The log-prior of `θ` and its gradient (added to `grad`).
fn log_prior(theta: &[f64], grad: &mut [f64]) -> f64 {
    let d = theta.len() - 2;
    let mut value = 0.0;
    for i in 0..d {
        value += 2.0 * theta[i] - 6.0 * theta[i].exp();
        grad[i] += 2.0 - 6.0 * theta[i].exp();
    }
    let s = theta[d];
    value += -0.5 * s * s / 2.25;
    grad[d] += -s / 2.25;
    value
}

/// The log marginal likelihood of standardized targets `y` at `θ` and its gradient (a direct
/// reference implementation; the fit uses the faster `crate::lml::Likelihood`).
///
/// # Errors
/// When `K` cannot be factored (see [`crate::gp::factor`]).
pub fn log_marginal_likelihood(
    x: &[Vec<f64>],
    y: &[f64],
    theta: &[f64],
    grad: &mut [f64],
) -> Result<f64> {
    let n = x.len();
    let d = theta.len() - 2;
    let mut kernel = Matern52::new(d, 1.0, 1.0);
    kernel.set_params(&theta[..=d]);
    let noise = theta[d + 1].exp();
    let (l_chol, _) = factor(&kernel, noise, x)?;
    let mut l_inv = Mat::<f64>::identity(n, n);
    l_chol.solve_lower_triangular_in_place(l_inv.as_mut());
    let k_inv: Mat<f64> = l_inv.transpose() * &l_inv;
    let alpha: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| k_inv[(i, j)] * y[j]).sum())
        .collect();
    let fit: f64 = alpha.iter().zip(y).map(|(a, b)| a * b).sum();
    let log_det: f64 = (0..n).map(|i| l_chol[(i, i)].ln()).sum();
    let value = -0.5 * fit - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    grad.fill(0.0);
    let mut k_grad = vec![0.0; d + 1];
    for i in 0..n {
        for j in 0..=i {
            let w = alpha[i] * alpha[j] - k_inv[(i, j)];
            kernel.value_and_param_grad(&x[i], &x[j], &mut k_grad);
            let weight = if i == j { 0.5 * w } else { w };
            for (g, kg) in grad.iter_mut().zip(&k_grad) {
                *g += weight * kg;
            }
        }
        grad[d + 1] += 0.5 * (alpha[i] * alpha[i] - k_inv[(i, i)]) * noise;
    }
    if !value.is_finite() || grad.iter().any(|g| !g.is_finite()) {
        return Err(Error::Numerical(
            "log marginal likelihood is not finite".into(),
        ));
    }
    Ok(value)
}

/// The negative log posterior (to minimize); `+∞` where the Cholesky fails.
fn objective(likelihood: &mut Likelihood<'_>, theta: &[f64], grad: &mut [f64]) -> f64 {
    match likelihood.evaluate(theta, grad) {
        Ok(lml) => {
            let prior = log_prior(theta, grad);
            grad.iter_mut().for_each(|g| *g = -*g);
            -(lml + prior)
        }
        Err(_) => f64::INFINITY,
    }
}

/// The starting points: a fixed default plus `restarts − 1` Latin-hypercube points.
fn starts(dim: usize, restarts: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut default = vec![0.3f64.ln(); dim];
    default.extend([0.0, 1e-3f64.ln()]);
    let mut all = vec![default];
    let box_lower: Vec<f64> = std::iter::repeat_n(0.05f64.ln(), dim)
        .chain([0.2f64.ln(), 1e-6f64.ln()])
        .collect();
    let box_upper: Vec<f64> = std::iter::repeat_n(2f64.ln(), dim)
        .chain([5f64.ln(), 0.1f64.ln()])
        .collect();
    for u in rng.latin_hypercube(restarts.saturating_sub(1), dim + 2) {
        all.push(
            u.iter()
                .enumerate()
                .map(|(i, v)| box_lower[i] + v * (box_upper[i] - box_lower[i]))
                .collect(),
        );
    }
    all
}

/// Fits the hyperparameters to `(x, y)` and returns the conditioned GP.
///
/// # Errors
/// `Error::NotPositiveDefinite` when no start could be factored.
pub fn fit_gp(x: &[Vec<f64>], y: &[f64], restarts: usize, seed: u64) -> Result<Gp> {
    fit_gp_with_categories(x, y, &[], restarts, seed)
}

/// As [`fit_gp`], with the overlap kernel in the categorical dimensions: `categories[k]` is
/// the number of choices of dimension `k`, 0 when numeric (see
/// [`Matern52::with_categories`]).
///
/// # Errors
/// As [`fit_gp`].
pub fn fit_gp_with_categories(
    x: &[Vec<f64>],
    y: &[f64],
    categories: &[usize],
    restarts: usize,
    seed: u64,
) -> Result<Gp> {
    let dim = x.first().map_or(0, Vec::len);
    let (mean, std) = standardization(y);
    let ys: Vec<f64> = y.iter().map(|v| (v - mean) / std).collect();
    let (lower, upper) = bounds(dim);
    let mut rng = Rng::with_stream(seed, 2);
    let screen = if x.len() > FULL_FIT_MAX_POINTS {
        SCREEN_ITERATIONS
    } else {
        MAX_ITERATIONS
    };
    let options = LbfgsOptions {
        max_iterations: screen,
        gradient_tolerance: 1e-5,
        value_tolerance: 1e-9,
        memory: 8,
    };
    let mut likelihood = Likelihood::with_categories(x, &ys, categories);
    let mut best: Option<Minimum> = None;
    for start in starts(dim, restarts.max(1), &mut rng) {
        let found = minimize(
            |theta, grad| objective(&mut likelihood, theta, grad),
            &start,
            &lower,
            &upper,
            &options,
        );
        if found.value.is_finite() && best.as_ref().is_none_or(|b| found.value < b.value) {
            best = Some(found);
        }
    }
    if let Some(screened) = best
        .as_mut()
        .filter(|b| screen < MAX_ITERATIONS && !b.converged)
    {
        let refined = minimize(
            |theta, grad| objective(&mut likelihood, theta, grad),
            &screened.x,
            &lower,
            &upper,
            &LbfgsOptions {
                max_iterations: MAX_ITERATIONS - screen,
                ..options
            },
        );
        if refined.value <= screened.value {
            *screened = refined;
        }
    }
    let Some(Minimum { x: theta, .. }) = best else {
        return Err(Error::NotPositiveDefinite {
            n: x.len(),
            max_jitter: crate::gp::MAX_RELATIVE_JITTER,
        });
    };
    let mut kernel = Matern52::new(dim, 1.0, 1.0).with_categories(categories);
    kernel.set_params(&theta[..=dim]);
    Gp::with_standardization(kernel, theta[dim + 1].exp(), x.to_vec(), y, mean, std)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
        let step = 1e-5;
        for j in 0..5 {
            let (mut plus, mut minus) = (theta, theta);
            plus[j] += step;
            minus[j] -= step;
            let fp = log_marginal_likelihood(&x, &y, &plus, &mut scratch).expect("factors");
            let fm = log_marginal_likelihood(&x, &y, &minus, &mut scratch).expect("factors");
            let numeric = (fp - fm) / (2.0 * step);
            let scale = 1f64.max(numeric.abs()).max(grad[j].abs());
            assert!(
                (numeric - grad[j]).abs() / scale < 1e-6,
                "θ{j}: numeric {numeric} analytic {}",
                grad[j]
            );
        }
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
        let full = LbfgsOptions {
            max_iterations: MAX_ITERATIONS,
            gradient_tolerance: 1e-5,
            value_tolerance: 1e-9,
            memory: 8,
        };
        let mut likelihood = Likelihood::new(&x, &y);
        let best_full = starts(3, 4, &mut Rng::with_stream(3, 2))
            .iter()
            .map(|s| {
                let f = |t: &[f64], g: &mut [f64]| objective(&mut likelihood, t, g);
                minimize(f, s, &lower, &upper, &full).value
            })
            .fold(f64::INFINITY, f64::min);
        let gp = fit_gp(&x, &y, 4, 3).expect("fits");
        let mut theta = gp.kernel().params();
        theta.push(gp.noise_variance().ln());
        let screened = objective(&mut likelihood, &theta, &mut [0.0; 5]);
        assert!(
            screened <= best_full + 1e-3 * best_full.abs().max(1.0),
            "screened {screened} vs full {best_full}"
        );
    }

    #[test]
    fn fit_is_deterministic_for_a_seed() {
        let (x, y) = data(12, 2, 6);
        let a = fit_gp(&x, &y, 3, 9).expect("fits");
        let b = fit_gp(&x, &y, 3, 9).expect("fits");
        assert_eq!(a.kernel().params(), b.kernel().params());
    }
}
