//! The domain: experiments, the trial state machine, leases and suggestions.
//!
//! [`Coordinator`] gives each experiment one owner, an [`cell::ExperimentCell`] whose lock is held
//! only for in-memory work, so requests for different experiments never wait for each other and
//! no request waits for a GP fit or a disk write while holding anything. A change is applied to
//! memory and queued to the group-commit [`Writer`] under the experiment's lock, and the request
//! is answered once its batch is durable; a dropped request cannot part memory from the store.
//! Suggestions are computed ahead of demand in the background ([`refill`]); an agent that asks
//! while none is ready waits (long poll) or is told to retry. Lease deadlines live on the
//! monotonic clock (`tokio::time::Instant`, so tests run on paused time), are judged at the
//! request's arrival, and are renewed in memory only: a restart gives every lease a fresh one.
//! The design is written up in `docs/design/coordinator-core.md`. The gRPC layer talks to the
//! service through the [`ExperimentService`] and [`AgentService`] traits, so it can be mocked.
//!
//! Trial lifecycle ([`lifecycle`], the only place a trial's state changes): `Pending → Leased →
//! Running → Succeeded | Failed | Cancelled | EarlyStopped`. An expired lease returns the trial to
//! `Pending` and counts an attempt (after `max_attempts` it fails); an interrupted attempt (agent
//! shutting down) returns it to `Pending` without counting.
//!
//! An experiment may stop trials early ([`early_stop`]): after every epoch report its rule
//! compares the trial with the experiment's other trials at the same epoch, and the answer to the
//! report (and to later heartbeats) tells the agent to stop; the trial ends `EarlyStopped` at the
//! value it reached, which the GP then sees as an ordinary observation.

pub mod agents;
pub mod capability_limits;
pub mod cell;
pub mod credentials;
pub mod early_stop;
pub mod experiments;
mod gauges;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod limits;
pub mod model;
pub mod pause;
pub mod refill;
pub mod registry;
pub mod state;
pub mod suggest_pool;
pub mod textcnn_params;
pub mod warm_start;
pub mod workloads;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use tokio::sync::Notify;
use tokio::time::Instant;
use tuner::space::Assignment;

use crate::metrics::Metrics;
use crate::store::writer::{Ticket, Writer};
use crate::store::{Change, ExperimentStore};
use crate::{Error, Result};
use cell::ExperimentCell;
use model::{
    AgentCapabilities, AgentId, Direction, EpochRecord, ExperimentId, ExperimentRecord,
    ExperimentSpec, LeaseId, TrialId, TrialRecord, Workload,
};
use registry::{AgentEntry, Agents, LeaseHome, Leases};
use state::{Live, TrialCounts};

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
    /// The cap of a spec's default space-filling trials before BO (the default grows with the
    /// budget: [`experiments::default_initial_trials`]).
    pub default_initial_trials: NonZeroU32,
    /// What an agent is told when there is nothing to lease.
    pub retry_after: Duration,
    /// The longest a `LeaseTrial` long poll waits for a trial.
    pub max_lease_wait: Duration,
    /// An agent not heard from for this long (and holding no lease) is forgotten.
    pub agent_timeout: Duration,
    /// Suggestions computed at once (each a GP fit on a blocking thread).
    pub suggest_concurrency: usize,
    /// An agent silent for this long is forgotten with its secret (its late results are then
    /// refused); until then a silent agent is only disconnected.
    pub agent_retention: Duration,
    /// The time budget of one suggestion round: an experiment whose round runs longer is marked
    /// failed.
    pub suggest_timeout: Duration,
    /// Trials failing in a row for the same reason that pause their experiment (0: never;
    /// [`pause`]).
    pub pause_after_failures: u32,
    /// The most agents the coordinator knows at once. A registration past it first forgets the
    /// disconnected agents silent longest, and is refused only when every known agent is
    /// connected ([`DEFAULT_MAX_KNOWN_AGENTS`]).
    pub max_known_agents: usize,
}

