//! The Gaussian-process surrogate (Rasmussen and Williams 2006, algorithm 2.1).
//!
//! Targets are standardized, `ỹ = (y − m) / std(y)`, so the kernel's signal variance and
//! the noise are in units of the data's spread and suggestions do not change under an affine
//! change of `y`. The constant `m` is the GP's prior mean: `mean(y)` for [`Gp::new`], a given
//! value for [`Gp::with_standardization`] (the fit uses the worst value observed for noise-free
//! data, [`crate::fit::fit_gp_opts`]). With `K = k(X, X) + (σₙ² + jitter) I = L Lᵀ` and
//! `α = K⁻¹ỹ`, the posterior at `x` is `μ(x) = k*ᵀα` and `s²(x) = k(x, x) − vᵀv` with
//! `v = L⁻¹k*`. The gradients with respect to `x` are `∇μ = Σᵢ αᵢ ∇ₓk(x, xᵢ)` and
//! `∇s² = −2 Σᵢ wᵢ ∇ₓk(x, xᵢ)` with `w = L⁻ᵀv`.
//!
//! The Cholesky factorization first tries no jitter, then adds `10⁻¹⁰·σ²`, growing tenfold up to
//! `10⁻⁴·σ²`; past that it returns [`Error::NotPositiveDefinite`] (it never panics).

use faer::linalg::solvers::Llt;
use faer::{Mat, Side};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernel::{Kernel, Matern52};

/// The largest jitter tried, relative to the kernel's signal variance.
pub const MAX_RELATIVE_JITTER: f64 = 1e-4;

/// Points a chunk of a batch prediction: a chunk's cross-covariance and triangular solve are one
/// task of rayon's pool, so the candidate scoring of a proposal (2,048 points, eight chunks)
/// spreads over the cores.
pub const BATCH_CHUNK: usize = 256;

/// A GP conditioned on (standardized) training data.
#[derive(Debug, Clone)]
pub struct Gp<K: Kernel = Matern52> {
    kernel: K,
    noise_variance: f64,
    x: Vec<Vec<f64>>,
    y_mean: f64,
    y_std: f64,
    y: Vec<f64>,
    /// Row-major lower Cholesky factor, `n × n`.
    l_rows: Vec<f64>,
    l_chol: Mat<f64>,
    alpha: Vec<f64>,
    jitter: f64,
}

/// What [`Gp::predict_with_grad_parts`] returns besides the moments' gradients.
#[derive(Debug, Clone)]
pub(crate) struct GradParts {
    /// Posterior mean (standardized).
    pub mean: f64,
    /// Posterior variance (standardized).
    pub var: f64,
    /// `v = L⁻¹k(X, x)`.
    pub whitened: Vec<f64>,
    /// `∇ₓk(x, xᵢ)`, row-major `n × d`.
    pub k_grads: Vec<f64>,
}

/// The mean and standard deviation used to standardize `y` (the deviation is 1 when the values
/// are all equal or there is only one).
///
/// Both are computed on the values divided by a power of two near the largest magnitude, then
/// scaled back. Scaling by a power of two is exact, so for values whose squares fit in an `f64`
/// the result is bit for bit the plain two-pass formula's; values near `10³⁰⁰`, whose squares
/// would overflow, and values near `10⁻³⁰⁰`, whose squares would vanish, get their true spread
/// instead of an infinite or a zero one.
pub fn standardization(y: &[f64]) -> (f64, f64) {
    if y.is_empty() {
        return (0.0, 1.0);
    }
    let scale = power_of_two_near(y.iter().fold(0.0, |m: f64, v| m.max(v.abs())));
    let n = y.len() as f64;
    let mean = y.iter().map(|v| v / scale).sum::<f64>() / n;
    let var = y
        .iter()
        .map(|v| (v / scale - mean) * (v / scale - mean))
        .sum::<f64>()
        / n;
    let (mean, std) = (mean * scale, var.sqrt() * scale);
    if std.is_finite() && std > 1e-12 * mean.abs().max(1e-300) && std > 0.0 {
        (mean, std)
    } else {
        (mean, 1.0)
    }
}

