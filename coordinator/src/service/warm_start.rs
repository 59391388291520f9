//! Warm start: results obtained elsewhere added to an experiment (`AddTrials`), and
//! configurations queued to run before any suggestion (`EnqueueTrials`).
//!
//! An imported trial is a finished trial marked
//! [`TrialRecord::imported`](super::model::TrialRecord::imported): it is never leased, it does
//! not count towards `budget_trials` ([`TrialCounts::runs`](super::state::TrialCounts::runs)),
//! and the strategy sees its value exactly like one of the experiment's own results (BO's initial
//! design counts it too). Its epochs, when given, are stored under attempt 0, the attempt an
//! imported trial has, so its learning curve shows in `tunectl trials` and early stopping
//! compares other trials with it.
//!
//! Queued configurations live in the experiment's record
//! ([`ExperimentRecord::queued`](super::model::ExperimentRecord::queued)), so they survive a
//! restart; each becomes a trial when a slot frees (the refill's promotion step), before any
//! buffered suggestion, and every suggestion round counts them as pending.
//!
//! Both requests are all or nothing: every trial is checked against the experiment's space
//! before anything changes, and an error names the trial and what was wrong with it.

use std::collections::BTreeMap;

use tracing::info;
use tuner::space::{Assignment, Space};

use super::model::{EpochRecord, ExperimentId, ExperimentState, TrialId, TrialState, now_unix};
use super::refill::new_trial;
use super::{Coordinator, EpochInput, ExperimentView};
use crate::store::Change;
use crate::suggest::space_of;
use crate::{Error, Result};

/// The most trials one `AddTrials` request may carry.
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// The most imported trials an experiment may hold (as many as the largest budget).
pub const MAX_IMPORTED: u32 = super::limits::MAX_BUDGET_TRIALS;

/// The most configurations an experiment may hold queued.
pub const MAX_QUEUED: usize = 10_000;

/// The most epochs an imported trial may carry.
pub const MAX_IMPORTED_EPOCHS: usize = 10_000;

/// The most extra metrics an imported trial may carry.
pub const MAX_IMPORTED_METRICS: usize = 64;

/// A trial evaluated elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedTrial {
    /// A value for every parameter of the space.
    pub params: Assignment,
    /// The objective; `None` records a configuration that failed.
    pub value: Option<f64>,
    /// Its learning curve, epochs increasing from 1.
    pub epochs: Vec<EpochInput>,
    /// Extra metrics beside the objective.
    pub metrics: BTreeMap<String, f64>,
}

/// Checks one imported trial and returns its parameters normalized to the space.
fn check_imported(space: &Space, index: usize, trial: &ImportedTrial) -> Result<Assignment> {
    let at = |what: String| Error::InvalidArgument(format!("trial {index}: {what}"));
    let params = space
        .normalize(&trial.params)
        .map_err(|e| at(assignment_error(e)))?;
    if let Some(value) = trial.value
        && !value.is_finite()
    {
        return Err(at(format!("value must be a finite number, got {value}")));
    }
    if trial.epochs.len() > MAX_IMPORTED_EPOCHS {
        return Err(at(format!(
            "{} epochs, more than the {MAX_IMPORTED_EPOCHS} allowed",
            trial.epochs.len()
        )));
    }
    let mut previous = 0;
    for epoch in &trial.epochs {
        if epoch.epoch <= previous {
            return Err(at(format!(
                "epochs must be numbered from 1 and increase, got {} after {previous}",
                epoch.epoch
            )));
        }
        previous = epoch.epoch;
        let numbers = [
            ("value", epoch.value),
            ("train_loss", epoch.train_loss),
            ("train_accuracy", epoch.train_accuracy),
            ("epoch_seconds", epoch.epoch_seconds),
        ];
        if let Some((name, bad)) = numbers.iter().find(|(_, v)| !v.is_finite()) {
            return Err(at(format!(
                "epoch {}: {name} must be a finite number, got {bad}",
                epoch.epoch
            )));
        }
        if epoch.epoch_seconds < 0.0 {
            return Err(at(format!(
                "epoch {}: epoch_seconds must be >= 0",
                epoch.epoch
            )));
        }
    }
    if trial.metrics.len() > MAX_IMPORTED_METRICS {
        return Err(at(format!(
            "{} extra metrics, more than the {MAX_IMPORTED_METRICS} allowed",
            trial.metrics.len()
        )));
    }
    for (name, value) in &trial.metrics {
        super::limits::check_len("metric name", name, super::limits::MAX_NAME_BYTES)
            .map_err(|e| at(e.to_string()))?;
        if !value.is_finite() {
            return Err(at(format!(
                "metric '{}' must be a finite number, got {value}",
                super::limits::short(name)
            )));
        }
    }
    Ok(params)
}

/// What is wrong with an assignment, without the tuner's generic prefix.
fn assignment_error(error: tuner::Error) -> String {
    match error {
        tuner::Error::InvalidAssignment(what) => what,
        other => other.to_string(),
    }
}

