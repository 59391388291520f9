//! The domain: experiments, the trial state machine, leases and suggestions.
//!
//! [`Coordinator`] keeps the live [`State`] in memory behind one async mutex and
//! writes every change through the [`ExperimentStore`] before it replies. The gRPC layer talks to
//! it through the [`ExperimentService`] and [`AgentService`] traits, so it can be mocked.
//!
//! Trial lifecycle: `Pending → Leased → Running → Succeeded | Failed | Cancelled |
//! EarlyStopped`. An expired lease returns the trial to `Pending` and counts an attempt (after
//! `max_attempts` it fails); an interrupted attempt (agent shutting down) returns it to
//! `Pending` without counting.
//!
//! An experiment may stop trials early ([`early_stop`]): after every epoch report its rule
//! compares the trial with the experiment's other trials at the same epoch, and the answer to the
//! report (and to later heartbeats) tells the agent to stop; the trial ends `EarlyStopped` at the
//! value it reached, which the GP then sees as an ordinary observation.

pub mod agents;
pub mod early_stop;
pub mod experiments;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod model;
pub mod state;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tuner::space::Assignment;

use crate::metrics::Metrics;
use crate::store::{Change, ExperimentStore};
use crate::{Error, Result};
use model::{
    AgentCapabilities, AgentId, Direction, EpochRecord, ExperimentId, ExperimentRecord,
    ExperimentSpec, LeaseId, TrialId, TrialRecord, Workload,
};
use state::{State, TrialCounts};

/// Service settings, from the validated config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A lease not renewed for this long expires.
    pub lease_timeout: Duration,
    /// How often agents must heartbeat.
    pub heartbeat_interval: Duration,
    /// How often the expiry sweep runs.
    pub lease_check_interval: Duration,
    /// Default leases a trial gets.
    pub max_attempts: NonZeroU32,
    /// Default space-filling trials before BO.
    pub default_initial_trials: NonZeroU32,
    /// What an agent is told when there is nothing to lease.
    pub retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            lease_check_interval: Duration::from_secs(5),
            max_attempts: NonZeroU32::new(3).expect("3 is not zero"),
            default_initial_trials: NonZeroU32::new(10).expect("10 is not zero"),
            retry_after: Duration::from_millis(500),
        }
    }
}

/// An experiment with its summary.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentView {
    /// The stored experiment.
    pub record: ExperimentRecord,
    /// Its trials by state.
    pub counts: TrialCounts,
    /// Best trial and value so far.
    pub best: Option<(TrialId, f64)>,
    /// Epoch reports over all attempts.
    pub epochs_reported: u64,
}

/// A trial with the epoch reports of its current attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialView {
    /// The stored trial.
    pub record: TrialRecord,
    /// Its epochs (empty unless asked for).
    pub epochs: Vec<EpochRecord>,
}

/// The answer to a registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The agent's id (kept when it re-registers).
    pub agent_id: AgentId,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// When an unrenewed lease expires.
    pub lease_timeout: Duration,
}

/// A trial handed to an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// This attempt's id.
    pub lease_id: LeaseId,
    /// The trial.
    pub trial_id: TrialId,
    /// Its experiment.
    pub experiment_id: ExperimentId,
    /// Parameters to evaluate.
    pub params: Assignment,
    /// What to train.
    pub workload: Option<Workload>,
    /// Expiry, Unix seconds.
    pub deadline_unix: f64,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Objective name.
    pub metric: String,
    /// Objective direction.
    pub direction: Direction,
}

/// What `lease` found.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseOutcome {
    /// A trial to run.
    Lease(Box<Lease>),
    /// Nothing now; ask again later.
    RetryAfter(Duration),
}

/// What an agent should do with a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Keep going.
    Continue,
    /// Stop at the next epoch boundary and complete as stopped.
    Stop,
    /// The lease is gone: drop the trial, report nothing.
    Abandon,
}

/// A heartbeat's answer for one lease.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseStatus {
    /// The lease.
    pub lease_id: LeaseId,
    /// What to do.
    pub action: LeaseAction,
    /// The new deadline (0 when abandoned).
    pub deadline_unix: f64,
}

/// One epoch as an agent reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochInput {
    /// Epoch number.
    pub epoch: u32,
    /// Objective after it.
    pub value: f64,
    /// Training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_accuracy: f64,
    /// Seconds it took.
    pub epoch_seconds: f64,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ran all its epochs.
    Succeeded,
    /// Could not run; not retried.
    Failed,
    /// Stopped on request.
    Stopped,
    /// Agent shutting down; back to the queue.
    Interrupted,
}

/// A trial's completion as an agent reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// How it ended.
    pub outcome: Outcome,
    /// Final objective.
    pub value: Option<f64>,
    /// Epochs run.
    pub epochs_run: u32,
    /// Best epoch.
    pub best_epoch: u32,
    /// Wall seconds of this attempt.
    pub wall_seconds: f64,
    /// Device seconds of this attempt.
    pub device_seconds: f64,
    /// Dollars of this attempt.
    pub cost_dollars: f64,
    /// Why it failed.
    pub failure_reason: String,
}