/// [`Settings::max_known_agents`] by default. Every agent that crashes without unregistering
/// stays known for [`Settings::agent_retention`] (24 h), and a restarted agent registers under a
/// new id: a fleet of 1,000 agents crashing every 5 s would add 17 million entries a day. In
/// process, 100,000 registrations took under a second and 1.3 KB an agent (registry and
/// in-memory store together), so this bound keeps them to about 130 MB.
pub const DEFAULT_MAX_KNOWN_AGENTS: usize = 100_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            lease_check_interval: Duration::from_secs(5),
            max_attempts: NonZeroU32::new(3).expect("3 is not zero"),
            default_initial_trials: NonZeroU32::new(10).expect("10 is not zero"),
            retry_after: Duration::from_millis(500),
            max_lease_wait: Duration::from_secs(5),
            agent_timeout: Duration::from_secs(60),
            suggest_concurrency: default_suggest_concurrency(),
            agent_retention: Duration::from_secs(24 * 3600),
            suggest_timeout: Duration::from_secs(300),
            pause_after_failures: pause::DEFAULT_PAUSE_AFTER_FAILURES,
            max_known_agents: DEFAULT_MAX_KNOWN_AGENTS,
        }
    }
}

/// One fewer than the cores, at least one: a core stays free for requests while GPs are fitted.
pub fn default_suggest_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
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

/// A window of a list: at most `limit` items from index `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Index of the first item.
    pub from: usize,
    /// Most items.
    pub limit: usize,
}

impl Page {
    /// Everything.
    pub const ALL: Page = Page {
        from: 0,
        limit: usize::MAX,
    };
}

