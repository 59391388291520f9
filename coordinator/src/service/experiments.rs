//! Experiments: creation and validation, views, stopping, and `Coordinator::advance`, which
//! keeps `parallelism` trials in flight until the budget is used and completes the experiment.

use std::sync::Arc;

use tracing::{info, instrument};
use tuner::Observation;

use super::model::{
    ExperimentId, ExperimentRecord, ExperimentSpec, ExperimentState, TrialId, TrialRecord,
    TrialState, now_unix, random_u64,
};
use super::state::{State, TrialCounts, result_value};
use super::{Coordinator, ExperimentService, ExperimentView, TrialView};
use crate::store::Change;
use crate::suggest::{SuggestInput, derive_seed, space_of, suggest};
use crate::{Error, Result};

/// Default levels a parameter for grid search (the study's 3).
pub const DEFAULT_GRID_LEVELS: u32 = 3;

impl Coordinator {
    /// Fills the spec's defaults and checks it.
    fn resolve_spec(&self, mut spec: ExperimentSpec) -> Result<ExperimentSpec> {
        space_of(&spec)?;
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
            spec.metric = "value".into();
        }
        spec.parallelism = spec.parallelism.max(1);
        if spec.seed == 0 {
            spec.seed = random_u64().max(1);
        }
        if spec.grid_levels == 0 {
            spec.grid_levels = DEFAULT_GRID_LEVELS;
        }
        if spec.initial_trials == 0 {
            spec.initial_trials = self.inner.settings.default_initial_trials.get();
        }
        if spec.max_attempts == 0 {
            spec.max_attempts = self.inner.settings.max_attempts.get();
        }
        Ok(spec)
    }

    /// Creates trials up to the experiment's parallelism and budget, and marks it completed when
    /// nothing is in flight and nothing more can be created.
    pub(crate) async fn advance(&self, state: &mut State, id: &ExperimentId) -> Result<()> {
        let experiment = state.experiment(id)?.clone();
        if experiment.state != ExperimentState::Running {
            return Ok(());
        }
        let counts = state.counts(id);
        let wanted = trials_wanted(&experiment, &counts);
        let mut updated = experiment.clone();
        let mut changes = Vec::new();
        if wanted > 0 {
            let input = suggest_input(state, &experiment, counts.created, wanted);
            let metrics = Arc::clone(&self.inner.metrics);
            let points = tokio::task::spawn_blocking(move || suggest(&input, &metrics))
                .await
                .map_err(|e| Error::Internal(format!("suggest task failed: {e}")))??;
            if points.len() < wanted {
                updated.exhausted = true;
            }
            for (offset, params) in points.into_iter().enumerate() {
                let number =
                    counts.created + u32::try_from(offset).expect("batch sizes fit in u32");
                changes.push(Change::PutTrial(new_trial(id, number, params)));
            }
        }
        let created_now = changes.len();
        if counts.in_flight() == 0 && created_now == 0 && !can_create_more(&updated, &counts) {
            updated.state = ExperimentState::Completed;
            info!(experiment_id = %id, trials = counts.created, "experiment completed");
        }
        if updated != experiment {
            changes.push(Change::PutExperiment(updated));
        }
        self.commit(state, changes).await
    }

    /// [`Coordinator::advance`], logging instead of failing: used after a change already
    /// committed, whose caller must still get its answer.
    pub(crate) async fn advance_or_log(&self, state: &mut State, id: &ExperimentId) {
        if let Err(error) = self.advance(state, id).await {
            tracing::error!(experiment_id = %id, error = %crate::display_chain(&error), "failed to create trials");
        }
    }

    fn view(&self, state: &State, record: &ExperimentRecord) -> ExperimentView {
        ExperimentView {
            record: record.clone(),
            counts: state.counts(&record.id),
            best: state
                .best_trial(&record.id)
                .and_then(|t| t.value.map(|v| (t.id.clone(), v))),
            epochs_reported: state.epochs_reported(&record.id),
        }
    }

    fn trial_view(state: &State, trial: &TrialRecord, include_epochs: bool) -> TrialView {
        let epochs = if include_epochs {
            state
                .epochs_of(&trial.id, trial.attempts)
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

fn dollars_reached(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    experiment.spec.budget_dollars > 0.0 && counts.cost_dollars >= experiment.spec.budget_dollars
}

fn can_create_more(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    !experiment.exhausted
        && counts.created < experiment.spec.budget_trials
        && !dollars_reached(experiment, counts)
}

fn trials_wanted(experiment: &ExperimentRecord, counts: &TrialCounts) -> usize {
    if !can_create_more(experiment, counts) {
        return 0;
    }
    let free_slots = experiment
        .spec
        .parallelism
        .saturating_sub(counts.in_flight());
    let left = experiment.spec.budget_trials - counts.created;
    free_slots.min(left) as usize
}

fn suggest_input(
    state: &State,
    experiment: &ExperimentRecord,
    created: u32,
    q: usize,
) -> SuggestInput {
    let mut observations = Vec::new();
    let mut pending = Vec::new();
    for trial in state.trials_of(&experiment.id) {
        if let Some(value) = result_value(trial) {
            observations.push(Observation {
                params: trial.params.clone(),
                value,
            });
        } else if !trial.state.is_terminal() {
            pending.push(trial.params.clone());
        }
    }
    SuggestInput {
        spec: experiment.spec.clone(),
        observations,
        pending,
        q,
        seed: derive_seed(experiment.spec.seed, created),
    }
}

fn new_trial(
    experiment_id: &ExperimentId,
    number: u32,
    params: tuner::space::Assignment,
) -> TrialRecord {
    TrialRecord {
        id: TrialId::generate(),
        experiment_id: experiment_id.clone(),
        number,
        params,
        state: TrialState::Pending,
        value: None,
        attempts: 0,
        agent_id: None,
        lease: None,
        epochs_run: 0,
        best_epoch: 0,
        wall_seconds: 0.0,
        device_seconds: 0.0,
        cost_dollars: 0.0,
        failure_reason: String::new(),
        instance_type: String::new(),
        created_unix: now_unix(),
        finished_unix: None,
        stop_requested: false,
        interruptions: 0,
        last_lease_id: None,
    }
}

impl ExperimentService for Coordinator {
    #[instrument(skip_all, fields(name = %spec.name))]
    async fn create_experiment(&self, spec: ExperimentSpec) -> Result<ExperimentView> {
        let spec = self.resolve_spec(spec)?;
        let record = ExperimentRecord {
            id: ExperimentId::generate(),
            spec,
            state: ExperimentState::Running,
            created_unix: now_unix(),
            exhausted: false,
        };
        let mut state = self.inner.state.lock().await;
        self.commit(&mut state, vec![Change::PutExperiment(record.clone())])
            .await?;
        info!(experiment_id = %record.id, seed = record.spec.seed, "experiment created");
        self.advance_or_log(&mut state, &record.id).await;
        let current = state.experiment(&record.id)?;
        Ok(self.view(&state, current))
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<ExperimentView> {
        let state = self.inner.state.lock().await;
        Ok(self.view(&state, state.experiment(&id)?))
    }

    async fn list_experiments(&self, study: Option<String>) -> Result<Vec<ExperimentView>> {
        let state = self.inner.state.lock().await;
        let wanted = |e: &&ExperimentRecord| study.as_deref().is_none_or(|s| e.spec.study == s);
        Ok(state
            .experiments()
            .into_iter()
            .filter(wanted)
            .map(|e| self.view(&state, e))
            .collect())
    }

    #[instrument(skip(self), fields(experiment_id = %id))]
    async fn stop_experiment(&self, id: ExperimentId) -> Result<ExperimentView> {
        let mut state = self.inner.state.lock().await;
        let experiment = state.experiment(&id)?.clone();
        if experiment.state == ExperimentState::Running {
            let mut changes = Vec::new();
            for trial in state.trials_of(&id) {
                let mut updated = trial.clone();
                match trial.state {
                    TrialState::Pending => {
                        updated.state = TrialState::Cancelled;
                        updated.finished_unix = Some(now_unix());
                    }
                    TrialState::Leased | TrialState::Running => updated.stop_requested = true,
                    _ => continue,
                }
                changes.push(Change::PutTrial(updated));
            }
            changes.push(Change::PutExperiment(ExperimentRecord {
                state: ExperimentState::Stopped,
                ..experiment
            }));
            self.commit(&mut state, changes).await?;
            info!("experiment stopped");
        }
        Ok(self.view(&state, state.experiment(&id)?))
    }

    async fn list_trials(&self, id: ExperimentId, include_epochs: bool) -> Result<Vec<TrialView>> {
        let state = self.inner.state.lock().await;
        state.experiment(&id)?;
        Ok(state
            .trials_of(&id)
            .into_iter()
            .map(|t| Self::trial_view(&state, t, include_epochs))
            .collect())
    }

    async fn best_trial(&self, id: ExperimentId) -> Result<Option<TrialView>> {
        let state = self.inner.state.lock().await;
        state.experiment(&id)?;
        Ok(state
            .best_trial(&id)
            .map(|t| Self::trial_view(&state, t, true)))
    }
}