/// The records of one imported trial: the trial, then its epochs.
fn imported_changes(
    experiment_id: &ExperimentId,
    number: u32,
    params: Assignment,
    trial: ImportedTrial,
    maximize: bool,
) -> Vec<Change> {
    let now = now_unix();
    let mut record = new_trial(experiment_id, number, params);
    record.imported = true;
    record.finished_unix = Some(now);
    record.metrics = trial.metrics;
    record.epochs_run = u32::try_from(trial.epochs.len()).unwrap_or(u32::MAX);
    record.best_epoch = best_epoch(&trial.epochs, maximize);
    record.wall_seconds = trial.epochs.iter().map(|e| e.epoch_seconds).sum();
    match trial.value {
        Some(value) => {
            record.state = TrialState::Succeeded;
            record.value = Some(value);
        }
        None => {
            record.state = TrialState::Failed;
            record.failure_reason = "imported without a value".into();
        }
    }
    let mut changes = vec![Change::PutTrial(record.clone())];
    changes.extend(trial.epochs.into_iter().map(|e| {
        Change::AddEpoch(EpochRecord {
            trial_id: record.id.clone(),
            attempt: record.attempts,
            epoch: e.epoch,
            value: e.value,
            train_loss: e.train_loss,
            train_accuracy: e.train_accuracy,
            epoch_seconds: e.epoch_seconds,
        })
    }));
    changes
}

/// The epoch with the best value (0 when there are none).
fn best_epoch(epochs: &[EpochInput], maximize: bool) -> u32 {
    epochs
        .iter()
        .reduce(|best, e| {
            let better = if maximize {
                e.value > best.value
            } else {
                e.value < best.value
            };
            if better { e } else { best }
        })
        .map_or(0, |e| e.epoch)
}

impl Coordinator {
    /// Adds trials evaluated elsewhere to experiment `id` (any state): all of them or none.
    /// Returns their ids, in order, and the experiment afterwards.
    ///
    /// # Errors
    /// `NotFound` for an unknown experiment; `InvalidArgument` naming the first invalid trial
    /// (parameters outside the space, a value that is not finite, epochs out of order).
    pub(crate) async fn import_trials(
        &self,
        id: ExperimentId,
        trials: Vec<ImportedTrial>,
    ) -> Result<(Vec<TrialId>, ExperimentView)> {
        self.inner.writer.check()?;
        if trials.len() > MAX_IMPORT_BATCH {
            return Err(Error::InvalidArgument(format!(
                "{} trials in one request, more than the {MAX_IMPORT_BATCH} allowed: send them in \
                 several",
                trials.len()
            )));
        }
        let cell = self.cell(&id)?;
        let spec = cell.lock().record.spec.clone();
        let space = space_of(&spec)?;
        let checked = trials
            .iter()
            .enumerate()
            .map(|(index, trial)| check_imported(&space, index, trial))
            .collect::<Result<Vec<_>>>()?;
        let maximize = spec.direction == tuner::Direction::Maximize;
        let (ticket, ids, view) = {
            let mut live = cell.lock();
            let counts = live.counts();
            let adding = u32::try_from(checked.len()).unwrap_or(u32::MAX);
            if counts.imported.saturating_add(adding) > MAX_IMPORTED {
                return Err(Error::InvalidArgument(format!(
                    "an experiment holds at most {MAX_IMPORTED} imported trials; it has {}",
                    counts.imported
                )));
            }
            let first = counts.created;
            let mut changes = Vec::new();
            for (offset, (params, trial)) in checked.into_iter().zip(trials).enumerate() {
                let number = first.saturating_add(u32::try_from(offset).unwrap_or(u32::MAX));
                changes.extend(imported_changes(&id, number, params, trial, maximize));
            }
            let ids: Vec<TrialId> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::PutTrial(t) => Some(t.id.clone()),
                    _ => None,
                })
                .collect();
            let ticket = self.mutate(&cell, &mut live, changes);
            (ticket, ids, Self::view(&live))
        };
        ticket.durable().await?;
        info!(experiment_id = %id, trials = ids.len(), "trials imported");
        self.refill(&cell);
        Ok((ids, view))
    }

    /// Queues configurations to run in experiment `id` before any suggestion, in order.
    ///
    /// # Errors
    /// `NotFound` for an unknown experiment; `FailedPrecondition` for one that ended;
    /// `InvalidArgument` naming the first configuration outside the space, or when the queue
    /// would hold more than the budget has room for.
    pub(crate) async fn queue_trials(
        &self,
        id: ExperimentId,
        configurations: Vec<Assignment>,
    ) -> Result<ExperimentView> {
        self.inner.writer.check()?;
        let cell = self.cell(&id)?;
        let spec = cell.lock().record.spec.clone();
        let space = space_of(&spec)?;
        let checked = configurations
            .iter()
            .enumerate()
            .map(|(index, params)| {
                space.normalize(params).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "configuration {index}: {}",
                        assignment_error(e)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (ticket, view) = {
            let mut live = cell.lock();
            if !matches!(
                live.record.state,
                ExperimentState::Running | ExperimentState::Paused
            ) {
                return Err(Error::FailedPrecondition(format!(
                    "experiment '{id}' has ended: only a running or paused experiment runs queued \
                     configurations"
                )));
            }
            let counts = live.counts();
            let queued = live.record.queued.len();
            let room =
                (spec.budget_trials.saturating_sub(counts.runs()) as usize).saturating_sub(queued);
            if checked.len() > room {
                return Err(Error::InvalidArgument(format!(
                    "{} configurations do not fit the budget: budget_trials is {}, {} trials were \
                     created and {queued} are queued, so at most {room} more can be queued",
                    checked.len(),
                    spec.budget_trials,
                    counts.runs()
                )));
            }
            if queued + checked.len() > MAX_QUEUED {
                return Err(Error::InvalidArgument(format!(
                    "at most {MAX_QUEUED} configurations can be queued, {queued} already are"
                )));
            }
            let mut record = live.record.clone();
            record.queued.extend(checked);
            let ticket = self.mutate(&cell, &mut live, vec![Change::PutExperiment(record)]);
            (ticket, Self::view(&live))
        };
        ticket.durable().await?;
        info!(experiment_id = %id, queued = view.record.queued.len(), "configurations queued");
        self.refill(&cell);
        Ok(view)
    }
}
