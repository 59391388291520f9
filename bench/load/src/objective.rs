//! The objective the simulated agents evaluate themselves: Branin on the 2-D space `x` in
//! [-5, 10], `y` in [0, 15], and the value each epoch reports on the way to it.

use std::collections::HashMap;

use anyhow::{Result, bail};
use proto::v1 as pb;

/// Branin-Hoo (Dixon and Szegő 1978): `(y - b x² + c x - 6)² + 10 (1 - 1/(8π)) cos x + 10`
/// with `b = 5.1/(4π²)`, `c = 5/π`; global minimum 0.397887.
pub fn branin(x: f64, y: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    (y - b * x * x + c * x - 6.0).powi(2) + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x.cos() + 10.0
}

/// The value reported after `epoch` of `epochs`: it falls by 1 an epoch and reaches the final
/// value at the last epoch, like a validation loss that improves while training.
pub fn epoch_value(final_value: f64, epoch: u32, epochs: u32) -> f64 {
    final_value + f64::from(epochs.saturating_sub(epoch))
}

/// A float parameter of a lease.
///
/// # Errors
/// When the parameter is missing or not a float.
pub fn float_param(params: &HashMap<String, pb::ParameterValue>, name: &str) -> Result<f64> {
    match params.get(name).and_then(|value| value.kind.as_ref()) {
        Some(pb::parameter_value::Kind::FloatValue(value)) => Ok(*value),
        other => bail!("parameter {name} is not a float: {other:?}"),
    }
}

/// Branin at a lease's `x` and `y`.
///
/// # Errors
/// When the lease lacks either parameter.
pub fn evaluate(params: &HashMap<String, pb::ParameterValue>) -> Result<f64> {
    Ok(branin(float_param(params, "x")?, float_param(params, "y")?))
}

/// The 2-D Branin search space.
pub fn branin_space() -> Vec<pb::ParameterSpec> {
    let float = |name: &str, low: f64, high: f64| pb::ParameterSpec {
        name: name.to_owned(),
        kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
            step: None,
            low,
            high,
            log: false,
            default_value: None,
        })),
    };
    vec![float("x", -5.0, 10.0), float("y", 0.0, 15.0)]
}

/// An experiment minimizing Branin with the `function` workload.
pub fn branin_spec(
    name: &str,
    strategy: pb::Strategy,
    budget_trials: u32,
    parallelism: u32,
    initial_trials: u32,
    seed: u64,
) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: name.to_owned(),
        metric: "value".to_owned(),
        direction: pb::Direction::Minimize as i32,
        strategy: strategy as i32,
        budget_trials,
        parallelism,
        parameters: branin_space(),
        seed,
        initial_trials,
        workload: Some(pb::Workload {
            kind: "function".to_owned(),
            dataset: "branin".to_owned(),
            ..pb::Workload::default()
        }),
        ..pb::ExperimentSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branin_minima() {
        let pi = std::f64::consts::PI;
        for (x, y) in [(-pi, 12.275), (pi, 2.275), (9.42478, 2.475)] {
            assert!((branin(x, y) - 0.397887).abs() < 1e-5, "({x}, {y})");
        }
    }

    #[test]
    fn the_last_epoch_reports_the_final_value() {
        assert_eq!(epoch_value(2.5, 3, 3), 2.5);
        assert_eq!(epoch_value(2.5, 1, 3), 4.5);
    }
}
