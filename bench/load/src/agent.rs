//! One simulated agent, a tokio task speaking the real AgentService RPCs: register, then
//! lease → (heartbeat while holding the lease) → report `epochs` epochs → complete, until the
//! fleet stops it; then unregister.
//!
//! Transient errors (the coordinator is down or overloaded) are retried with backoff, sending the
//! same request again, so a coordinator that handles retries idempotently acknowledges each
//! report and completion exactly once. `NOT_FOUND` for the agent makes it register again under
//! the same id. A lease the coordinator abandons (heartbeat `ABANDON`) or refuses
//! (`FAILED_PRECONDITION`, or `NOT_FOUND` for the lease) is dropped; it counts as *lost while
//! healthy* when the refused call was sent before the latest deadline the coordinator had given
//! for that lease (at lease time or in a heartbeat answer). `ReportEpoch` answers carry no
//! deadline, so a deadline the coordinator extended silently is not credited: the count is a
//! lower bound.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use crate::objective::{epoch_value, evaluate};
use crate::retry::{Backoff, RetryPolicy, is_transient};
use crate::stats::{AckedCompletion, AckedEpoch, AgentStats, LeaseLoss, Refusal, RpcKind};

/// How each simulated agent behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Epochs reported per trial.
    pub epochs: u32,
    /// Simulated training time per epoch.
    pub work_per_epoch: Duration,
    /// `wait_seconds` of each `LeaseTrial` (the long poll).
    pub lease_wait: Duration,
    /// Client-side deadline of one call (`LeaseTrial` gets `lease_wait` on top).
    pub rpc_timeout: Duration,
    /// Retries of transient errors.
    pub retry: RetryPolicy,
    /// Keep every acknowledged report and completion (the end-to-end test checks them).
    pub keep_acks: bool,
    /// The agent stops by itself this long after it started, whatever the fleet says.
    pub max_run: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            work_per_epoch: Duration::ZERO,
            lease_wait: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            keep_acks: false,
            max_run: Duration::from_secs(3600),
        }
    }
}

/// Fleet-wide live counters and the recording switch, shared by every agent.
#[derive(Debug, Default)]
pub struct Progress {
    recording: AtomicBool,
    completions: AtomicU64,
    epochs: AtomicU64,
    transient_errors: AtomicU64,
}

impl Progress {
    /// Starts or stops recording latencies and counters into the agents' stats.
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    /// Whether agents record now.
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Acknowledged completions so far, recording or not.
    pub fn completions(&self) -> u64 {
        self.completions.load(Ordering::Relaxed)
    }

    /// Acknowledged epoch reports so far, recording or not.
    pub fn epochs(&self) -> u64 {
        self.epochs.load(Ordering::Relaxed)
    }

