//! Suggestions ahead of demand. Each running experiment keeps up to `parallelism` trials in
//! flight; when a result (or an expiry) frees a slot, [`Coordinator::refill`] snapshots the
//! experiment's results and unfinished trials and computes the next batch on a blocking thread,
//! holding no lock. The new trials join the ready queue and wake agents waiting in a long poll.
//!
//! At most one suggestion per experiment is computed at a time, and it sees every trial created
//! and not finished as pending (the constant liar's fantasies, or MC q-EI's pending points), so
//! the liar semantics are exact and no two suggestions of an experiment coincide. While it runs,
//! only finishing trials change the experiment (nothing else creates trials), so every point it
//! returns still fits; results that arrived meanwhile start the next batch at once, so the
//! suggester is never idle while slots are free. BO fits share `suggest_concurrency` permits, so
//! a core stays free for requests; random and grid suggestions are cheap and skip the queue.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::Coordinator;
use super::cell::ExperimentCell;
use super::model::{
    ExperimentId, ExperimentRecord, ExperimentState, Strategy, TrialId, TrialRecord, TrialState,
    now_unix,
};
use super::state::{Live, TrialCounts, result_value};
use crate::store::Change;
use crate::suggest::{SuggestInput, derive_seed, suggest};
use tuner::Observation;

/// How long a failed suggestion waits before the experiment tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Coordinator {
    /// Starts computing trials for an experiment that wants some, unless one computation is
    /// already running; marks the experiment completed when nothing is in flight and nothing more
    /// can be created. Returns at once.
    pub(crate) fn refill(&self, cell: &Arc<ExperimentCell>) {
        let (input, created) = {
            let mut live = cell.lock();
            if live.record.state != ExperimentState::Running || live.suggesting {
                return;
            }
            let counts = live.counts();
            let wanted = trials_wanted(&live.record, &counts);
            if wanted == 0 {
                if counts.in_flight() == 0 && !can_create_more(&live.record, &counts) {
                    let mut updated = live.record.clone();
                    updated.state = ExperimentState::Completed;
                    info!(experiment_id = %updated.id, trials = counts.created, "experiment completed");
                    // Durable in order with everything before it; nobody waits for it.
                    drop(self.mutate(cell, &mut live, vec![Change::PutExperiment(updated)]));
                }
                return;
            }
            live.suggesting = true;
            (suggest_input(&live, counts.created, wanted), counts.created)
        };
        let coordinator = self.clone();
        let cell = Arc::clone(cell);
        tokio::spawn(async move { coordinator.compute(cell, input, created).await });
    }

    async fn compute(self, cell: Arc<ExperimentCell>, input: SuggestInput, created: u32) {
        let permit = if input.spec.strategy == Strategy::Bo {
            Arc::clone(&self.inner.suggest_permits)
                .acquire_owned()
                .await
                .ok()
        } else {
            None
        };
        let asked = input.q;
        let metrics = Arc::clone(&self.inner.metrics);
        let result = tokio::task::spawn_blocking(move || suggest(&input, &metrics)).await;
        drop(permit);
        let (made, failed) = {
            let mut live = cell.lock();
            live.suggesting = false;
            match result {
                Ok(Ok(points)) => (
                    self.add_trials(&cell, &mut live, points, asked, created),
                    false,
                ),
                Ok(Err(error)) => {
                    warn!(experiment_id = %cell.id, error = %crate::display_chain(&error), "suggestion failed; retrying shortly");
                    (0, true)
                }
                Err(error) => {
                    warn!(experiment_id = %cell.id, %error, "suggestion task failed; retrying shortly");
                    (0, true)
                }
            }
        };
        for _ in 0..made {
            self.inner.work.notify_one();
        }
        if failed {
            tokio::time::sleep(RETRY_AFTER_FAILURE).await;
        }
        self.refill(&cell);
    }

    /// Turns computed points into pending trials, as far as the experiment still wants them.
    fn add_trials(
        &self,
        cell: &ExperimentCell,
        live: &mut Live,
        points: Vec<tuner::space::Assignment>,
        asked: usize,
        created: u32,
    ) -> usize {
        if live.record.state != ExperimentState::Running {
            return 0;
        }
        let counts = live.counts();
        if counts.created != created {
            warn!(experiment_id = %cell.id, "trials were created during a suggestion; dropping it");
            return 0;
        }
        let take = points.len().min(trials_wanted(&live.record, &counts));
        let mut updated = live.record.clone();
        if points.len() < asked {
            updated.exhausted = true;
        }
        let mut changes: Vec<Change> = points
            .into_iter()
            .take(take)
            .enumerate()
            .map(|(offset, params)| {
                let number = created + u32::try_from(offset).unwrap_or(u32::MAX);
                Change::PutTrial(new_trial(&cell.id, number, params))
            })
            .collect();
        if updated != live.record {
            changes.push(Change::PutExperiment(updated));
        }
        drop(self.mutate(cell, live, changes));
        take
    }
}

fn dollars_reached(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    experiment.spec.budget_dollars > 0.0 && counts.cost_dollars >= experiment.spec.budget_dollars
}

/// Whether the experiment may create more trials (budget, dollars, an exhausted grid).
pub(crate) fn can_create_more(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    !experiment.exhausted
        && counts.created < experiment.spec.budget_trials
        && !dollars_reached(experiment, counts)
}

/// Trials to create now: the free slots of the parallelism, within the budget.
pub(crate) fn trials_wanted(experiment: &ExperimentRecord, counts: &TrialCounts) -> usize {
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

fn suggest_input(live: &Live, created: u32, q: usize) -> SuggestInput {
    let mut observations = Vec::new();
    let mut pending = Vec::new();
    for trial in live.trials() {
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
        spec: live.record.spec.clone(),
        observations,
        pending,
        q,
        seed: derive_seed(live.record.spec.seed, created),
    }
}

/// A new pending trial.
pub(crate) fn new_trial(
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
        interruptions: 0,
        agent_id: None,
        lease: None,
        last_lease_id: None,
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
    }
}
