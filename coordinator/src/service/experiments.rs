//! Experiments: creation and validation, views, stopping. Trials are created in the background
//! ([`refill`](super::refill)), so creating an experiment answers before its first suggestion.

use std::sync::Arc;

use tracing::{info, instrument};

use super::cell::ExperimentCell;
use super::lifecycle::{TrialEvent, transition};
use super::model::Workload;
use super::model::{
    ExperimentId, ExperimentRecord, ExperimentSpec, ExperimentState, TrialId, TrialRecord,
    now_unix, random_u64,
};
use super::pause::FailureStreak;
use super::state::Live;
use super::textcnn_params::check_textcnn_params;
use super::warm_start::ImportedTrial;
use super::workloads::{COMMAND_KIND, check_dataset, check_metric, default_metric};
use super::{Coordinator, ExperimentService, ExperimentView, Page, TrialView};
use crate::store::Change;
use crate::suggest::space_of;
use crate::{Error, Result};

/// Default levels a parameter for grid search (the study's 3).
pub const DEFAULT_GRID_LEVELS: u32 = 3;

/// The initial (space-filling) trials of a BO spec that names none: enough for the GP to see
/// every dimension (`dim + 1`) or a quarter of the budget, whichever is more, but at most
/// `cap` (the config's `default_initial_trials`) and at most half the budget, so the model
/// chooses at least half the trials; never fewer than 2 (the tuner's floor).
///
/// Budget 10 in 2 dimensions gets 3; budget 30 in 6 gets 7; budget 240 gets the cap.
pub fn default_initial_trials(budget_trials: u32, dim: usize, cap: u32) -> u32 {
    let dim_plus_one = u32::try_from(dim).unwrap_or(u32::MAX).saturating_add(1);
    let wanted = dim_plus_one.max(budget_trials / 4);
    wanted.min(cap).min(budget_trials / 2).max(2)
}

impl Coordinator {
    /// Fills the spec's defaults and checks it.
    fn resolve_spec(&self, mut spec: ExperimentSpec) -> Result<ExperimentSpec> {
        super::limits::check_spec(&spec)?;
        let dim = space_of(&spec)?.dim();
        if spec.budget_trials == 0 {
            return Err(Error::InvalidArgument(
                "budget_trials must be at least 1".into(),
            ));
        }
        if !spec.budget_dollars.is_finite() || spec.budget_dollars < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "budget_dollars must be a finite number >= 0, got {}",
                spec.budget_dollars
            )));
        }
        if spec.name.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "experiment name must not be empty".into(),
            ));
        }
        spec.early_stopping
            .validate()
            .map_err(Error::InvalidArgument)?;
        if spec.metric.trim().is_empty() {
            spec.metric = default_metric(spec.workload.as_ref()).into();
        }
        check_metric(spec.workload.as_ref(), &spec.metric)?;
        check_dataset(spec.workload.as_ref())?;
        check_textcnn_params(spec.workload.as_ref(), &spec.parameters)?;
        spec.parallelism = spec.parallelism.max(1);
        if spec.seed == 0 {
            spec.seed = random_u64().max(1);
        }
        if spec.grid_levels == 0 {
            spec.grid_levels = DEFAULT_GRID_LEVELS;
        }
        if spec.initial_trials == 0 {
            spec.initial_trials = default_initial_trials(
                spec.budget_trials,
                dim,
                self.inner.settings.default_initial_trials.get(),
            );
        }
        if spec.max_attempts == 0 {
            spec.max_attempts = self.inner.settings.max_attempts.get();
        }
        if spec.max_model_points == 0 {
            spec.max_model_points = crate::suggest::default_max_model_points();
        }
        Ok(spec)
    }

    pub(super) fn view(live: &Live) -> ExperimentView {
        ExperimentView {
            record: live.record.clone(),
            counts: live.counts(),
            best: live
                .best_trial()
                .and_then(|t| t.value.map(|v| (t.id.clone(), v))),
            epochs_reported: live.epochs_reported(),
        }
    }

    fn trial_view(live: &Live, trial: &TrialRecord, include_epochs: bool) -> TrialView {
        let epochs = if include_epochs {
            live.epochs_of(&trial.id, trial.attempts)
                .into_iter()
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        TrialView {
            record: trial.clone(),
            epochs,
        }
    }
}

