//! The log marginal likelihood and its gradient for the hyperparameter fit, arranged so that
//! one evaluation costs one Cholesky factorization and one inverse (`O(n³)`), then `O(n²)` per
//! hyperparameter.
//!
//! The Matérn-5/2 kernel depends on the inputs only through the per-dimension squared
//! differences `Dₖ(i, j) = (xᵢₖ − xⱼₖ)²`, which do not change during a fit, so [`Likelihood`]
//! computes them once (for the pairs `i > j` only; the matrix is symmetric) and every
//! evaluation forms `r² = Σₖ Dₖ/ℓₖ²` with vectorizable loops. With `W = ααᵀ − K⁻¹` and
//! `cᵢⱼ = σ² (5/3) (1 + √5 r) e^{−√5 r}`, the gradient (see [`mod@crate::fit`]) is
//!
//! `∂/∂ln ℓₖ = ℓₖ⁻² Σ_{i>j} Wᵢⱼ cᵢⱼ Dₖ(i, j)`,
//! `∂/∂ln σ² = Σ_{i>j} Wᵢⱼ Kᵢⱼ + ½ σ² tr W`, `∂/∂ln σₙ² = ½ σₙ² tr W`.
//!
//! In a categorical dimension (see [`crate::kernel`]) `Dₖ(i, j)` is the overlap indicator
//! `1[cat(xᵢₖ) ≠ cat(xⱼₖ)]` instead, and the formulas are unchanged.
//!
//! The kernel values are computed with the same arithmetic as [`crate::kernel::Matern52`], so
//! the factorized matrix is the one [`crate::gp::factor`] would build. When the differences
//! would take more than [`PRECOMPUTE_LIMIT`] numbers they are recomputed per evaluation instead.

use std::sync::Arc;
use std::time::Instant;

use faer::Mat;
use faer::linalg::solvers::{DenseSolveCore, Solve};

use crate::error::{Error, Result};
use crate::gp::{factor_gram, gaussian_log_likelihood};
use crate::kernel::squared_difference;

/// The most squared differences (`d · n(n − 1)/2`) kept between evaluations (32 MiB).
pub const PRECOMPUTE_LIMIT: usize = 1 << 22;

const SQRT5: f64 = 2.236_067_977_499_79;

/// The likelihood of fixed standardized targets `y` at inputs `x`, with reusable buffers.
#[derive(Debug, Clone)]
pub struct Likelihood<'a> {
    x: &'a [Vec<f64>],
    y: &'a [f64],
    dim: usize,
    pairs: usize,
    /// The choices of each categorical dimension, 0 for numeric; empty when all are numeric.
    categories: Vec<usize>,
    /// `Dₖ` for each dimension, `pairs` entries each, pairs in column-major lower order
    /// (`j` ascending, then `i > j` ascending); empty above [`PRECOMPUTE_LIMIT`]. Shared by
    /// clones (one a thread when starts run in parallel); each has its own buffers.
    sqdiff: Arc<[f64]>,
    /// One dimension's differences, when they are not kept.
    scratch: Vec<f64>,
    r2: Vec<f64>,
    values: Vec<f64>,
    weights: Vec<f64>,
    /// Past it, [`Likelihood::evaluate`] fails at once ([`Likelihood::with_deadline`]).
    deadline: Option<Instant>,
}

/// Writes `Dₖ` for all pairs into `out` (`levels` choices when categorical, else 0).
fn fill_sqdiff(x: &[Vec<f64>], k: usize, levels: usize, out: &mut [f64]) {
    let n = x.len();
    let mut p = 0;
    for j in 0..n {
        let xj = x[j][k];
        for xi in &x[j + 1..n] {
            out[p] = squared_difference(xi[k], xj, levels);
            p += 1;
        }
    }
}

/// `Dₖ`, from the kept differences or computed into `scratch`.
fn sqdiff_of<'s>(
    x: &[Vec<f64>],
    kept: &'s [f64],
    scratch: &'s mut [f64],
    pairs: usize,
    (k, levels): (usize, usize),
) -> &'s [f64] {
    if kept.is_empty() {
        fill_sqdiff(x, k, levels, scratch);
        scratch
    } else {
        &kept[k * pairs..(k + 1) * pairs]
    }
}

