//! The agent's identity at the coordinator: registration, re-registration, and the
//! agent-scoped calls (lease, heartbeat) that need it.
//!
//! Registration returns an id and a secret; every later call carries the secret, which binds the
//! agent's leases to it. A coordinator that forgot the agent (a fresh data dir, or an agent silent
//! past its retention) answers agent-scoped calls with `NotFound`, and the session registers
//! again under the same id with its secret, once for all slots; if the coordinator refuses that
//! id (`PermissionDenied`), the session registers as a new agent. On
//! shutdown the session unregisters, best effort, so leases it still holds go back to the queue
//! at once instead of expiring.

use std::sync::Mutex;
use std::time::Duration;

use proto::v1::{
    AgentCapabilities, HeartbeatRequest, HeartbeatResponse, LeaseTrialRequest, LeaseTrialResponse,
    RegisterAgentRequest, RegisterAgentResponse, UnregisterAgentRequest,
};
use tokio::sync::watch;
use tonic::{Code, Status};

use crate::client::CoordinatorApi;
use crate::config::Timing;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Disposition, disposition, jitter_seed};

/// The longest an agent shutting down waits for `UnregisterAgent` (less when `request_timeout`
/// is shorter).
pub const UNREGISTER_TIMEOUT_MAX: Duration = Duration::from_secs(2);

/// A registered agent.
pub struct Session<A> {
    api: A,
    capabilities: AgentCapabilities,
    timing: Timing,
    agent_id: Mutex<String>,
    secret: Mutex<String>,
    heartbeat_interval: Mutex<Duration>,
    register_lock: tokio::sync::Mutex<()>,
}

