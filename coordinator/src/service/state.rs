//! One experiment's live state: its record, trials, epoch reports, the queue of trials ready to
//! lease and the deadlines of the leased ones. Each experiment has its own, behind its own lock
//! ([`super::cell::ExperimentCell`]), so requests for different experiments never wait for each
//! other. The durable part changes only through [`Live::apply`], with the same [`Change`]s the
//! store commits; deadlines and the ready queue are memory only (a restart rebuilds them).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use super::early_stop::TrialCurve;
use super::model::{EpochRecord, ExperimentRecord, TrialId, TrialRecord, TrialState};
use super::pause::FailureStreak;
use crate::store::Change;

/// Counts of an experiment's trials by state, and its totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrialCounts {
    /// Trials created, imported ones included.
    pub created: u32,
    /// Trials added with `AddTrials` (results from elsewhere; not counted towards the budget).
    pub imported: u32,
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

    /// Trials the experiment created to run (imported ones excluded): what the budget counts.
    pub fn runs(&self) -> u32 {
        self.created - self.imported
    }
}

/// One experiment, in memory.
#[derive(Debug)]
pub struct Live {
    /// The stored experiment.
    pub record: ExperimentRecord,
    trials: Vec<TrialRecord>,
    by_id: HashMap<TrialId, usize>,
    epochs: HashMap<usize, BTreeMap<(u32, u32), EpochRecord>>,
    epochs_reported: u64,
    /// Pending trials in the order they are leased.
    ready: VecDeque<usize>,
    /// Live deadlines of leased trials (renewed by heartbeats, not stored).
    deadlines: HashMap<usize, Instant>,
    /// Leased trials the early-stopping rule stopped at their latest epoch.
    stop_decided: HashSet<usize>,
    /// Counts by state, kept up to date by every put.
    counts: TrialCounts,
    /// The best result so far.
    best: Option<usize>,
    /// A suggestion is being computed.
    pub suggesting: bool,
    /// Suggestions computed ahead of demand, not yet trials: the next free slot takes the first
    /// at once. They count as pending for every later suggestion.
    pub buffer: VecDeque<tuner::space::Assignment>,
    /// Results the buffer's suggestions were computed from (BO recomputes it when more arrive).
    pub buffer_results: u32,
    /// Suggestion rounds so far, mixed into each round's seed.
    pub rounds: u64,
    /// Suggestion rounds that failed in a row (reset by a success).
    pub suggest_failures: u32,
    /// Trials that failed in a row for one reason since the start or the last resume
    /// ([`super::pause`]).
    pub failure_streak: FailureStreak,
    /// The last BO fit's hyperparameters, the warm start of the next (in memory only).
    pub hyperparameters: crate::suggest::HyperparameterMemory,
}

impl TrialCounts {
    fn add(&mut self, trial: &TrialRecord, sign: i8) {
        let step = |n: &mut u32| {
            if sign > 0 {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        };
        match trial.state {
            TrialState::Pending => step(&mut self.pending),
            TrialState::Leased | TrialState::Running => step(&mut self.leased),
            TrialState::Succeeded => step(&mut self.succeeded),
            TrialState::Failed => step(&mut self.failed),
            TrialState::EarlyStopped => step(&mut self.early_stopped),
            TrialState::Cancelled => step(&mut self.other_terminal),
        }
        let factor = f64::from(sign);
        self.cost_dollars += factor * trial.cost_dollars;
        self.device_seconds += factor * trial.device_seconds;
    }
}

impl Live {
    /// An experiment with no trials yet.
    pub fn new(record: ExperimentRecord) -> Self {
        Self {
            record,
            trials: Vec::new(),
            by_id: HashMap::new(),
            epochs: HashMap::new(),
            epochs_reported: 0,
            ready: VecDeque::new(),
            deadlines: HashMap::new(),
            stop_decided: HashSet::new(),
            counts: TrialCounts::default(),
            best: None,
            suggesting: false,
            buffer: VecDeque::new(),
            buffer_results: 0,
            rounds: 0,
            suggest_failures: 0,
            failure_streak: FailureStreak::default(),
            hyperparameters: crate::suggest::HyperparameterMemory::default(),
        }
    }

