//! Covariance kernels. The default is Matérn-5/2 with automatic relevance determination
//! (Rasmussen and Williams, "Gaussian Processes for Machine Learning", 2006, eq. 4.17):
//!
//! `k(a, b) = σ² (1 + √5 r + 5r²/3) exp(−√5 r)`, with `r² = Σᵢ (aᵢ − bᵢ)² / ℓᵢ²`.
//!
//! Parameters are stored as logarithms, `θ = (ln ℓ₁, …, ln ℓ_d, ln σ²)`. With
//! `e = exp(−√5 r)`, the derivatives used by the fit and by the acquisition gradients are
//! `∂k/∂ln ℓᵢ = σ² (5/3) (1 + √5 r) e (aᵢ − bᵢ)²/ℓᵢ²`, `∂k/∂ln σ² = k` and
//! `∂k/∂aᵢ = −σ² (5/3) (1 + √5 r) e (aᵢ − bᵢ)/ℓᵢ²` (no division by `r`, so all are smooth at
//! `r = 0`).
//!
//! A categorical dimension (one coordinate whose bins `[i/n, (i+1)/n)` are its `n` choices, see
//! [`crate::space`]) contributes the overlap term `1[cat(aᵢ) ≠ cat(bᵢ)]/ℓᵢ²` to `r²` instead of
//! `(aᵢ − bᵢ)²/ℓᵢ²`: the choices are unordered and all equally far apart. This is a valid
//! kernel: the indicator equals `‖eₐ − e_b‖²/2`, the squared Euclidean distance of one-hot
//! encodings scaled by `1/√2`, and Matérn-5/2 of a Euclidean distance is positive definite (the
//! overlap kernel of Ru et al., "Bayesian optimisation over multiple continuous and categorical
//! inputs", ICML 2020, inside the Matérn instead of beside it). The derivatives keep their form
//! with `(aᵢ − bᵢ)²` replaced by the indicator, and `∂k/∂aᵢ = 0` in a categorical dimension.

use faer::Mat;

/// A stationary covariance function with log-scale hyperparameters.
pub trait Kernel: Clone + std::fmt::Debug + Send + Sync {
    /// The number of hyperparameters.
    fn param_count(&self) -> usize;
    /// The hyperparameters, in log space.
    fn params(&self) -> Vec<f64>;
    /// Sets the hyperparameters (log space); `params.len()` must equal [`Kernel::param_count`].
    fn set_params(&mut self, params: &[f64]);
    /// `k(a, b)`.
    fn value(&self, a: &[f64], b: &[f64]) -> f64;
    /// `k(a, b)` and its gradient with respect to the log-hyperparameters, written to `grad`.
    fn value_and_param_grad(&self, a: &[f64], b: &[f64], grad: &mut [f64]) -> f64;
    /// `k(a, b)` and its gradient with respect to `a`, written to `grad`.
    fn value_and_x_grad(&self, a: &[f64], b: &[f64], grad: &mut [f64]) -> f64;
    /// `k(x, x)`, the prior variance.
    fn prior_variance(&self) -> f64;
    /// The length-scale of each input dimension.
    fn length_scales(&self) -> Vec<f64>;
    /// `k(xᵢ, pⱼ)` for every pair, `xs.len() × points.len()` (column `j` is point `j`).
    fn cross(&self, xs: &[Vec<f64>], points: &[Vec<f64>]) -> Mat<f64> {
        Mat::from_fn(xs.len(), points.len(), |i, j| {
            self.value(&xs[i], &points[j])
        })
    }
}

/// Matérn-5/2 with one length-scale per dimension (ARD) and a signal variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Matern52 {
    log_length_scales: Vec<f64>,
    log_signal_variance: f64,
    inv_length_scales_sq: Vec<f64>,
    signal_variance: f64,
    /// The number of choices of each categorical dimension, 0 for a numeric one; empty when
    /// every dimension is numeric.
    categories: Vec<usize>,
}

/// The choice (0-based) that coordinate `x` of a categorical dimension with `levels` choices
/// stands for, as [`crate::space::Space::decode`] reads it.
pub fn category(x: f64, levels: usize) -> usize {
    ((x.clamp(0.0, 1.0) * levels as f64).floor() as usize).min(levels.saturating_sub(1))
}

/// The squared difference of one dimension: `(a − b)²`, or `1[cat(a) ≠ cat(b)]` when the
/// dimension has `levels > 0` choices.
pub fn squared_difference(a: f64, b: f64, levels: usize) -> f64 {
    if levels == 0 {
        (a - b) * (a - b)
    } else if category(a, levels) == category(b, levels) {
        0.0
    } else {
        1.0
    }
}

const SQRT5: f64 = 2.236_067_977_499_79;

impl Matern52 {
    /// A kernel over `dim` inputs with every length-scale `length_scale` and signal variance
    /// `signal_variance`.
    pub fn new(dim: usize, length_scale: f64, signal_variance: f64) -> Matern52 {
        let mut kernel = Matern52 {
            log_length_scales: vec![length_scale.ln(); dim],
            log_signal_variance: signal_variance.ln(),
            inv_length_scales_sq: Vec::new(),
            signal_variance,
            categories: Vec::new(),
        };
        kernel.refresh();
        kernel
    }