impl<A: CoordinatorApi> Session<A> {
    /// A session that has not registered yet.
    pub fn new(api: A, capabilities: AgentCapabilities, timing: Timing) -> Self {
        let heartbeat_interval = timing.heartbeat_interval;
        Self {
            api,
            capabilities,
            timing,
            agent_id: Mutex::new(String::new()),
            secret: Mutex::new(String::new()),
            heartbeat_interval: Mutex::new(heartbeat_interval),
            register_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The coordinator client.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Retry settings.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The id the coordinator gave (empty before registration).
    pub fn agent_id(&self) -> String {
        self.agent_id
            .lock()
            .expect("agent id lock poisoned")
            .clone()
    }

    /// The secret the coordinator gave (empty before registration).
    pub fn secret(&self) -> String {
        self.secret.lock().expect("secret lock poisoned").clone()
    }

    /// How often to heartbeat a lease.
    pub fn heartbeat_interval(&self) -> Duration {
        *self
            .heartbeat_interval
            .lock()
            .expect("heartbeat lock poisoned")
    }

    /// Registers, retrying transient failures with backoff until it succeeds or shutdown.
    ///
    /// # Errors
    /// [`Error::Refused`] when the coordinator refuses for good (bad token, bad request);
    /// [`Error::ShutdownBeforeReady`] on shutdown.
    pub async fn register(&self, shutdown: &mut watch::Receiver<bool>) -> Result<String> {
        let mut backoff = Backoff::new(
            self.timing.retry_initial_backoff,
            self.timing.retry_max_backoff,
            jitter_seed(0),
        );
        loop {
            let request = RegisterAgentRequest {
                capabilities: Some(self.capabilities.clone()),
                agent_id: self.agent_id(),
                agent_secret: self.secret(),
            };
            match self.api.register(request).await {
                Ok(response) => {
                    self.apply_registration(&response);
                    tracing::info!(agent_id = %response.agent_id, "registered with the coordinator");
                    return Ok(response.agent_id);
                }
                Err(status) if disposition(status.code()) == Disposition::Retry => {
                    let delay = backoff.next_delay();
                    tracing::warn!(code = ?status.code(), message = status.message(), ?delay, "coordinator unreachable, will retry registration");
                    if wait_or_shutdown(delay, shutdown).await {
                        return Err(Error::ShutdownBeforeReady);
                    }
                }
                Err(status) => {
                    return Err(Error::Refused {
                        call: "RegisterAgent",
                        status: Box::new(status),
                    });
                }
            }
        }
    }

    fn apply_registration(&self, response: &RegisterAgentResponse) {
        *self.agent_id.lock().expect("agent id lock poisoned") = response.agent_id.clone();
        *self.secret.lock().expect("secret lock poisoned") = response.agent_secret.clone();
        let heartbeat_seconds = response.heartbeat_interval_seconds;
        if heartbeat_seconds.is_finite() && heartbeat_seconds > 0.0 {
            *self
                .heartbeat_interval
                .lock()
                .expect("heartbeat lock poisoned") = Duration::from_secs_f64(heartbeat_seconds);
        }
    }

    /// Registers again under the same id, unless another slot already did since `seen_id`.
    async fn reregister(&self, seen_id: &str) -> Result<(), Status> {
        let _guard = self.register_lock.lock().await;
        if self.agent_id() != seen_id {
            return Ok(());
        }
        let request = RegisterAgentRequest {
            capabilities: Some(self.capabilities.clone()),
            agent_id: seen_id.to_string(),
            agent_secret: self.secret(),
        };
        let response = match self.api.register(request).await {
            Err(status) if status.code() == Code::PermissionDenied => {
                tracing::warn!(agent_id = %seen_id, message = status.message(),
                    "coordinator refused this agent's id, registering as a new agent");
                self.api
                    .register(RegisterAgentRequest {
                        capabilities: Some(self.capabilities.clone()),
                        ..RegisterAgentRequest::default()
                    })
                    .await?
            }
            other => other?,
        };
        tracing::warn!(agent_id = %response.agent_id, "coordinator had forgotten this agent, registered again");
        self.apply_registration(&response);
        Ok(())
    }

    /// Asks for a trial, letting the coordinator wait up to `lease_wait` for one (long poll);
    /// re-registers once if the coordinator does not know the agent.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn lease(&self) -> Result<LeaseTrialResponse, Status> {
        let agent_id = self.agent_id();
        match self.api.lease(self.lease_request(agent_id.clone())).await {
            Err(status) if status.code() == Code::NotFound => {
                self.reregister(&agent_id).await?;
                self.api.lease(self.lease_request(self.agent_id())).await
            }
            other => other,
        }
    }

    fn lease_request(&self, agent_id: String) -> LeaseTrialRequest {
        LeaseTrialRequest {
            agent_id,
            agent_secret: self.secret(),
            wait_seconds: self.timing.lease_wait.as_secs_f64(),
            experiment_id: String::new(),
        }
    }

    /// Tells the coordinator the agent is leaving, so the leases it still holds go back to the
    /// queue at once. Best effort, bounded by `request_timeout` and [`UNREGISTER_TIMEOUT_MAX`]:
    /// an older coordinator (`UNIMPLEMENTED`) or an unreachable one is logged, not an error, and
    /// the leases then expire as before. Returns the leases released when the coordinator
    /// answered.
    pub async fn unregister(&self) -> Option<u32> {
        let agent_id = self.agent_id();
        if agent_id.is_empty() {
            return None;
        }
        let timeout = self.timing.request_timeout.min(UNREGISTER_TIMEOUT_MAX);
        let request = UnregisterAgentRequest {
            agent_id: agent_id.clone(),
            agent_secret: self.secret(),
        };
        match tokio::time::timeout(timeout, self.api.unregister(request)).await {
            Ok(Ok(response)) if response.leases_released > 0 => {
                tracing::warn!(%agent_id, leases_released = response.leases_released,
                    "unregistered, leases still held went back to the queue");
                Some(response.leases_released)
            }
            Ok(Ok(response)) => {
                tracing::info!(%agent_id, "unregistered from the coordinator");
                Some(response.leases_released)
            }
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                tracing::debug!(%agent_id, "coordinator does not support UnregisterAgent, leases will expire");
                None
            }
            Ok(Err(status)) => {
                tracing::warn!(%agent_id, code = ?status.code(), message = status.message(),
                    "failed to unregister, leases still held will expire");
                None
            }
            Err(_) => {
                tracing::warn!(%agent_id, ?timeout, "unregistration timed out, leases still held will expire");
                None
            }
        }
    }

    /// Heartbeats leases; re-registers once if the coordinator does not know the agent.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn heartbeat(&self, lease_ids: Vec<String>) -> Result<HeartbeatResponse, Status> {
        let agent_id = self.agent_id();
        let request = HeartbeatRequest {
            agent_id: agent_id.clone(),
            lease_ids: lease_ids.clone(),
            agent_secret: self.secret(),
        };
        match self.api.heartbeat(request).await {
            Err(status) if status.code() == Code::NotFound => {
                self.reregister(&agent_id).await?;
                self.api
                    .heartbeat(HeartbeatRequest {
                        agent_id: self.agent_id(),
                        lease_ids,
                        agent_secret: self.secret(),
                    })
                    .await
            }
            other => other,
        }
    }
}

