//! Experiments: creation and validation, views, stopping. Trials are created in the background
//! ([`refill`](super::refill)), so creating an experiment answers before its first suggestion.

use std::sync::Arc;

use tracing::{info, instrument};

use super::cell::ExperimentCell;
use super::lifecycle::{TrialEvent, transition};
use super::model::{
    ExperimentId, ExperimentRecord, ExperimentSpec, ExperimentState, TrialRecord, now_unix,
    random_u64,
};
use super::state::Live;
use super::{Coordinator, ExperimentService, ExperimentView, Page, TrialView};
use crate::store::Change;
use crate::suggest::space_of;
use crate::{Error, Result};

/// Default levels a parameter for grid search (the study's 3).
pub const DEFAULT_GRID_LEVELS: u32 = 3;

impl Coordinator {
    /// Fills the spec's defaults and checks it.
    fn resolve_spec(&self, mut spec: ExperimentSpec) -> Result<ExperimentSpec> {
        super::limits::check_spec(&spec)?;
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

    fn view(live: &Live) -> ExperimentView {
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

/// The changes that end a running experiment in `state` (stopped or failed): its pending trials
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
            if live.record.state == ExperimentState::Running {
                changes = ending(&live, ExperimentState::Stopped, String::new());
                info!("experiment stopped");
            }
            let ticket = self.mutate(&cell, &mut live, changes);
            (ticket, Self::view(&live))
        };
        ticket.durable().await?;
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
}
