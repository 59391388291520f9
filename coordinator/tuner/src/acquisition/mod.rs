//! Acquisition functions: what the optimizer maximizes to choose the next point. [`ei::LogEi`]
//! is log expected improvement for one point; [`qei::QEi`] is the Monte Carlo expected
//! improvement of a point added to a set of pending or already chosen points. Both work on the
//! GP's standardized scale and minimize the objective (the caller negates maximized values).

pub mod ei;
pub mod qei;

/// A function of a point in `[0,1]^d` to maximize. `Sync`, so that candidates are scored and
/// starts refined on rayon's pool ([`crate::optimize::maximize`]).
pub trait Acquisition: Sync {
    /// The input dimension.
    fn dim(&self) -> usize;
    /// The value at `x` (larger is better).
    fn value(&self, x: &[f64]) -> f64;
    /// The value and its gradient with respect to `x` (written to `grad`). The default uses
    /// central differences with step `1e-6`.
    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let step = 1e-6;
        let mut probe = x.to_vec();
        for j in 0..x.len() {
            probe[j] = x[j] + step;
            let plus = self.value(&probe);
            probe[j] = x[j] - step;
            let minus = self.value(&probe);
            probe[j] = x[j];
            grad[j] = (plus - minus) / (2.0 * step);
        }
        self.value(x)
    }
    /// The values at many points (implementations may batch the linear algebra).
    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        points.iter().map(|p| self.value(p)).collect()
    }
}
