//! An in-memory fake coordinator for the agent's unit tests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::v1::{
    CompleteTrialRequest, CompleteTrialResponse, HeartbeatRequest, HeartbeatResponse, Lease,
    LeaseAction, LeaseStatus, LeaseTrialRequest, LeaseTrialResponse, RegisterAgentRequest,
    RegisterAgentResponse, ReportEpochRequest, ReportEpochResponse, UnregisterAgentRequest,
    UnregisterAgentResponse, lease_trial_response::Outcome,
};
use tonic::Status;

use crate::client::CoordinatorApi;
use crate::config::Timing;

const SECRET_PREFIX: &str = "s3cret-of-";

/// The secret the fake gives `agent_id` (the same at every registration of that id).
pub fn secret_of(agent_id: &str) -> String {
    format!("{SECRET_PREFIX}{agent_id}")
}

/// Timing for tests: everything in milliseconds.
pub fn fast_timing() -> Timing {
    let millis = std::time::Duration::from_millis;
    Timing {
        heartbeat_interval: millis(20),
        request_timeout: millis(1000),
        connect_timeout: millis(1000),
        retry_initial_backoff: millis(1),
        retry_max_backoff: millis(5),
        idle_poll_max: millis(10),
        lease_wait: millis(250),
        shutdown_grace: millis(300),
    }
}

#[derive(Default)]
struct State {
    down: bool,
    next_agent: u32,
    agents: HashSet<String>,
    /// Ids registered to someone else: re-registering one is refused.
    taken: HashSet<String>,
    registrations: usize,
    leases: VecDeque<Lease>,
    stale: HashSet<String>,
    stop: HashSet<String>,
    abandon: HashSet<String>,
    reject_epochs: HashSet<u32>,
    epochs: HashMap<String, Vec<u32>>,
    completions: HashMap<String, Vec<CompleteTrialRequest>>,
    heartbeats: usize,
    lease_waits: Vec<f64>,
    /// Completions and unregistrations, in the order they arrived.
    log: Vec<String>,
    unregister_answer: Option<Status>,
    unregister_hangs: bool,
    long_poll: bool,
}

/// A scriptable coordinator: it can be down, forget agents, mark leases stale or stopped, and
/// refuse or never answer `UnregisterAgent`.
#[derive(Clone, Default)]
pub struct FakeCoordinator {
    state: Arc<Mutex<State>>,
}

impl FakeCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake coordinator lock poisoned")
    }

    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }
    pub fn make_stale(&self, lease: &str) {
        self.state().stale.insert(lease.to_string());
    }
    pub fn stop_lease(&self, lease: &str) {
        self.state().stop.insert(lease.to_string());
    }
    pub fn abandon_lease(&self, lease: &str) {
        self.state().abandon.insert(lease.to_string());
    }
    pub fn reject_epoch(&self, epoch: u32) {
        self.state().reject_epochs.insert(epoch);
    }
    pub fn forget_agents(&self) {
        self.state().agents.clear();
    }
    /// Forgets the agents and gives `id` to someone else, so re-registering it is refused.
    pub fn give_away(&self, id: &str) {
        let mut state = self.state();
        state.agents.clear();
        state.taken.insert(id.to_string());
    }
    pub fn add_lease(&self, lease: Lease) {
        self.state().leases.push_back(lease);
    }
    pub fn registrations(&self) -> usize {
        self.state().registrations
    }
    pub fn heartbeats(&self) -> usize {
        self.state().heartbeats
    }
    pub fn reported_epochs(&self, lease: &str) -> Vec<u32> {
        self.state().epochs.get(lease).cloned().unwrap_or_default()
    }
    pub fn completions(&self, lease: &str) -> usize {
        self.state().completions.get(lease).map_or(0, Vec::len)
    }
    pub fn completion(&self, lease: &str) -> Option<CompleteTrialRequest> {
        self.state()
            .completions
            .get(lease)
            .and_then(|all| all.last().cloned())
    }
    pub fn pending_leases(&self) -> usize {
        self.state().leases.len()
    }
    /// The `wait_seconds` of every lease request, in order.
    pub fn lease_waits(&self) -> Vec<f64> {
        self.state().lease_waits.clone()
    }
    /// `complete <lease> <outcome>` and `unregister <agent>` entries, in arrival order.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }
    /// Answers `UnregisterAgent` with this status (e.g. `UNIMPLEMENTED`, an old coordinator).
    pub fn refuse_unregister(&self, status: Status) {
        self.state().unregister_answer = Some(status);
    }
    /// With no trial queued, holds each lease request for its `wait_seconds`, as a real
    /// coordinator's long poll does when no trial turns up.
    pub fn long_poll(&self) {
        self.state().long_poll = true;
    }
    /// Never answers `UnregisterAgent`.
    pub fn hang_unregister(&self) {
        self.state().unregister_hangs = true;
    }

    fn check_up(&self) -> Result<MutexGuard<'_, State>, Status> {
        let state = self.state();
        if state.down {
            Err(Status::unavailable("fake coordinator is down"))
        } else {
            Ok(state)
        }
    }

    /// Refuses a call whose secret is not the one registration gave `agent_id`.
    fn check_agent(state: &State, agent_id: &str, secret: &str) -> Result<(), Status> {
        if !state.agents.contains(agent_id) {
            return Err(Status::not_found("unknown agent"));
        }
        if secret != secret_of(agent_id) {
            return Err(Status::permission_denied("wrong agent_secret"));
        }
        Ok(())
    }

    fn check_lease(state: &State, lease: &str, secret: &str) -> Result<(), Status> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Err(Status::permission_denied("missing or unknown agent_secret"));
        }
        if state.stale.contains(lease) {
            return Err(Status::failed_precondition("lease is stale"));
        }
        Ok(())
    }
}

