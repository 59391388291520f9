//! Output warping for heavy-tailed objectives: a Yeo-Johnson power transform (Yeo and Johnson,
//! "A new family of power transformations to improve normality or symmetry", Biometrika 2000)
//! of the standardized values, its exponent `λ` fitted by maximum likelihood as in
//! scikit-learn's `PowerTransformer`; HEBO (Cowen-Rivers et al., JAIR 2022) fits its GP to
//! power-transformed values for the same reason.
//!
//! The GP sees `ψ((y − m)/s; λ)` for the minimization-oriented values `y`, with `m` and `s`
//! their mean and deviation: an affine change of `y` leaves the warped values unchanged, and
//! `ψ` is strictly increasing for every `λ`, so the order of the values (which point is best)
//! is kept. Values that span decades get `λ < 1`, which compresses the large, bad values and
//! spreads the small, good ones; near-Gaussian values get `λ ≈ 1`, close to the identity.
//! `λ` is searched in `[−3, 1]` only: above 1 the good tail would be compressed, and the
//! optimizer needs resolution among its best values.
//!
//! With `z` the standardized value, `ψ(z; λ) = ((z + 1)^λ − 1)/λ` for `z ≥ 0` (`ln(z + 1)` at
//! `λ = 0`) and `−((1 − z)^{2−λ} − 1)/(2 − λ)` for `z < 0` (`−ln(1 − z)` at `λ = 2`). The profile
//! log-likelihood of `λ` under a normal model of the warped values is
//! `−(n/2) ln σ̂²(λ) + (λ − 1) Σ sign(zᵢ) ln(1 + |zᵢ|)`.

use crate::gp::{standardization, standardize};

/// Smallest and largest exponent searched. Above 1 the transform would compress the small,
/// good values of a minimization (its negative side is concave there), so 1 is the largest.
const LAMBDA_RANGE: (f64, f64) = (-3.0, 1.0);
/// Grid points of the coarse search, before the golden-section refinement.
const GRID: usize = 61;

/// A fitted monotone transform of minimization-oriented values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    mean: f64,
    std: f64,
    lambda: f64,
}

impl Warp {
    /// The identity (no warping).
    pub fn identity() -> Warp {
        Warp {
            mean: 0.0,
            std: 1.0,
            lambda: 1.0,
        }
    }

    /// Fits the exponent to `y` by maximum likelihood (the identity for fewer than 3 values
    /// or values that are all equal).
    pub fn fit(y: &[f64]) -> Warp {
        let (mean, std) = standardization(y);
        if y.len() < 3 || (std == 1.0 && y.iter().all(|v| *v == mean)) {
            return Warp::identity();
        }
        let z: Vec<f64> = y.iter().map(|v| standardize(*v, mean, std)).collect();
        let grid_step = (LAMBDA_RANGE.1 - LAMBDA_RANGE.0) / (GRID - 1) as f64;
        let (mut best, mut best_ll) = (1.0, log_likelihood(&z, 1.0));
        for i in 0..GRID {
            let lambda = LAMBDA_RANGE.0 + grid_step * i as f64;
            let ll = log_likelihood(&z, lambda);
            if ll > best_ll {
                (best, best_ll) = (lambda, ll);
            }
        }
        // Golden-section refinement on the grid cell around the best point.
        let (mut a, mut b) = (
            (best - grid_step).max(LAMBDA_RANGE.0),
            (best + grid_step).min(LAMBDA_RANGE.1),
        );
        let ratio = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..30 {
            let c = b - ratio * (b - a);
            let d = a + ratio * (b - a);
            if log_likelihood(&z, c) > log_likelihood(&z, d) {
                b = d;
            } else {
                a = c;
            }
        }
        let refined = 0.5 * (a + b);
        if log_likelihood(&z, refined) > best_ll {
            best = refined;
        }
        Warp {
            mean,
            std,
            lambda: best,
        }
    }

    /// The fitted exponent.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The warped value of `y` (strictly increasing in `y`).
    pub fn apply(&self, y: f64) -> f64 {
        yeo_johnson(standardize(y, self.mean, self.std), self.lambda)
    }

    /// The value whose warp is `w` (the inverse of [`Warp::apply`]).
    pub fn invert(&self, w: f64) -> f64 {
        self.mean + self.std * yeo_johnson_inverse(w, self.lambda)
    }
}

