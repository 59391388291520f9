//! Suggestions ahead of demand. Each running experiment keeps up to `parallelism` trials in
//! flight and, beside them, a small buffer of suggestions that are not trials yet. When a slot
//! frees (a result, an expiry), the first buffered suggestion becomes a trial at once, inside the
//! request that freed it, so the agent that asks next finds a trial ready; then
//! `Coordinator::refill` computes more on a blocking thread, holding no lock, from a snapshot of
//! the results and of everything unfinished (trials in flight and the buffer, all pending).
//!
//! At most one suggestion round per experiment runs at a time. A round's pending points include
//! the buffer it may replace, so its points never coincide with one that became a trial
//! meanwhile, and the liar semantics are exact. BO's buffer is short ([`BO_BUFFER`]) and is
//! recomputed when new results arrive (its new points replace the unused old ones); random and
//! grid search only top theirs up (a buffer as long as the parallelism). A round that ends with
//! slots still free, or results that arrived during it, starts the next at once, so the
//! suggester is never idle while agents wait. BO rounds run on `suggest_concurrency` threads of
//! their own at a lower priority ([`super::suggest_pool`]), so a core stays free for requests and
//! a fit never delays one; random and grid rounds are cheap and run on tokio's blocking pool.
//!
//! Suggestion work is bounded and isolated: a failed round is retried after a second, and an
//! experiment whose rounds fail [`MAX_SUGGEST_FAILURES`] times in a row, or whose round runs past
//! `suggest_timeout`, is marked failed with the reason (its pending trials cancelled, its leased
//! ones asked to stop). The budget counts from the start of the computation, not from its place
//! in the queue. A round past its budget cannot be cancelled on its thread, so it keeps the thread
//! until it ends and its result is dropped; other experiments and requests never wait for it.

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
use crate::suggest::{SuggestInput, derive_seed};
use tuner::Observation;

/// How long a failed suggestion waits before the experiment tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Suggestion rounds failing in a row that fail the experiment.
pub const MAX_SUGGEST_FAILURES: u32 = 3;

/// How a suggestion round ended.
enum RoundEnd {
    Points(Vec<tuner::space::Assignment>),
    /// Failed; worth retrying.
    Failed(String),
    /// Ran past its time budget: the experiment fails at once.
    TimedOut(String),
}

/// The most trials one lock hold creates from the queue and the buffer.
const MAX_PROMOTE: usize = 512;

/// Suggestions BO keeps ahead of demand (each costs a fantasy in the batch).
pub const BO_BUFFER: usize = 4;

/// The most points one BO round computes: each is a fantasy the next must account for, so a
/// bounded round ends sooner and the next one sees the results that came in meanwhile.
pub const BO_MAX_ROUND: usize = 16;

/// The buffer an experiment keeps beside its trials in flight.
fn buffer_target(record: &ExperimentRecord) -> usize {
    let parallelism = record.spec.parallelism.max(1) as usize;
    match record.spec.strategy {
        Strategy::Bo => parallelism.min(BO_BUFFER),
        Strategy::Random | Strategy::Grid => parallelism,
    }
}

/// One suggestion round to compute.
struct Round {
    input: SuggestInput,
    replace: bool,
    results: u32,
}

impl Coordinator {
    /// Turns buffered suggestions into trials while the experiment has free slots, under its
    /// lock. Returns the trials created (the caller wakes that many waiting agents).
    /// Configurations queued with `EnqueueTrials` go first, in order, then buffered suggestions.
    pub(crate) fn promote(&self, cell: &ExperimentCell, live: &mut Live) -> usize {
        let queued = live.record.queued.len();
        let supply = queued + live.buffer.len();
        if live.record.state != ExperimentState::Running || supply == 0 {
            return 0;
        }
        let counts = live.counts();
        let take = trials_wanted(&live.record, &counts, supply)
            .min(supply)
            .min(MAX_PROMOTE);
        if take == 0 {
            return 0;
        }
        let from_queue = take.min(queued);
        let mut params: Vec<tuner::space::Assignment> = Vec::with_capacity(take);
        let mut changes: Vec<Change> = Vec::with_capacity(take + 1);
        if from_queue > 0 {
            let mut record = live.record.clone();
            params.extend(record.queued.drain(..from_queue));
            changes.push(Change::PutExperiment(record));
        }
        params.extend(live.buffer.drain(..take - from_queue));
        changes.extend(params.into_iter().enumerate().map(|(offset, params)| {
            let number = counts.created + u32::try_from(offset).unwrap_or(u32::MAX);
            Change::PutTrial(new_trial(&cell.id, number, params))
        }));
        // Durable in order before any lease of these trials; nobody waits for it here.
        drop(self.mutate(cell, live, changes));
        take
    }

    /// Wakes `count` long polls for trials that just became ready in `cell`: one of the agents
    /// that take any experiment and one of those that take only this one, each on its own
    /// `Notify` (a wake-up that finds its trial taken costs the waiter one more look).
    pub(crate) fn announce(&self, cell: &ExperimentCell, count: usize) {
        for _ in 0..count {
            self.inner.work.notify_one();
            cell.work.notify_one();
        }
    }