    /// Recounts the failure streak from the stored trials (after loading them).
    pub fn rebuild_failure_streak(&mut self) {
        self.failure_streak = FailureStreak::rebuild(&self.trials, self.record.resumed_unix);
    }

    /// Applies one durable change (already submitted to the store, or loaded from it). A leased
    /// trial gets `deadline` when it has no live deadline yet.
    pub fn apply(&mut self, change: Change, deadline: Instant) {
        match change {
            Change::PutExperiment(record) => self.record = record,
            Change::PutTrial(trial) => self.put_trial(trial, deadline),
            Change::AddEpoch(epoch) => {
                let Some(&index) = self.by_id.get(&epoch.trial_id) else {
                    return;
                };
                let per_trial = self.epochs.entry(index).or_default();
                if per_trial.contains_key(&(epoch.attempt, epoch.epoch)) {
                    return;
                }
                per_trial.insert((epoch.attempt, epoch.epoch), epoch);
                self.epochs_reported += 1;
            }
            Change::PutAgent(_) | Change::DeleteAgent(_) => {}
        }
    }

    fn put_trial(&mut self, trial: TrialRecord, deadline: Instant) {
        let (index, was_pending) = match self.by_id.get(&trial.id) {
            Some(&index) => {
                let old = &self.trials[index];
                self.counts.add(old, -1);
                let counts_now = trial
                    .finished_unix
                    .is_some_and(|at| at >= self.record.resumed_unix);
                if !old.state.is_terminal() && trial.state.is_terminal() && counts_now {
                    self.failure_streak.record(&trial);
                }
                (index, old.state == TrialState::Pending)
            }
            None => {
                self.by_id.insert(trial.id.clone(), self.trials.len());
                self.trials.push(trial.clone());
                self.counts.created += 1;
                if trial.imported {
                    self.counts.imported += 1;
                }
                (self.trials.len() - 1, false)
            }
        };
        self.counts.add(&trial, 1);
        if let Some(value) = result_value(&trial) {
            let direction = self.record.spec.direction;
            let better = self
                .best
                .and_then(|b| result_value(&self.trials[b]))
                .is_none_or(|incumbent| direction.is_better(value, incumbent));
            if better || self.best == Some(index) {
                self.best = Some(index);
            }
        }
        let is_pending = trial.state == TrialState::Pending;
        if is_pending && !was_pending {
            if trial.attempts == 0 {
                self.ready.push_back(index);
            } else {
                // A requeued trial is older than any fresh one: it goes first.
                self.ready.push_front(index);
            }
        } else if !is_pending && was_pending {
            self.ready.retain(|&i| i != index);
        }
        if trial.state.is_leased() {
            self.deadlines.entry(index).or_insert(deadline);
        } else {
            self.deadlines.remove(&index);
            self.stop_decided.remove(&index);
        }
        self.trials[index] = trial;
    }

    /// A trial by id.
    pub fn trial(&self, id: &TrialId) -> Option<&TrialRecord> {
        self.by_id.get(id).map(|&i| &self.trials[i])
    }

    /// The trials in creation order.
    pub fn trials(&self) -> &[TrialRecord] {
        &self.trials
    }

    /// The next pending trial to lease, if any.
    pub fn next_ready(&self) -> Option<&TrialRecord> {
        self.ready.front().map(|&i| &self.trials[i])
    }

    /// Pending trials waiting for an agent.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Leased trials.
    pub fn leased_len(&self) -> usize {
        self.deadlines.len()
    }

    /// Sets a leased trial's live deadline.
    pub fn set_deadline(&mut self, id: &TrialId, deadline: Instant) {
        if let Some(&index) = self.by_id.get(id)
            && self.trials[index].state.is_leased()
        {
            self.deadlines.insert(index, deadline);
        }
    }

    /// Moves every live deadline `by` later (the coordinator did not run for that long), and to
    /// `at_least` when that is later still; returns how many moved.
    pub fn postpone_deadlines(&mut self, by: std::time::Duration, at_least: Instant) -> usize {
        for deadline in self.deadlines.values_mut() {
            *deadline = (*deadline + by).max(at_least);
        }
        self.deadlines.len()
    }