    /// Calls that failed with a transient error and were retried, recording or not (they show
    /// that the agents noticed a coordinator outage).
    pub fn transient_errors(&self) -> u64 {
        self.transient_errors.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch, the coordinator's deadline clock.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The lease an agent holds, shared by its main task and its heartbeat task.
#[derive(Debug)]
struct HeldLease {
    lease_id: String,
    /// The deadline the coordinator last gave for the lease.
    deadline_unix: f64,
    /// Lost already (abandoned or refused; counted once).
    lost: bool,
    /// A heartbeat answered STOP.
    stop: bool,
}

/// What an agent's two tasks share.
#[derive(Debug)]
struct AgentShared {
    agent_id: Mutex<String>,
    lease: Mutex<Option<HeldLease>>,
}

impl AgentShared {
    fn agent_id(&self) -> String {
        self.agent_id.lock().expect("agent id lock").clone()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<HeldLease>> {
        self.lease.lock().expect("lease lock")
    }

    /// Marks the lease lost; returns `Some(healthy)` the first time, `None` when it was already
    /// lost or is no longer held.
    fn mark_lost(&self, lease_id: &str, sent_unix: f64) -> Option<bool> {
        let mut held = self.held();
        let lease = held.as_mut().filter(|l| l.lease_id == lease_id)?;
        if lease.lost {
            return None;
        }
        lease.lost = true;
        Some(sent_unix < lease.deadline_unix)
    }
}

/// A call's result and when its last try was sent.
struct Answer<T> {
    result: Result<T, Status>,
    sent_unix: f64,
}

/// Sends one call with a client-side deadline and records its latency when `recording` (the
/// caller passes whether the fleet was recording as the call was sent, so a call still waiting
/// when the measured phase ends is counted, with its full latency, once it returns).
async fn timed<T>(
    stats: &mut AgentStats,
    recording: bool,
    kind: RpcKind,
    timeout: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_) => {
            if recording {
                stats.client_timeouts += 1;
            }
            Err(Status::deadline_exceeded("client-side deadline passed"))
        }
    };
    if recording {
        stats.record(kind, started.elapsed(), result.is_ok());
    }
    result
}

fn capabilities(index: usize) -> pb::AgentCapabilities {
    pb::AgentCapabilities {
        backend: pb::Backend::Cpu as i32,
        device_name: "load-bench simulated agent".into(),
        device_ordinal: -1,
        slots: 1,
        hostname: format!("load-bench-{index}"),
        workloads: vec!["function".into()],
        version: env!("CARGO_PKG_VERSION").into(),
        ..pb::AgentCapabilities::default()
    }
}

/// Registers (again, keeping the id when `shared` has one); returns the heartbeat interval.
async fn register(
    client: &AgentServiceClient<Channel>,
    shared: &AgentShared,
    stats: &mut AgentStats,
    config: &AgentConfig,
    index: usize,
) -> Option<Duration> {
    let previous = shared.agent_id();
    let mut backoff = Backoff::new(config.retry, index as u64);
    let first_try = Instant::now();
    for _ in 0..config.retry.max_tries {
        let request = pb::RegisterAgentRequest {
            capabilities: Some(capabilities(index)),
            agent_id: previous.clone(),
        };
        let mut client = client.clone();
        let call = client.register_agent(request);
        // Registrations happen outside the measured phase, so they are always recorded.
        match timed(
            stats,
            true,
            RpcKind::RegisterAgent,
            config.rpc_timeout,
            call,
        )
        .await
        {
            Ok(registration) => {
                if !previous.is_empty() {
                    stats.reregistrations += 1;
                }
                *shared.agent_id.lock().expect("agent id lock") = registration.agent_id;
                let interval = registration.heartbeat_interval_seconds;
                let interval = if interval.is_finite() && interval > 0.0 {
                    interval.clamp(0.05, 60.0)
                } else {
                    10.0
                };
                return Some(Duration::from_secs_f64(interval));
            }
            Err(status) if is_transient(status.code()) => {
                if first_try.elapsed() >= config.retry.give_up_after {
                    return None;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(_) => return None,
        }
    }
    None
}

/// One simulated agent's main task.
pub struct SimAgent {
    index: usize,
    client: AgentServiceClient<Channel>,
    shared: Arc<AgentShared>,
    config: Arc<AgentConfig>,
    progress: Arc<Progress>,
    stop: watch::Receiver<bool>,
    deadline: Instant,
    stats: AgentStats,
    backoff: Backoff,
    /// Tries the last [`SimAgent::call`] took.
    last_tries: u32,
}

impl SimAgent {
    /// An agent talking over `channel`; `stop` turning true (or its sender dropping) ends it.
    pub fn new(
        index: usize,
        channel: Channel,
        config: Arc<AgentConfig>,
        progress: Arc<Progress>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let deadline = Instant::now() + config.max_run;
        let backoff = Backoff::new(config.retry, index as u64);
        Self {
            index,
            client: AgentServiceClient::new(channel),
            shared: Arc::new(AgentShared {
                agent_id: Mutex::new(String::new()),
                lease: Mutex::new(None),
            }),
            config,
            progress,
            stop,
            deadline,
            stats: AgentStats::default(),
            backoff,
            last_tries: 0,
        }
    }

    /// Runs until stopped and returns what it measured (its heartbeat task's figures included).
    pub async fn run(mut self) -> AgentStats {
        let Some(interval) = self.register().await else {
            return self.stats;
        };
        let (done_tx, done_rx) = watch::channel(false);
        let heartbeats = tokio::spawn(
            Heartbeater {
                index: self.index,
                client: self.client.clone(),
                shared: Arc::clone(&self.shared),
                config: Arc::clone(&self.config),
                progress: Arc::clone(&self.progress),
                stats: AgentStats::default(),
            }
            .run(interval, done_rx, self.deadline),
        );
        // Bounded in count as well as by the stop signal and the agent's own deadline.
        for _ in 0..10_000_000u32 {
            if self.stopped() {
                break;
            }
            let Some(lease) = self.lease().await else {
                continue;
            };
            if self.stopped() {
                // Leased while stopping: hand it back rather than run it.
                self.interrupt(&lease).await;
                break;
            }
            self.run_trial(lease).await;
        }
        self.unregister().await;
        let _ = done_tx.send(true);
        let mut stats = self.stats;
        if let Ok(heartbeat_stats) = heartbeats.await {
            stats.merge(heartbeat_stats);
        }
        stats
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow() || Instant::now() >= self.deadline
    }

    fn recording(&self) -> bool {
        self.progress.recording()
    }

    /// Sleeps for `duration` or until stopped.
    async fn pause(&mut self, duration: Duration) {
        let until = (Instant::now() + duration).min(self.deadline);
        let stop = &mut self.stop;
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    async fn register(&mut self) -> Option<Duration> {
        let (shared, config) = (Arc::clone(&self.shared), Arc::clone(&self.config));
        register(&self.client, &shared, &mut self.stats, &config, self.index).await
    }

    /// Sends a call, retrying transient errors with backoff; with `abort_on_stop`, a stop ends
    /// the retries. A call in flight is never dropped (a dropped request cancels the handler
    /// on the coordinator, which is not what a stopping agent should test); the client-side
    /// deadline bounds it.
    async fn call<T, F, Fut>(
        &mut self,
        kind: RpcKind,
        timeout: Duration,
        abort_on_stop: bool,
        mut make: F,
    ) -> Answer<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let first_try = Instant::now();
        self.backoff.reset();
        let mut tries = 0;
        loop {
            tries += 1;
            let sent_unix = now_unix();
            let recording = self.recording();
            let result = timed(&mut self.stats, recording, kind, timeout, make()).await;
            let retry = matches!(&result, Err(status) if is_transient(status.code()))
                && tries < self.config.retry.max_tries
                && first_try.elapsed() < self.config.retry.give_up_after
                && !(abort_on_stop && self.stopped());
            if !retry {
                self.last_tries = tries;
                return Answer { result, sent_unix };
            }
            self.progress
                .transient_errors
                .fetch_add(1, Ordering::Relaxed);
            if self.recording() {
                self.stats.retries += 1;
            }
            let delay = self.backoff.next_delay();
            if abort_on_stop {
                self.pause(delay).await;
            } else {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Asks for a trial; `None` after waiting as told when there is none.
    async fn lease(&mut self) -> Option<pb::Lease> {
        use pb::lease_trial_response::Outcome;
        for _ in 0..3 {
            let request = pb::LeaseTrialRequest {
                agent_id: self.shared.agent_id(),
                wait_seconds: self.config.lease_wait.as_secs_f64(),
            };
            let client = self.client.clone();
            let timeout = self.config.rpc_timeout + self.config.lease_wait;
            let answer = self
                .call(RpcKind::LeaseTrial, timeout, true, move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.lease_trial(request).await }
                })
                .await;
            match answer.result {
                Ok(response) => match response.outcome {
                    Some(Outcome::Lease(lease)) => return Some(lease),
                    Some(Outcome::RetryAfterSeconds(after)) => {
                        let after = if after.is_finite() {
                            after.clamp(0.0, 5.0)
                        } else {
                            1.0
                        };
                        self.pause(Duration::from_secs_f64(after)).await;
                        return None;
                    }
                    None => {
                        self.pause(Duration::from_millis(100)).await;
                        return None;
                    }
                },
                Err(status) if status.code() == Code::NotFound && !self.stopped() => {
                    self.register().await?;
                }
                Err(_) => {
                    let delay = self.backoff.next_delay();
                    self.pause(delay).await;
                    return None;
                }
            }
        }
        None
    }

    /// Counts a lost lease once (the heartbeat task may have seen it first), and keeps the
    /// refusal when the fleet keeps acknowledgements.
    fn lost(&mut self, lease: &pb::Lease, kind: RpcKind, answer_sent_unix: f64, status: &Status) {
        let healthy = self.shared.mark_lost(&lease.lease_id, answer_sent_unix);
        if let Some(healthy) = healthy
            && self.recording()
        {
            self.stats.record_loss(LeaseLoss::Refused, healthy);
        }
        if self.config.keep_acks {
            self.stats.refusals.push(Refusal {
                trial_id: lease.trial_id.clone(),
                lease_id: lease.lease_id.clone(),
                rpc: kind,
                code: status.code(),
                message: status.message().to_owned(),
                after_tries: self.last_tries,
            });
        }
    }

    fn is_stale(status: &Status) -> bool {
        matches!(status.code(), Code::FailedPrecondition | Code::NotFound)
    }

    /// Runs one leased trial to its end (or until the lease is lost).
    async fn run_trial(&mut self, lease: pb::Lease) {
        if self.recording() {
            self.stats.leases += 1;
        }
        *self.shared.held() = Some(HeldLease {
            lease_id: lease.lease_id.clone(),
            deadline_unix: lease.deadline_unix_seconds,
            lost: false,
            stop: false,
        });
        let started = Instant::now();
        let final_value = evaluate(&lease.params).ok();
        let mut reported = None;
        let mut stopped_early = false;
        for epoch in 1..=self.config.epochs {
            let Some(value) = final_value else { break };
            if !self.config.work_per_epoch.is_zero() {
                tokio::time::sleep(self.config.work_per_epoch).await;
            }
            let (lost, stop) = self
                .shared
                .held()
                .as_ref()
                .map_or((true, false), |l| (l.lost, l.stop));
            if lost {
                *self.shared.held() = None;
                return;
            }
            if stop {
                stopped_early = true;
                break;
            }
            let value = epoch_value(value, epoch, self.config.epochs);
            match self.report(&lease, epoch, value).await {
                Some(action) => {
                    reported = Some(value);
                    if action == pb::LeaseAction::Stop {
                        stopped_early = true;
                        break;
                    }
                }
                None => {
                    *self.shared.held() = None;
                    return;
                }
            }
        }
        let outcome = match (final_value, stopped_early) {
            (None, _) => pb::TrialOutcome::Failed,
            (Some(_), true) => pb::TrialOutcome::Stopped,
            (Some(_), false) => pb::TrialOutcome::Succeeded,
        };
        let value = if stopped_early { reported } else { final_value };
        self.complete(&lease, outcome, value, started.elapsed())
            .await;
        *self.shared.held() = None;
    }

    /// Reports one epoch; `None` when the lease is lost or the call failed for good.
    async fn report(
        &mut self,
        lease: &pb::Lease,
        epoch: u32,
        value: f64,
    ) -> Option<pb::LeaseAction> {
        let request = pb::ReportEpochRequest {
            lease_id: lease.lease_id.clone(),
            report: Some(pb::EpochReport {
                epoch,
                value,
                train_loss: value,
                train_accuracy: 0.0,
                epoch_seconds: self.config.work_per_epoch.as_secs_f64(),
            }),
        };
        let client = self.client.clone();
        let answer = self
            .call(
                RpcKind::ReportEpoch,
                self.config.rpc_timeout,
                false,
                move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.report_epoch(request).await }
                },
            )
            .await;
        match answer.result {
            Ok(response) => {
                self.progress.epochs.fetch_add(1, Ordering::Relaxed);
                if self.config.keep_acks {
                    self.stats.acked_epochs.push(AckedEpoch {
                        trial_id: lease.trial_id.clone(),
                        lease_id: lease.lease_id.clone(),
                        attempt: lease.attempt,
                        epoch,
                        value,
                    });
                }
                Some(response.action())
            }
            Err(status) => {
                if Self::is_stale(&status) {
                    self.lost(lease, RpcKind::ReportEpoch, answer.sent_unix, &status);
                }
                None
            }
        }
    }

    async fn complete(
        &mut self,
        lease: &pb::Lease,
        outcome: pb::TrialOutcome,
        value: Option<f64>,
        wall: Duration,
    ) {
        let request = pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            outcome: outcome as i32,
            value,
            epochs_run: self.config.epochs,
            best_epoch: self.config.epochs,
            wall_seconds: wall.as_secs_f64(),
            device_seconds: wall.as_secs_f64(),
            failure_reason: if outcome == pb::TrialOutcome::Failed {
                "the lease lacks the x and y parameters".into()
            } else {
                String::new()
            },
            ..pb::CompleteTrialRequest::default()
        };
        let client = self.client.clone();
        let answer = self
            .call(
                RpcKind::CompleteTrial,
                self.config.rpc_timeout,
                false,
                move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.complete_trial(request).await }
                },
            )
            .await;
        match answer.result {
            Ok(_) => {
                self.progress.completions.fetch_add(1, Ordering::Relaxed);
                if self.recording() {
                    self.stats.completed += 1;
                }
                if self.config.keep_acks
                    && let Some(value) = value
                    && outcome != pb::TrialOutcome::Failed
                {
                    self.stats.acked_completions.push(AckedCompletion {
                        trial_id: lease.trial_id.clone(),
                        experiment_id: lease.experiment_id.clone(),
                        lease_id: lease.lease_id.clone(),
                        attempt: lease.attempt,
                        succeeded: outcome == pb::TrialOutcome::Succeeded,
                        value,
                    });
                }
            }
            Err(status) if Self::is_stale(&status) => {
                self.lost(lease, RpcKind::CompleteTrial, answer.sent_unix, &status);
            }
            Err(_) => {}
        }
    }

    /// Hands a lease back unrun (outcome INTERRUPTED), once, without retries.
    async fn interrupt(&mut self, lease: &pb::Lease) {
        let request = pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            outcome: pb::TrialOutcome::Interrupted as i32,
            ..pb::CompleteTrialRequest::default()
        };
        let client = self.client.clone();
        let timeout = self.config.rpc_timeout;
        self.call(RpcKind::CompleteTrial, timeout, true, move || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.complete_trial(request).await }
        })
        .await;
    }

    /// Says goodbye; an old coordinator answers UNIMPLEMENTED, which is fine.
    async fn unregister(&mut self) {
        let request = pb::UnregisterAgentRequest {
            agent_id: self.shared.agent_id(),
        };
        let started = Instant::now();
        let mut client = self.client.clone();
        let call = client.unregister_agent(request);
        let result = tokio::time::timeout(self.config.rpc_timeout, call).await;
        let ok = match &result {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => status.code() == Code::Unimplemented,
            Err(_) => false,
        };
        // Agents unregister after the measured phase, so this is always recorded.
        self.stats
            .record(RpcKind::UnregisterAgent, started.elapsed(), ok);
    }
}

