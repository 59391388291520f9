//! Monte Carlo q-LogEI (Ament, Daulton, Eriksson, Balandat and Bakshy, "Unexpected
//! improvements to expected improvement for Bayesian optimization", NeurIPS 2023, §4), used
//! greedily: the value of a candidate `x` is the log expected improvement of the whole set
//! `S ∪ {x}`, where `S` holds the pending and already chosen points (Ginsbourger, Le Riche and
//! Carraro 2010; the reparameterized estimator of Wilson, Hutter and Deisenroth, NeurIPS 2018).
//!
//! Joint samples are `f⁽ᵐ⁾ = μ + C^{1/2} z⁽ᵐ⁾`. The base normals `z⁽ᵐ⁾` are quasi-random:
//! digitally shifted Sobol' points ([`crate::sobol`]) mapped by the normal quantile, fixed for a
//! seed, so the estimate is a deterministic smooth function of `x` with a lower variance than
//! i.i.d. draws give. The estimate is kept in log form with the hard maxima smoothed,
//!
//! `qLogEI = ln (1/M) Σₘ exp(τₘ ln Σ_{s ∈ S ∪ {x}} exp(ℓₛ⁽ᵐ⁾ / τₘ))`,
//! `ℓₛ⁽ᵐ⁾ = ln(τ₀ fatplus((y* − fₛ⁽ᵐ⁾) / τ₀))`,
//!
//! (a softplus with a heavy left tail for `max(0, ·)`, `special::log_fatplus`;
//! log-sum-exp for the maximum over the set; the temperatures `τ₀ = 10⁻⁶` and `τₘ = 10⁻²` are
//! BoTorch's defaults for `qLogExpectedImprovement`), so where no sample improves the value is a
//! negative but finite number whose gradient still points towards improvement, instead of a flat
//! zero, and samples far from improving still weigh against each other.
//!
//! The joint covariance is built incrementally: with `L_S` the Cholesky factor of the posterior
//! covariance of `S`, `l = L_S⁻¹ c(S, x)` and Schur complement `r² = s²(x) − lᵀl`,
//! `f_x⁽ᵐ⁾ = μ(x) + lᵀ z_S⁽ᵐ⁾ + r z_x⁽ᵐ⁾`, so one candidate costs `O(n² + M·|S|)`. The gradient
//! for the refinement is exact at about twice that cost: with `βₛ = K⁻¹k(X, s)` kept per set
//! point, `∇ₓ c(s, x) = ∇ₓk(x, s) − Σᵢ βₛᵢ ∇ₓk(x, xᵢ)`.
//!
//! A sample in which the set already improves far more than the candidate could is the set's
//! value exactly (the smoothed maximum ignores a term more than `40 τₘ` below the other), so
//! each sample keeps the candidate value from which that holds (`unchanged_from`, found once by
//! bisection) and scoring skips its logarithms there, taking the sample's term of the Monte
//! Carlo mean from an exponential computed once. Late in a batch most samples are skipped; the
//! two made q = 8 proposals about a quarter faster, every value the same to `10⁻¹²`
//! (docs/BENCHMARKS.md §2).

use faer::{Mat, Side};
use rayon::prelude::*;

use crate::acquisition::Acquisition;
use crate::gp::{BATCH_CHUNK, Gp};
use crate::kernel::Kernel;
use crate::rng::Rng;
use crate::sobol::sobol_points;
use crate::special::{log_fatplus, log_fatplus_value, norm_quantile};
use crate::{Error, Result};

/// The softplus temperature of the improvement, `τ₀` (standardized units).
const TAU_RELU: f64 = 1e-6;
/// The log-sum-exp temperature of the maximum over the set, `τₘ`.
const TAU_MAX: f64 = 1e-2;
/// Half the spacing of the 32-bit Sobol' grid: keeps every base point inside `(0, 1)`.
const HALF_GRID: f64 = 1.0 / (1u64 << 33) as f64;

