//! The coordinator's live state: every experiment, trial, epoch report and agent, indexed for the
//! service. It changes only through [`State::apply`], the same [`Change`]s the store commits.

use std::collections::{BTreeMap, HashMap};

use super::early_stop::TrialCurve;
use super::model::{
    AgentId, AgentRecord, EpochRecord, ExperimentId, ExperimentRecord, ExperimentState, LeaseId,
    TrialId, TrialRecord, TrialState,
};
use crate::store::{Change, Snapshot};
use crate::{Error, Result};

/// Counts of an experiment's trials by state, and its totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrialCounts {
    /// Trials created.
    pub created: u32,
    /// Waiting for an agent.
    pub pending: u32,
    /// Leased or running.
    pub leased: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Early stopped (a result, at the value reached).
    pub early_stopped: u32,
    /// Cancelled.
    pub other_terminal: u32,
    /// Dollars reported over all trials.
    pub cost_dollars: f64,
    /// Device seconds reported over all trials.
    pub device_seconds: f64,
}

impl TrialCounts {
    /// Trials not yet terminal.
    pub fn in_flight(&self) -> u32 {
        self.pending + self.leased
    }

    /// Trials that are terminal.
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.early_stopped + self.other_terminal
    }
}

/// Everything the coordinator knows, in memory.
#[derive(Debug, Default)]
pub struct State {
    experiments: BTreeMap<ExperimentId, ExperimentRecord>,
    trials: HashMap<TrialId, TrialRecord>,
    trials_by_experiment: HashMap<ExperimentId, BTreeMap<u32, TrialId>>,
    epochs: HashMap<TrialId, BTreeMap<(u32, u32), EpochRecord>>,
    epochs_by_experiment: HashMap<ExperimentId, u64>,
    agents: HashMap<AgentId, AgentRecord>,
    leases: HashMap<LeaseId, TrialId>,
}

