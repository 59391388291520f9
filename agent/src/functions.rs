//! The `function` workload: synthetic objectives for fast cluster tests.
//!
//! `dataset` names the function; each "epoch" is one evaluation (one by default). Two optional
//! fixed parameters shape a fake training run for tests: `epochs` (evaluations to report) and
//! `epoch_seconds` (how long each takes). Formulas and domains follow Surjanovic and Bingham,
//! "Virtual Library of Simulation Experiments" (sfu.ca/~ssurjano): Branin-Hoo (`x1` in
//! [-5, 10], `x2` in [0, 15], minimum 0.397887) and Hartmann 6-D (`x1`..`x6` in [0, 1],
//! minimum −3.32237). `quadratic` is Σ xᵢ² over every other parameter (minimum 0).

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::time::{Duration, Instant};

use crate::trainer::{
    BestEpoch, EpochControl, EpochMetrics, TrainOutcome, Trainer, TrialFailure, TrialJob,
};

/// Parameters that shape the run instead of entering the function.
const RUN_PARAMS: &[&str] = &["epochs", "epoch_seconds"];

/// Evaluates the synthetic functions.
#[derive(Debug, Default, Clone, Copy)]
pub struct FunctionTrainer;

impl Trainer for FunctionTrainer {
    fn train(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> Result<TrainOutcome, TrialFailure> {
        let params = job.numeric_params()?;
        let epochs = run_param(&params, "epochs", 1.0)?;
        if epochs < 1.0 || epochs.fract() != 0.0 {
            return Err(TrialFailure::new(format!(
                "parameter 'epochs' must be a whole number >= 1, got {epochs}"
            )));
        }
        let epoch_seconds = run_param(&params, "epoch_seconds", 0.0)?;
        if !(0.0..=3600.0).contains(&epoch_seconds) {
            return Err(TrialFailure::new(format!(
                "parameter 'epoch_seconds' must be in 0..3600, got {epoch_seconds}"
            )));
        }
        let value = evaluate(&job.workload.dataset, &params)?;
        let mut best = BestEpoch::default();
        let mut outcome = TrainOutcome {
            final_value: value,
            best_epoch: 0,
            epochs_run: 0,
            stopped: false,
            device_seconds: 0.0,
            metrics: Default::default(),
        };
        for epoch in 1..=epochs as u32 {
            let started = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(epoch_seconds));
            let seconds = started.elapsed().as_secs_f64();
            outcome.device_seconds += seconds;
            outcome.epochs_run = epoch;
            best.record(epoch, value, false);
            let metrics = EpochMetrics {
                epoch,
                value,
                train_loss: value,
                train_accuracy: 0.0,
                epoch_seconds: seconds,
                examples: 1,
                device_memory_bytes: None,
            };
            if on_epoch(&metrics) == EpochControl::Stop && epoch < epochs as u32 {
                outcome.stopped = true;
                break;
            }
        }
        outcome.best_epoch = best.epoch();
        Ok(outcome)
    }
}

fn run_param(
    params: &BTreeMap<String, f64>,
    name: &str,
    default: f64,
) -> Result<f64, TrialFailure> {
    let value = params.get(name).copied().unwrap_or(default);
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TrialFailure::new(format!(
            "parameter '{name}' is not finite"
        )))
    }
}

/// Evaluates the function `name` at `params`.
///
/// # Errors
/// A [`TrialFailure`] for an unknown function, a missing parameter or one outside the domain.
pub fn evaluate(name: &str, params: &BTreeMap<String, f64>) -> Result<f64, TrialFailure> {
    match name {
        "branin" => {
            let x1 = coordinate(params, "x1", -5.0, 10.0, name)?;
            let x2 = coordinate(params, "x2", 0.0, 15.0, name)?;
            Ok(branin(x1, x2))
        }
        "hartmann6" => {
            let mut x = [0.0; 6];
            for (index, slot) in x.iter_mut().enumerate() {
                *slot = coordinate(params, &format!("x{}", index + 1), 0.0, 1.0, name)?;
            }
            Ok(hartmann6(&x))
        }
        "quadratic" => {
            let mut sum = 0.0;
            for (param, value) in params {
                if !RUN_PARAMS.contains(&param.as_str()) {
                    sum += value * value;
                }
            }
            if sum.is_finite() {
                Ok(sum)
            } else {
                Err(TrialFailure::new("quadratic: parameters are not finite"))
            }
        }
        other => Err(TrialFailure::new(format!(
            "unknown function '{other}' (dataset of a 'function' workload): use branin, hartmann6 or quadratic"
        ))),
    }
}