/// `ℓ = ln(τ₀ fatplus((y* − f) / τ₀))` and `dℓ/df`.
fn log_improvement(best: f64, f: f64) -> (f64, f64) {
    let (value, slope) = log_fatplus((best - f) / TAU_RELU);
    (TAU_RELU.ln() + value, -slope / TAU_RELU)
}

/// `ℓ` of [`log_improvement`] without its derivative (scoring needs no gradient).
fn log_improvement_value(best: f64, f: f64) -> f64 {
    TAU_RELU.ln() + log_fatplus_value((best - f) / TAU_RELU)
}

/// The gap between two terms, in units of `τₘ`, beyond which [`smooth_max`] returns the larger
/// exactly (the smaller adds less than `10⁻¹⁷` of it).
const EXACT_GAP: f64 = 40.0;

/// `τₘ ln(exp(a/τₘ) + exp(b/τₘ))` and the weight of `b`, `∂/∂b`.
fn smooth_max(a: f64, b: f64) -> (f64, f64) {
    let gap = (a - b).abs() / TAU_MAX;
    if gap > EXACT_GAP || a == f64::NEG_INFINITY {
        // The smaller term adds less than 10⁻¹⁷ of the larger.
        return if b >= a { (b, 1.0) } else { (a, 0.0) };
    }
    let small = (-gap).exp();
    let value = a.max(b) + TAU_MAX * small.ln_1p();
    let weight = if b >= a {
        1.0 / (1.0 + small)
    } else {
        small / (1.0 + small)
    };
    (value, weight)
}

