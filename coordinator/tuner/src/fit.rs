//! Fits the GP hyperparameters by maximizing the log marginal likelihood plus weak log-priors
//! over `θ = (ln ℓ₁, …, ln ℓ_d, ln σ², ln σₙ²)`.
//!
//! With `K = L Lᵀ`, `α = K⁻¹ỹ` and `W = ααᵀ − K⁻¹`, the gradient is
//! `∂ log p(ỹ | θ) / ∂θⱼ = ½ tr(W ∂K/∂θⱼ)` (Rasmussen and Williams 2006, eq. 5.9), with
//! `∂K/∂ln σₙ² = σₙ² I`. Priors (densities evaluated at the parameter, as BoTorch does):
//! each length-scale `ℓ ~ Gamma(3, 6)` (`2 ln ℓ − 6ℓ`, the prior of BoTorch's `SingleTaskGP`
//! before 2024, mode ⅓ of the unit cube), `ln σ² ~ N(0, 1.5²)` (the targets are standardized) and
//! a log-normal prior on the noise variance, `ln σₙ² ~ N(−4, 1)` (the likelihood prior of
//! BoTorch's `SingleTaskGP` since version 0.12, `get_gaussian_likelihood_with_lognormal_prior`;
//! its density in `σₙ²` peaks at `e⁻⁵ ≈ 0.007`), which keeps a few noisy points from being
//! interpolated exactly. The noise is bounded below by its floor `10⁻⁸` (in units of the
//! data's variance), which keeps the Cholesky stable on noise-free objectives while letting the
//! GP resolve differences of about `10⁻⁴` of the values' spread near an optimum (with the floor
//! at `10⁻⁶` the q = 1 medians of the noise-free problems that converge were 1.3 to 7 times
//! higher, BENCHMARKS §2); a deterministic objective pins it there
//! ([`FitOptions::deterministic`]), which the prior would otherwise keep from fine optima.
//! Otherwise the data decide: when the floor
//! gives at least `NOISE_FREE_EVIDENCE_NATS` (2) more log marginal likelihood than the fitted
//! noise at the same kernel hyperparameters, the noise is pinned and the kernel refitted
//! (`choose_noise`), so a noise-free objective gets the pinned fit once its results show it
//! (typically after 20 to 40 of them) without being told, and noisy results, which never show
//! it, keep the fitted noise. BoTorch's older
//! `Gamma(1.1, 0.05)` (better without noise, worse with it), its floor of `10⁻⁴`, the
//! dimension-scaled length-scale prior of Hvarfner, Hellsten and Nardi (ICML 2024) and Optuna's
//! length-scale prior (mode `ℓ = 1`) were tried and lost on the tune set (`docs/BENCHMARKS.md` §2).
//!
//! The targets are centred on the GP's constant prior mean: the worst result when the noise is
//! small or pinned, the results' mean otherwise ([`fit_gp_opts`]).
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
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gp::{Gp, factor, gaussian_log_likelihood, standardization, standardize};
use crate::kernel::{Kernel, Matern52};
use crate::lbfgs::{LbfgsOptions, Minimum, minimize};
use crate::lml::Likelihood;
use crate::rng::Rng;

mod pinned_warm;
use pinned_warm::PinnedWarm;

/// L-BFGS iterations every start gets on more than [`FULL_FIT_MAX_POINTS`] points; then only
/// the best start continues.
const SCREEN_ITERATIONS: usize = 10;
/// Up to this many points every start runs to the end (a fit is cheap there, and the
/// likelihood of few points is flatter and more often multimodal).
pub(crate) const FULL_FIT_MAX_POINTS: usize = 100;
/// L-BFGS iterations of the best start in all.
const MAX_ITERATIONS: usize = 60;

/// L-BFGS iterations of a warm start on more than [`FULL_FIT_MAX_POINTS`] points: from the
/// previous round's optimum (one point fewer) that reaches the cold fit's log posterior to
/// 10⁻⁴ nats on the tests' data (before the noise prior 4 fell short by 5·10⁻⁴ and 6 by
/// 5·10⁻⁵; with it 8 fell short by 5·10⁻⁴ and 10 by 3·10⁻⁴), and each round
/// continues where the last stopped.
const WARM_ITERATIONS: usize = 12;

