//! Normal-distribution functions in log space for the acquisition functions.
//!
//! `h(z) = φ(z) + z Φ(z)` is the expected improvement of a standard normal over `-z`. Its
//! logarithm follows Ament, Daulton, Eriksson, Balandat and Bakshy, "Unexpected improvements to
//! expected improvement for Bayesian optimization", NeurIPS 2023 (the `log_h` of their eq. 9):
//! the direct formula where it is accurate, `log φ(z) + log(1 − |z| Φ(z)/φ(z))` in the middle,
//! and the asymptotic series `h(z) = φ(z)/z² (1 − 3/z² + 15/z⁴ − 105/z⁶ + 945/z⁸ − …)` (the
//! Mills-ratio expansion, Abramowitz and Stegun 26.2.12) far in the tail, so `log h` stays finite
//! and accurate for every finite `z`. `erfc` comes from `libm` (a port of musl/FreeBSD).

use std::f64::consts::{PI, SQRT_2};

/// `ln(2π)/2`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
/// Below this `z`, the asymptotic series is used.
const TAIL_Z: f64 = -25.0;

/// The standard normal density.
pub fn norm_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// The log of the standard normal density.
pub fn log_norm_pdf(z: f64) -> f64 {
    -0.5 * z * z - HALF_LN_2PI
}

/// The standard normal CDF.
pub fn norm_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / SQRT_2)
}

/// The log of the standard normal CDF, accurate in both tails.
pub fn log_norm_cdf(z: f64) -> f64 {
    if z > 3.0 {
        (-0.5 * libm::erfc(z / SQRT_2)).ln_1p()
    } else if z > -30.0 {
        norm_cdf(z).ln()
    } else {
        let inv2 = 1.0 / (z * z);
        log_norm_pdf(z) - (-z).ln()
            + (1.0 - inv2 + 3.0 * inv2 * inv2 - 15.0 * inv2 * inv2 * inv2).ln()
    }
}

/// `log h(z)` with `h(z) = φ(z) + z Φ(z)`.
pub fn log_h(z: f64) -> f64 {
    if z > -1.0 {
        (norm_pdf(z) + z * norm_cdf(z)).ln()
    } else if z > TAIL_Z {
        let mills = norm_cdf(z) / norm_pdf(z);
        log_norm_pdf(z) + (-(-z) * mills).ln_1p()
    } else {
        let inv2 = 1.0 / (z * z);
        let series =
            1.0 - 3.0 * inv2 + 15.0 * inv2.powi(2) - 105.0 * inv2.powi(3) + 945.0 * inv2.powi(4);
        log_norm_pdf(z) - 2.0 * (-z).ln() + series.ln()
    }
}

/// `d log h / dz = Φ(z) / h(z)`.
pub fn dlog_h(z: f64) -> f64 {
    (log_norm_cdf(z) - log_h(z)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_h_is_finite_and_continuous() {
        let mut previous = log_h(-200.0);
        let mut z = -200.0;
        while z < 10.0 {
            let value = log_h(z);
            assert!(value.is_finite(), "log_h({z}) = {value}");
            assert!(value >= previous - 1e-9, "log_h decreases at {z}");
            previous = value;
            z += 0.01;
        }
        for boundary in [-1.0, TAIL_Z] {
            let (below, above) = (log_h(boundary - 1e-9), log_h(boundary + 1e-9));
            assert!(
                (below - above).abs() < 1e-8 * below.abs().max(1.0),
                "jump at {boundary}: {below} {above}"
            );
        }
        assert!((log_h(0.0) - norm_pdf(0.0).ln()).abs() < 1e-15);
    }

    #[test]
    fn dlog_h_matches_finite_differences() {
        for z in [
            -60.0, -26.0, -24.0, -10.0, -3.0, -1.5, -0.5, 0.0, 0.7, 2.0, 6.0,
        ] {
            let step = 1e-5;
            let numeric = (log_h(z + step) - log_h(z - step)) / (2.0 * step);
            let analytic = dlog_h(z);
            let scale = 1f64.max(numeric.abs()).max(analytic.abs());
            assert!(
                (numeric - analytic).abs() / scale < 1e-6,
                "z = {z}: {numeric} vs {analytic}"
            );
        }
    }

    #[test]
    fn log_norm_cdf_tails() {
        assert!((log_norm_cdf(0.0) - 0.5f64.ln()).abs() < 1e-15);
        assert!(log_norm_cdf(-40.0).is_finite());
        assert!((log_norm_cdf(-29.999) - log_norm_cdf(-30.001)).abs() < 0.1);
        assert!(log_norm_cdf(10.0) < 0.0 && log_norm_cdf(10.0) > -1e-20);
    }
}