    /// The kernel with the overlap term in the categorical dimensions: `categories[i]` is the
    /// number of choices of dimension `i`, 0 for a numeric dimension (an empty slice, or all
    /// zeros, leaves every dimension numeric).
    pub fn with_categories(mut self, categories: &[usize]) -> Matern52 {
        debug_assert!(
            categories.is_empty() || categories.len() == self.log_length_scales.len(),
            "one entry per dimension"
        );
        self.categories = if categories.iter().any(|c| *c > 0) {
            categories.to_vec()
        } else {
            Vec::new()
        };
        self
    }

    /// The number of choices of each dimension (0 for numeric); empty when all are numeric.
    pub fn categories(&self) -> &[usize] {
        &self.categories
    }

    /// The choices of dimension `k` (0 when numeric).
    fn levels(&self, k: usize) -> usize {
        self.categories.get(k).copied().unwrap_or(0)
    }

    fn refresh(&mut self) {
        self.inv_length_scales_sq = self
            .log_length_scales
            .iter()
            .map(|l| (-2.0 * l).exp())
            .collect();
        self.signal_variance = self.log_signal_variance.exp();
    }

    /// `r²` and `(σ², e, 1 + √5 r)` shared by the value and the gradients.
    fn parts(&self, a: &[f64], b: &[f64]) -> (f64, f64, f64) {
        let r2: f64 = if self.categories.is_empty() {
            a.iter()
                .zip(b)
                .zip(&self.inv_length_scales_sq)
                .map(|((x, y), w)| (x - y) * (x - y) * w)
                .sum()
        } else {
            (0..a.len())
                .map(|k| {
                    squared_difference(a[k], b[k], self.levels(k)) * self.inv_length_scales_sq[k]
                })
                .sum()
        };
        let r = r2.sqrt();
        let e = (-SQRT5 * r).exp();
        (r2, e, 1.0 + SQRT5 * r)
    }
}

impl Kernel for Matern52 {
    fn param_count(&self) -> usize {
        self.log_length_scales.len() + 1
    }

    fn params(&self) -> Vec<f64> {
        let mut p = self.log_length_scales.clone();
        p.push(self.log_signal_variance);
        p
    }

    fn set_params(&mut self, params: &[f64]) {
        debug_assert_eq!(
            params.len(),
            self.param_count(),
            "one log-parameter per length-scale plus the variance"
        );
        let d = self.log_length_scales.len();
        self.log_length_scales.copy_from_slice(&params[..d]);
        self.log_signal_variance = params[d];
        self.refresh();
    }

    fn value(&self, a: &[f64], b: &[f64]) -> f64 {
        let (r2, e, poly) = self.parts(a, b);
        self.signal_variance * (poly + 5.0 / 3.0 * r2) * e
    }

    fn value_and_param_grad(&self, a: &[f64], b: &[f64], grad: &mut [f64]) -> f64 {
        let (r2, e, poly) = self.parts(a, b);
        let value = self.signal_variance * (poly + 5.0 / 3.0 * r2) * e;
        let common = self.signal_variance * (5.0 / 3.0) * poly * e;
        for (i, g) in grad.iter_mut().take(a.len()).enumerate() {
            let sq = squared_difference(a[i], b[i], self.levels(i));
            *g = common * sq * self.inv_length_scales_sq[i];
        }
        grad[a.len()] = value;
        value
    }

    fn value_and_x_grad(&self, a: &[f64], b: &[f64], grad: &mut [f64]) -> f64 {
        let (r2, e, poly) = self.parts(a, b);
        let common = -self.signal_variance * (5.0 / 3.0) * poly * e;
        for (i, g) in grad.iter_mut().enumerate() {
            *g = if self.levels(i) == 0 {
                common * (a[i] - b[i]) * self.inv_length_scales_sq[i]
            } else {
                0.0
            };
        }
        self.signal_variance * (poly + 5.0 / 3.0 * r2) * e
    }

    fn prior_variance(&self) -> f64 {
        self.signal_variance
    }

    fn length_scales(&self) -> Vec<f64> {
        self.log_length_scales.iter().map(|l| l.exp()).collect()
    }

    /// The same arithmetic as [`Kernel::value`], a column at a time over dimension-major inputs
    /// (the inner loops run over `xs` and vectorize).
    fn cross(&self, xs: &[Vec<f64>], points: &[Vec<f64>]) -> Mat<f64> {
        let n = xs.len();
        let d = self.inv_length_scales_sq.len();
        // A categorical dimension is stored as its choice indices, compared for equality.
        let transposed: Vec<f64> = (0..d)
            .flat_map(|k| {
                let levels = self.levels(k);
                xs.iter().map(move |x| {
                    if levels == 0 {
                        x[k]
                    } else {
                        category(x[k], levels) as f64
                    }
                })
            })
            .collect();
        let mut out = Mat::<f64>::zeros(n, points.len());
        let mut r2 = vec![0.0; n];
        for (j, point) in points.iter().enumerate() {
            r2.fill(0.0);
            for (k, w) in self.inv_length_scales_sq.iter().enumerate() {
                let column = &transposed[k * n..(k + 1) * n];
                let levels = self.levels(k);
                if levels == 0 {
                    let pk = point[k];
                    for (r, xk) in r2.iter_mut().zip(column) {
                        let diff = xk - pk;
                        *r += diff * diff * w;
                    }
                } else {
                    let pk = category(point[k], levels) as f64;
                    for (r, xk) in r2.iter_mut().zip(column) {
                        if *xk != pk {
                            *r += w;
                        }
                    }
                }
            }
            let mut column = out.col_mut(j);
            for (i, r2) in r2.iter().enumerate() {
                let r = r2.sqrt();
                let e = (-SQRT5 * r).exp();
                column[i] = self.signal_variance * (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