/// Bounds of `ln ℓ`.
const LOG_LENGTH_SCALE: (f64, f64) = (-4.605_170_185_988_091, 2.995_732_273_553_991); // ln 0.01, ln 20
/// Bounds of `ln σ²`.
const LOG_SIGNAL: (f64, f64) = (-4.605_170_185_988_091, 4.605_170_185_988_091); // ln 0.01, ln 100
/// The smallest noise variance (standardized units), where [`FitOptions::deterministic`] pins it for a
/// deterministic objective.
pub const NOISE_FLOOR: f64 = 1e-8;
/// Bounds of `ln σₙ²`.
const LOG_NOISE: (f64, f64) = (-18.420_680_743_952_367, 0.0); // ln 1e-8, ln 1
/// Location and scale of the log-normal prior on the noise variance `σₙ²` (standardized units):
/// `ln σₙ² ~ N(−4, 1)`, BoTorch's default likelihood prior since 2024.
const NOISE_PRIOR: (f64, f64) = (-4.0, 1.0);

/// The box of hyperparameters (log space) for `dim` inputs: `(lower, upper)`.
pub fn bounds(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut lower = vec![LOG_LENGTH_SCALE.0; dim];
    let mut upper = vec![LOG_LENGTH_SCALE.1; dim];
    lower.extend([LOG_SIGNAL.0, LOG_NOISE.0]);
    upper.extend([LOG_SIGNAL.1, LOG_NOISE.1]);
    (lower, upper)
}

/// The box of [`bounds`] with the noise pinned at [`NOISE_FLOOR`].
fn bounds_noise_pinned(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut lower, mut upper) = bounds(dim);
    lower[dim + 1] = NOISE_FLOOR.ln();
    upper[dim + 1] = NOISE_FLOOR.ln();
    (lower, upper)
}

/// The L-BFGS settings of every fit, with at most `max_iterations` iterations.
fn fit_options(max_iterations: usize) -> LbfgsOptions {
    LbfgsOptions {
        max_iterations,
        gradient_tolerance: 1e-5,
        value_tolerance: 1e-9,
        memory: 8,
        ..LbfgsOptions::default()
    }
}

/// An L-BFGS iteration of a warm fit that gains less than this many nats of log posterior ends
/// it: the warm start is the last round's optimum, so the fit is a few steps from its own, and
/// what is left would not move the GP's predictions (in three traced warm fits of 201
/// Hartmann-6 points, the iterations after the first such one gained under `5·10⁻⁶` nats in
/// all; docs/BENCHMARKS.md §2).
const WARM_IMPROVEMENT_FLOOR: f64 = 1e-4;
/// The first step of a warm fit moves no log-hyperparameter by more than this: the warm start
/// is near the optimum, and the default first move of 1 (a factor `e`) was cut back four or five
/// times, one likelihood evaluation each.
const WARM_FIRST_STEP: f64 = 1.0 / 16.0;

/// The L-BFGS settings of a warm-only fit ([`FitOptions::warm`] above
/// [`FULL_FIT_MAX_POINTS`] points).
fn warm_fit_options() -> LbfgsOptions {
    LbfgsOptions {
        improvement_floor: WARM_IMPROVEMENT_FLOOR,
        first_step: WARM_FIRST_STEP,
        ..fit_options(WARM_ITERATIONS)
    }
}

/// Nats of evidence (log marginal likelihood plus the length-scale and signal priors) by which
/// the noise pinned at [`NOISE_FLOOR`] must beat the fitted noise, at the same kernel
/// hyperparameters, to replace it. Positive: without evidence either way (a few dozen noisy
/// results, as a study's validation accuracies give) the prior's fitted noise stays.
const NOISE_FREE_EVIDENCE_NATS: f64 = 2.0;

/// Noise variance (standardized) up to which the GP's constant prior mean is the worst value
/// observed rather than the values' mean: `e⁻⁵`, the mode of the noise prior, so a fit whose
/// data have not pushed the noise above where the prior puts it (or pinned it at the floor). See
/// [`fit_gp_opts`].
pub const WORST_MEAN_MAX_NOISE: f64 = 6.737_946_999_085_467e-3; // e⁻⁵

