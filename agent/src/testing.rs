//! An in-memory fake coordinator for the agent's unit tests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::v1::{
    CompleteTrialRequest, CompleteTrialResponse, HeartbeatRequest, HeartbeatResponse, Lease,
    LeaseAction, LeaseStatus, LeaseTrialRequest, LeaseTrialResponse, RegisterAgentRequest,
    RegisterAgentResponse, ReportEpochRequest, ReportEpochResponse, lease_trial_response::Outcome,
};
use tonic::Status;

use crate::client::CoordinatorApi;
use crate::config::Timing;

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
        shutdown_grace: millis(300),
    }
}

#[derive(Default)]
struct State {
    down: bool,
    next_agent: u32,
    agents: HashSet<String>,
    registrations: usize,
    leases: VecDeque<Lease>,
    stale: HashSet<String>,
    stop: HashSet<String>,
    abandon: HashSet<String>,
    reject_epochs: HashSet<u32>,
    epochs: HashMap<String, Vec<u32>>,
    completions: HashMap<String, Vec<CompleteTrialRequest>>,
    heartbeats: usize,
}

/// A scriptable coordinator: it can be down, forget agents, mark leases stale or stopped.
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

    fn check_up(&self) -> Result<MutexGuard<'_, State>, Status> {
        let state = self.state();
        if state.down {
            Err(Status::unavailable("fake coordinator is down"))
        } else {
            Ok(state)
        }
    }

    fn check_lease(state: &State, lease: &str) -> Result<(), Status> {
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
            req.agent_id
        };
        state.agents.insert(agent_id.clone());
        Ok(RegisterAgentResponse {
            agent_id,
            heartbeat_interval_seconds: 0.05,
            lease_timeout_seconds: 1.0,
        })
    }

    async fn lease(&self, req: LeaseTrialRequest) -> Result<LeaseTrialResponse, Status> {
        let mut state = self.check_up()?;
        if !state.agents.contains(&req.agent_id) {
            return Err(Status::not_found("unknown agent"));
        }
        let outcome = match state.leases.pop_front() {
            Some(lease) => Outcome::Lease(lease),
            None => Outcome::RetryAfterSeconds(0.01),
        };
        Ok(LeaseTrialResponse {
            outcome: Some(outcome),
        })
    }

    async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
        let mut state = self.check_up()?;
        if !state.agents.contains(&req.agent_id) {
            return Err(Status::not_found("unknown agent"));
        }
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
        Self::check_lease(&state, &req.lease_id)?;
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
        Self::check_lease(&state, &req.lease_id)?;
        state
            .completions
            .entry(req.lease_id.clone())
            .or_default()
            .push(req);
        Ok(CompleteTrialResponse {})
    }
}
