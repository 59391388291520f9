//! Conditioning a GP on a few more points by extending its Cholesky factor, for the
//! constant-liar fantasies of a batch.
//!
//! With `K = L Lᵀ` factored and a new point `p`, the factor of `K` bordered by
//! `k = k(X, p)` and `κ = k(p, p) + σₙ² + jitter` is
//!
//! `[[L, 0], [lᵀ, δ]]` with `l = L⁻¹k` and `δ² = κ − lᵀl`
//!
//! (the bordering step of the Cholesky algorithm; Golub and Van Loan, "Matrix Computations",
//! 4th ed., §4.2), so a point costs one triangular solve, `O(n²)`, instead of the `O(n³)`
//! refactor. The new pivot `δ²` is the posterior variance of `p` plus the noise: when it is not
//! clearly positive (a point on top of an observed one with almost no noise) the extension is
//! abandoned and the whole matrix is refactored with the usual growing jitter; such fallbacks
//! are counted ([`extension_refactors`]) so they are never silent.

use std::sync::atomic::{AtomicU64, Ordering};

use faer::Mat;

use super::Gp;
use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// Extensions that fell back to a full refactor, since the process started.
static REFACTORS: AtomicU64 = AtomicU64::new(0);

/// The smallest new pivot `δ²` accepted, relative to the kernel's prior variance.
const MIN_PIVOT: f64 = 1e-12;

/// How many [`Gp::extended`] calls refactored the whole matrix because a new pivot was not
/// positive, since the process started.
pub fn extension_refactors() -> u64 {
    REFACTORS.load(Ordering::Relaxed)
}

impl<K: Kernel> Gp<K> {
    /// This GP conditioned also on `x_new` with targets `y_new` (in the units of `y`,
    /// standardized with this GP's standardization, which the new points do not move), with
    /// the same kernel, noise and jitter: `O(n²)` a point. Falls back to a refactor (counted by
    /// [`extension_refactors`]) when a new pivot is not positive.
    ///
    /// # Errors
    /// As [`Gp::with_standardization`] on the refactor; `Error::Numerical` when the weights are
    /// not finite.
    pub fn extended(&self, x_new: &[Vec<f64>], y_new: &[f64]) -> Result<Gp<K>> {
        debug_assert_eq!(x_new.len(), y_new.len(), "one target per point");
        let n = self.x.len();
        let total = n + x_new.len();
        let mut l_rows = vec![0.0; total * total];
        for i in 0..n {
            l_rows[i * total..=i * total + i].copy_from_slice(&self.l_rows[i * n..=i * n + i]);
        }
        let mut x = self.x.clone();
        x.reserve(x_new.len());
        let floor = MIN_PIVOT * self.kernel.prior_variance();
        for p in x_new {
            let row = x.len();
            let mut l: Vec<f64> = x.iter().map(|xi| self.kernel.value(p, xi)).collect();
            for i in 0..row {
                let s: f64 = l_rows[i * total..i * total + i]
                    .iter()
                    .zip(&l[..i])
                    .map(|(a, b)| a * b)
                    .sum();
                l[i] = (l[i] - s) / l_rows[i * total + i];
            }
            let pivot = self.kernel.value(p, p) + self.noise_variance + self.jitter
                - l.iter().map(|v| v * v).sum::<f64>();
            if !(pivot > floor && l.iter().all(|v| v.is_finite())) {
                REFACTORS.fetch_add(1, Ordering::Relaxed);
                return self.refactored(x_new, y_new);
            }
            l_rows[row * total..row * total + row].copy_from_slice(&l);
            l_rows[row * total + row] = pivot.sqrt();
            x.push(p.clone());
        }
        let l_chol = Mat::<f64>::from_fn(total, total, |i, j| {
            if j <= i { l_rows[i * total + j] } else { 0.0 }
        });
        let mut y = self.y.clone();
        y.extend(
            y_new
                .iter()
                .map(|v| super::standardize(*v, self.y_mean, self.y_std)),
        );
        let mut gp = Gp {
            kernel: self.kernel.clone(),
            noise_variance: self.noise_variance,
            x,
            y_mean: self.y_mean,
            y_std: self.y_std,
            y,
            l_rows,
            l_chol,
            alpha: Vec::new(),
            jitter: self.jitter,
        };
        let v = gp.forward(&gp.y);
        gp.alpha = gp.backward(v);
        if gp.alpha.iter().any(|a| !a.is_finite()) {
            return Err(Error::Numerical(
                "extended GP weights are not finite".into(),
            ));
        }
        Ok(gp)
    }

