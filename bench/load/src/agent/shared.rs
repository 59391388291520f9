//! What an agent's main task and heartbeat task share: the lease it holds, its id, and the
//! calls both make (a timed call, registration).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::AgentConfig;
use crate::retry::{Backoff, is_transient};
use crate::stats::{AgentStats, RpcKind};

/// The lease an agent holds, shared by its main task and its heartbeat task.
#[derive(Debug)]
pub(super) struct HeldLease {
    pub(super) lease_id: String,
    /// The deadline the coordinator last gave for the lease.
    pub(super) deadline_unix: f64,
    /// Lost already (abandoned or refused; counted once).
    pub(super) lost: bool,
    /// A heartbeat answered STOP.
    pub(super) stop: bool,
    /// Its completion was sent: the trial is over for the agent, so it is no longer heartbeated
    /// (a coordinator that already applied the completion rightly answers ABANDON).
    pub(super) completing: bool,
}

/// What an agent's two tasks share.
#[derive(Debug)]
pub(super) struct AgentShared {
    pub(super) agent_id: Mutex<String>,
    /// The secret its registration returned, carried by every later call.
    pub(super) secret: Mutex<String>,
    pub(super) lease: Mutex<Option<HeldLease>>,
}

impl AgentShared {
    pub(super) fn agent_id(&self) -> String {
        self.agent_id.lock().expect("agent id lock").clone()
    }

    pub(super) fn secret(&self) -> String {
        self.secret.lock().expect("secret lock").clone()
    }

    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Option<HeldLease>> {
        self.lease.lock().expect("lease lock")
    }

    /// Marks the lease lost; returns `Some(healthy)` the first time, `None` when it was already
    /// lost or is no longer held.
    pub(super) fn mark_lost(&self, lease_id: &str, sent_unix: f64) -> Option<bool> {
        let mut held = self.held();
        let lease = held.as_mut().filter(|l| l.lease_id == lease_id)?;
        if lease.lost {
            return None;
        }
        lease.lost = true;
        Some(sent_unix < lease.deadline_unix)
    }
}

/// A call's result, when its last try was sent, and whether the fleet was recording then.
pub(super) struct Answer<T> {
    pub(super) result: Result<T, Status>,
    pub(super) sent_unix: f64,
    pub(super) recorded: bool,
}

/// Sends one call with a client-side deadline and records its latency when `recording` (the
/// caller passes whether the fleet was recording as the call was sent, so a call still waiting
/// when the measured phase ends is counted, with its full latency, once it returns).
pub(super) async fn timed<T>(
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
pub(super) async fn register(
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
            agent_secret: shared.secret(),
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
                *shared.secret.lock().expect("secret lock") = registration.agent_secret;
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