fn coordinate(
    params: &BTreeMap<String, f64>,
    name: &str,
    low: f64,
    high: f64,
    function: &str,
) -> Result<f64, TrialFailure> {
    let value = *params
        .get(name)
        .ok_or_else(|| TrialFailure::new(format!("{function} needs parameter '{name}'")))?;
    if !(low..=high).contains(&value) {
        return Err(TrialFailure::new(format!(
            "parameter '{name}' = {value} is outside {function}'s domain [{low}, {high}]"
        )));
    }
    Ok(value)
}

/// Branin-Hoo: `a(x2 − b x1² + c x1 − r)² + s(1 − t) cos x1 + s`.
pub fn branin(x1: f64, x2: f64) -> f64 {
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Hartmann 6-D: `−Σᵢ αᵢ exp(−Σⱼ Aᵢⱼ (xⱼ − Pᵢⱼ)²)`.
pub fn hartmann6(x: &[f64; 6]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    let mut total = 0.0;
    for i in 0..4 {
        let mut inner = 0.0;
        for j in 0..6 {
            inner += A[i][j] * (x[j] - P[i][j] * 1e-4).powi(2);
        }
        total += ALPHA[i] * (-inner).exp();
    }
    -total
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{ParameterValue, Workload, parameter_value::Kind};

    fn job(function: &str, params: &[(&str, f64)]) -> TrialJob {
        TrialJob {
            trial_id: "t".into(),
            workload: Workload {
                kind: "function".into(),
                dataset: function.into(),
                ..Workload::default()
            },
            params: params
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        ParameterValue {
                            kind: Some(Kind::FloatValue(*value)),
                        },
                    )
                })
                .collect(),
            metric: "value".into(),
            maximize: true,
        }
    }

    #[test]
    fn known_minima() {
        assert!((branin(PI, 2.275) - 0.397_887).abs() < 1e-5);
        assert!((branin(-PI, 12.275) - 0.397_887).abs() < 1e-5);
        let x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!((hartmann6(&x) + 3.32237).abs() < 1e-4);
    }

    #[test]
    fn one_instant_epoch_by_default() {
        let mut epochs = Vec::new();
        let outcome = FunctionTrainer
            .train(&job("quadratic", &[("a", 3.0), ("b", 4.0)]), &mut |m| {
                epochs.push(m.epoch);
                EpochControl::Continue
            })
            .expect("runs");
        assert_eq!(outcome.final_value, 25.0);
        assert_eq!(
            (outcome.epochs_run, outcome.best_epoch, outcome.stopped),
            (1, 1, false)
        );
        assert_eq!(epochs, vec![1]);
    }

    #[test]
    fn stop_ends_at_the_epoch_boundary() {
        let outcome = FunctionTrainer
            .train(
                &job("quadratic", &[("a", 1.0), ("epochs", 5.0)]),
                &mut |m| {
                    if m.epoch == 2 {
                        EpochControl::Stop
                    } else {
                        EpochControl::Continue
                    }
                },
            )
            .expect("runs");
        assert_eq!((outcome.epochs_run, outcome.stopped), (2, true));
    }

    #[test]
    fn bad_params_are_clear_failures() {
        let cases = [
            (job("branin", &[("x1", 12.0), ("x2", 1.0)]), "'x1' = 12"),
            (job("branin", &[("x1", 1.0)]), "'x2'"),
            (job("rosenbrock", &[]), "rosenbrock"),
            (job("quadratic", &[("epochs", 0.5)]), "epochs"),
        ];
        for (trial, expected) in cases {
            let err = FunctionTrainer
                .train(&trial, &mut |_| EpochControl::Continue)
                .expect_err(expected);
            assert!(err.reason.contains(expected), "{err}");
        }
    }
}
