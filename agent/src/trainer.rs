//! What a slot trains: the [`Trainer`] trait, trial jobs, and the dispatch over workload kinds.
//!
//! A trainer runs on the slot's dedicated OS thread (the CUDA context stays on one thread,
//! STYLE.md §4), synchronously, and calls `on_epoch` after each epoch; answering
//! [`EpochControl::Stop`] ends training at that boundary. Failures (diverged loss, bad
//! parameters, out of memory) are a [`TrialFailure`] with a reason for the user, never a panic.

use std::collections::BTreeMap;

use proto::v1::{Direction, Lease, ParameterValue, Workload, parameter_value::Kind};

use crate::command::CommandRunner;

/// Workload kinds this agent can train, advertised at registration (`command` only by an agent
/// that declares commands).
pub const WORKLOADS: &[&str] = &["textcnn", "function", "command"];

/// One trial to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialJob {
    /// The trial's id, for logs.
    pub trial_id: String,
    /// What to train.
    pub workload: Workload,
    /// The workload's fixed parameters overridden by the trial's, by name.
    pub params: BTreeMap<String, ParameterValue>,
    /// The objective's name (e.g. `dev_accuracy`).
    pub metric: String,
    /// Whether a larger objective is better.
    pub maximize: bool,
}

impl TrialJob {
    /// Builds the job of a lease: trial parameters override the workload's fixed parameters.
    pub fn from_lease(lease: &Lease) -> Self {
        let workload = lease.workload.clone().unwrap_or_default();
        let mut params: BTreeMap<String, ParameterValue> = workload
            .fixed_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in &lease.params {
            params.insert(name.clone(), value.clone());
        }
        Self {
            trial_id: lease.trial_id.clone(),
            workload,
            params,
            metric: lease.metric.clone(),
            maximize: lease.direction() != Direction::Minimize,
        }
    }

    /// The parameters as numbers, for workloads whose parameters are all numeric (a
    /// categorical's choice counts when its text is a number, as with `choices = [32, 64]`).
    ///
    /// # Errors
    /// A [`TrialFailure`] naming a parameter whose choice is not a number, or an empty one.
    pub fn numeric_params(&self) -> Result<BTreeMap<String, f64>, TrialFailure> {
        let mut numbers = BTreeMap::new();
        for (name, value) in &self.params {
            let number = match &value.kind {
                Some(Kind::IntValue(int)) => *int as f64,
                Some(Kind::FloatValue(float)) => *float,
                // A numeric choice (`choices = [32, 64, 128]`) is its number.
                Some(Kind::CategoricalValue(text)) => match text.trim().parse::<f64>() {
                    Ok(number) if number.is_finite() => number,
                    _ => {
                        return Err(TrialFailure::new(format!(
                            "parameter '{name}' is categorical ('{text}'), workload '{}' takes numbers",
                            self.workload.kind
                        )));
                    }
                },
                None => {
                    return Err(TrialFailure::new(format!(
                        "parameter '{name}' has no value"
                    )));
                }
            };
            numbers.insert(name.clone(), number);
        }
        Ok(numbers)
    }
}

/// Metrics of one finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: u32,
    /// The objective after this epoch.
    pub value: f64,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Training accuracy of the epoch.
    pub train_accuracy: f64,
    /// Seconds the epoch took.
    pub epoch_seconds: f64,
    /// Training examples processed.
    pub examples: u64,
    /// Device memory in use, where the backend can tell.
    pub device_memory_bytes: Option<u64>,
}

/// The answer to an epoch: go on, or stop at this boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochControl {
    /// Train the next epoch.
    Continue,
    /// Stop now.
    Stop,
}

/// The result of a trial that ran.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// The objective after the last epoch run.
    pub final_value: f64,
    /// Epoch (from 1) with the best objective.
    pub best_epoch: u32,
    /// Epochs trained.
    pub epochs_run: u32,
    /// Whether training ended early because `on_epoch` said stop.
    pub stopped: bool,
    /// Seconds the device spent computing (wall time of the epochs on the CPU).
    pub device_seconds: f64,
    /// Extra metrics of the finished trial, reported beside the objective and never used for
    /// selection (the text CNN's `test_accuracy`).
    pub metrics: BTreeMap<String, f64>,
}

/// Why a trial could not run; not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialFailure {
    /// The reason shown to the user.
    pub reason: String,
}

impl TrialFailure {
    /// A failure with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for TrialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Trains trials, one at a time, on the thread that owns it.
pub trait Trainer {
    /// Trains `job`, calling `on_epoch` after every epoch.
    ///
    /// # Errors
    /// A [`TrialFailure`] when the trial cannot run or diverges.
    fn train(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> Result<TrainOutcome, TrialFailure>;

    /// Trains `job` as [`Trainer::train`] does; a trainer that can end a trial between epochs
    /// (a command) polls `stop_requested` there.
    ///
    /// # Errors
    /// As [`Trainer::train`].
    fn train_controlled(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
        stop_requested: &dyn Fn() -> bool,
    ) -> Result<TrainOutcome, TrialFailure> {
        let _ = stop_requested;
        self.train(job, on_epoch)
    }
}

/// The agent's trainer: dispatches on the workload kind.
pub struct Workloads {
    function: crate::functions::FunctionTrainer,
    textcnn: Option<Box<dyn Trainer>>,
    commands: Option<CommandRunner>,
}

impl Workloads {
    /// Dispatch over the function workloads and, when given, the text CNN.
    pub fn new(textcnn: Option<Box<dyn Trainer>>) -> Self {
        Self {
            function: crate::functions::FunctionTrainer,
            textcnn,
            commands: None,
        }
    }