impl State {
    /// Builds the state from what a store loaded.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let mut state = State::default();
        let changes = snapshot
            .experiments
            .into_iter()
            .map(Change::PutExperiment)
            .chain(snapshot.trials.into_iter().map(Change::PutTrial))
            .chain(snapshot.epochs.into_iter().map(Change::AddEpoch))
            .chain(snapshot.agents.into_iter().map(Change::PutAgent));
        for change in changes {
            state.apply(change);
        }
        state
    }

    /// Applies one change (already committed to the store).
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::PutExperiment(e) => {
                self.experiments.insert(e.id.clone(), e);
            }
            Change::PutTrial(t) => self.put_trial(t),
            Change::AddEpoch(e) => {
                let per_trial = self.epochs.entry(e.trial_id.clone()).or_default();
                if per_trial.contains_key(&(e.attempt, e.epoch)) {
                    return;
                }
                if let Some(trial) = self.trials.get(&e.trial_id) {
                    *self
                        .epochs_by_experiment
                        .entry(trial.experiment_id.clone())
                        .or_default() += 1;
                }
                per_trial.insert((e.attempt, e.epoch), e);
            }
            Change::PutAgent(a) => {
                self.agents.insert(a.id.clone(), a);
            }
        }
    }

    fn put_trial(&mut self, trial: TrialRecord) {
        if let Some(old) = self.trials.get(&trial.id)
            && let Some(lease) = &old.lease
        {
            self.leases.remove(&lease.lease_id);
        }
        if let Some(lease) = &trial.lease {
            self.leases.insert(lease.lease_id.clone(), trial.id.clone());
        }
        self.trials_by_experiment
            .entry(trial.experiment_id.clone())
            .or_default()
            .insert(trial.number, trial.id.clone());
        self.trials.insert(trial.id.clone(), trial);
    }

    /// An experiment by id.
    ///
    /// # Errors
    /// `NotFound` when there is none.
    pub fn experiment(&self, id: &ExperimentId) -> Result<&ExperimentRecord> {
        self.experiments
            .get(id)
            .ok_or_else(|| Error::not_found("experiment", id))
    }

    /// All experiments, oldest first.
    pub fn experiments(&self) -> Vec<&ExperimentRecord> {
        let mut all: Vec<&ExperimentRecord> = self.experiments.values().collect();
        all.sort_by(|a, b| {
            a.created_unix
                .total_cmp(&b.created_unix)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// Running experiments, oldest first.
    pub fn running_experiments(&self) -> Vec<ExperimentId> {
        self.experiments()
            .into_iter()
            .filter(|e| e.state == ExperimentState::Running)
            .map(|e| e.id.clone())
            .collect()
    }

    /// An experiment's trials in creation order.
    pub fn trials_of(&self, id: &ExperimentId) -> Vec<&TrialRecord> {
        self.trials_by_experiment
            .get(id)
            .map(|by_number| {
                by_number
                    .values()
                    .filter_map(|t| self.trials.get(t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A trial by id.
    pub fn trial(&self, id: &TrialId) -> Option<&TrialRecord> {
        self.trials.get(id)
    }

    /// The trial currently holding this lease, if the lease is current.
    pub fn trial_by_lease(&self, lease: &LeaseId) -> Option<&TrialRecord> {
        self.leases.get(lease).and_then(|t| self.trials.get(t))
    }

    /// Every trial with a lease, for the expiry sweep.
    pub fn leased_trials(&self) -> impl Iterator<Item = &TrialRecord> {
        self.leases.values().filter_map(|t| self.trials.get(t))
    }

    /// The epoch reports of one attempt of a trial, by epoch.
    pub fn epochs_of(&self, trial: &TrialId, attempt: u32) -> Vec<&EpochRecord> {
        self.epochs
            .get(trial)
            .map(|all| {
                all.range((attempt, 0)..=(attempt, u32::MAX))
                    .map(|(_, e)| e)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The learning curves an early-stopping rule compares: the current attempt's epochs of every
    /// trial of the experiment that is running or ended with a value (failed and cancelled trials
    /// are left out, and so are pending ones, whose curve belongs to an attempt that was given
    /// back). Returns the curves and the index of `trial` among them, if it is there.
    pub fn learning_curves(
        &self,
        experiment: &ExperimentId,
        trial: &TrialId,
    ) -> (Vec<TrialCurve>, Option<usize>) {
        let mut index = None;
        let curves = self
            .trials_of(experiment)
            .into_iter()
            .filter(|t| {
                t.state.is_leased()
                    || matches!(t.state, TrialState::Succeeded | TrialState::EarlyStopped)
            })
            .enumerate()
            .map(|(i, t)| {
                if &t.id == trial {
                    index = Some(i);
                }
                TrialCurve {
                    id: t.id.0.clone(),
                    epochs: self
                        .epochs_of(&t.id, t.attempts)
                        .iter()
                        .map(|e| (e.epoch, e.value))
                        .collect(),
                    running: t.state.is_leased(),
                }
            })
            .collect();
        (curves, index)
    }

    /// Whether this epoch of this attempt was already reported.
    pub fn has_epoch(&self, trial: &TrialId, attempt: u32, epoch: u32) -> bool {
        self.epochs
            .get(trial)
            .is_some_and(|all| all.contains_key(&(attempt, epoch)))
    }

    /// Epoch reports received for an experiment over all attempts.
    pub fn epochs_reported(&self, id: &ExperimentId) -> u64 {
        self.epochs_by_experiment.get(id).copied().unwrap_or(0)
    }

    /// An agent by id.
    pub fn agent(&self, id: &AgentId) -> Option<&AgentRecord> {
        self.agents.get(id)
    }

    /// All agents.
    pub fn agents(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }

    /// Counts an experiment's trials by state.
    pub fn counts(&self, id: &ExperimentId) -> TrialCounts {
        let mut counts = TrialCounts::default();
        for trial in self.trials_of(id) {
            counts.created += 1;
            counts.cost_dollars += trial.cost_dollars;
            counts.device_seconds += trial.device_seconds;
            match trial.state {
                TrialState::Pending => counts.pending += 1,
                TrialState::Leased | TrialState::Running => counts.leased += 1,
                TrialState::Succeeded => counts.succeeded += 1,
                TrialState::Failed => counts.failed += 1,
                TrialState::EarlyStopped => counts.early_stopped += 1,
                TrialState::Cancelled => counts.other_terminal += 1,
            }
        }
        counts
    }

    /// The best trial with a value that counts as a result (succeeded or early stopped).
    pub fn best_trial(&self, id: &ExperimentId) -> Option<&TrialRecord> {
        let direction = self.experiments.get(id)?.spec.direction;
        let mut best: Option<&TrialRecord> = None;
        for trial in self.trials_of(id) {
            let Some(value) = result_value(trial) else {
                continue;
            };
            if best
                .and_then(|b| b.value)
                .is_none_or(|incumbent| direction.is_better(value, incumbent))
            {
                best = Some(trial);
            }
        }
        best
    }

    /// Trials holding a lease now, over all experiments.
    pub fn leases_active(&self) -> usize {
        self.leases.len()
    }
}

/// The value a trial contributes as an observation: succeeded and early-stopped trials only.
pub fn result_value(trial: &TrialRecord) -> Option<f64> {
    match trial.state {
        TrialState::Succeeded | TrialState::EarlyStopped => trial.value,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::model::LeaseRecord;
    use crate::store::tests_support::{sample_changes, sample_experiment, sample_trial};

    #[test]
    fn lease_index_follows_trial_updates() {
        let (changes, snapshot) = sample_changes();
        let mut state = State::default();
        for change in changes {
            state.apply(change);
        }
        let lease: LeaseId = "lease-1".into();
        assert!(state.trial_by_lease(&lease).is_some());
        let mut trial = snapshot.trials[0].clone();
        trial.lease = Some(LeaseRecord {
            lease_id: "lease-2".into(),
            agent_id: "agent-1".into(),
            deadline_unix: 5.0,
        });
        state.apply(Change::PutTrial(trial));
        assert!(state.trial_by_lease(&lease).is_none());
        assert_eq!(state.leases_active(), 1);
        assert_eq!(state.epochs_reported(&"exp-1".into()), 1);
    }

    #[test]
    fn best_trial_respects_direction_and_state() {
        let mut state = State::default();
        state.apply(Change::PutExperiment(sample_experiment()));
        for (number, (value, trial_state)) in [
            (3.0, TrialState::Succeeded),
            (1.0, TrialState::Failed),
            (2.0, TrialState::EarlyStopped),
        ]
        .into_iter()
        .enumerate()
        {
            let mut trial = sample_trial();
            trial.id = TrialId(format!("trial-{number}"));
            trial.number = number as u32;
            trial.lease = None;
            trial.state = trial_state;
            trial.value = Some(value);
            state.apply(Change::PutTrial(trial));
        }
        let best = state.best_trial(&"exp-1".into()).expect("has a best");
        assert_eq!(best.value, Some(2.0));
        let counts = state.counts(&"exp-1".into());
        assert_eq!(
            (
                counts.created,
                counts.succeeded,
                counts.failed,
                counts.early_stopped,
                counts.other_terminal
            ),
            (3, 1, 1, 1, 0)
        );
    }
}