    /// Leased trials whose deadline is before `now`.
    pub fn expired(&self, now: Instant) -> Vec<TrialId> {
        let mut expired: Vec<usize> = self
            .deadlines
            .iter()
            .filter(|&(_, &deadline)| deadline < now)
            .map(|(&index, _)| index)
            .collect();
        expired.sort_unstable();
        expired
            .into_iter()
            .map(|i| self.trials[i].id.clone())
            .collect()
    }

    /// Records the early-stopping rule's decision for a leased trial.
    pub fn set_stop_decided(&mut self, id: &TrialId, stop: bool) {
        if let Some(&index) = self.by_id.get(id) {
            if stop {
                self.stop_decided.insert(index);
            } else {
                self.stop_decided.remove(&index);
            }
        }
    }

    /// Whether the early-stopping rule stopped this trial.
    pub fn stop_decided(&self, id: &TrialId) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|index| self.stop_decided.contains(index))
    }

    /// The epoch reports of one attempt of a trial, by epoch.
    pub fn epochs_of(&self, trial: &TrialId, attempt: u32) -> Vec<&EpochRecord> {
        self.by_id
            .get(trial)
            .and_then(|index| self.epochs.get(index))
            .map(|all| {
                all.range((attempt, 0)..=(attempt, u32::MAX))
                    .map(|(_, e)| e)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this epoch of this attempt was already reported.
    pub fn has_epoch(&self, trial: &TrialId, attempt: u32, epoch: u32) -> bool {
        self.by_id
            .get(trial)
            .and_then(|index| self.epochs.get(index))
            .is_some_and(|all| all.contains_key(&(attempt, epoch)))
    }

    /// The distinct epochs one attempt of a trial reported, `epoch` itself left out (a repeat of
    /// it is ignored, not counted).
    pub fn other_epochs_in_attempt(&self, trial: &TrialId, attempt: u32, epoch: u32) -> usize {
        self.by_id
            .get(trial)
            .and_then(|index| self.epochs.get(index))
            .map_or(0, |all| {
                all.range((attempt, 0)..=(attempt, u32::MAX))
                    .filter(|((_, e), _)| *e != epoch)
                    .count()
            })
    }

    /// The epochs a trial plans (`epochs` in its parameters or its workload's fixed ones).
    pub fn planned_epochs(&self, trial: &TrialId) -> Option<u32> {
        let trial = self.trial(trial)?;
        super::limits::planned_epochs(&trial.params, self.record.spec.workload.as_ref())
    }

    /// Epoch reports received over all attempts.
    pub fn epochs_reported(&self) -> u64 {
        self.epochs_reported
    }

    /// The learning curves an early-stopping rule compares: the current attempt's epochs of every
    /// trial that is running or ended with a value (failed, cancelled and pending trials are left
    /// out). Returns the curves and the index of `trial` among them, if it is there.
    pub fn learning_curves(&self, trial: &TrialId) -> (Vec<TrialCurve>, Option<usize>) {
        let mut index = None;
        let curves = self
            .trials
            .iter()
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

    /// Counts the trials by state.
    pub fn counts(&self) -> TrialCounts {
        self.counts.clone()
    }

    /// The best trial with a value that counts as a result (succeeded or early stopped).
    pub fn best_trial(&self) -> Option<&TrialRecord> {
        self.best.map(|i| &self.trials[i])
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
    use crate::store::tests_support::{sample_experiment, sample_trial};

    fn trial(number: u32, state: TrialState, value: Option<f64>) -> TrialRecord {
        let mut trial = sample_trial();
        trial.id = TrialId(format!("trial-{number}"));
        trial.number = number;
        trial.state = state;
        trial.value = value;
        if !state.is_leased() {
            trial.lease = None;
        }
        if state == TrialState::Pending {
            trial.attempts = 0;
        }
        trial
    }

    #[test]
    fn ready_queue_and_deadlines_follow_trial_states() {
        let now = Instant::now();
        let mut live = Live::new(sample_experiment());
        live.apply(Change::PutTrial(trial(0, TrialState::Pending, None)), now);
        live.apply(Change::PutTrial(trial(1, TrialState::Pending, None)), now);
        assert_eq!(live.ready_len(), 2);
        assert_eq!(live.next_ready().map(|t| t.number), Some(0));
        live.apply(Change::PutTrial(trial(0, TrialState::Leased, None)), now);
        assert_eq!((live.ready_len(), live.leased_len()), (1, 1));
        assert_eq!(live.next_ready().map(|t| t.number), Some(1));
        let mut requeued = trial(0, TrialState::Pending, None);
        requeued.attempts = 1;
        live.apply(Change::PutTrial(requeued.clone()), now);
        assert_eq!((live.ready_len(), live.leased_len()), (2, 0));
        // The requeued trial (it had an attempt) goes first.
        assert_eq!(live.next_ready().map(|t| t.number), Some(0));
        live.apply(Change::PutTrial(requeued), now);
        assert_eq!(live.ready_len(), 2, "a repeated put does not queue twice");
    }

    #[test]
    fn best_trial_respects_direction_and_state() {
        let now = Instant::now();
        let mut live = Live::new(sample_experiment());
        for (number, (value, state)) in [
            (3.0, TrialState::Succeeded),
            (1.0, TrialState::Failed),
            (2.0, TrialState::EarlyStopped),
        ]
        .into_iter()
        .enumerate()
        {
            live.apply(
                Change::PutTrial(trial(number as u32, state, Some(value))),
                now,
            );
        }
        assert_eq!(live.best_trial().and_then(|t| t.value), Some(2.0));
        let counts = live.counts();
        assert_eq!(
            (
                counts.created,
                counts.succeeded,
                counts.failed,
                counts.early_stopped
            ),
            (3, 1, 1, 1)
        );
    }

    /// The incremental counts and best trial equal a recount after any sequence of puts.
    #[test]
    fn incremental_counts_and_best_match_a_recount() {
        let states = [
            TrialState::Pending,
            TrialState::Leased,
            TrialState::Running,
            TrialState::Succeeded,
            TrialState::Failed,
            TrialState::Cancelled,
            TrialState::EarlyStopped,
        ];
        let now = Instant::now();
        let mut live = Live::new(sample_experiment());
        let mut x: u64 = 12345;
        for step in 0..2000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let number = ((x >> 33) % 40) as u32;
            let id = TrialId(format!("trial-{number}"));
            if live.trial(&id).is_some_and(|t| t.state.is_terminal()) {
                continue;
            }
            let state = states[((x >> 20) % 7) as usize];
            let mut record = trial(number, state, Some(f64::from((x >> 40) as u32 % 1000)));
            record.cost_dollars = f64::from(step % 7);
            live.apply(Change::PutTrial(record), now);
            let mut recount = TrialCounts::default();
            for t in live.trials() {
                recount.created += 1;
                recount.imported += u32::from(t.imported);
                recount.add(t, 1);
            }
            let counts = live.counts();
            assert_eq!(
                (
                    counts.created,
                    counts.pending,
                    counts.leased,
                    counts.succeeded
                ),
                (
                    recount.created,
                    recount.pending,
                    recount.leased,
                    recount.succeeded
                )
            );
            assert_eq!(
                (counts.failed, counts.early_stopped, counts.other_terminal),
                (
                    recount.failed,
                    recount.early_stopped,
                    recount.other_terminal
                )
            );
            assert!((counts.cost_dollars - recount.cost_dollars).abs() < 1e-6);
            let best = live
                .trials()
                .iter()
                .filter_map(result_value)
                .fold(f64::INFINITY, f64::min);
            let got = live.best_trial().and_then(|t| t.value);
            assert_eq!(got.unwrap_or(f64::INFINITY), best, "step {step}");
            assert_eq!(live.ready_len(), counts.pending as usize, "step {step}");
            assert_eq!(live.leased_len(), counts.leased as usize, "step {step}");
        }
    }
}