/// The candidate value `f` at and above which a sample whose set has the smoothed log improvement
/// `set_log` is unchanged by the candidate: there `ℓ(f)` ([`log_improvement_value`], decreasing
/// in `f`) is more than [`EXACT_GAP`]` τₘ` below `set_log`, so [`smooth_max`] returns `set_log`
/// exactly and scoring can skip the sample's logarithms. Found by bisection; the value returned
/// always satisfies the bound (`+∞` when the set is empty).
fn unchanged_from(best: f64, set_log: f64) -> f64 {
    if set_log == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    let floor = set_log - EXACT_GAP * TAU_MAX;
    let below = |f: f64| log_improvement_value(best, f) < floor;
    // `hi` above the best value with ℓ(hi) below the floor, `lo` under it with ℓ(lo) at or
    // above it; each found by doubling the distance from `best`.
    let mut step = TAU_RELU;
    while !below(best + step) {
        step *= 2.0;
        if step > 1e300 {
            return f64::INFINITY;
        }
    }
    let mut hi = best + step;
    let mut step = TAU_RELU;
    while below(best - step) {
        step *= 2.0;
        if step > 1e300 {
            return f64::NEG_INFINITY;
        }
    }
    let mut lo = best - step;
    // To a thousandth of the distance from `best`: a looser bound only skips fewer samples.
    while hi - lo > 1e-3 * (hi - best).max(TAU_RELU) {
        let mid = lo + 0.5 * (hi - lo);
        if mid <= lo || mid >= hi {
            break;
        }
        if below(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// `ln((1/M) Σ exp(vₘ))`, with the softmax weights written to `weights` when asked.
fn log_mean_exp(values: &[f64], weights: Option<&mut [f64]>) -> f64 {
    let top = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = match weights {
        Some(weights) => {
            // Each exponential once: kept as the weight, then normalized.
            for (w, v) in weights.iter_mut().zip(values) {
                *w = (v - top).exp();
            }
            let sum: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            sum
        }
        None => values.iter().map(|v| (v - top).exp()).sum(),
    };
    top + sum.ln() - (values.len() as f64).ln()
}

/// Greedy Monte Carlo q-LogEI of a candidate joining a fixed set (standardized; minimization).
#[derive(Debug, Clone)]
pub struct QEi<'a> {
    gp: &'a Gp,
    best: f64,
    set: Vec<Vec<f64>>,
    /// `L⁻¹ k(X, s)` for each set point (columns).
    set_whitened: Mat<f64>,
    /// `K⁻¹ k(X, s)` for each set point, so that `∇ₓ(vᵀ L⁻¹k(X, s)) = Σᵢ βᵢ ∇ₓk(x, xᵢ)`.
    set_beta: Vec<Vec<f64>>,
    /// Row-major lower factor of the set's posterior covariance, `k × k`.
    set_chol: Vec<f64>,
    /// Base normals, `samples × (k + 1)`, row-major.
    base: Vec<f64>,
    /// Per sample, the set's smoothed log improvement `τₘ ln Σₛ exp(ℓₛ/τₘ)` (`−∞` when the
    /// set is empty).
    set_log: Vec<f64>,
    /// Per sample, the candidate value from which the sample is `set_log` exactly
    /// ([`unchanged_from`]).
    unchanged: Vec<f64>,
    /// The largest of `set_log`, and per sample `exp(set_log − set_top)`: an unchanged sample's
    /// term of the mean, precomputed.
    set_top: f64,
    set_exp: Vec<f64>,
    samples: usize,
}

impl<'a> QEi<'a> {
    /// q-LogEI of one point joining `set`, with `samples` Sobol' base points shifted by `seed`.
    ///
    /// # Errors
    /// [`Error::NotPositiveDefinite`] when the set's posterior covariance cannot be factored
    /// even with a jitter of 1e-2 of the prior variance. The joint samples would then be wrong,
    /// so the caller must choose the point another way (BO falls back to the constant liar),
    /// never with the covariance silently dropped.
    pub fn new(
        gp: &'a Gp,
        best: f64,
        set: Vec<Vec<f64>>,
        samples: usize,
        seed: u64,
    ) -> Result<QEi<'a>> {
        let k = set.len();
        let mut rng = Rng::with_stream(seed, 3);
        let base: Vec<f64> = sobol_points(samples, k + 1, 0, &mut rng)
            .into_iter()
            .flatten()
            .map(|u| norm_quantile(u + HALF_GRID))
            .collect();
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
        let mut factored = k == 0;
        for _ in 0..8 {
            if let Ok(llt) = cov.llt(Side::Lower) {
                let l = llt.L();
                for i in 0..k {
                    for j in 0..=i {
                        set_chol[i * k + j] = l[(i, j)];
                    }
                }
                factored = set_chol.iter().all(|v| v.is_finite());
                break;
            }
            for i in 0..k {
                cov[(i, i)] += jitter;
            }
            jitter *= 10.0;
        }
        if !factored {
            return Err(Error::NotPositiveDefinite {
                n: k,
                max_jitter: jitter / 10.0,
            });
        }
        let set_beta = (0..k)
            .map(|i| gp.backward(set_whitened.col(i).iter().copied().collect()))
            .collect();
        let (means, _) = gp.predict_batch(&set);
        let set_log = (0..samples)
            .map(|m| {
                let z = &base[m * (k + 1)..m * (k + 1) + k];
                (0..k)
                    .map(|i| {
                        let f = means[i] + (0..=i).map(|j| set_chol[i * k + j] * z[j]).sum::<f64>();
                        log_improvement(best, f).0
                    })
                    .fold(f64::NEG_INFINITY, |a, b| smooth_max(a, b).0)
            })
            .collect::<Vec<f64>>();
        let unchanged = set_log.iter().map(|l| unchanged_from(best, *l)).collect();
        let set_top = set_log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let set_exp = set_log
            .iter()
            .map(|l| {
                if set_top.is_finite() {
                    (l - set_top).exp()
                } else {
                    0.0
                }
            })
            .collect();
        Ok(QEi {
            gp,
            best,
            set,
            set_whitened,
            set_beta,
            set_chol,
            base,
            set_log,
            unchanged,
            set_top,
            set_exp,
            samples,
        })
    }

    /// `vᵀ L⁻¹k(X, s)` for each set point `s`, from the candidate's whitened cross-covariance
    /// `v = L⁻¹k(X, x)`.
    fn set_dots(&self, v: &[f64]) -> Vec<f64> {
        (0..self.set.len())
            .map(|i| {
                let column = self.set_whitened.col_as_slice(i);
                v.iter().zip(column).map(|(a, b)| a * b).sum()
            })
            .collect()
    }

    /// The estimate from the candidate's moments and `dots` ([`QEi::set_dots`]).
    fn estimate(&self, x: &[f64], dots: &[f64], mean: f64, var: f64) -> f64 {
        let k = self.set.len();
        let mut cov: Vec<f64> = (0..k)
            .map(|i| self.gp.kernel().value(x, &self.set[i]) - dots[i])
            .collect();
        for i in 0..k {
            let s: f64 = (0..i).map(|j| self.set_chol[i * k + j] * cov[j]).sum();
            let diag = self.set_chol[i * k + i];
            cov[i] = if diag > 0.0 { (cov[i] - s) / diag } else { 0.0 };
        }
        let schur = (var - cov.iter().map(|c| c * c).sum::<f64>())
            .max(0.0)
            .sqrt();
        // `ln((1/M) Σₘ exp(vₘ))` over the samples' values `vₘ`: the unchanged samples' terms
        // come from `set_exp` (so they cost no exponential), the others are kept to be summed
        // once their largest value is known.
        let mut unchanged_sum = 0.0;
        let mut changed = Vec::new();
        for m in 0..self.samples {
            let z = &self.base[m * (k + 1)..(m + 1) * (k + 1)];
            let f = mean + cov.iter().zip(z).map(|(c, zi)| c * zi).sum::<f64>() + schur * z[k];
            if f >= self.unchanged[m] {
                unchanged_sum += self.set_exp[m];
            } else {
                changed.push(smooth_max(self.set_log[m], log_improvement_value(self.best, f)).0);
            }
        }
        let top = changed.iter().copied().fold(self.set_top, f64::max);
        let mut sum: f64 = changed.iter().map(|v| (v - top).exp()).sum();
        if unchanged_sum > 0.0 {
            sum += unchanged_sum * (self.set_top - top).exp();
        }
        top + sum.ln() - (self.samples as f64).ln()
    }
}

impl QEi<'_> {
    /// The estimate and its exact gradient with respect to `x`. With `c = L_S⁻¹ c(S, x)` and
    /// `r = √(s²(x) − cᵀc)`, sample `m` contributes `pₘ wₘ (dℓ/df) (∇μ + Σᵢ zᵢ ∇cᵢ + z_x ∇r)`,
    /// where `pₘ` is its softmax weight in the mean and `wₘ` the candidate's in the maximum.
    fn estimate_with_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let (d, k) = (x.len(), self.set.len());
        let (mut mean_grad, mut var_grad) = (vec![0.0; d], vec![0.0; d]);
        let parts = self
            .gp
            .predict_with_grad_parts(x, &mut mean_grad, &mut var_grad);
        let v = &parts.whitened;
        // Cross-covariances with the set and their gradients (row i of `cov_grad`).
        let mut cov = vec![0.0; k];
        let mut cov_grad = vec![0.0; k * d];
        for i in 0..k {
            let row = &mut cov_grad[i * d..(i + 1) * d];
            let value = self.gp.kernel().value_and_x_grad(x, &self.set[i], row);
            let dot: f64 = v
                .iter()
                .enumerate()
                .map(|(r, vr)| vr * self.set_whitened[(r, i)])
                .sum();
            cov[i] = value - dot;
            for (b, g) in self.set_beta[i].iter().zip(parts.k_grads.chunks_exact(d)) {
                for (out, gj) in row.iter_mut().zip(g) {
                    *out -= b * gj;
                }
            }
        }
        for i in 0..k {
            let diag = self.set_chol[i * k + i];
            let s: f64 = (0..i).map(|j| self.set_chol[i * k + j] * cov[j]).sum();
            cov[i] = if diag > 0.0 { (cov[i] - s) / diag } else { 0.0 };
            for t in 0..d {
                let s: f64 = (0..i)
                    .map(|j| self.set_chol[i * k + j] * cov_grad[j * d + t])
                    .sum();
                let entry = &mut cov_grad[i * d + t];
                *entry = if diag > 0.0 { (*entry - s) / diag } else { 0.0 };
            }
        }
        let schur_sq = parts.var - cov.iter().map(|c| c * c).sum::<f64>();
        let schur = schur_sq.max(0.0).sqrt();
        let schur_grad: Vec<f64> = (0..d)
            .map(|t| {
                if schur_sq > 0.0 {
                    let cross: f64 = (0..k).map(|i| cov[i] * cov_grad[i * d + t]).sum();
                    (var_grad[t] - 2.0 * cross) / (2.0 * schur)
                } else {
                    0.0
                }
            })
            .collect();
        // Per sample: the joint smoothed log improvement and its derivative in f_x.
        let (mut joint, mut slope) = (vec![0.0; self.samples], vec![0.0; self.samples]);
        for m in 0..self.samples {
            let z = &self.base[m * (k + 1)..(m + 1) * (k + 1)];
            let f =
                parts.mean + cov.iter().zip(z).map(|(c, zi)| c * zi).sum::<f64>() + schur * z[k];
            if f >= self.unchanged[m] {
                // The candidate's weight in the maximum is zero (see `unchanged_from`).
                joint[m] = self.set_log[m];
                continue;
            }
            let (log_i, dlog_i) = log_improvement(self.best, f);
            let (value, weight) = smooth_max(self.set_log[m], log_i);
            joint[m] = value;
            slope[m] = weight * dlog_i;
        }
        let mut weights = vec![0.0; self.samples];
        let value = log_mean_exp(&joint, Some(&mut weights));
        // Σₘ sₘ (∇μ + Σᵢ zᵢ ∇cᵢ + z_x ∇r) = (Σₘ sₘ) ∇μ + Σᵢ (Σₘ sₘ zᵢ) ∇cᵢ + (Σₘ sₘ z_x) ∇r:
        // the sums over samples first, so the cost is O(M·k + k·d), not O(M·k·d).
        let mut scale_sum = 0.0;
        let mut scaled_z = vec![0.0; k + 1];
        for m in 0..self.samples {
            let scale = weights[m] * slope[m];
            if scale == 0.0 {
                continue;
            }
            scale_sum += scale;
            let z = &self.base[m * (k + 1)..(m + 1) * (k + 1)];
            for (acc, zi) in scaled_z.iter_mut().zip(z) {
                *acc += scale * zi;
            }
        }
        for (t, g) in grad.iter_mut().enumerate() {
            let along: f64 = (0..k).map(|i| cov_grad[i * d + t] * scaled_z[i]).sum();
            *g = scale_sum * mean_grad[t] + along + schur_grad[t] * scaled_z[k];
        }
        value
    }
}

impl Acquisition for QEi<'_> {
    fn dim(&self) -> usize {
        self.gp.x().first().map_or(0, Vec::len)
    }

    fn value(&self, x: &[f64]) -> f64 {
        let (mean, var, v) = self.gp.predict_whitened(x);
        self.estimate(x, &self.set_dots(&v), mean, var)
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.estimate_with_grad(x, grad)
    }

    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        // Chunks on rayon's pool, as `Gp::predict_batch`; `flat_map_iter` keeps their order.
        points
            .par_chunks(BATCH_CHUNK)
            .flat_map_iter(|chunk| {
                let (means, vars, cross) = self.gp.predict_batch_whitened(chunk);
                chunk
                    .iter()
                    .enumerate()
                    .map(|(j, x)| {
                        let dots = self.set_dots(cross.col_as_slice(j));
                        self.estimate(x, &dots, means[j], vars[j])
                    })
                    .collect::<Vec<f64>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
