//! Normal-distribution functions in log space for the acquisition functions.
//!
//! `h(z) = φ(z) + z Φ(z)` is the expected improvement of a standard normal over `-z`. Its
//! logarithm follows Ament, Daulton, Eriksson, Balandat and Bakshy, "Unexpected improvements to
//! expected improvement for Bayesian optimization", NeurIPS 2023 (the `log_h` of their eq. 9):
//! the direct formula where it is accurate, `log φ(z) + log(1 − |z| Φ(z)/φ(z))` in the middle,
//! and the asymptotic series `h(z) = φ(z)/z² (1 − 3/z² + 15/z⁴ − 105/z⁶ + 945/z⁸ − …)` (the
//! Mills-ratio expansion, Abramowitz and Stegun 26.2.12) far in the tail, so `log h` stays finite
//! and accurate for every finite `z`. `erfc` comes from `libm` (a port of musl/FreeBSD). The
//! normal quantile and a heavy-tailed log-softplus serve the Monte Carlo q-LogEI ([`crate::acquisition::qei`]).

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

/// The standard normal quantile `Φ⁻¹(p)` for `p ∈ (0, 1)` (`∓∞` at 0 and 1, NaN outside):
/// P. J. Acklam's rational approximations (2003; relative error below 1.15·10⁻⁹), then one
/// Halley step on `Φ(x) − p`, which brings it to about machine precision.
pub fn norm_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // Halley: e = Φ(x) − p (from the smaller tail, where it is accurate), u = e / φ(x).
    let e = if x < 0.0 {
        norm_cdf(x) - p
    } else {
        (1.0 - p) - norm_cdf(-x)
    };
    let u = e / norm_pdf(x);
    x - u / (1.0 + 0.5 * x * u)
}

/// The weight of the Cauchy tail of [`log_fatplus`].
const FAT_TAIL: f64 = 0.1;

/// Below this `z`, `eᶻ < 10⁻¹³` is dropped beside the tail `α/(1 + z²) > 10⁻⁴` in
/// [`log_fatplus`] (a relative change below 10⁻⁹ that saves two transcendentals a sample).
const FAT_FAR: f64 = -30.0;

/// The value of [`log_fatplus`] alone (one exponential fewer where the slope is not wanted).
pub fn log_fatplus_value(z: f64) -> f64 {
    let tail = 1.0 + z * z;
    if z < FAT_FAR {
        return (FAT_TAIL / tail).ln();
    }
    let softplus = if z > 30.0 { z } else { z.exp().ln_1p() };
    (softplus + FAT_TAIL / tail).ln()
}

/// `ln(softplus(z) + α/(1 + z²))` with `α = 0.1`: a softplus with a heavy (Cauchy) left tail, so
/// that far below zero it falls like `−2 ln|z|` instead of `z`, and log improvements of samples
/// far from improving stay comparable (the "fat" smoothing of Ament et al. 2023, §4.2). Returns
/// the value and its derivative.
pub fn log_fatplus(z: f64) -> (f64, f64) {
    let tail = 1.0 + z * z;
    if z < FAT_FAR {
        return ((FAT_TAIL / tail).ln(), -2.0 * z / tail);
    }
    let softplus = if z > 30.0 { z } else { z.exp().ln_1p() };
    let sigmoid = 1.0 / (1.0 + (-z).exp());
    let fat = softplus + FAT_TAIL / tail;
    (
        fat.ln(),
        (sigmoid - 2.0 * FAT_TAIL * z / (tail * tail)) / fat,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_alone_equals_the_value_with_its_slope() {
        for z in [-1e9, -31.0, -30.0, -5.0, -1e-3, 0.0, 0.7, 29.0, 31.0, 1e6] {
            assert_eq!(log_fatplus_value(z), log_fatplus(z).0, "z = {z}");
        }
    }

    #[test]
    fn norm_quantile_inverts_the_cdf() {
        for p in [
            1e-300,
            1e-12,
            1e-5,
            0.01,
            0.02425,
            0.2,
            0.5,
            0.7,
            0.97575,
            0.999,
            1.0 - 1e-9,
        ] {
            let x = norm_quantile(p);
            let back = if x < 0.0 {
                norm_cdf(x)
            } else {
                1.0 - norm_cdf(-x)
            };
            let tolerance = 1e-12 * p.min(1.0 - p).max(1e-300) + 1e-15;
            assert!(
                (back - p).abs() <= tolerance.max(1e-13 * p),
                "p = {p}: x = {x}, Φ(x) = {back}"
            );
        }
        assert!((norm_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-13);
        assert_eq!(norm_quantile(0.5), 0.0);
        assert_eq!(norm_quantile(0.0), f64::NEG_INFINITY);
        assert!(norm_quantile(1.5).is_nan());
    }

    #[test]
    fn log_fatplus_is_increasing_and_its_derivative_matches() {
        let mut z = -1e4;
        let mut previous = f64::NEG_INFINITY;
        while z < 60.0 {
            let (value, analytic) = log_fatplus(z);
            assert!(value.is_finite() && value > previous, "z = {z}");
            previous = value;
            let step = 1e-6 * z.abs().max(1.0);
            let numeric = (log_fatplus(z + step).0 - log_fatplus(z - step).0) / (2.0 * step);
            assert!(analytic > 0.0, "z = {z}");
            assert!(
                (numeric - analytic).abs() < 1e-6 * analytic.max(1e-3),
                "z = {z}"
            );
            z += if z < -100.0 { 97.3 } else { 0.37 };
        }
        for edge in [FAT_FAR, 30.0] {
            let (below, above) = (log_fatplus(edge - 1e-9), log_fatplus(edge + 1e-9));
            assert!((below.0 - above.0).abs() < 1e-8, "jump at {edge}");
            assert!(
                (below.1 - above.1).abs() < 1e-8,
                "derivative jump at {edge}"
            );
        }
        // The Cauchy tail: −2 ln|z| + ln α far below zero.
        assert!((log_fatplus(-1e6).0 - (0.1f64.ln() - 2.0 * 1e6f64.ln())).abs() < 1e-9);
    }

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