/// The noise prior's log density at `ln σₙ²` (the part of [`log_prior`] that pinning removes).
fn noise_log_prior(log_noise: f64) -> f64 {
    let z = log_noise - NOISE_PRIOR.0;
    -log_noise - 0.5 * z * z / (NOISE_PRIOR.1 * NOISE_PRIOR.1)
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
    let noise = theta[d + 1];
    let z = noise - NOISE_PRIOR.0;
    let scale2 = NOISE_PRIOR.1 * NOISE_PRIOR.1;
    value += -noise - 0.5 * z * z / scale2;
    grad[d + 1] += -1.0 - z / scale2;
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
    let value = gaussian_log_likelihood(fit, log_det, n);
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

/// A warm start checked against the box `[lower, upper]` and clamped into it.
fn warm_start(warm: &[f64], lower: &[f64], upper: &[f64]) -> Result<Vec<f64>> {
    if warm.len() != lower.len() || warm.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidConfig(format!(
            "warm-start hyperparameters must be {} finite values, got {:?}",
            lower.len(),
            warm
        )));
    }
    Ok(warm
        .iter()
        .zip(lower.iter().zip(upper))
        .map(|(v, (lo, hi))| v.clamp(*lo, *hi))
        .collect())
}

/// Fits the hyperparameters to `(x, y)` and returns the conditioned GP.
///
/// # Errors
/// `Error::NotPositiveDefinite` when no start could be factored.
pub fn fit_gp(x: &[Vec<f64>], y: &[f64], restarts: usize, seed: u64) -> Result<Gp> {
    fit_gp_opts(x, y, restarts, seed, &FitOptions::default())
}

/// The options of [`fit_gp_opts`]; `Default` is a cold fit of a fitted noise over numeric
/// dimensions ([`fit_gp`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FitOptions<'a> {
    /// A previous fit's `θ` (e.g. [`crate::Model::hyperparameters`]) as the first start,
    /// clamped into the box. Above 100 points the warm start is the only one and gets up to 12
    /// L-BFGS iterations, a short first step and an early stop once an iteration gains under
    /// `10⁻⁴` nats (one new point barely moves the optimum, so a few iterations replace
    /// screening every cold start; a warm start that cannot be factored falls back to the cold
    /// fit); below, the cold starts run too, so the fit is never worse than a cold one there.
    /// A warm `θ` whose noise was pinned is refitted pinned first, and the general fit runs
    /// only if the data now show noise (or on one seeded round in eight; the private
    /// `pinned_warm` module).
    pub warm: Option<&'a [f64]>,
    /// Pin the noise variance at its floor ([`NOISE_FLOOR`], standardized units) instead of
    /// fitting it, for noise-free objectives.
    pub deterministic: bool,
    /// The overlap kernel in the categorical dimensions: `categories[k]` is the number of
    /// choices of dimension `k`, 0 when numeric (see [`Matern52::with_categories`]); empty: all
    /// numeric.
    pub categories: &'a [usize],
    /// Past it, every likelihood evaluation fails, so each L-BFGS run stops at its next step
    /// ([`crate::SuggestConfig::deadline`]; the caller reports the deadline).
    pub deadline: Option<std::time::Instant>,
}

