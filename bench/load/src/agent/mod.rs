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

mod heartbeat;
mod shared;
mod trial;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use crate::retry::{Backoff, RetryPolicy, is_transient};
use crate::stats::{AgentStats, RpcKind};
use heartbeat::Heartbeater;
use shared::{AgentShared, Answer, register, timed};

/// How each simulated agent behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Epochs reported per trial.
    pub epochs: u32,
    /// Simulated training time per epoch, on average.
    pub work_per_epoch: Duration,
    /// Each trial's epochs take `work_per_epoch` times a factor drawn uniformly from
    /// `[1 − work_jitter, 1 + work_jitter]` (per agent, seeded by its index), as trials of
    /// different configurations train at different speeds. 0 gives every epoch the same length,
    /// so a fleet started at once reports in the same millisecond every epoch.
    pub work_jitter: f64,
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
    /// Every agent's heartbeat clock starts at registration, so a fleet started at once
    /// heartbeats in the same millisecond every interval. Off (the default), agent `i`'s first
    /// heartbeat comes at a fraction of the interval spread by the golden ratio, as in a fleet
    /// whose agents started at different times and whose real agents restart their heartbeat
    /// clock at every lease (`agent/src/slot.rs`).
    pub heartbeat_lockstep: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            work_per_epoch: Duration::ZERO,
            work_jitter: 0.0,
            lease_wait: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            keep_acks: false,
            max_run: Duration::from_secs(3600),
            heartbeat_lockstep: false,
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
    /// State of the generator of each trial's epoch length.
    work_rng: u64,
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
                secret: Mutex::new(String::new()),
                lease: Mutex::new(None),
            }),
            config,
            progress,
            stop,
            deadline,
            stats: AgentStats::default(),
            backoff,
            last_tries: 0,
            work_rng: (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5851_f42d_4c95_7f2d,
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
                return Answer {
                    result,
                    sent_unix,
                    recorded: recording,
                };
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
                agent_secret: self.shared.secret(),
                wait_seconds: self.config.lease_wait.as_secs_f64(),
                experiment_id: String::new(),
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

    /// Says goodbye; an old coordinator answers UNIMPLEMENTED, which is fine.
    async fn unregister(&mut self) {
        let request = pb::UnregisterAgentRequest {
            agent_id: self.shared.agent_id(),
            agent_secret: self.shared.secret(),
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
