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
        };
        kernel.refresh();
        kernel
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
        let r2: f64 = a
            .iter()
            .zip(b)
            .zip(&self.inv_length_scales_sq)
            .map(|((x, y), w)| (x - y) * (x - y) * w)
            .sum();
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
            let diff = a[i] - b[i];
            *g = common * diff * diff * self.inv_length_scales_sq[i];
        }
        grad[a.len()] = value;
        value
    }

    fn value_and_x_grad(&self, a: &[f64], b: &[f64], grad: &mut [f64]) -> f64 {
        let (r2, e, poly) = self.parts(a, b);
        let common = -self.signal_variance * (5.0 / 3.0) * poly * e;
        for (i, g) in grad.iter_mut().enumerate() {
            *g = common * (a[i] - b[i]) * self.inv_length_scales_sq[i];
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
        let transposed: Vec<f64> = (0..d).flat_map(|k| xs.iter().map(move |x| x[k])).collect();
        let mut out = Mat::<f64>::zeros(n, points.len());
        let mut r2 = vec![0.0; n];
        for (j, point) in points.iter().enumerate() {
            r2.fill(0.0);
            for (k, w) in self.inv_length_scales_sq.iter().enumerate() {
                let pk = point[k];
                for (r, xk) in r2.iter_mut().zip(&transposed[k * n..(k + 1) * n]) {
                    let diff = xk - pk;
                    *r += diff * diff * w;
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
mod tests {
    use super::*;

    fn assert_close_grad(numeric: f64, analytic: f64, what: &str) {
        let scale = 1f64.max(numeric.abs()).max(analytic.abs());
        assert!(
            (numeric - analytic).abs() / scale < 1e-6,
            "{what}: numeric {numeric} analytic {analytic}"
        );
    }

    fn kernel() -> Matern52 {
        let mut k = Matern52::new(3, 0.4, 1.0);
        k.set_params(&[-0.9f64, 0.2, -1.7, 0.3]);
        k
    }

    #[test]
    fn value_at_zero_distance_is_the_variance() {
        let k = kernel();
        let x = [0.1, 0.5, 0.9];
        assert!((k.value(&x, &x) - 0.3f64.exp()).abs() < 1e-14);
        assert!(k.value(&x, &[0.9, 0.1, 0.2]) < k.value(&x, &[0.12, 0.5, 0.9]));
    }

    #[test]
    fn param_gradient_matches_finite_differences() {
        let k = kernel();
        let (a, b) = ([0.13, 0.57, 0.91], [0.44, 0.21, 0.86]);
        let mut grad = vec![0.0; 4];
        k.value_and_param_grad(&a, &b, &mut grad);
        let step = 1e-5;
        for i in 0..4 {
            let mut plus = k.clone();
            let mut p = k.params();
            p[i] += step;
            plus.set_params(&p);
            let mut minus = k.clone();
            p[i] -= 2.0 * step;
            minus.set_params(&p);
            let numeric = (plus.value(&a, &b) - minus.value(&a, &b)) / (2.0 * step);
            assert_close_grad(numeric, grad[i], &format!("param {i}"));
        }
    }

    #[test]
    fn cross_matches_pointwise_values() {
        let k = kernel();
        let xs = vec![
            vec![0.1, 0.2, 0.3],
            vec![0.9, 0.4, 0.05],
            vec![0.5, 0.5, 0.5],
        ];
        let points = vec![vec![0.12, 0.7, 0.33], vec![0.9, 0.4, 0.05]];
        let cross = k.cross(&xs, &points);
        for (i, x) in xs.iter().enumerate() {
            for (j, p) in points.iter().enumerate() {
                assert_eq!(cross[(i, j)], k.value(x, p), "({i}, {j})");
            }
        }
    }

    #[test]
    fn x_gradient_matches_finite_differences() {
        let k = kernel();
        let (a, b) = ([0.13, 0.57, 0.91], [0.44, 0.21, 0.86]);
        let mut grad = vec![0.0; 3];
        k.value_and_x_grad(&a, &b, &mut grad);
        let step = 1e-5;
        for i in 0..3 {
            let (mut plus, mut minus) = (a, a);
            plus[i] += step;
            minus[i] -= step;
            let numeric = (k.value(&plus, &b) - k.value(&minus, &b)) / (2.0 * step);
            assert_close_grad(numeric, grad[i], &format!("x {i}"));
        }
    }
}