    /// The same conditioning as [`Gp::extended`] by a full refactor.
    fn refactored(&self, x_new: &[Vec<f64>], y_new: &[f64]) -> Result<Gp<K>> {
        let x: Vec<Vec<f64>> = self.x.iter().chain(x_new).cloned().collect();
        let y: Vec<f64> = self
            .y
            .iter()
            .map(|v| self.y_mean + self.y_std * v)
            .chain(y_new.iter().copied())
            .collect();
        Gp::with_standardization(
            self.kernel.clone(),
            self.noise_variance,
            x,
            &y,
            self.y_mean,
            self.y_std,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Matern52;
    use crate::rng::Rng;

    fn base(noise: f64) -> (Gp, Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = Rng::new(17);
        let x = rng.latin_hypercube(40, 3);
        let y: Vec<f64> = x
            .iter()
            .map(|p| (5.0 * p[0]).sin() + p[1] * p[2] + 3.0)
            .collect();
        let mut kernel = Matern52::new(3, 0.3, 1.0);
        kernel.set_params(&[-1.2, -0.7, 0.1, 0.4]);
        let gp = Gp::new(kernel, noise, x.clone(), &y).expect("factors");
        (gp, x, y)
    }

    /// Predictions, weights and likelihood of `a` and `b` agree to `tolerance`.
    fn assert_same(a: &Gp, b: &Gp, tolerance: f64) {
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let p = rng.point(3);
            let ((ma, va), (mb, vb)) = (a.predict(&p), b.predict(&p));
            assert!((ma - mb).abs() < tolerance, "mean {ma} vs {mb}");
            assert!((va - vb).abs() < tolerance, "variance {va} vs {vb}");
        }
        let (la, lb) = (a.log_marginal_likelihood(), b.log_marginal_likelihood());
        assert!(
            (la - lb).abs() < tolerance * la.abs().max(1.0),
            "{la} vs {lb}"
        );
    }

    #[test]
    fn extending_predicts_as_a_refactor_does() {
        let (gp, x, y) = base(1e-4);
        let (mean, std) = gp.standardization();
        let new_x = vec![
            vec![0.11, 0.52, 0.93],
            vec![0.71, 0.33, 0.25],
            vec![0.4, 0.9, 0.6],
        ];
        let new_y = [2.5, 3.1, 2.9];
        let extended = gp.extended(&new_x[..1], &new_y[..1]).expect("extends");
        let extended = extended
            .extended(&new_x[1..], &new_y[1..])
            .expect("extends");
        let all_x: Vec<Vec<f64>> = x.iter().chain(&new_x).cloned().collect();
        let all_y: Vec<f64> = y.iter().chain(&new_y).copied().collect();
        let refactor = Gp::with_standardization(
            gp.kernel().clone(),
            gp.noise_variance(),
            all_x.clone(),
            &all_y,
            mean,
            std,
        )
        .expect("factors");
        assert_eq!(extended.x(), &all_x[..]);
        assert_same(&extended, &refactor, 1e-9);
        // The faer factor (batched predictions) was extended too.
        let points = vec![vec![0.2, 0.2, 0.2], vec![0.8, 0.1, 0.5]];
        let (means, vars) = extended.predict_batch(&points);
        for (j, p) in points.iter().enumerate() {
            let (m, v) = extended.predict_standardized(p);
            assert!((means[j] - m).abs() < 1e-12 && (vars[j] - v).abs() < 1e-12);
        }
    }

    #[test]
    fn a_pivot_that_is_not_positive_falls_back_to_a_counted_refactor() {
        let (gp, x, y) = base(0.0);
        assert_eq!(
            gp.jitter(),
            0.0,
            "the noise-free base factors without jitter"
        );
        let before = extension_refactors();
        // An observed point again, with no noise: the new pivot is zero up to rounding.
        let extended = gp.extended(&x[..1], &y[..1]).expect("refactors");
        assert!(extension_refactors() > before, "the fallback is counted");
        assert!(extended.jitter() > 0.0, "the refactor needed jitter");
        assert_eq!(extended.x().len(), x.len() + 1);
        let (mean, std) = gp.standardization();
        let all_x: Vec<Vec<f64>> = x.iter().chain(&x[..1]).cloned().collect();
        let all_y: Vec<f64> = y.iter().chain(&y[..1]).copied().collect();
        let refactor = Gp::with_standardization(gp.kernel().clone(), 0.0, all_x, &all_y, mean, std)
            .expect("factors");
        assert_same(&extended, &refactor, 1e-9);
    }
}