impl<'a> Likelihood<'a> {
    /// Prepares the likelihood of `y` (standardized) at `x` (all points of one dimension).
    #[cfg(test)]
    pub fn new(x: &'a [Vec<f64>], y: &'a [f64]) -> Likelihood<'a> {
        Likelihood::with_categories(x, y, &[])
    }

    /// The likelihood of `y` (standardized) at `x`, with the overlap term in the categorical
    /// dimensions: `categories[k]` is the number of choices of dimension `k`, 0 when numeric
    /// (empty: all numeric), as [`crate::kernel::Matern52::with_categories`].
    pub fn with_categories(
        x: &'a [Vec<f64>],
        y: &'a [f64],
        categories: &[usize],
    ) -> Likelihood<'a> {
        let n = x.len();
        let dim = x.first().map_or(0, Vec::len);
        let pairs = n * n.saturating_sub(1) / 2;
        let keep = dim * pairs <= PRECOMPUTE_LIMIT;
        let mut sqdiff = vec![0.0; if keep { dim * pairs } else { 0 }];
        if keep {
            for (k, chunk) in sqdiff.chunks_exact_mut(pairs.max(1)).enumerate() {
                fill_sqdiff(x, k, categories.get(k).copied().unwrap_or(0), chunk);
            }
        }
        Likelihood {
            x,
            y,
            dim,
            pairs,
            categories: categories.to_vec(),
            sqdiff: sqdiff.into(),
            scratch: vec![0.0; if keep { 0 } else { pairs }],
            r2: vec![0.0; pairs],
            values: vec![0.0; pairs],
            weights: vec![0.0; pairs],
            deadline: None,
        }
    }

    /// The same likelihood, whose evaluations fail with [`Error::DeadlinePassed`] from
    /// `deadline` on (so an optimizer stops at its next step).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Likelihood<'a> {
        self.deadline = deadline;
        self
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Fills the pairs' kernel values for the kernel part `θ = (ln ℓ₁, …, ln ℓ_d, ln σ²)` (and
    /// `weights` with `c = σ² (5/3) (1 + √5 r) e`, which the gradient scales by `W`); returns the
    /// kernel matrix without noise (its lower triangle only: the Cholesky factorization reads no
    /// other entry) and the signal variance.
    fn gram(&mut self, kernel_theta: &[f64]) -> Result<(Mat<f64>, f64)> {
        let (n, d, pairs) = (self.x.len(), self.dim, self.pairs);
        let signal = kernel_theta[d].exp();
        self.r2.fill(0.0);
        for (k, log_length) in kernel_theta[..d].iter().enumerate() {
            let w = (-2.0 * log_length).exp();
            let levels = self.categories.get(k).copied().unwrap_or(0);
            let dk = sqdiff_of(self.x, &self.sqdiff, &mut self.scratch, pairs, (k, levels));
            for (r2, dk) in self.r2.iter_mut().zip(dk) {
                *r2 += dk * w;
            }
        }
        for ((r2, value), c) in self.r2.iter().zip(&mut self.values).zip(&mut self.weights) {
            let r = r2.sqrt();
            let e = (-SQRT5 * r).exp();
            let poly = 1.0 + SQRT5 * r;
            *value = signal * (poly + 5.0 / 3.0 * r2) * e;
            *c = signal * (5.0 / 3.0) * poly * e;
        }
        if !(signal.is_finite() && self.values.iter().all(|v| v.is_finite())) {
            return Err(Error::Numerical(
                "kernel matrix has non-finite entries".into(),
            ));
        }
        let mut gram = Mat::<f64>::zeros(n, n);
        let mut p = 0;
        for j in 0..n {
            let column = gram.col_mut(j).try_as_col_major_mut().expect("contiguous");
            let column = column.as_slice_mut();
            column[j] = signal;
            column[j + 1..].copy_from_slice(&self.values[p..p + n - j - 1]);
            p += n - j - 1;
        }
        Ok((gram, signal))
    }

    /// The log marginal likelihood at the kernel part `θ = (ln ℓ₁, …, ln ℓ_d, ln σ²)` for each
    /// of `log_noises` (`ln σₙ²`), without gradients: the kernel matrix is built once and each
    /// noise costs one Cholesky factorization, about a seventh of an [`Likelihood::evaluate`].
    /// `None` where the matrix cannot be factored.
    ///
    /// # Errors
    /// `Error::Numerical` for non-finite kernel values; `Error::DeadlinePassed` past the
    /// deadline.
    pub fn values_at_noises(
        &mut self,
        kernel_theta: &[f64],
        log_noises: &[f64],
    ) -> Result<Vec<Option<f64>>> {
        crate::error::check_deadline(self.deadline)?;
        let n = self.x.len();
        let (gram, signal) = self.gram(kernel_theta)?;
        let y = faer::ColRef::from_slice(self.y);
        Ok(log_noises
            .iter()
            .map(|log_noise| {
                let (llt, _) = factor_gram(&gram, log_noise.exp(), signal).ok()?;
                let alpha = llt.solve(y);
                let fit: f64 = (0..n).map(|i| alpha[i] * self.y[i]).sum();
                let l_chol = llt.L();
                let log_det: f64 = (0..n).map(|i| l_chol[(i, i)].ln()).sum();
                let value = gaussian_log_likelihood(fit, log_det, n);
                value.is_finite().then_some(value)
            })
            .collect())
    }

    /// The log marginal likelihood at `θ = (ln ℓ₁, …, ln ℓ_d, ln σ², ln σₙ²)`, with its gradient
    /// written to `grad`.
    ///
    /// # Errors
    /// `Error::Numerical` for non-finite kernel values or results, and
    /// `Error::NotPositiveDefinite` when `K` cannot be factored even with the largest jitter;
    /// `Error::DeadlinePassed` past the deadline.
    pub fn evaluate(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        crate::error::check_deadline(self.deadline)?;
        let (n, d, pairs) = (self.x.len(), self.dim, self.pairs);
        debug_assert_eq!(
            theta.len(),
            d + 2,
            "one log-length-scale a dimension plus two"
        );
        let inv_sq: Vec<f64> = theta[..d].iter().map(|l| (-2.0 * l).exp()).collect();
        let noise = theta[d + 1].exp();
        let (gram, signal) = self.gram(&theta[..=d])?;
        if !noise.is_finite() {
            return Err(Error::Numerical("noise variance is not finite".into()));
        }
        let (llt, _) = factor_gram(&gram, noise, signal)?;
        let k_inv = llt.inverse();
        // `K⁻¹` is symmetric: row `i` read as column `i`, contiguously.
        let alpha: Vec<f64> = (0..n)
            .map(|i| {
                let column = k_inv.col(i).try_as_col_major().expect("contiguous");
                column
                    .as_slice()
                    .iter()
                    .zip(self.y)
                    .map(|(k, y)| k * y)
                    .sum()
            })
            .collect();
        let fit: f64 = alpha.iter().zip(self.y).map(|(a, b)| a * b).sum();
        let l_chol = llt.L();
        let log_det: f64 = (0..n).map(|i| l_chol[(i, i)].ln()).sum();
        let value = gaussian_log_likelihood(fit, log_det, n);

        let mut signal_grad = 0.0;
        let mut trace_w = 0.0;
        let mut p = 0;
        for j in 0..n {
            trace_w += alpha[j] * alpha[j] - k_inv[(j, j)];
            let column = k_inv.col(j);
            for i in j + 1..n {
                let w = alpha[i] * alpha[j] - column[i];
                signal_grad += w * self.values[p];
                self.weights[p] *= w;
                p += 1;
            }
        }
        for (k, (g, w)) in grad.iter_mut().zip(&inv_sq).enumerate() {
            let levels = self.categories.get(k).copied().unwrap_or(0);
            let dk = sqdiff_of(self.x, &self.sqdiff, &mut self.scratch, pairs, (k, levels));
            let dot: f64 = self.weights.iter().zip(dk).map(|(a, b)| a * b).sum();
            *g = w * dot;
        }
        grad[d] = signal_grad + 0.5 * trace_w * signal;
        grad[d + 1] = 0.5 * trace_w * noise;
        if !value.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(Error::Numerical(
                "log marginal likelihood is not finite".into(),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::log_marginal_likelihood;
    use crate::fit::tests::data;
    use crate::gradcheck::GradCheck;

    #[test]
    fn matches_the_reference_likelihood_and_gradient() {
        let (x, y) = data(40, 4, 11);
        let mut fast = Likelihood::new(&x, &y);
        for theta in [
            [-1.1, -0.4, 0.3, -2.0, 0.2, -4.0],
            [0.5, -3.0, 1.0, 0.0, -1.0, -12.0],
        ] {
            let (mut g_ref, mut g_fast) = (vec![0.0; 6], vec![0.0; 6]);
            let reference = log_marginal_likelihood(&x, &y, &theta, &mut g_ref).expect("factors");
            let value = fast.evaluate(&theta, &mut g_fast).expect("factors");
            assert!((reference - value).abs() < 1e-8 * reference.abs().max(1.0));
            for (a, b) in g_ref.iter().zip(&g_fast) {
                assert!(
                    (a - b).abs() < 1e-7 * a.abs().max(1.0),
                    "{g_ref:?} {g_fast:?}"
                );
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = data(30, 3, 12);
        let mut lik = Likelihood::new(&x, &y);
        let theta = [-0.9, -0.2, 0.4, 0.3, -5.0];
        let mut grad = vec![0.0; 5];
        lik.evaluate(&theta, &mut grad).expect("factors");
        let mut scratch = vec![0.0; 5];
        GradCheck::SMOOTH.assert(
            |t| lik.evaluate(t, &mut scratch).expect("factors"),
            &theta,
            &grad,
            "log marginal likelihood in θ",
        );
    }

    #[test]
    fn recomputed_differences_give_the_same_result() {
        let (x, y) = data(25, 3, 13);
        let theta = [-1.0, 0.1, -0.5, 0.2, -6.0];
        let mut kept = Likelihood::new(&x, &y);
        let mut recomputed = Likelihood::new(&x, &y);
        recomputed.scratch = vec![0.0; recomputed.pairs];
        recomputed.sqdiff = Arc::from(Vec::new());
        let (mut ga, mut gb) = (vec![0.0; 5], vec![0.0; 5]);
        let a = kept.evaluate(&theta, &mut ga).expect("factors");
        let b = recomputed.evaluate(&theta, &mut gb).expect("factors");
        assert_eq!(a, b);
        assert_eq!(ga, gb);
    }

    #[test]
    fn non_finite_parameters_are_errors() {
        let (x, y) = data(8, 2, 14);
        let mut lik = Likelihood::new(&x, &y);
        let mut grad = vec![0.0; 4];
        assert!(
            lik.evaluate(&[0.0, 0.0, f64::NAN, -3.0], &mut grad)
                .is_err()
        );
        assert!(lik.evaluate(&[0.0, 0.0, 800.0, -3.0], &mut grad).is_err());
    }

    #[test]
    fn categorical_dimensions_match_the_mixed_kernel() {
        use crate::gp::Gp;
        use crate::kernel::{Kernel, Matern52};
        let (mut x, y) = data(30, 3, 15);
        // Dimension 1 becomes a 3-way categorical at its choices' centres.
        for p in &mut x {
            p[1] = (crate::kernel::category(p[1], 3) as f64 + 0.5) / 3.0;
        }
        let categories = [0, 3, 0];
        let theta = [-0.8, 0.3, -0.2, 0.1, -5.0];
        let mut fast = Likelihood::with_categories(&x, &y, &categories);
        let mut grad = vec![0.0; 5];
        let value = fast.evaluate(&theta, &mut grad).expect("factors");
        let mut kernel = Matern52::new(3, 1.0, 1.0).with_categories(&categories);
        kernel.set_params(&theta[..4]);
        let (mean, std) = crate::gp::standardization(&y);
        let gp = Gp::with_standardization(kernel, theta[4].exp(), x.clone(), &y, mean, std)
            .expect("factors");
        assert!((gp.log_marginal_likelihood() - value).abs() < 1e-8 * value.abs().max(1.0));
        let mut scratch = vec![0.0; 5];
        GradCheck::SMOOTH.assert(
            |t| fast.evaluate(t, &mut scratch).expect("factors"),
            &theta,
            &grad,
            "mixed log marginal likelihood in θ",
        );
        // Recomputing the differences per evaluation gives the same result.
        let mut recomputed = Likelihood::with_categories(&x, &y, &categories);
        recomputed.scratch = vec![0.0; recomputed.pairs];
        recomputed.sqdiff = Arc::from(Vec::new());
        assert_eq!(
            recomputed.evaluate(&theta, &mut scratch).expect("factors"),
            value
        );
    }
}