    /// Adds the agent's declared commands (workload kind `command`).
    pub fn with_commands(mut self, commands: CommandRunner) -> Self {
        self.commands = Some(commands);
        self
    }
}

impl Trainer for Workloads {
    fn train_controlled(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
        stop_requested: &dyn Fn() -> bool,
    ) -> Result<TrainOutcome, TrialFailure> {
        if job.workload.kind != "command" {
            return self.train(job, on_epoch);
        }
        match &self.commands {
            Some(commands) => commands.run(job, on_epoch, stop_requested),
            None => Err(TrialFailure::new(format!(
                "command '{}' is not declared by this agent (it declares none)",
                job.workload.command
            ))),
        }
    }

    fn train(
        &mut self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> Result<TrainOutcome, TrialFailure> {
        match (job.workload.kind.as_str(), self.textcnn.as_mut()) {
            ("function", _) => self.function.train(job, on_epoch),
            ("textcnn", Some(textcnn)) => textcnn.train(job, on_epoch),
            ("textcnn", None) => Err(TrialFailure::new(
                "workload 'textcnn' is not available on this agent (no CUDA for its GPU, or not in this build)",
            )),
            ("command", _) => self.train_controlled(job, on_epoch, &|| false),
            (other, _) => Err(TrialFailure::new(format!(
                "unknown workload kind '{other}', this agent trains {}",
                WORKLOADS.join(", ")
            ))),
        }
    }
}

/// Tracks the best epoch of a run, for trainers.
#[derive(Debug, Clone, Default)]
pub struct BestEpoch {
    best: Option<(u32, f64)>,
}

impl BestEpoch {
    /// Records an epoch's objective; `maximize` says which way is better.
    pub fn record(&mut self, epoch: u32, value: f64, maximize: bool) {
        let better = match self.best {
            None => true,
            Some((_, best)) => {
                if maximize {
                    value > best
                } else {
                    value < best
                }
            }
        };
        if better {
            self.best = Some((epoch, value));
        }
    }

    /// The best epoch so far (0 before any).
    pub fn epoch(&self) -> u32 {
        self.best.map_or(0, |(epoch, _)| epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: i64) -> ParameterValue {
        ParameterValue {
            kind: Some(Kind::IntValue(value)),
        }
    }

    #[test]
    fn trial_params_override_fixed_params() {
        let workload = Workload {
            kind: "function".into(),
            dataset: "quadratic".into(),
            fixed_params: [("a".to_string(), int(1)), ("b".to_string(), int(2))].into(),
            ..Workload::default()
        };
        let lease = Lease {
            trial_id: "t".into(),
            workload: Some(workload),
            params: [("b".to_string(), int(5))].into(),
            ..Lease::default()
        };
        let job = TrialJob::from_lease(&lease);
        let numbers = job.numeric_params().expect("numeric");
        assert_eq!(numbers["a"], 1.0);
        assert_eq!(numbers["b"], 5.0);
    }

    #[test]
    fn categorical_values_that_are_not_numbers_are_a_clear_failure() {
        let lease = Lease {
            workload: Some(Workload {
                kind: "textcnn".into(),
                ..Workload::default()
            }),
            params: [(
                "opt".to_string(),
                ParameterValue {
                    kind: Some(Kind::CategoricalValue("adam".into())),
                },
            )]
            .into(),
            ..Lease::default()
        };
        let err = TrialJob::from_lease(&lease)
            .numeric_params()
            .expect_err("categorical");
        assert!(err.reason.contains("'opt'"), "{err}");
        let mut numeric = lease;
        for (name, text) in [("batch", "64"), ("rate", "1e-5"), ("opt", "0.5")] {
            numeric.params.insert(
                name.to_string(),
                ParameterValue {
                    kind: Some(Kind::CategoricalValue(text.into())),
                },
            );
        }
        let numbers = TrialJob::from_lease(&numeric)
            .numeric_params()
            .expect("numeric choices are numbers");
        assert_eq!(
            (numbers["batch"], numbers["rate"], numbers["opt"]),
            (64.0, 1e-5, 0.5)
        );
    }

    #[test]
    fn unknown_workloads_fail_with_the_known_list() {
        let job = TrialJob::from_lease(&Lease {
            workload: Some(Workload {
                kind: "resnet".into(),
                ..Workload::default()
            }),
            ..Lease::default()
        });
        let err = Workloads::new(None)
            .train(&job, &mut |_| EpochControl::Continue)
            .expect_err("unknown kind");
        assert!(
            err.reason.contains("resnet") && err.reason.contains("textcnn"),
            "{err}"
        );
    }

    #[test]
    fn best_epoch_follows_the_direction() {
        let mut max = BestEpoch::default();
        let mut min = BestEpoch::default();
        for (epoch, value) in [(1, 0.5), (2, 0.7), (3, 0.6)] {
            max.record(epoch, value, true);
            min.record(epoch, value, false);
        }
        assert_eq!(max.epoch(), 2);
        assert_eq!(min.epoch(), 1);
    }
}