/// `(v − mean)/std`, computed on values divided by a power of two near `std` so that the
/// difference of two values near `±f64::MAX` does not overflow; bit for bit the plain formula
/// otherwise (scaling by a power of two is exact).
pub fn standardize(v: f64, mean: f64, std: f64) -> f64 {
    let scale = power_of_two_near(std);
    (v / scale - mean / scale) / (std / scale)
}

/// The power of two at or below `magnitude` (1 for zero or non-finite magnitudes), kept
/// within `2^±1000` so that dividing by it never overflows or leaves the normal range.
fn power_of_two_near(magnitude: f64) -> f64 {
    if magnitude > 0.0 && magnitude.is_finite() {
        2f64.powi(magnitude.log2().floor().clamp(-1000.0, 1000.0) as i32)
    } else {
        1.0
    }
}

/// The log density of `n` standardized targets under `N(0, K)` from `fit = ỹᵀK⁻¹ỹ` and
/// `log_det = Σ ln Lᵢᵢ = ½ ln |K|`: `−½ fit − log_det − (n/2) ln 2π` (R&W eq. 2.30).
pub(crate) fn gaussian_log_likelihood(fit: f64, log_det: f64, n: usize) -> f64 {
    -0.5 * fit - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln()
}

/// Factors `k(X, X) + noise·I` with growing jitter; returns the lower factor and the jitter.
///
/// # Errors
/// `Error::NotPositiveDefinite` when even the largest jitter fails, or a non-finite entry.
pub fn factor<K: Kernel>(
    kernel: &K,
    noise_variance: f64,
    x: &[Vec<f64>],
) -> Result<(Mat<f64>, f64)> {
    let n = x.len();
    let gram = Mat::<f64>::from_fn(n, n, |i, j| kernel.value(&x[i], &x[j]));
    let scale = kernel.prior_variance();
    let all_finite = (0..n).all(|j| (0..n).all(|i| gram[(i, j)].is_finite()));
    if !(scale.is_finite() && noise_variance.is_finite() && all_finite) {
        return Err(Error::Numerical(
            "kernel matrix has non-finite entries".into(),
        ));
    }
    let (llt, jitter) = factor_gram(&gram, noise_variance, scale)?;
    Ok((llt.L().to_owned(), jitter))
}

/// Factors a finite kernel matrix plus `noise·I`, first without jitter, then with jitter
/// `10⁻¹⁰·scale` growing tenfold up to [`MAX_RELATIVE_JITTER`]`·scale`; returns the
/// factorization and the jitter used.
///
/// # Errors
/// `Error::NotPositiveDefinite` when even the largest jitter fails.
pub(crate) fn factor_gram(
    gram: &Mat<f64>,
    noise_variance: f64,
    scale: f64,
) -> Result<(Llt<f64>, f64)> {
    let n = gram.nrows();
    let mut jitter = 0.0;
    loop {
        let mut k = gram.clone();
        for i in 0..n {
            k[(i, i)] += noise_variance + jitter;
        }
        if let Ok(llt) = k.llt(Side::Lower) {
            return Ok((llt, jitter));
        }
        jitter = if jitter == 0.0 {
            1e-10 * scale
        } else {
            jitter * 10.0
        };
        if jitter > MAX_RELATIVE_JITTER * scale * 1.000_001 {
            return Err(Error::NotPositiveDefinite {
                n,
                max_jitter: MAX_RELATIVE_JITTER * scale,
            });
        }
    }
}

impl<K: Kernel> Gp<K> {
    /// Conditions the GP on `(x, y)`, standardizing `y` with its own mean and deviation.
    ///
    /// # Errors
    /// As [`factor`].
    pub fn new(kernel: K, noise_variance: f64, x: Vec<Vec<f64>>, y: &[f64]) -> Result<Gp<K>> {
        let (mean, std) = standardization(y);
        Gp::with_standardization(kernel, noise_variance, x, y, mean, std)
    }

