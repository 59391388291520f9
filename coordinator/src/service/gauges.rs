//! How the service keeps its metrics in step with its state: transitions counted as they are
//! applied, gauges of what is true now (trials by status, leases, agents, paused experiments),
//! and the per-experiment series (`experiment_info`, best objective, trials completed, epochs,
//! cost), which a starting coordinator sets from the store for every experiment, finished ones
//! included, so a restart does not empty the dashboards of the experiments that already ended.

use super::Coordinator;
use super::model::{ExperimentRecord, Strategy, TrialState};
use super::state::{Live, result_value};
use crate::metrics::Metrics;
use crate::store::Change;

/// Every trial status, so the `trials` gauge shows a zero rather than nothing for an empty one.
const STATUSES: [TrialState; 7] = [
    TrialState::Pending,
    TrialState::Leased,
    TrialState::Running,
    TrialState::Succeeded,
    TrialState::Failed,
    TrialState::Cancelled,
    TrialState::EarlyStopped,
];

/// The `strategy` label of an experiment.
fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Bo => "bo",
        Strategy::Random => "random",
        Strategy::Grid => "grid",
    }
}

/// Sets the experiment's info series and creates its counters (at zero for a new one), so the
/// dashboards list it from its creation.
fn publish_experiment(metrics: &Metrics, record: &ExperimentRecord) {
    let id = record.id.0.as_str();
    let spec = &record.spec;
    metrics
        .experiment_info
        .with_label_values(&[
            id,
            spec.name.as_str(),
            strategy_label(spec.strategy),
            spec.study.as_str(),
        ])
        .set(1);
    metrics
        .experiment_trials_completed_total
        .with_label_values(&[id]);
    metrics.experiment_epochs_total.with_label_values(&[id]);
    metrics.experiment_cost(id);
}

/// Sets the experiment's best objective, when it has a result.
fn publish_best(metrics: &Metrics, live: &Live) {
    if let Some(best) = live.best_trial().and_then(|t| t.value) {
        metrics
            .best_objective
            .with_label_values(&[&live.record.id.0])
            .set(best);
    }
}

/// Sets every per-experiment series of a loaded experiment from its stored trials and epochs.
fn load_experiment(metrics: &Metrics, live: &Live) {
    publish_experiment(metrics, &live.record);
    let id = live.record.id.0.as_str();
    let counts = live.counts();
    Metrics::raise_counter(
        &metrics
            .experiment_trials_completed_total
            .with_label_values(&[id]),
        u64::from(counts.done()),
    );
    Metrics::raise_counter(
        &metrics.experiment_epochs_total.with_label_values(&[id]),
        live.epochs_reported(),
    );
    Metrics::raise_float_counter(&metrics.experiment_cost(id), counts.cost_dollars);
    publish_best(metrics, live);
}

impl Coordinator {
    /// Sets the per-experiment series and the trials-by-status gauge from the loaded state (at
    /// startup, before the metrics are served).
    pub(super) fn load_series(&self) {
        let metrics = &self.inner.metrics;
        let mut by_status = [0i64; STATUSES.len()];
        for cell in self.cells() {
            let live = cell.lock();
            load_experiment(metrics, &live);
            for trial in live.trials() {
                if let Some(index) = STATUSES.iter().position(|s| *s == trial.state) {
                    by_status[index] += 1;
                }
            }
        }
        for (status, count) in STATUSES.iter().zip(by_status) {
            metrics
                .trials
                .with_label_values(&[status.as_str()])
                .set(count);
        }
    }

    /// Counts one change's transitions before it is applied to `live`: trial statuses (the
    /// counters and the gauge of trials now), completed trials, leases and epochs; a stored
    /// experiment gets its info series.
    pub(super) fn count_transition(&self, live: &Live, change: &Change) {
        let metrics = &self.inner.metrics;
        match change {
            Change::PutTrial(trial) => {
                let old = live.trial(&trial.id).map(|t| t.state);
                if old != Some(trial.state) {
                    metrics
                        .trials_total
                        .with_label_values(&[trial.state.as_str()])
                        .inc();
                    if let Some(old) = old {
                        metrics.trials.with_label_values(&[old.as_str()]).dec();
                    }
                    metrics
                        .trials
                        .with_label_values(&[trial.state.as_str()])
                        .inc();
                    if trial.state.is_terminal() {
                        metrics
                            .experiment_trials_completed_total
                            .with_label_values(&[&trial.experiment_id.0])
                            .inc();
                    }
                    if old.is_some_and(TrialState::is_leased) != trial.state.is_leased() {
                        if trial.state.is_leased() {
                            metrics.leases_active.inc();
                        } else {
                            metrics.leases_active.dec();
                        }
                    }
                }
            }
            Change::AddEpoch(epoch) => {
                if !live.has_epoch(&epoch.trial_id, epoch.attempt, epoch.epoch) {
                    metrics
                        .experiment_epochs_total
                        .with_label_values(&[&live.record.id.0])
                        .inc();
                }
            }
            Change::PutExperiment(record) => publish_experiment(metrics, record),
            Change::PutAgent(_) | Change::DeleteAgent(_) => {}
        }
    }

    /// After changes were applied to `live`: its best objective, when a trial got a result (an
    /// epoch report's progress cannot change it, so the report path skips the label lookup).
    pub(super) fn after_changes(&self, live: &Live, changes: &[Change]) {
        if changes
            .iter()
            .any(|c| matches!(c, Change::PutTrial(t) if result_value(t).is_some()))
        {
            publish_best(&self.inner.metrics, live);
        }
        if changes
            .iter()
            .any(|c| matches!(c, Change::PutExperiment(_)))
        {
            self.refresh_paused_gauge();
        }
    }

    /// Sets the gauge of paused experiments.
    fn refresh_paused_gauge(&self) {
        let paused = self.cells().iter().filter(|c| c.paused()).count();
        self.inner
            .metrics
            .experiments_paused
            .set(i64::try_from(paused).unwrap_or(i64::MAX));
    }

    /// Sets the gauges from the whole state (at startup and on every sweep).
    pub(super) fn refresh_gauges(&self) {
        self.refresh_paused_gauge();
        let metrics = &self.inner.metrics;
        let leased: usize = self.cells().iter().map(|c| c.leased()).sum();
        metrics
            .leases_active
            .set(i64::try_from(leased).unwrap_or(i64::MAX));
        metrics
            .agents_connected
            .set(i64::try_from(self.inner.agents.count(|a| a.connected)).unwrap_or(i64::MAX));
    }
}