/// Waits `delay`; returns true if shutdown was requested first (or already).
pub async fn wait_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeCoordinator, fast_timing};

    #[tokio::test]
    async fn registration_waits_for_the_coordinator() {
        let fake = FakeCoordinator::new();
        fake.set_down(true);
        let session = std::sync::Arc::new(Session::new(
            fake.clone(),
            AgentCapabilities::default(),
            fast_timing(),
        ));
        let (_tx, mut rx) = watch::channel(false);
        let task = {
            let session = session.clone();
            tokio::spawn(async move { session.register(&mut rx).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !task.is_finished() && tokio::time::Instant::now() < deadline {
            fake.set_down(false);
            tokio::task::yield_now().await;
        }
        let agent_id = task.await.expect("join").expect("registered");
        assert_eq!(agent_id, "agent-1");
        assert_eq!(session.heartbeat_interval(), Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_forgotten_agent_registers_again_under_its_id() {
        let fake = FakeCoordinator::new();
        let session = Session::new(fake.clone(), AgentCapabilities::default(), fast_timing());
        let (_tx, mut rx) = watch::channel(false);
        session.register(&mut rx).await.expect("registered");
        fake.forget_agents();
        session.lease().await.expect("lease after re-registration");
        assert_eq!(fake.registrations(), 2);
        assert_eq!(session.agent_id(), "agent-1");
        fake.forget_agents();
        session
            .heartbeat(vec!["l".into()])
            .await
            .expect("heartbeat after re-registration");
        assert_eq!(fake.registrations(), 3);
    }

    #[tokio::test]
    async fn an_id_the_coordinator_gave_away_is_replaced_by_a_new_identity() {
        let fake = FakeCoordinator::new();
        let session = Session::new(fake.clone(), AgentCapabilities::default(), fast_timing());
        let (_tx, mut rx) = watch::channel(false);
        session.register(&mut rx).await.expect("registered");
        let first_secret = session.secret();
        assert_eq!(first_secret, crate::testing::secret_of("agent-1"));
        fake.give_away("agent-1");
        session
            .lease()
            .await
            .expect("a lease as a new agent after the refusal");
        assert_eq!(session.agent_id(), "agent-2");
        assert_eq!(session.secret(), crate::testing::secret_of("agent-2"));
        assert_eq!(fake.registrations(), 3, "first, refused, fresh");
    }

    #[tokio::test]
    async fn lease_requests_carry_the_configured_wait() {
        let fake = FakeCoordinator::new();
        let session = Session::new(fake.clone(), AgentCapabilities::default(), fast_timing());
        let (_tx, mut rx) = watch::channel(false);
        session.register(&mut rx).await.expect("registered");
        session.lease().await.expect("lease");
        fake.forget_agents();
        session.lease().await.expect("lease after re-registration");
        assert_eq!(fake.lease_waits(), vec![0.25, 0.25, 0.25]);

        let no_wait = Timing {
            lease_wait: Duration::ZERO,
            ..fast_timing()
        };
        let fake = FakeCoordinator::new();
        let session = Session::new(fake.clone(), AgentCapabilities::default(), no_wait);
        session.register(&mut rx).await.expect("registered");
        session.lease().await.expect("lease");
        assert_eq!(fake.lease_waits(), vec![0.0]);
    }

    async fn registered(fake: &FakeCoordinator) -> Session<FakeCoordinator> {
        registered_with(fake, fast_timing()).await
    }

    async fn registered_with(fake: &FakeCoordinator, timing: Timing) -> Session<FakeCoordinator> {
        let session = Session::new(fake.clone(), AgentCapabilities::default(), timing);
        let (_tx, mut rx) = watch::channel(false);
        session.register(&mut rx).await.expect("registered");
        session
    }

    #[tokio::test]
    async fn unregistering_is_best_effort() {
        let fake = FakeCoordinator::new();
        assert_eq!(registered(&fake).await.unregister().await, Some(0));
        assert_eq!(fake.log(), vec!["unregister agent-1"]);

        let old = FakeCoordinator::new();
        old.refuse_unregister(Status::unimplemented("unknown method"));
        assert_eq!(registered(&old).await.unregister().await, None);
        assert_eq!(old.log(), vec!["unregister agent-1"]);

        let down = FakeCoordinator::new();
        let session = registered(&down).await;
        down.set_down(true);
        assert_eq!(session.unregister().await, None);

        let silent = FakeCoordinator::new();
        silent.hang_unregister();
        let quick = Timing {
            request_timeout: Duration::from_millis(100),
            ..fast_timing()
        };
        let session = registered_with(&silent, quick).await;
        let bounded = tokio::time::timeout(Duration::from_secs(5), session.unregister()).await;
        assert_eq!(bounded, Ok(None), "an unanswered unregistration times out");
    }

    #[tokio::test]
    async fn an_agent_that_never_registered_does_not_unregister() {
        let fake = FakeCoordinator::new();
        let session = Session::new(fake.clone(), AgentCapabilities::default(), fast_timing());
        assert_eq!(session.unregister().await, None);
        assert!(fake.log().is_empty());
    }

    #[tokio::test]
    async fn shutdown_ends_a_registration_that_cannot_succeed() {
        let fake = FakeCoordinator::new();
        fake.set_down(true);
        let session = Session::new(fake, AgentCapabilities::default(), fast_timing());
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).expect("send");
        assert!(matches!(
            session.register(&mut rx).await,
            Err(Error::ShutdownBeforeReady)
        ));
    }
}