/// An agent's heartbeat task: every interval, heartbeats the lease it holds (if any).
struct Heartbeater {
    index: usize,
    client: AgentServiceClient<Channel>,
    shared: Arc<AgentShared>,
    config: Arc<AgentConfig>,
    progress: Arc<Progress>,
    stats: AgentStats,
}

impl Heartbeater {
    async fn run(
        mut self,
        interval: Duration,
        mut done: watch::Receiver<bool>,
        deadline: Instant,
    ) -> AgentStats {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let max_ticks = (self.config.max_run.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
        for _ in 0..max_ticks.saturating_add(1) {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = done.wait_for(|done| *done) => break,
            }
            if Instant::now() >= deadline {
                break;
            }
            self.beat().await;
        }
        self.stats
    }

    async fn beat(&mut self) {
        let Some(lease_id) = self
            .shared
            .held()
            .as_ref()
            .filter(|l| !l.lost)
            .map(|l| l.lease_id.clone())
        else {
            return;
        };
        let request = pb::HeartbeatRequest {
            agent_id: self.shared.agent_id(),
            lease_ids: vec![lease_id.clone()],
        };
        let sent_unix = now_unix();
        let mut client = self.client.clone();
        let call = client.heartbeat(request);
        let timeout = self.config.rpc_timeout;
        let recording = self.progress.recording();
        let result = timed(
            &mut self.stats,
            recording,
            RpcKind::Heartbeat,
            timeout,
            call,
        );
        match result.await {
            Ok(response) => {
                for status in response.leases.iter().filter(|s| s.lease_id == lease_id) {
                    self.apply(status, sent_unix);
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                let (shared, config) = (Arc::clone(&self.shared), Arc::clone(&self.config));
                register(&self.client, &shared, &mut self.stats, &config, self.index).await;
            }
            Err(_) => {}
        }
    }

    fn apply(&mut self, status: &pb::LeaseStatus, sent_unix: f64) {
        match status.action() {
            pb::LeaseAction::Abandon => {
                if let Some(healthy) = self.shared.mark_lost(&status.lease_id, sent_unix)
                    && self.progress.recording()
                {
                    self.stats.record_loss(LeaseLoss::Abandoned, healthy);
                }
            }
            action => {
                let mut held = self.shared.held();
                if let Some(lease) = held.as_mut().filter(|l| l.lease_id == status.lease_id) {
                    if status.deadline_unix_seconds > 0.0 {
                        lease.deadline_unix = status.deadline_unix_seconds;
                    }
                    lease.stop |= action == pb::LeaseAction::Stop;
                }
            }
        }
    }
}
