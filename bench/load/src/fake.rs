//! Tests of the simulated agent against a scripted fake AgentService on loopback: retries of
//! transient errors, re-registration after NOT_FOUND, refused and abandoned leases and whether
//! they were healthy. The real coordinator is exercised by `tests/tests/fleet_e2e.rs` and the
//! benchmark itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::agent::{AgentConfig, now_unix};
use crate::fleet::{Fleet, FleetConfig, channels};
use crate::objective::{branin, epoch_value};
use crate::retry::RetryPolicy;
use crate::stats::AgentStats;

/// What the fake does wrong.
#[derive(Clone, Debug, Default)]
struct Script {
    /// Answer NOT_FOUND to the first LeaseTrial (a coordinator that forgot its agents).
    forget_agent_once: bool,
    /// Answer UNAVAILABLE to the first try of every ReportEpoch.
    flaky_reports: bool,
    /// Refuse epoch 2 of the first lease with FAILED_PRECONDITION.
    refuse_second_epoch: bool,
    /// Answer ABANDON to every heartbeat.
    abandon_on_heartbeat: bool,
}

#[derive(Debug, Default)]
struct FakeState {
    registrations: Vec<String>,
    forgot: bool,
    leases: u32,
    report_tries: HashMap<(String, u32), u32>,
}

#[derive(Clone)]
struct Fake {
    script: Script,
    state: Arc<Mutex<FakeState>>,
}

fn float(value: f64) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(pb::parameter_value::Kind::FloatValue(value)),
    }
}