    /// Fills free slots from the buffer, marks the experiment completed when nothing is in
    /// flight and nothing more can be created, and starts a suggestion round when the buffer
    /// needs one and none is running. Returns at once.
    pub(crate) fn refill(&self, cell: &Arc<ExperimentCell>) {
        // A large parallelism is filled a chunk a lock hold, so other requests for the
        // experiment (and lists of all experiments) wait for one chunk at most.
        loop {
            let made = self.promote(cell, &mut cell.lock());
            self.announce(cell, made);
            if made < MAX_PROMOTE {
                break;
            }
        }
        let round = self.plan_round(cell, &mut cell.lock());
        if let Some(round) = round {
            let coordinator = self.clone();
            let cell = Arc::clone(cell);
            tokio::spawn(async move { coordinator.compute(cell, round).await });
        }
    }

    /// The next suggestion round, if one is needed and none is running.
    fn plan_round(&self, cell: &ExperimentCell, live: &mut Live) -> Option<Round> {
        if live.record.state != ExperimentState::Running {
            return None;
        }
        let counts = live.counts();
        let queued = live.record.queued.len();
        // Queued configurations fill slots before any suggestion.
        let slots =
            trials_wanted(&live.record, &counts, live.buffer.len() + queued).saturating_sub(queued);
        // Completion does not wait for a round still computing (one started while the budget
        // had room): nothing it returns could become a trial, and it is dropped when it ends.
        if slots == 0 && !can_suggest(&live.record, &counts) {
            if counts.in_flight() == 0 && queued == 0 {
                let mut updated = live.record.clone();
                updated.state = ExperimentState::Completed;
                info!(experiment_id = %updated.id, trials = counts.runs(), "experiment completed");
                drop(self.mutate(cell, live, vec![Change::PutExperiment(updated)]));
            }
            return None;
        }
        if live.suggesting || !can_suggest(&live.record, &counts) {
            return None;
        }
        let results = counts.succeeded + counts.early_stopped;
        let left = (live.record.spec.budget_trials.saturating_sub(counts.runs()) as usize)
            .saturating_sub(queued);
        let target = buffer_target(&live.record).min(left.saturating_sub(slots));
        let replace = live.record.spec.strategy == Strategy::Bo
            && results > live.buffer_results
            && !live.buffer.is_empty();
        let have = if replace { 0 } else { live.buffer.len() };
        let mut q = (slots + target).saturating_sub(have);
        if live.record.spec.strategy == Strategy::Bo {
            q = q.min(BO_MAX_ROUND);
        }
        if q == 0 {
            return None;
        }
        live.suggesting = true;
        live.rounds += 1;
        Some(Round {
            input: suggest_input(live, q),
            replace,
            results,
        })
    }

    async fn compute(self, cell: Arc<ExperimentCell>, round: Round) {
        let Round {
            input,
            replace,
            results,
        } = round;
        let asked = input.q;
        let observed = input.observations.len();
        let metrics = Arc::clone(&self.inner.metrics);
        let suggester = Arc::clone(&self.inner.suggester);
        let budget = self.inner.settings.suggest_timeout;
        let bo = input.spec.strategy == Strategy::Bo;
        // The tuner stops once the budget has passed (counted from the job's start, as the
        // timeout below), so a round given up on does not hold its thread.
        let mut input = input;
        let job = move || {
            input.deadline = Some(std::time::Instant::now() + budget);
            suggester(&input, &metrics)
        };
        let finished = if bo {
            let running = self.inner.suggest_pool.run(job);
            // Queueing behind other experiments' rounds does not count against the budget.
            let _ = running.started.await;
            tokio::time::timeout(budget, running.done)
                .await
                .map(|done| done.map_err(|_| "it panicked".to_string()))
        } else {
            tokio::time::timeout(budget, tokio::task::spawn_blocking(job))
                .await
                .map(|done| done.map_err(|e| e.to_string()))
        };
        let end = match finished {
            Ok(Ok(Ok(points))) => RoundEnd::Points(points),
            Ok(Ok(Err(error))) => RoundEnd::Failed(crate::display_chain(&error)),
            Ok(Err(error)) => RoundEnd::Failed(format!("the suggestion task failed: {error}")),
            Err(_) => RoundEnd::TimedOut(format!(
                "a suggestion round ({asked} points from {observed} results) ran past its time \
                 budget of {} s (suggest_timeout_secs)",
                budget.as_secs_f64()
            )),
        };
        let failed = {
            let mut live = cell.lock();
            live.suggesting = false;
            match end {
                RoundEnd::Points(points) => {
                    live.suggest_failures = 0;
                    if live.record.state == ExperimentState::Running {
                        if points.len() < asked {
                            let mut updated = live.record.clone();
                            updated.exhausted = true;
                            drop(self.mutate(
                                &cell,
                                &mut live,
                                vec![Change::PutExperiment(updated)],
                            ));
                        }
                        if replace {
                            live.buffer.clear();
                        }
                        live.buffer.extend(points);
                        live.buffer_results = results;
                    }
                    false
                }
                RoundEnd::Failed(reason) => {
                    live.suggest_failures += 1;
                    if live.suggest_failures >= MAX_SUGGEST_FAILURES {
                        let reason = format!(
                            "suggestions failed {MAX_SUGGEST_FAILURES} times in a row: {reason}"
                        );
                        self.fail_experiment(&cell, &mut live, reason);
                        false
                    } else {
                        warn!(experiment_id = %cell.id, error = %reason, failures = live.suggest_failures, "suggestion failed; retrying shortly");
                        true
                    }
                }
                RoundEnd::TimedOut(reason) => {
                    self.fail_experiment(&cell, &mut live, reason);
                    false
                }
            }
        };
        if failed {
            tokio::time::sleep(RETRY_AFTER_FAILURE).await;
        }
        self.refill(&cell);
    }
}