/// Fits the hyperparameters to `(x, y)` with [`FitOptions`] and returns the conditioned GP.
///
/// The GP's constant prior mean is the worst value observed (the largest `y`) when the noise is
/// pinned or fitted at most [`WORST_MEAN_MAX_NOISE`]; otherwise the fit is repeated with the
/// values' mean (warm from [`FitOptions::warm`], else from the first fit). De Ath, Fieldsend and
/// Everson ("What do you mean? The role of the mean function in Bayesian optimisation", GECCO
/// 2020) found the worst-value mean the best constant in five and more dimensions: far from the
/// data the model expects bad values, so EI stops chasing the prior's variance into the corners
/// of the box (with the mean it sent about a quarter of Levy-10's evaluations to points with six
/// or more coordinates at a bound) and refines the basins the data show. With noisy values it
/// over-exploits (a noisy observation is shrunk towards the mean, so an isolated good result
/// counts for less than a cluster of them), hence the noise condition (`docs/BENCHMARKS.md` §2).
///
/// # Errors
/// `Error::InvalidConfig` when `opts.warm` does not hold one finite value per hyperparameter;
/// `Error::NotPositiveDefinite` when no start could be factored.
pub fn fit_gp_opts(
    x: &[Vec<f64>],
    y: &[f64],
    restarts: usize,
    seed: u64,
    opts: &FitOptions<'_>,
) -> Result<Gp> {
    let dim = x.first().map_or(0, Vec::len);
    let (sample_mean, std) = standardization(y);
    let worst = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // The values'-mean fit starts from the previous round's θ when there is one and its noise
    // was fitted (a noisy experiment's rounds all end there, so it was fitted the same way),
    // else from the worst-mean fit's.
    let previous = opts.warm.filter(|w| !pinned_warm::is_pinned(w, dim));
    let mean_fit = |warm: &[f64]| {
        let opts = FitOptions {
            warm: Some(warm),
            ..*opts
        };
        fit_theta(x, y, sample_mean, std, restarts, seed, &opts)
    };
    // When the previous round ended on the values' mean, this one most likely does too: both
    // fits run at once (neither depends on the other, so the result is the same as in turn).
    let (theta, speculative) =
        match previous.filter(|w| w.get(dim + 1).is_some_and(|v| !keeps_worst_mean(*v))) {
            Some(previous) => {
                let (worst_fit, mean_fit) = rayon::join(
                    || fit_theta(x, y, worst, std, restarts, seed, opts),
                    || mean_fit(previous),
                );
                (worst_fit?, Some(mean_fit))
            }
            None => (fit_theta(x, y, worst, std, restarts, seed, opts)?, None),
        };
    // A deterministic fit pins the noise at the floor, so it always keeps the worst mean.
    let (theta, mean) = if keeps_worst_mean(theta[dim + 1]) {
        (theta, worst)
    } else {
        let theta = match speculative {
            Some(fitted) => fitted?,
            None => mean_fit(previous.unwrap_or(&theta))?,
        };
        (theta, sample_mean)
    };
    let mut kernel = Matern52::new(dim, 1.0, 1.0).with_categories(opts.categories);
    kernel.set_params(&theta[..=dim]);
    Gp::with_standardization(kernel, theta[dim + 1].exp(), x.to_vec(), y, mean, std)
}

/// Whether a fit whose `ln σₙ²` is `log_noise` keeps the worst value as its prior mean.
fn keeps_worst_mean(log_noise: f64) -> bool {
    log_noise <= WORST_MEAN_MAX_NOISE.ln()
}

/// The fitted `θ` of the GP with constant prior mean `mean` (the targets are `(y − mean)/std`):
/// the maximum a posteriori fit, then the noise choice unless `opts.deterministic` pins it.
fn fit_theta(
    x: &[Vec<f64>],
    y: &[f64],
    mean: f64,
    std: f64,
    restarts: usize,
    seed: u64,
    opts: &FitOptions<'_>,
) -> Result<Vec<f64>> {
    let dim = x.first().map_or(0, Vec::len);
    let ys: Vec<f64> = y.iter().map(|v| standardize(*v, mean, std)).collect();
    let mut likelihood =
        Likelihood::with_categories(x, &ys, opts.categories).with_deadline(opts.deadline);
    // After a pinned warm fit, the pinned fit first (`pinned_warm`).
    let mut refit_from = None;
    if let Some(warm) = opts.warm.filter(|w| {
        !opts.deterministic
            && likelihood.len() > FULL_FIT_MAX_POINTS
            && pinned_warm::is_pinned(w, dim)
    }) {
        match pinned_warm::fit(&mut likelihood, dim, warm, seed)? {
            PinnedWarm::Kept(theta) => return Ok(theta),
            PinnedWarm::Refit(theta) => refit_from = Some(theta),
        }
    }
    let opts = &FitOptions {
        warm: refit_from.as_deref().or(opts.warm),
        ..*opts
    };
    let (found, warm_only) = map_estimate(&mut likelihood, dim, restarts, seed, opts)?;
    if opts.deterministic {
        return Ok(found.x);
    }
    let refine = if warm_only {
        warm_fit_options()
    } else {
        fit_options(MAX_ITERATIONS)
    };
    Ok(choose_noise(&mut likelihood, found, &refine))
}