    /// Conditions the GP on `(x, y)` with a given standardization (used for fantasy points,
    /// which must not move the scale fitted on the real data).
    ///
    /// # Errors
    /// As [`factor`].
    pub fn with_standardization(
        kernel: K,
        noise_variance: f64,
        x: Vec<Vec<f64>>,
        y: &[f64],
        y_mean: f64,
        y_std: f64,
    ) -> Result<Gp<K>> {
        debug_assert_eq!(x.len(), y.len(), "one target per point");
        let (l_chol, jitter) = factor(&kernel, noise_variance, &x)?;
        let n = x.len();
        let l_rows: Vec<f64> = (0..n * n)
            .map(|k| {
                if k % n <= k / n {
                    l_chol[(k / n, k % n)]
                } else {
                    0.0
                }
            })
            .collect();
        let ys: Vec<f64> = y.iter().map(|v| standardize(*v, y_mean, y_std)).collect();
        let mut gp = Gp {
            kernel,
            noise_variance,
            x,
            y_mean,
            y_std,
            y: ys,
            l_rows,
            l_chol,
            alpha: Vec::new(),
            jitter,
        };
        let v = gp.forward(&gp.y);
        gp.alpha = gp.backward(v);
        if gp.alpha.iter().any(|a| !a.is_finite()) {
            return Err(Error::Numerical("GP weights are not finite".into()));
        }
        Ok(gp)
    }

    /// Solves `L v = b`.
    fn forward(&self, b: &[f64]) -> Vec<f64> {
        let n = self.x.len();
        let mut v = b.to_vec();
        for i in 0..n {
            let row = &self.l_rows[i * n..i * n + i];
            let s: f64 = row.iter().zip(&v[..i]).map(|(l, x)| l * x).sum();
            v[i] = (v[i] - s) / self.l_rows[i * n + i];
        }
        v
    }

    /// Solves `Lᵀ w = v`.
    pub(crate) fn backward(&self, mut v: Vec<f64>) -> Vec<f64> {
        let n = self.x.len();
        for i in (0..n).rev() {
            v[i] /= self.l_rows[i * n + i];
            let vi = v[i];
            let row = &self.l_rows[i * n..i * n + i];
            for (vj, l) in v[..i].iter_mut().zip(row) {
                *vj -= l * vi;
            }
        }
        v
    }

    /// The kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The noise variance (standardized units).
    pub fn noise_variance(&self) -> f64 {
        self.noise_variance
    }

    /// The jitter that made the factorization succeed.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The training inputs.
    pub fn x(&self) -> &[Vec<f64>] {
        &self.x
    }

    /// The standardized training targets.
    pub fn y_standardized(&self) -> &[f64] {
        &self.y
    }

    /// `(mean, std)` of the standardization.
    pub fn standardization(&self) -> (f64, f64) {
        (self.y_mean, self.y_std)
    }

    /// Posterior mean and variance at `x`, standardized units.
    pub fn predict_standardized(&self, x: &[f64]) -> (f64, f64) {
        let (mean, var, _) = self.predict_whitened(x);
        (mean, var)
    }

    /// Posterior mean and variance at `x` (standardized) with `v = L⁻¹k(X, x)`.
    pub fn predict_whitened(&self, x: &[f64]) -> (f64, f64, Vec<f64>) {
        let k_star: Vec<f64> = self.x.iter().map(|xi| self.kernel.value(x, xi)).collect();
        let mean: f64 = k_star.iter().zip(&self.alpha).map(|(k, a)| k * a).sum();
        let v = self.forward(&k_star);
        let var = self.kernel.prior_variance() - v.iter().map(|t| t * t).sum::<f64>();
        (mean, var.max(0.0), v)
    }