/// An experiment state's name in messages.
fn state_name(state: ExperimentState) -> &'static str {
    match state {
        ExperimentState::Running => "running",
        ExperimentState::Completed => "completed",
        ExperimentState::Stopped => "stopped",
        ExperimentState::Failed => "failed",
        ExperimentState::Paused => "paused",
    }
}

/// The changes that end a running or paused experiment in `state` (stopped or failed): its pending trials
/// are cancelled and its leased ones asked to stop, so agents drop them at the next epoch.
pub(crate) fn ending(live: &Live, state: ExperimentState, reason: String) -> Vec<Change> {
    let event = TrialEvent::Stop {
        now_unix: now_unix(),
    };
    let mut changes: Vec<Change> = live
        .trials()
        .iter()
        .filter_map(|trial| transition(trial, &event).ok().map(Change::PutTrial))
        .collect();
    changes.push(Change::PutExperiment(ExperimentRecord {
        state,
        failure_reason: reason,
        paused_reason: String::new(),
        ..live.record.clone()
    }));
    changes
}

impl ExperimentService for Coordinator {
    #[instrument(skip_all, fields(name = %spec.name))]
    async fn create_experiment(&self, spec: ExperimentSpec) -> Result<ExperimentView> {
        self.inner.writer.check()?;
        let spec = self.resolve_spec(spec)?;
        let record = ExperimentRecord {
            id: ExperimentId::generate(),
            spec,
            state: ExperimentState::Running,
            created_unix: now_unix(),
            exhausted: false,
            failure_reason: String::new(),
            paused_reason: String::new(),
            resumed_unix: 0.0,
            queued: Vec::new(),
        };
        let cell = Arc::new(ExperimentCell::new(Live::new(record.clone())));
        let (ticket, view) = {
            let mut live = cell.lock();
            let ticket = self.mutate(
                &cell,
                &mut live,
                vec![Change::PutExperiment(record.clone())],
            );
            (ticket, Self::view(&live))
        };
        ticket.durable().await?;
        self.insert_cell(Arc::clone(&cell));
        info!(experiment_id = %record.id, seed = record.spec.seed, "experiment created");
        self.refill(&cell);
        Ok(view)
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<ExperimentView> {
        let cell = self.cell(&id)?;
        let live = cell.lock();
        Ok(Self::view(&live))
    }

    async fn list_experiments(
        &self,
        study: Option<String>,
        page: Page,
    ) -> Result<Vec<ExperimentView>> {
        // Cells are kept in creation order, so a page is a window of the (filtered) cells.
        let mut views: Vec<ExperimentView> = self
            .cells()
            .iter()
            .filter(|cell| {
                study
                    .as_deref()
                    .is_none_or(|s| cell.lock().record.spec.study == s)
            })
            .skip(page.from)
            .take(page.limit)
            .map(|cell| Self::view(&cell.lock()))
            .collect();
        views.sort_by(|a, b| {
            a.record
                .created_unix
                .total_cmp(&b.record.created_unix)
                .then_with(|| a.record.id.cmp(&b.record.id))
        });
        Ok(views)
    }

    #[instrument(skip(self), fields(experiment_id = %id))]
    async fn stop_experiment(&self, id: ExperimentId) -> Result<ExperimentView> {
        self.inner.writer.check()?;
        let cell = self.cell(&id)?;
        let (ticket, view) = {
            let mut live = cell.lock();
            let mut changes = Vec::new();
            if matches!(
                live.record.state,
                ExperimentState::Running | ExperimentState::Paused
            ) {
                changes = ending(&live, ExperimentState::Stopped, String::new());
                info!("experiment stopped");
            }
            let ticket = self.mutate(&cell, &mut live, changes);
            (ticket, Self::view(&live))
        };
        ticket.durable().await?;
        Ok(view)
    }

    #[instrument(skip(self), fields(experiment_id = %id))]
    async fn resume_experiment(&self, id: ExperimentId) -> Result<ExperimentView> {
        self.inner.writer.check()?;
        let cell = self.cell(&id)?;
        let (ticket, view) = {
            let mut live = cell.lock();
            let changes = match live.record.state {
                ExperimentState::Paused => {
                    live.failure_streak = FailureStreak::default();
                    info!(paused_reason = %live.record.paused_reason, "experiment resumed");
                    vec![Change::PutExperiment(ExperimentRecord {
                        state: ExperimentState::Running,
                        paused_reason: String::new(),
                        resumed_unix: now_unix(),
                        ..live.record.clone()
                    })]
                }
                ExperimentState::Running => Vec::new(),
                ended @ (ExperimentState::Completed
                | ExperimentState::Stopped
                | ExperimentState::Failed) => {
                    return Err(Error::FailedPrecondition(format!(
                        "experiment '{id}' is {}: only a paused experiment can be resumed",
                        state_name(ended)
                    )));
                }
            };
            let ticket = self.mutate(&cell, &mut live, changes);
            (ticket, Self::view(&live))
        };
        ticket.durable().await?;
        self.refill(&cell);
        for _ in 0..view.counts.pending {
            self.inner.work.notify_one();
        }
        Ok(view)
    }

    async fn list_trials(
        &self,
        id: ExperimentId,
        include_epochs: bool,
        page: Page,
    ) -> Result<Vec<TrialView>> {
        let cell = self.cell(&id)?;
        let live = cell.lock();
        Ok(live
            .trials()
            .iter()
            .skip(page.from)
            .take(page.limit)
            .map(|t| Self::trial_view(&live, t, include_epochs))
            .collect())
    }

    async fn best_trial(&self, id: ExperimentId) -> Result<Option<TrialView>> {
        let cell = self.cell(&id)?;
        let live = cell.lock();
        Ok(live.best_trial().map(|t| Self::trial_view(&live, t, true)))
    }

    #[instrument(skip(self, trials), fields(experiment_id = %id, trials = trials.len()))]
    async fn add_trials(
        &self,
        id: ExperimentId,
        trials: Vec<ImportedTrial>,
    ) -> Result<(Vec<TrialId>, ExperimentView)> {
        self.import_trials(id, trials).await
    }

    #[instrument(skip(self, configurations), fields(experiment_id = %id, configurations = configurations.len()))]
    async fn enqueue_trials(
        &self,
        id: ExperimentId,
        configurations: Vec<tuner::space::Assignment>,
    ) -> Result<ExperimentView> {
        self.queue_trials(id, configurations).await
    }

    fn placement_warnings(&self, workload: Option<&Workload>) -> Vec<String> {
        let Some(workload) = workload.filter(|w| w.kind == COMMAND_KIND) else {
            return Vec::new();
        };
        let able = self
            .inner
            .agents
            .count(|agent| agent.connected && agent.record.accepts(Some(workload)));
        if able > 0 {
            return Vec::new();
        }
        vec![format!(
            "no connected agent declares command '{}': its trials wait until an agent that \
             declares it in its config ([[commands]]) connects",
            workload.command
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::default_initial_trials;

    #[test]
    fn the_default_initial_design_grows_with_the_budget_up_to_the_cap() {
        // (budget, dimension) → initial trials, with the shipped cap of 10.
        let cases = [
            ((1, 2), 2),
            ((4, 2), 2),
            ((10, 2), 3),
            ((10, 6), 5),
            ((20, 2), 5),
            ((30, 6), 7),
            ((40, 2), 10),
            ((240, 6), 10),
            ((240, 20), 10),
        ];
        for ((budget, dim), expected) in cases {
            assert_eq!(
                default_initial_trials(budget, dim, 10),
                expected,
                "budget {budget}, dimension {dim}"
            );
        }
        assert_eq!(default_initial_trials(240, 6, 40), 40, "a larger cap");
        assert_eq!(default_initial_trials(240, 6, 1), 2, "the tuner's floor");
    }

    #[test]
    fn the_model_always_chooses_at_least_half_of_a_budget_over_three() {
        for budget in 4..=200 {
            for dim in 1..=12 {
                let initial = default_initial_trials(budget, dim, 10);
                assert!(
                    initial <= budget / 2 && initial >= 2,
                    "budget {budget}, dimension {dim}: {initial}"
                );
            }
        }
    }
}