/// The maximum a posteriori `θ` of `likelihood` (the noise fitted with its prior, or pinned at
/// its floor when `opts.deterministic`), by multi-start L-BFGS; also whether the warm start was
/// the only start.
fn map_estimate(
    likelihood: &mut Likelihood<'_>,
    dim: usize,
    restarts: usize,
    seed: u64,
    opts: &FitOptions<'_>,
) -> Result<(Minimum, bool)> {
    let (lower, upper) = if opts.deterministic {
        bounds_noise_pinned(dim)
    } else {
        bounds(dim)
    };
    let mut rng = Rng::with_stream(seed, 2);
    let warm = opts
        .warm
        .map(|w| warm_start(w, &lower, &upper))
        .transpose()?;
    let large = likelihood.len() > FULL_FIT_MAX_POINTS;
    let warm_only = large && warm.is_some();
    // The cold starts' iterations before only the best continues (a warm-only fit has its own).
    let screen = if large {
        SCREEN_ITERATIONS
    } else {
        MAX_ITERATIONS
    };
    let cold = if warm_only {
        Vec::new()
    } else {
        starts(dim, restarts.max(1), &mut rng)
    };
    let options = if warm_only {
        warm_fit_options()
    } else {
        fit_options(screen)
    };
    // The starts are independent: run on rayon's pool, each task with its own buffers, and
    // compared in the starts' order (the first of equal optima wins), so the fit does not depend
    // on the pool.
    let all: Vec<Vec<f64>> = warm.into_iter().chain(cold).collect();
    let run = |own: &mut Likelihood<'_>, start: &Vec<f64>| {
        minimize(
            |theta, grad| objective(own, theta, grad),
            start,
            &lower,
            &upper,
            &options,
        )
    };
    let found: Vec<Minimum> = if let [only] = all.as_slice() {
        vec![run(likelihood, only)]
    } else {
        let shared: &Likelihood<'_> = likelihood;
        all.par_iter().map_init(|| shared.clone(), run).collect()
    };
    let mut best: Option<Minimum> = None;
    for found in found {
        if found.value.is_finite() && best.as_ref().is_none_or(|b| found.value < b.value) {
            best = Some(found);
        }
    }
    if warm_only && best.is_none() {
        // The warm start could not be factored: fit cold.
        let cold = FitOptions {
            warm: None,
            ..*opts
        };
        return map_estimate(likelihood, dim, restarts, seed, &cold);
    }
    if let Some(screened) = best
        .as_mut()
        .filter(|b| !warm_only && screen < MAX_ITERATIONS && !b.converged)
    {
        let refined = minimize(
            |theta, grad| objective(likelihood, theta, grad),
            &screened.x,
            &lower,
            &upper,
            &fit_options(MAX_ITERATIONS - screen),
        );
        if refined.value <= screened.value {
            *screened = refined;
        }
    }
    match best {
        Some(found) => Ok((found, warm_only)),
        None => Err(Error::NotPositiveDefinite {
            n: likelihood.len(),
            max_jitter: crate::gp::MAX_RELATIVE_JITTER,
        }),
    }
}

/// The fitted-noise optimum `free`, or `θ` with the noise pinned at [`NOISE_FLOOR`] when the
/// floor gives at least [`NOISE_FREE_EVIDENCE_NATS`] more evidence than the fitted noise at the
/// same kernel hyperparameters; pinned, the kernel's are then refined with `refine`. The noise prior keeps a fitted noise near `e⁻⁵` whatever the data say,
/// which blurs the fine optima of a noise-free objective; so the noise is pinned once the data
/// show they have none. The test holds the length-scales fixed because a free refit at the floor
/// can explain noise by length-scales so short that the GP degenerates into white noise.
fn choose_noise(likelihood: &mut Likelihood<'_>, free: Minimum, refine: &LbfgsOptions) -> Vec<f64> {
    let dim = free.x.len() - 2;
    let noise = dim + 1;
    let mut at_floor = free.x.clone();
    at_floor[noise] = NOISE_FLOOR.ln();
    let mut scratch = vec![0.0; free.x.len()];
    let floor_value = objective(likelihood, &at_floor, &mut scratch);
    // Evidence without the noise prior (a pinned noise has no prior).
    let free_evidence = -free.value - noise_log_prior(free.x[noise]);
    let floor_evidence = -floor_value - noise_log_prior(NOISE_FLOOR.ln());
    if !floor_value.is_finite() || floor_evidence < free_evidence + NOISE_FREE_EVIDENCE_NATS {
        return free.x;
    }
    let (lower, upper) = bounds_noise_pinned(dim);
    let pinned = minimize(
        |theta, grad| objective(likelihood, theta, grad),
        &at_floor,
        &lower,
        &upper,
        refine,
    );
    if pinned.value <= floor_value {
        pinned.x
    } else {
        at_floor
    }
}

#[cfg(test)]
pub(crate) mod tests;
