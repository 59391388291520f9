//! The agent's identity at the coordinator: registration, re-registration, and the
//! agent-scoped calls (lease, heartbeat) that need it.
//!
//! A coordinator that restarted may have forgotten the agent: agent-scoped calls then fail with
//! `NotFound`, and the session registers again under the same id, once for all slots.

use std::sync::Mutex;
use std::time::Duration;

use proto::v1::{
    AgentCapabilities, HeartbeatRequest, HeartbeatResponse, LeaseTrialRequest, LeaseTrialResponse,
    RegisterAgentRequest,
};
use tokio::sync::watch;
use tonic::{Code, Status};

use crate::client::CoordinatorApi;
use crate::config::Timing;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Disposition, disposition, jitter_seed};

/// A registered agent.
pub struct Session<A> {
    api: A,
    capabilities: AgentCapabilities,
    timing: Timing,
    agent_id: Mutex<String>,
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
            };
            match self.api.register(request).await {
                Ok(response) => {
                    self.apply_registration(
                        &response.agent_id,
                        response.heartbeat_interval_seconds,
                    );
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

    fn apply_registration(&self, agent_id: &str, heartbeat_seconds: f64) {
        *self.agent_id.lock().expect("agent id lock poisoned") = agent_id.to_string();
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
        };
        let response = self.api.register(request).await?;
        tracing::warn!(agent_id = %response.agent_id, "coordinator had forgotten this agent, registered again");
        self.apply_registration(&response.agent_id, response.heartbeat_interval_seconds);
        Ok(())
    }

    /// Asks for a trial; re-registers once if the coordinator does not know the agent.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn lease(&self) -> Result<LeaseTrialResponse, Status> {
        let agent_id = self.agent_id();
        match self
            .api
            .lease(LeaseTrialRequest {
                agent_id: agent_id.clone(),
                wait_seconds: 0.0,
            })
            .await
        {
            Err(status) if status.code() == Code::NotFound => {
                self.reregister(&agent_id).await?;
                self.api
                    .lease(LeaseTrialRequest {
                        agent_id: self.agent_id(),
                        wait_seconds: 0.0,
                    })
                    .await
            }
            other => other,
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
        };
        match self.api.heartbeat(request).await {
            Err(status) if status.code() == Code::NotFound => {
                self.reregister(&agent_id).await?;
                self.api
                    .heartbeat(HeartbeatRequest {
                        agent_id: self.agent_id(),
                        lease_ids,
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
