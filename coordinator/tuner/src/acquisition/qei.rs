//! Monte Carlo q-EI (Ginsbourger, Le Riche and Carraro 2010; the reparameterized estimator of
//! Wilson, Hutter and Deisenroth, "Maximizing acquisition functions for Bayesian optimization",
//! NeurIPS 2018), used greedily: the value of a candidate `x` is the expected improvement of the
//! whole set `S ∪ {x}`, where `S` holds the pending and already chosen points,
//!
//! `qEI(S ∪ {x}) = E[max(0, y* − min_{s ∈ S ∪ {x}} f(s))] ≈ (1/M) Σₘ max(0, y* − min f⁽ᵐ⁾)`.
//!
//! Joint samples are `f⁽ᵐ⁾ = μ + C^{1/2} z⁽ᵐ⁾` with fixed (seeded) base normals `z⁽ᵐ⁾`, so the
//! estimate is a deterministic, almost-everywhere smooth function of `x` (common random
//! numbers). The joint covariance is built incrementally: with `L_S` the Cholesky factor of the
//! posterior covariance of `S`, `l = L_S⁻¹ c(S, x)` and Schur complement `r² = s²(x) − lᵀl`,
//! `f_x⁽ᵐ⁾ = μ(x) + lᵀ z_S⁽ᵐ⁾ + r z_x⁽ᵐ⁾`, so one candidate costs `O(n² + M·|S|)`.

use faer::{Mat, Side};

use crate::acquisition::Acquisition;
use crate::gp::Gp;
use crate::kernel::Kernel;
use crate::rng::Rng;

/// Greedy Monte Carlo q-EI of a candidate joining a fixed set (standardized; minimization).
#[derive(Debug, Clone)]
pub struct QEi<'a> {
    gp: &'a Gp,
    best: f64,
    set: Vec<Vec<f64>>,
    /// `L⁻¹ k(X, s)` for each set point (columns).
    set_whitened: Mat<f64>,
    /// Row-major lower factor of the set's posterior covariance, `k × k`.
    set_chol: Vec<f64>,
    /// Base normals, `samples × (k + 1)`, row-major.
    base: Vec<f64>,
    /// Per sample, the minimum of the set's sampled values (`+∞` when the set is empty).
    set_min: Vec<f64>,
    samples: usize,
}