/// `ψ(z; λ)`.
fn yeo_johnson(z: f64, lambda: f64) -> f64 {
    if lambda == 1.0 {
        z
    } else if z >= 0.0 {
        if lambda.abs() < 1e-12 {
            z.ln_1p()
        } else {
            ((lambda * z.ln_1p()).exp() - 1.0) / lambda
        }
    } else if (lambda - 2.0).abs() < 1e-12 {
        -(-z).ln_1p()
    } else {
        -(((2.0 - lambda) * (-z).ln_1p()).exp() - 1.0) / (2.0 - lambda)
    }
}

/// The inverse of `ψ(·; λ)`.
fn yeo_johnson_inverse(w: f64, lambda: f64) -> f64 {
    if lambda == 1.0 {
        w
    } else if w >= 0.0 {
        if lambda.abs() < 1e-12 {
            w.exp_m1()
        } else {
            ((lambda * w).ln_1p() / lambda).exp_m1()
        }
    } else if (lambda - 2.0).abs() < 1e-12 {
        -(-w).exp_m1()
    } else {
        -((-(2.0 - lambda) * w).ln_1p() / (2.0 - lambda)).exp_m1()
    }
}

/// The profile log-likelihood of `λ` (up to a constant).
fn log_likelihood(z: &[f64], lambda: f64) -> f64 {
    let n = z.len() as f64;
    let w: Vec<f64> = z.iter().map(|v| yeo_johnson(*v, lambda)).collect();
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    if !(var.is_finite() && var > 0.0) {
        return f64::NEG_INFINITY;
    }
    let jacobian: f64 = z.iter().map(|v| v.signum() * v.abs().ln_1p()).sum();
    -0.5 * n * var.ln() + (lambda - 1.0) * jacobian
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heavy_tailed() -> Vec<f64> {
        (0..40)
            .map(|i| 10f64.powf(6.0 * i as f64 / 39.0) - 0.5)
            .collect()
    }

    #[test]
    fn warping_round_trips_and_keeps_order() {
        let y = heavy_tailed();
        let warp = Warp::fit(&y);
        let warped: Vec<f64> = y.iter().map(|v| warp.apply(*v)).collect();
        for pair in warped.windows(2) {
            assert!(pair[0] < pair[1], "order kept: {pair:?}");
        }
        for (v, w) in y.iter().zip(&warped) {
            let back = warp.invert(*w);
            assert!(
                (back - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{v} -> {w} -> {back}"
            );
        }
        // Negative values and both special exponents round-trip too.
        for lambda in [0.0, 2.0, -1.5, 0.4, 2.7] {
            let warp = Warp {
                mean: 1.0,
                std: 2.0,
                lambda,
            };
            for v in [-30.0, -1.0, 0.999, 1.0, 1.5, 40.0] {
                let back = warp.invert(warp.apply(v));
                assert!(
                    (back - v).abs() < 1e-9 * v.abs().max(1.0),
                    "λ {lambda}: {v} {back}"
                );
            }
        }
    }

    #[test]
    fn values_spanning_decades_are_compressed() {
        let warp = Warp::fit(&heavy_tailed());
        assert!(warp.lambda() < 0.5, "λ {}", warp.lambda());
        // Symmetric values are left close to the identity.
        let symmetric: Vec<f64> = (0..41).map(|i| f64::from(i) - 20.0).collect();
        let near = Warp::fit(&symmetric);
        assert!((near.lambda() - 1.0).abs() < 0.3, "λ {}", near.lambda());
    }

    #[test]
    fn warping_ignores_affine_changes() {
        let y = heavy_tailed();
        let a = Warp::fit(&y);
        let shifted: Vec<f64> = y.iter().map(|v| 3.0 * v + 7.0).collect();
        let b = Warp::fit(&shifted);
        assert!((a.lambda() - b.lambda()).abs() < 1e-6);
        assert!((a.apply(y[5]) - b.apply(shifted[5])).abs() < 1e-6);
    }

    #[test]
    fn constant_or_tiny_inputs_are_the_identity() {
        assert_eq!(Warp::fit(&[2.0, 2.0, 2.0]), Warp::identity());
        assert_eq!(Warp::fit(&[1.0, 5.0]), Warp::identity());
    }
}
