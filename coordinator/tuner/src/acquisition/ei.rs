//! Log expected improvement (Jones, Schonlau and Welch 1998; log form after Ament et al.,
//! "Unexpected improvements to expected improvement for Bayesian optimization", NeurIPS 2023).
//!
//! For minimization with incumbent `y*`, posterior mean `μ` and deviation `σ`:
//! `EI = σ h(z)`, `z = (y* − μ)/σ`, `h(z) = φ(z) + zΦ(z)`, so
//! `log EI = ln σ + log h(z)` with `log h` from the private `special::log_h`, which stays finite
//! and accurate where `EI` itself underflows to 0 (the flat regions that stall gradient
//! ascent). The gradient is
//! `∇ log EI = ∇σ/σ + (Φ(z)/h(z)) ∇z`, `∇z = −(∇μ + z∇σ)/σ`, `∇σ = ∇s²/(2σ)`.

use crate::acquisition::Acquisition;
use crate::gp::Gp;
use crate::special::{dlog_h, log_h};

/// The smallest posterior variance used (standardized units), so `z` stays finite.
const MIN_VARIANCE: f64 = 1e-18;

/// Log EI of a GP over the incumbent `best` (both standardized; minimization).
#[derive(Debug, Clone, Copy)]
pub struct LogEi<'a> {
    gp: &'a Gp,
    best: f64,
}

impl<'a> LogEi<'a> {
    /// Log EI over `best`, the smallest standardized target.
    pub fn new(gp: &'a Gp, best: f64) -> LogEi<'a> {
        LogEi { gp, best }
    }

    fn of_moments(&self, mean: f64, var: f64) -> f64 {
        let sigma = var.max(MIN_VARIANCE).sqrt();
        sigma.ln() + log_h((self.best - mean) / sigma)
    }
}

/// Plain expected improvement `σ h((y* − μ)/σ)` (for tests and reports).
pub fn expected_improvement(mean: f64, sigma: f64, best: f64) -> f64 {
    let sigma = sigma.max(MIN_VARIANCE.sqrt());
    (sigma.ln() + log_h((best - mean) / sigma)).exp()
}

impl Acquisition for LogEi<'_> {
    fn dim(&self) -> usize {
        self.gp.x().first().map_or(0, Vec::len)
    }

    fn value(&self, x: &[f64]) -> f64 {
        let (mean, var) = self.gp.predict_standardized(x);
        self.of_moments(mean, var)
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let d = x.len();
        let (mut mean_grad, mut var_grad) = (vec![0.0; d], vec![0.0; d]);
        let (mean, var) = self.gp.predict_with_grad(x, &mut mean_grad, &mut var_grad);
        if var < MIN_VARIANCE {
            var_grad.fill(0.0);
        }
        let sigma = var.max(MIN_VARIANCE).sqrt();
        let z = (self.best - mean) / sigma;
        let slope = dlog_h(z);
        for j in 0..d {
            let sigma_grad = var_grad[j] / (2.0 * sigma);
            let z_grad = -(mean_grad[j] + z * sigma_grad) / sigma;
            grad[j] = sigma_grad / sigma + slope * z_grad;
        }
        sigma.ln() + log_h(z)
    }

    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        let (means, vars) = self.gp.predict_batch(points);
        means
            .iter()
            .zip(&vars)
            .map(|(m, v)| self.of_moments(*m, *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::GradCheck;
    use crate::kernel::Matern52;
    use crate::rng::Rng;

    fn gp() -> Gp {
        let mut rng = Rng::new(11);
        let x = rng.latin_hypercube(12, 2);
        let y: Vec<f64> = x.iter().map(|p| (5.0 * p[0]).cos() + 2.0 * p[1]).collect();
        Gp::new(Matern52::new(2, 0.25, 1.0), 1e-6, x, &y).expect("factors")
    }

    #[test]
    fn ei_is_non_negative_and_finite_in_log_form() {
        let gp = gp();
        let best = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let acq = LogEi::new(&gp, best);
        for p in Rng::new(2).latin_hypercube(200, 2) {
            let log_ei = acq.value(&p);
            assert!(log_ei.is_finite());
            assert!(log_ei.exp() >= 0.0);
        }
        // Far below the incumbent EI underflows, its log does not.
        let far = LogEi::new(&gp, best - 100.0);
        assert!(far.value(gp.x()[0].as_slice()).is_finite());
        assert!(expected_improvement(0.0, 1.0, -50.0) >= 0.0);
    }

    #[test]
    fn log_ei_gradient_matches_finite_differences() {
        let gp = gp();
        let best = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        for (shift, point) in [(0.0, [0.37, 0.61]), (-3.0, [0.9, 0.15]), (0.5, [0.05, 0.5])] {
            let acq = LogEi::new(&gp, best + shift);
            let mut grad = [0.0; 2];
            acq.value_and_grad(&point, &mut grad);
            GradCheck::SMOOTH.assert(
                |p| acq.value(p),
                &point,
                &grad,
                &format!("LogEI, incumbent shifted by {shift}"),
            );
        }
    }

    #[test]
    fn batch_values_match_pointwise() {
        let gp = gp();
        let acq = LogEi::new(&gp, -1.0);
        let points = Rng::new(4).latin_hypercube(50, 2);
        for (p, v) in points.iter().zip(acq.values(&points)) {
            assert!((acq.value(p) - v).abs() < 1e-8);
        }
    }
}