impl Coordinator {
    /// Marks a running experiment failed with `reason`, under its lock.
    fn fail_experiment(&self, cell: &ExperimentCell, live: &mut Live, reason: String) {
        if live.record.state != ExperimentState::Running {
            return;
        }
        tracing::error!(experiment_id = %cell.id, %reason, "experiment failed");
        self.inner.metrics.experiments_failed_total.inc();
        let reason = super::limits::truncate(reason, super::limits::MAX_FAILURE_REASON_BYTES);
        let changes = super::experiments::ending(live, ExperimentState::Failed, reason);
        drop(self.mutate(cell, live, changes));
    }
}

fn dollars_reached(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    experiment.spec.budget_dollars > 0.0 && counts.cost_dollars >= experiment.spec.budget_dollars
}

/// Whether the strategy should be asked for more points (budget, dollars, an exhausted grid).
/// Queued configurations will take their share of the budget.
fn can_suggest(experiment: &ExperimentRecord, counts: &TrialCounts) -> bool {
    let queued = u32::try_from(experiment.queued.len()).unwrap_or(u32::MAX);
    !experiment.exhausted
        && counts.runs().saturating_add(queued) < experiment.spec.budget_trials
        && !dollars_reached(experiment, counts)
}

/// Trials to create now: the free slots of the parallelism, within the budget and the dollars,
/// while the strategy, the queue or the buffer (`buffered` points of both) can still supply them.
/// Imported trials take no part of the budget.
fn trials_wanted(experiment: &ExperimentRecord, counts: &TrialCounts, buffered: usize) -> usize {
    let supply = buffered > 0 || !experiment.exhausted;
    if !supply
        || counts.runs() >= experiment.spec.budget_trials
        || dollars_reached(experiment, counts)
    {
        return 0;
    }
    let free_slots = experiment
        .spec
        .parallelism
        .saturating_sub(counts.in_flight());
    let left = experiment.spec.budget_trials - counts.runs();
    free_slots.min(left) as usize
}

/// Whether random search over this space can skip the past points: with a continuous parameter
/// a repeat has probability zero, so de-duplicating against every trial (O(trials) a round) buys
/// nothing.
fn random_needs_no_history(record: &ExperimentRecord) -> bool {
    record.spec.strategy == Strategy::Random
        && record
            .spec
            .parameters
            .iter()
            .any(|p| matches!(p.kind, tuner::space::ParamKind::Float { .. }))
}

fn suggest_input(live: &Live, q: usize) -> SuggestInput {
    let mut observations = Vec::new();
    let mut pending: Vec<tuner::space::Assignment> = Vec::new();
    let history = !random_needs_no_history(&live.record);
    if history {
        pending.extend(live.record.queued.iter().cloned());
        pending.extend(live.buffer.iter().cloned());
    }
    for trial in live.trials().iter().filter(|_| history) {
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
        seed: derive_seed(
            live.record.spec.seed,
            u32::try_from(live.rounds).unwrap_or(u32::MAX),
        ),
        hyperparameters: live.hyperparameters.clone(),
        deadline: None,
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
        metrics: Default::default(),
        instance_type: String::new(),
        created_unix: now_unix(),
        finished_unix: None,
        stop_requested: false,
        imported: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::sample_experiment;

    /// Queued configurations and buffered suggestions are pending for the next round, so the
    /// strategy lies about them (BO) and never suggests them again.
    #[test]
    fn queued_and_buffered_points_are_pending_for_a_round() {
        let mut record = sample_experiment();
        record.spec.strategy = Strategy::Bo;
        let queued = record.queued[0].clone();
        let mut live = Live::new(record);
        let mut buffered = queued.clone();
        buffered.insert("x".into(), tuner::space::Value::Float(0.75));
        live.buffer.push_back(buffered.clone());
        let input = suggest_input(&live, 1);
        assert_eq!(input.pending, vec![queued, buffered]);
        assert!(input.observations.is_empty());
    }
}