    /// Posterior mean and variance at `x` in the units of `y`.
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let (mean, var) = self.predict_standardized(x);
        (
            self.y_mean + self.y_std * mean,
            var * self.y_std * self.y_std,
        )
    }

    /// Posterior mean and variance (standardized) with their gradients with respect to `x`.
    pub fn predict_with_grad(
        &self,
        x: &[f64],
        mean_grad: &mut [f64],
        var_grad: &mut [f64],
    ) -> (f64, f64) {
        let parts = self.predict_with_grad_parts(x, mean_grad, var_grad);
        (parts.mean, parts.var)
    }

    /// As [`Gp::predict_with_grad`], also returning `v = L⁻¹k(X, x)` and `∇ₓk(x, xᵢ)`.
    pub(crate) fn predict_with_grad_parts(
        &self,
        x: &[f64],
        mean_grad: &mut [f64],
        var_grad: &mut [f64],
    ) -> GradParts {
        let n = self.x.len();
        let d = x.len();
        let mut k_grads = vec![0.0; n * d];
        let mut k_star = vec![0.0; n];
        for i in 0..n {
            k_star[i] =
                self.kernel
                    .value_and_x_grad(x, &self.x[i], &mut k_grads[i * d..(i + 1) * d]);
        }
        let mean: f64 = k_star.iter().zip(&self.alpha).map(|(k, a)| k * a).sum();
        let v = self.forward(&k_star);
        let var = self.kernel.prior_variance() - v.iter().map(|t| t * t).sum::<f64>();
        let w = self.backward(v.clone());
        mean_grad.fill(0.0);
        var_grad.fill(0.0);
        for i in 0..n {
            let g = &k_grads[i * d..(i + 1) * d];
            for j in 0..d {
                mean_grad[j] += self.alpha[i] * g[j];
                var_grad[j] -= 2.0 * w[i] * g[j];
            }
        }
        if var <= 0.0 {
            var_grad.fill(0.0);
        }
        GradParts {
            mean,
            var: var.max(0.0),
            whitened: v,
            k_grads,
        }
    }

    /// `V = L⁻¹ k(X, P)` for a batch of points (one column per point), via faer.
    pub fn whitened_cross(&self, points: &[Vec<f64>]) -> Mat<f64> {
        let mut v = self.kernel.cross(&self.x, points);
        self.l_chol.solve_lower_triangular_in_place(v.as_mut());
        v
    }

    /// Posterior means and variances (standardized) of a batch of points, in chunks of
    /// [`BATCH_CHUNK`] on rayon's pool (each chunk's arithmetic is the same on any thread, so
    /// the result does not depend on the pool).
    pub fn predict_batch(&self, points: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let chunks: Vec<(Vec<f64>, Vec<f64>)> = points
            .par_chunks(BATCH_CHUNK)
            .map(|chunk| {
                let (m, v, _) = self.predict_batch_whitened(chunk);
                (m, v)
            })
            .collect();
        let mut means = Vec::with_capacity(points.len());
        let mut vars = Vec::with_capacity(points.len());
        for (m, v) in chunks {
            means.extend(m);
            vars.extend(v);
        }
        (means, vars)
    }

    /// Posterior means and variances (standardized) of a batch of points with
    /// `V = L⁻¹ k(X, P)` (one column per point; callers chunk large batches).
    pub fn predict_batch_whitened(&self, points: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, Mat<f64>) {
        let n = self.x.len();
        let prior = self.kernel.prior_variance();
        let k_star = self.kernel.cross(&self.x, points);
        let means = (0..points.len())
            .map(|j| (0..n).map(|i| k_star[(i, j)] * self.alpha[i]).sum())
            .collect();
        let mut v = k_star;
        self.l_chol.solve_lower_triangular_in_place(v.as_mut());
        let vars = (0..points.len())
            .map(|j| {
                let ss: f64 = (0..n).map(|i| v[(i, j)] * v[(i, j)]).sum();
                (prior - ss).max(0.0)
            })
            .collect();
        (means, vars, v)
    }

    /// The log marginal likelihood of the standardized targets,
    /// `−½ ỹᵀα − Σ ln Lᵢᵢ − (n/2) ln 2π` (R&W eq. 2.30).
    pub fn log_marginal_likelihood(&self) -> f64 {
        let n = self.x.len();
        let fit: f64 = self.y.iter().zip(&self.alpha).map(|(y, a)| y * a).sum();
        let log_det: f64 = (0..n).map(|i| self.l_rows[i * n + i].ln()).sum();
        gaussian_log_likelihood(fit, log_det, n)
    }
}

mod extend;
pub use extend::extension_refactors;

#[cfg(test)]
mod tests;