impl<'a> QEi<'a> {
    /// q-EI of one point joining `set`, with `samples` base draws from `seed`.
    pub fn new(gp: &'a Gp, best: f64, set: Vec<Vec<f64>>, samples: usize, seed: u64) -> QEi<'a> {
        let k = set.len();
        let mut rng = Rng::with_stream(seed, 3);
        let base: Vec<f64> = (0..samples * (k + 1)).map(|_| rng.normal()).collect();
        let set_whitened = gp.whitened_cross(&set);
        let prior = gp.kernel().prior_variance();
        let mut cov = Mat::<f64>::from_fn(k, k, |i, j| {
            let dot: f64 = (0..set_whitened.nrows())
                .map(|r| set_whitened[(r, i)] * set_whitened[(r, j)])
                .sum();
            gp.kernel().value(&set[i], &set[j]) - dot
        });
        let mut set_chol = vec![0.0; k * k];
        let mut jitter = 1e-9 * prior;
        for _ in 0..8 {
            if let Ok(llt) = cov.llt(Side::Lower) {
                let l = llt.L();
                for i in 0..k {
                    for j in 0..=i {
                        set_chol[i * k + j] = l[(i, j)];
                    }
                }
                break;
            }
            for i in 0..k {
                cov[(i, i)] += jitter;
            }
            jitter *= 10.0;
        }
        let (means, _) = gp.predict_batch(&set);
        let set_min = (0..samples)
            .map(|m| {
                let z = &base[m * (k + 1)..m * (k + 1) + k];
                (0..k)
                    .map(|i| means[i] + (0..=i).map(|j| set_chol[i * k + j] * z[j]).sum::<f64>())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        QEi {
            gp,
            best,
            set,
            set_whitened,
            set_chol,
            base,
            set_min,
            samples,
        }
    }

    /// The estimate from the candidate's whitened cross-covariance `v = L⁻¹k(X, x)` and moments.
    fn estimate(&self, x: &[f64], v: &[f64], mean: f64, var: f64) -> f64 {
        let k = self.set.len();
        let mut cov: Vec<f64> = (0..k)
            .map(|i| {
                let dot: f64 = v
                    .iter()
                    .enumerate()
                    .map(|(r, vr)| vr * self.set_whitened[(r, i)])
                    .sum();
                self.gp.kernel().value(x, &self.set[i]) - dot
            })
            .collect();
        for i in 0..k {
            let s: f64 = (0..i).map(|j| self.set_chol[i * k + j] * cov[j]).sum();
            let diag = self.set_chol[i * k + i];
            cov[i] = if diag > 0.0 { (cov[i] - s) / diag } else { 0.0 };
        }
        let schur = (var - cov.iter().map(|c| c * c).sum::<f64>())
            .max(0.0)
            .sqrt();
        let mut total = 0.0;
        for m in 0..self.samples {
            let z = &self.base[m * (k + 1)..(m + 1) * (k + 1)];
            let f = mean + cov.iter().zip(z).map(|(c, zi)| c * zi).sum::<f64>() + schur * z[k];
            total += (self.best - f.min(self.set_min[m])).max(0.0);
        }
        total / self.samples as f64
    }
}

impl Acquisition for QEi<'_> {
    fn dim(&self) -> usize {
        self.gp.x().first().map_or(0, Vec::len)
    }

    fn value(&self, x: &[f64]) -> f64 {
        let cross = self.gp.whitened_cross(std::slice::from_ref(&x.to_vec()));
        let v: Vec<f64> = (0..cross.nrows()).map(|r| cross[(r, 0)]).collect();
        let (mean, var) = self.gp.predict_standardized(x);
        self.estimate(x, &v, mean, var)
    }

    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        let (means, vars) = self.gp.predict_batch(points);
        let mut out = Vec::with_capacity(points.len());
        for (chunk_index, chunk) in points.chunks(256).enumerate() {
            let cross = self.gp.whitened_cross(chunk);
            for (j, x) in chunk.iter().enumerate() {
                let v: Vec<f64> = (0..cross.nrows()).map(|r| cross[(r, j)]).collect();
                let index = chunk_index * 256 + j;
                out.push(self.estimate(x, &v, means[index], vars[index]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::ei::expected_improvement;
    use crate::kernel::Matern52;

    fn gp() -> Gp {
        let x = Rng::new(21).latin_hypercube(10, 2);
        let y: Vec<f64> = x.iter().map(|p| (4.0 * p[0]).sin() + p[1]).collect();
        Gp::new(Matern52::new(2, 0.3, 1.0), 1e-6, x, &y).expect("factors")
    }

    #[test]
    fn empty_set_matches_analytic_ei() {
        let gp = gp();
        let best = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let q = QEi::new(&gp, best, vec![], 20_000, 1);
        for p in [[0.3, 0.3], [0.8, 0.1]] {
            let (mean, var) = gp.predict_standardized(&p);
            let exact = expected_improvement(mean, var.sqrt(), best);
            let mc = q.value(&p);
            assert!(
                (mc - exact).abs() < 0.05 * exact.max(1e-3),
                "{mc} vs {exact}"
            );
        }
    }

    #[test]
    fn a_point_next_to_the_set_adds_little() {
        let gp = gp();
        let best = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let set = vec![vec![0.55, 0.45]];
        let alone = QEi::new(&gp, best, vec![], 2000, 2).value(&set[0]);
        let joined = QEi::new(&gp, best, set.clone(), 2000, 2);
        let next_to = joined.value(&[0.5501, 0.4501]);
        assert!(next_to <= alone * 1.01 + 1e-9, "{next_to} vs {alone}");
        assert!(joined.value(&[0.05, 0.95]) >= next_to - 1e-12);
        let values = joined.values(&[vec![0.2, 0.2], vec![0.9, 0.9]]);
        assert!((values[0] - joined.value(&[0.2, 0.2])).abs() < 1e-9);
    }
}
