//! Test support: analytic gradients checked against central differences, one coordinate at a
//! time, with a relative tolerance whose denominator has a floor (so gradients near zero are
//! compared absolutely).

/// How a gradient is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradCheck {
    /// The central difference's half-width.
    pub step: f64,
    /// The smallest denominator of the relative error.
    pub floor: f64,
    /// The largest relative error `|numeric − analytic| / max(floor, |numeric|, |analytic|)`.
    pub tolerance: f64,
}

impl GradCheck {
    /// Smooth closed forms (kernels, likelihoods, priors, posterior moments, LogEI).
    pub(crate) const SMOOTH: GradCheck = GradCheck {
        step: 1e-5,
        floor: 1.0,
        tolerance: 1e-6,
    };

    /// Monte Carlo q-LogEI: a smaller step (its samples are fixed, but the soft maximum is
    /// sharp), and a looser tolerance.
    pub(crate) const MONTE_CARLO: GradCheck = GradCheck {
        step: 1e-7,
        floor: 1e-3,
        tolerance: 1e-4,
    };

    /// Asserts that `analytic` is the gradient of `f` at `x` in every coordinate.
    pub(crate) fn assert(
        &self,
        f: impl FnMut(&[f64]) -> f64,
        x: &[f64],
        analytic: &[f64],
        what: &str,
    ) {
        self.assert_coordinates(f, x, analytic, 0..x.len(), what);
    }

    /// Asserts that `analytic[j]` is `f`'s partial derivative at `x` for each `j` of
    /// `coordinates`.
    pub(crate) fn assert_coordinates(
        &self,
        mut f: impl FnMut(&[f64]) -> f64,
        x: &[f64],
        analytic: &[f64],
        coordinates: impl IntoIterator<Item = usize>,
        what: &str,
    ) {
        let mut probe = x.to_vec();
        for j in coordinates {
            probe[j] = x[j] + self.step;
            let plus = f(&probe);
            probe[j] = x[j] - self.step;
            let minus = f(&probe);
            probe[j] = x[j];
            let numeric = (plus - minus) / (2.0 * self.step);
            let scale = self.floor.max(numeric.abs()).max(analytic[j].abs());
            assert!(
                (numeric - analytic[j]).abs() / scale < self.tolerance,
                "{what}, coordinate {j}: numeric {numeric}, analytic {}",
                analytic[j]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_gradient_passes() {
        let f = |x: &[f64]| x[0] * x[0] + 3.0 * x[1];
        GradCheck::SMOOTH.assert(f, &[0.5, 2.0], &[1.0, 3.0], "bowl");
    }

    #[test]
    #[should_panic(expected = "coordinate 1")]
    fn a_wrong_partial_derivative_fails_and_names_its_coordinate() {
        let f = |x: &[f64]| x[0] * x[0] + 3.0 * x[1];
        GradCheck::SMOOTH.assert(f, &[0.5, 2.0], &[1.0, 3.001], "bowl");
    }

    #[test]
    fn only_the_named_coordinates_are_checked() {
        let f = |x: &[f64]| x[0] + if x[1] > 0.5 { 1.0 } else { 0.0 };
        GradCheck::SMOOTH.assert_coordinates(f, &[0.2, 0.5], &[1.0, 0.0], [0], "step");
    }
}