impl CoordinatorApi for FakeCoordinator {
    async fn register(&self, req: RegisterAgentRequest) -> Result<RegisterAgentResponse, Status> {
        let mut state = self.check_up()?;
        state.registrations += 1;
        let agent_id = if req.agent_id.is_empty() {
            state.next_agent += 1;
            format!("agent-{}", state.next_agent)
        } else {
            let wrong_secret = state.agents.contains(&req.agent_id)
                && req.agent_secret != secret_of(&req.agent_id);
            if wrong_secret || state.taken.contains(&req.agent_id) {
                return Err(Status::permission_denied("id taken: wrong agent_secret"));
            }
            req.agent_id
        };
        state.agents.insert(agent_id.clone());
        Ok(RegisterAgentResponse {
            agent_secret: secret_of(&agent_id),
            agent_id,
            heartbeat_interval_seconds: 0.05,
            lease_timeout_seconds: 1.0,
        })
    }

    async fn lease(&self, req: LeaseTrialRequest) -> Result<LeaseTrialResponse, Status> {
        let hold = {
            let mut state = self.check_up()?;
            state.lease_waits.push(req.wait_seconds);
            Self::check_agent(&state, &req.agent_id, &req.agent_secret)?;
            let idle = state.leases.is_empty() && state.long_poll;
            idle.then(|| std::time::Duration::from_secs_f64(req.wait_seconds))
        };
        if let Some(wait) = hold {
            tokio::time::sleep(wait).await;
        }
        let outcome = match self.state().leases.pop_front() {
            Some(lease) => Outcome::Lease(lease),
            None => Outcome::RetryAfterSeconds(0.01),
        };
        Ok(LeaseTrialResponse {
            outcome: Some(outcome),
        })
    }

    async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
        let mut state = self.check_up()?;
        Self::check_agent(&state, &req.agent_id, &req.agent_secret)?;
        state.heartbeats += 1;
        let leases = req
            .lease_ids
            .into_iter()
            .map(|lease_id| {
                let action = if state.abandon.contains(&lease_id) || state.stale.contains(&lease_id)
                {
                    LeaseAction::Abandon
                } else if state.stop.contains(&lease_id) {
                    LeaseAction::Stop
                } else {
                    LeaseAction::Continue
                };
                LeaseStatus {
                    lease_id,
                    action: action as i32,
                    deadline_unix_seconds: 0.0,
                }
            })
            .collect();
        Ok(HeartbeatResponse { leases })
    }

    async fn report_epoch(&self, req: ReportEpochRequest) -> Result<ReportEpochResponse, Status> {
        let mut state = self.check_up()?;
        Self::check_lease(&state, &req.lease_id, &req.agent_secret)?;
        let epoch = req.report.map_or(0, |report| report.epoch);
        if state.reject_epochs.contains(&epoch) {
            return Err(Status::invalid_argument("epoch rejected"));
        }
        state
            .epochs
            .entry(req.lease_id.clone())
            .or_default()
            .push(epoch);
        let action = if state.stop.contains(&req.lease_id) {
            LeaseAction::Stop
        } else {
            LeaseAction::Continue
        };
        Ok(ReportEpochResponse {
            action: action as i32,
        })
    }

    async fn complete(&self, req: CompleteTrialRequest) -> Result<CompleteTrialResponse, Status> {
        let mut state = self.check_up()?;
        Self::check_lease(&state, &req.lease_id, &req.agent_secret)?;
        let entry = format!("complete {} {}", req.lease_id, req.outcome().as_str_name());
        state.log.push(entry);
        state
            .completions
            .entry(req.lease_id.clone())
            .or_default()
            .push(req);
        Ok(CompleteTrialResponse {})
    }

    async fn unregister(
        &self,
        req: UnregisterAgentRequest,
    ) -> Result<UnregisterAgentResponse, Status> {
        let hangs = {
            let mut state = self.check_up()?;
            state.log.push(format!("unregister {}", req.agent_id));
            if let Some(status) = state.unregister_answer.clone() {
                return Err(status);
            }
            state.unregister_hangs
        };
        if hangs {
            std::future::pending::<()>().await;
        }
        let mut state = self.state();
        Self::check_agent(&state, &req.agent_id, &req.agent_secret)?;
        state.agents.remove(&req.agent_id);
        Ok(UnregisterAgentResponse { leases_released: 0 })
    }
}