#[tonic::async_trait]
impl AgentService for Fake {
    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let requested = request.into_inner().agent_id;
        let agent_id = if requested.is_empty() {
            "agent-1".to_owned()
        } else {
            requested
        };
        let mut state = self.state.lock().expect("fake state");
        state.registrations.push(agent_id.clone());
        Ok(Response::new(pb::RegisterAgentResponse {
            agent_id,
            heartbeat_interval_seconds: 0.05,
            lease_timeout_seconds: 5.0,
            agent_secret: "fake-secret".into(),
        }))
    }

    async fn lease_trial(
        &self,
        _request: Request<pb::LeaseTrialRequest>,
    ) -> Result<Response<pb::LeaseTrialResponse>, Status> {
        let mut state = self.state.lock().expect("fake state");
        if self.script.forget_agent_once && !state.forgot {
            state.forgot = true;
            return Err(Status::not_found(
                "agent 'agent-1' not found (register first)",
            ));
        }
        state.leases += 1;
        let lease = pb::Lease {
            lease_id: format!("lease-{}", state.leases),
            trial_id: format!("trial-{}", state.leases),
            experiment_id: "exp-1".into(),
            params: HashMap::from([("x".into(), float(1.0)), ("y".into(), float(2.0))]),
            deadline_unix_seconds: now_unix() + 5.0,
            attempt: 1,
            ..pb::Lease::default()
        };
        let outcome = pb::lease_trial_response::Outcome::Lease(lease);
        Ok(Response::new(pb::LeaseTrialResponse {
            outcome: Some(outcome),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (action, deadline) = if self.script.abandon_on_heartbeat {
            (pb::LeaseAction::Abandon, 0.0)
        } else {
            (pb::LeaseAction::Continue, now_unix() + 5.0)
        };
        let leases = request
            .into_inner()
            .lease_ids
            .into_iter()
            .map(|lease_id| pb::LeaseStatus {
                lease_id,
                action: action as i32,
                deadline_unix_seconds: deadline,
            })
            .collect();
        Ok(Response::new(pb::HeartbeatResponse { leases }))
    }

    async fn report_epoch(
        &self,
        request: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let inner = request.into_inner();
        let epoch = inner.report.map_or(0, |r| r.epoch);
        let mut state = self.state.lock().expect("fake state");
        let tries = state
            .report_tries
            .entry((inner.lease_id.clone(), epoch))
            .or_default();
        *tries += 1;
        if self.script.flaky_reports && *tries == 1 {
            return Err(Status::unavailable("coordinator restarting"));
        }
        if self.script.refuse_second_epoch && inner.lease_id == "lease-1" && epoch == 2 {
            return Err(Status::failed_precondition(
                "lease 'lease-1' is not current",
            ));
        }
        Ok(Response::new(pb::ReportEpochResponse {
            action: pb::LeaseAction::Continue as i32,
        }))
    }

    async fn complete_trial(
        &self,
        _request: Request<pb::CompleteTrialRequest>,
    ) -> Result<Response<pb::CompleteTrialResponse>, Status> {
        Ok(Response::new(pb::CompleteTrialResponse {}))
    }

    async fn unregister_agent(
        &self,
        _request: Request<pb::UnregisterAgentRequest>,
    ) -> Result<Response<pb::UnregisterAgentResponse>, Status> {
        Err(Status::unimplemented("an old coordinator"))
    }
}

/// Serves the fake on 127.0.0.1:0, runs one agent until it acknowledged `completions` trials
/// or `max_wait` passed, and returns its figures and the fake's state.
async fn run_one_agent(
    script: Script,
    work_per_epoch: Duration,
    completions: u64,
    max_wait: Duration,
) -> (AgentStats, Arc<Mutex<FakeState>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let state = Arc::new(Mutex::new(FakeState::default()));
    let fake = Fake {
        script,
        state: Arc::clone(&state),
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let config = FleetConfig {
        agents: 1,
        agent: AgentConfig {
            epochs: 3,
            work_per_epoch,
            work_jitter: 0.0,
            lease_wait: Duration::ZERO,
            rpc_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            keep_acks: true,
            max_run: Duration::from_secs(20),
            heartbeat_lockstep: true,
        },
        idle_probe_period: None,
    };
    let agent_channels = channels(&format!("http://{addr}"), 1).expect("channel");
    let fleet = Fleet::start(&agent_channels, &agent_channels[0], config);
    fleet.progress().set_recording(true);
    let polls = max_wait.as_millis() / 10;
    for _ in 0..polls {
        if fleet.progress().completions() >= completions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = fleet.stop(Duration::from_secs(10)).await;
    server.abort();
    assert_eq!(outcome.stragglers, 0);
    (outcome.stats, state)
}

#[tokio::test]
async fn transient_errors_are_retried_and_every_ack_is_kept() {
    let script = Script {
        flaky_reports: true,
        ..Script::default()
    };
    let (stats, state) = run_one_agent(script, Duration::ZERO, 2, Duration::from_secs(10)).await;
    assert!(stats.acked_completions.len() >= 2, "{stats:?}");
    let value = branin(1.0, 2.0);
    let first = &stats.acked_completions[0];
    assert_eq!((first.trial_id.as_str(), first.value), ("trial-1", value));
    let first_epochs: Vec<(u32, f64)> = stats
        .acked_epochs
        .iter()
        .filter(|e| e.lease_id == "lease-1")
        .map(|e| (e.epoch, e.value))
        .collect();
    let expected: Vec<(u32, f64)> = (1..=3).map(|e| (e, epoch_value(value, e, 3))).collect();
    assert_eq!(first_epochs, expected);
    // Every acknowledged report failed once first and was sent again.
    let tries = state.lock().expect("fake state").report_tries.clone();
    for epoch in &stats.acked_epochs {
        assert_eq!(
            tries[&(epoch.lease_id.clone(), epoch.epoch)],
            2,
            "{epoch:?}"
        );
    }
    assert!(stats.retries >= 2, "{stats:?}");
    assert_eq!(
        (stats.refused, stats.abandoned, stats.lost_while_healthy),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_forgotten_agent_registers_again_under_its_id() {
    let script = Script {
        forget_agent_once: true,
        ..Script::default()
    };
    let (stats, state) = run_one_agent(script, Duration::ZERO, 1, Duration::from_secs(10)).await;
    assert_eq!(stats.reregistrations, 1);
    let registrations = state.lock().expect("fake state").registrations.clone();
    assert_eq!(registrations, ["agent-1", "agent-1"]);
    assert!(!stats.acked_completions.is_empty());
}

#[tokio::test]
async fn a_refused_report_before_the_deadline_is_a_healthy_loss() {
    let script = Script {
        refuse_second_epoch: true,
        ..Script::default()
    };
    let (stats, _) = run_one_agent(script, Duration::ZERO, 1, Duration::from_secs(10)).await;
    assert_eq!((stats.refused, stats.lost_while_healthy), (1, 1));
    // The refused trial is dropped: no completion for it, the next lease completes.
    assert!(
        stats
            .acked_completions
            .iter()
            .all(|c| c.trial_id != "trial-1")
    );
    assert_eq!(stats.refusals.len(), 1);
    assert_eq!(stats.refusals[0].code, tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn an_abandoned_lease_is_dropped() {
    let script = Script {
        abandon_on_heartbeat: true,
        ..Script::default()
    };
    // Epochs of 100 ms against heartbeats every 50 ms: each lease is abandoned mid-trial.
    let work = Duration::from_millis(100);
    let (stats, _) = run_one_agent(script, work, u64::MAX, Duration::from_millis(500)).await;
    assert!(stats.abandoned >= 1, "{stats:?}");
    assert_eq!(stats.lost_while_healthy, stats.abandoned);
    assert!(stats.acked_completions.is_empty(), "{stats:?}");
}