/// What people and tools call.
pub trait ExperimentService: Send + Sync + 'static {
    /// Validates and creates an experiment; zero seed/initial trials/attempts/levels take defaults.
    fn create_experiment(
        &self,
        spec: ExperimentSpec,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// One experiment.
    fn get_experiment(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// Every experiment (of one study when given), oldest first.
    fn list_experiments(
        &self,
        study: Option<String>,
    ) -> impl Future<Output = Result<Vec<ExperimentView>>> + Send;
    /// Stops an experiment: pending trials are cancelled, running ones told to stop.
    fn stop_experiment(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// An experiment's trials in creation order.
    fn list_trials(
        &self,
        id: ExperimentId,
        include_epochs: bool,
    ) -> impl Future<Output = Result<Vec<TrialView>>> + Send;
    /// The best trial so far.
    fn best_trial(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<Option<TrialView>>> + Send;
}

/// What agents call.
pub trait AgentService: Send + Sync + 'static {
    /// Registers (or re-registers, keeping `agent_id`) an agent.
    fn register_agent(
        &self,
        capabilities: AgentCapabilities,
        agent_id: Option<AgentId>,
    ) -> impl Future<Output = Result<Registration>> + Send;
    /// Leases the next trial, waiting up to `wait` (capped by the coordinator) for one to be
    /// ready before answering `RetryAfter`.
    fn lease_trial(
        &self,
        agent_id: AgentId,
        wait: Duration,
    ) -> impl Future<Output = Result<LeaseOutcome>> + Send;
    /// An agent shutting down: its leases go back to the queue without counting an attempt.
    /// Returns how many it held.
    fn unregister_agent(&self, agent_id: AgentId) -> impl Future<Output = Result<u32>> + Send;
    /// Extends the agent's leases and says what to do with each.
    fn heartbeat(
        &self,
        agent_id: AgentId,
        leases: Vec<LeaseId>,
    ) -> impl Future<Output = Result<Vec<LeaseStatus>>> + Send;
    /// Records one epoch; a repeated epoch is ignored.
    fn report_epoch(
        &self,
        lease_id: LeaseId,
        report: EpochInput,
    ) -> impl Future<Output = Result<LeaseAction>> + Send;
    /// Ends an attempt.
    fn complete_trial(
        &self,
        lease_id: LeaseId,
        completion: Completion,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The coordinator's domain service. Cloning shares it.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    store: Arc<dyn ExperimentStore>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

impl Coordinator {
    /// Loads everything from the store, requeues leases that expired while it was down and
    /// tops up every running experiment.
    ///
    /// # Errors
    /// When the store cannot be loaded or written.
    pub async fn start(
        store: Arc<dyn ExperimentStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let loader = Arc::clone(&store);
        let snapshot = tokio::task::spawn_blocking(move || loader.load())
            .await
            .map_err(|e| Error::Internal(format!("store load task failed: {e}")))??;
        let experiments = snapshot.experiments.len();
        let trials = snapshot.trials.len();
        let coordinator = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::from_snapshot(snapshot)),
                store,
                settings,
                metrics,
            }),
        };
        tracing::info!(experiments, trials, "state loaded");
        coordinator.expire_leases().await?;
        let mut state = coordinator.inner.state.lock().await;
        for id in state.running_experiments() {
            coordinator.advance(&mut state, &id).await?;
        }
        coordinator.refresh_gauges(&state);
        drop(state);
        Ok(coordinator)
    }

    /// The service settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The metrics it updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Runs the lease-expiry sweep every `lease_check_interval` until the task is aborted.
    pub fn spawn_lease_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let coordinator = self.clone();
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval(coordinator.inner.settings.lease_check_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(error) = coordinator.expire_leases().await {
                    tracing::error!(error = %crate::display_chain(&error), "lease expiry sweep failed");
                }
            }
        })
    }

    /// Writes the changes to the store, then applies them to `state` and updates the metrics.
    async fn commit(&self, state: &mut State, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let store = Arc::clone(&self.inner.store);
        let changes = tokio::task::spawn_blocking(move || store.commit(&changes).map(|()| changes))
            .await
            .map_err(|e| Error::Internal(format!("store commit task failed: {e}")))??;
        for change in changes {
            self.count_transition(state, &change);
            state.apply(change);
        }
        self.refresh_gauges(state);
        Ok(())
    }

    fn count_transition(&self, state: &State, change: &Change) {
        let metrics = &self.inner.metrics;
        match change {
            Change::PutTrial(trial) => {
                let old = state.trial(&trial.id).map(|t| t.state);
                if old != Some(trial.state) {
                    metrics
                        .trials_total
                        .with_label_values(&[trial.state.as_str()])
                        .inc();
                    if trial.state.is_terminal() {
                        metrics
                            .experiment_trials_completed_total
                            .with_label_values(&[&trial.experiment_id.0])
                            .inc();
                    }
                }
            }
            Change::AddEpoch(epoch) => {
                if let Some(trial) = state.trial(&epoch.trial_id)
                    && !state.has_epoch(&epoch.trial_id, epoch.attempt, epoch.epoch)
                {
                    metrics
                        .experiment_epochs_total
                        .with_label_values(&[&trial.experiment_id.0])
                        .inc();
                }
            }
            Change::PutExperiment(_) | Change::PutAgent(_) => {}
        }
    }

    fn refresh_gauges(&self, state: &State) {
        let metrics = &self.inner.metrics;
        metrics
            .leases_active
            .set(i64::try_from(state.leases_active()).unwrap_or(i64::MAX));
        let horizon = model::now_unix() - self.inner.settings.lease_timeout.as_secs_f64();
        let connected = state
            .agents()
            .filter(|a| a.last_seen_unix >= horizon)
            .count();
        metrics
            .agents_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
    }
}