/// The answer to a registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The agent's id (kept when it re-registers).
    pub agent_id: AgentId,
    /// Its secret, for every later call (kept when it re-registers).
    pub secret: String,
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
    /// Extra metrics beside the objective (e.g. `test_accuracy`), never used for selection.
    pub metrics: BTreeMap<String, f64>,
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
    /// The experiments (of one study when given) in `page`, oldest first.
    fn list_experiments(
        &self,
        study: Option<String>,
        page: Page,
    ) -> impl Future<Output = Result<Vec<ExperimentView>>> + Send;
    /// Stops an experiment (running or paused): pending trials are cancelled, running ones told
    /// to stop.
    fn stop_experiment(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// Resumes a paused experiment: trials are leased and created again, and its failure
    /// streak starts over. A running experiment is left as it is.
    ///
    /// # Errors
    /// `FailedPrecondition` for an experiment that ended (completed, stopped or failed).
    fn resume_experiment(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// An experiment's trials in `page`, in creation order.
    fn list_trials(
        &self,
        id: ExperimentId,
        include_epochs: bool,
        page: Page,
    ) -> impl Future<Output = Result<Vec<TrialView>>> + Send;
    /// The best trial so far.
    fn best_trial(
        &self,
        id: ExperimentId,
    ) -> impl Future<Output = Result<Option<TrialView>>> + Send;
    /// Adds trials evaluated elsewhere (warm start), all or none ([`warm_start`]). Returns
    /// their ids in order and the experiment afterwards.
    fn add_trials(
        &self,
        id: ExperimentId,
        trials: Vec<warm_start::ImportedTrial>,
    ) -> impl Future<Output = Result<(Vec<TrialId>, ExperimentView)>> + Send;
    /// Queues configurations to run before any suggestion, all or none ([`warm_start`]).
    fn enqueue_trials(
        &self,
        id: ExperimentId,
        configurations: Vec<Assignment>,
    ) -> impl Future<Output = Result<ExperimentView>> + Send;
    /// What the creator of an experiment with `workload` should know that does not stop it:
    /// that no connected agent can run its trials yet (a command nobody declares).
    fn placement_warnings(&self, workload: Option<&model::Workload>) -> Vec<String>;
}

/// What agents call.
pub trait AgentService: Send + Sync + 'static {
    /// Registers an agent, or re-registers `agent_id` (keeping it): a known id needs its
    /// `secret`.
    fn register_agent(
        &self,
        capabilities: AgentCapabilities,
        agent_id: Option<AgentId>,
        secret: Option<String>,
    ) -> impl Future<Output = Result<Registration>> + Send;
    /// Whether `secret` is the secret of the known agent `agent_id`.
    ///
    /// # Errors
    /// `NotFound` for an agent never registered or forgotten, `PermissionDenied` for a wrong
    /// secret.
    fn authorize_agent(&self, agent_id: &AgentId, secret: &str) -> Result<()>;
    /// Whether `secret` is the secret of the agent `lease_id` was granted to.
    ///
    /// # Errors
    /// `FailedPrecondition` for a lease never granted, `PermissionDenied` for another agent's
    /// lease or a wrong secret.
    fn authorize_lease(&self, lease_id: &LeaseId, secret: &str) -> Result<()>;
    /// Leases the next trial (of experiment `only`, when given), waiting up to `wait` (capped by
    /// the coordinator) for one to be ready before answering `RetryAfter`.
    fn lease_trial(
        &self,
        agent_id: AgentId,
        wait: Duration,
        only: Option<ExperimentId>,
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

/// The experiments, by id and in creation order.
#[derive(Default)]
struct Experiments {
    by_id: HashMap<ExperimentId, Arc<ExperimentCell>>,
    order: Vec<Arc<ExperimentCell>>,
}

struct Inner {
    experiments: RwLock<Experiments>,
    agents: Agents,
    leases: Leases,
    writer: Writer,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// Woken when trials become ready, for long-polling `LeaseTrial`s that take any experiment
    /// (see [`Coordinator::announce`]).
    work: Notify,
    /// The low-priority threads that compute BO suggestions (`suggest_concurrency` of them).
    suggest_pool: suggest_pool::SuggestPool,
    /// What computes suggestions ([`crate::suggest::suggest`] but in tests).
    suggester: Suggester,
}

/// A function that computes a suggestion round, on a blocking thread.
pub type Suggester = Arc<
    dyn Fn(&crate::suggest::SuggestInput, &Metrics) -> Result<Vec<tuner::space::Assignment>>
        + Send
        + Sync,
>;

/// How the service writes to its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// A group-commit writer thread (the daemon).
    Thread,
    /// Commit inside each request (tests over an in-memory store on paused time).
    Inline,
}

impl Coordinator {
    /// Loads everything from the store, gives every lease a fresh deadline (an outage must not
    /// expire leases whose agents kept working), and starts topping up the running experiments
    /// in the background.
    ///
    /// # Errors
    /// When the store cannot be loaded or the writer cannot start.
    pub async fn start(
        store: Arc<dyn ExperimentStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Self::start_with(store, settings, metrics, WriteMode::Thread).await
    }

    /// [`Coordinator::start`] with a chosen [`WriteMode`].
    ///
    /// # Errors
    /// As [`Coordinator::start`].
    pub async fn start_with(
        store: Arc<dyn ExperimentStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
        mode: WriteMode,
    ) -> Result<Self> {
        let suggester: Suggester = Arc::new(crate::suggest::suggest);
        Self::start_with_suggester(store, settings, metrics, mode, suggester).await
    }

    /// [`Coordinator::start_with`] with a chosen [`Suggester`] (tests of failing or slow
    /// suggestions).
    ///
    /// # Errors
    /// As [`Coordinator::start`].
    pub async fn start_with_suggester(
        store: Arc<dyn ExperimentStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
        mode: WriteMode,
        suggester: Suggester,
    ) -> Result<Self> {
        let loader = Arc::clone(&store);
        let snapshot = tokio::task::spawn_blocking(move || loader.load())
            .await
            .map_err(|e| Error::Internal(format!("store load task failed: {e}")))??;
        let writer = match mode {
            WriteMode::Thread => {
                Writer::spawn(store, Some(metrics.store_commit_duration_seconds.clone()))?
            }
            WriteMode::Inline => Writer::inline(store),
        };
        let now = Instant::now();
        let deadline = now + settings.lease_timeout;
        let mut lives: HashMap<ExperimentId, Live> = HashMap::new();
        let mut order = Vec::new();
        for record in snapshot.experiments {
            order.push(record.id.clone());
            lives.insert(record.id.clone(), Live::new(record));
        }
        let leases = Leases::new();
        let trial_count = snapshot.trials.len();
        for trial in snapshot.trials {
            let holder = trial
                .lease
                .as_ref()
                .map(|l| l.agent_id.clone())
                .or_else(|| trial.agent_id.clone());
            if let (Some(lease), Some(agent)) = (&trial.last_lease_id, holder) {
                leases.insert(
                    lease.clone(),
                    LeaseHome {
                        experiment: trial.experiment_id.clone(),
                        trial: trial.id.clone(),
                        agent,
                    },
                );
            }
            if let Some(live) = lives.get_mut(&trial.experiment_id) {
                live.apply(Change::PutTrial(trial), deadline);
            }
        }
        let mut experiment_of: HashMap<TrialId, ExperimentId> = HashMap::new();
        for live in lives.values() {
            for trial in live.trials() {
                experiment_of.insert(trial.id.clone(), live.record.id.clone());
            }
        }
        for epoch in snapshot.epochs {
            if let Some(live) = experiment_of
                .get(&epoch.trial_id)
                .and_then(|id| lives.get_mut(id))
            {
                live.apply(Change::AddEpoch(epoch), deadline);
            }
        }
        let agents = Agents::new();
        for record in snapshot.agents {
            agents.insert(record.id.clone(), AgentEntry::new(record, now));
        }
        let mut experiments = Experiments::default();
        for id in order {
            if let Some(mut live) = lives.remove(&id) {
                live.rebuild_failure_streak();
                let cell = Arc::new(ExperimentCell::new(live));
                experiments.by_id.insert(id, Arc::clone(&cell));
                experiments.order.push(cell);
            }
        }
        let count = experiments.order.len();
        let suggest_threads = settings.suggest_concurrency.max(1);
        let coordinator = Self {
            inner: Arc::new(Inner {
                experiments: RwLock::new(experiments),
                agents,
                leases,
                writer,
                settings,
                metrics,
                work: Notify::new(),
                suggest_pool: suggest_pool::SuggestPool::new(suggest_threads),
                suggester,
            }),
        };
        tracing::info!(
            experiments = count,
            trials = trial_count,
            "state loaded; every lease has a fresh deadline"
        );
        for cell in coordinator.cells() {
            coordinator.refresh_early_stops(&cell);
            coordinator.refill(&cell);
        }
        coordinator.load_series();
        coordinator.refresh_gauges();
        Ok(coordinator)
    }

    /// Waits until every change queued so far is durable (on a graceful shutdown).
    ///
    /// # Errors
    /// When the store could not write them.
    pub async fn flush(&self) -> Result<()> {
        self.inner.writer.barrier().durable().await
    }

    /// Resolves with the message of the first failed store write. Memory is then ahead of the
    /// store and every later write is refused, so the daemon stops ([`crate::run`]) and its
    /// supervisor's restart reloads the store.
    pub fn store_failure(&self) -> impl Future<Output = String> + Send + 'static {
        self.inner.writer.failure()
    }

    /// The service settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The metrics it updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Every experiment, oldest first.
    fn cells(&self) -> Vec<Arc<ExperimentCell>> {
        self.inner
            .experiments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .clone()
    }

    /// One experiment.
    fn cell(&self, id: &ExperimentId) -> Result<Arc<ExperimentCell>> {
        self.inner
            .experiments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("experiment", id))
    }

    fn insert_cell(&self, cell: Arc<ExperimentCell>) {
        let mut experiments = self
            .inner
            .experiments
            .write()
            .unwrap_or_else(|p| p.into_inner());
        experiments.by_id.insert(cell.id.clone(), Arc::clone(&cell));
        experiments.order.push(cell);
    }

    /// Applies changes to an experiment's memory and queues them for the store, in that order,
    /// under the experiment's lock (which the caller holds as `live`). Counts the transitions.
    /// A running experiment whose failure streak reached `pause_after_failures` is paused in
    /// the same batch ([`pause`]).
    fn mutate(&self, cell: &ExperimentCell, live: &mut Live, mut changes: Vec<Change>) -> Ticket {
        let deadline = Instant::now() + self.inner.settings.lease_timeout;
        for change in &changes {
            self.count_transition(live, change);
            live.apply(change.clone(), deadline);
        }
        if let Some(pause) = self.pause_if_failing(live) {
            live.apply(pause.clone(), deadline);
            changes.push(pause);
        }
        cell.publish(live);
        self.after_changes(live, &changes);
        self.inner.writer.submit(changes)
    }

    /// The change that pauses a running experiment whose trials keep failing the same way.
    fn pause_if_failing(&self, live: &Live) -> Option<Change> {
        if live.record.state != model::ExperimentState::Running {
            return None;
        }
        let reason = live
            .failure_streak
            .pause_reason(self.inner.settings.pause_after_failures)?;
        let reason = limits::truncate(reason, limits::MAX_FAILURE_REASON_BYTES);
        tracing::warn!(experiment_id = %live.record.id, %reason, "experiment paused: fix the cause, then resume it");
        self.inner.metrics.experiments_paused_total.inc();
        Some(Change::PutExperiment(ExperimentRecord {
            state: model::ExperimentState::Paused,
            paused_reason: reason,
            ..live.record.clone()
        }))
    }
}
