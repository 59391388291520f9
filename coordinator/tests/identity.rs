//! Agents bound to their leases, over real gRPC: a lease is usable only with the secret of the
//! agent it was granted to, a registered id cannot be taken over without its secret, a wrong
//! secret renews nothing and releases nothing, and secrets survive a restart. Every refusal is
//! `PERMISSION_DENIED` with a message saying what was wrong, and another client is answered
//! within 100 ms meanwhile.

#[path = "common/server.rs"]
mod server;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coordinator::service::Settings;
use coordinator::store::MemoryStore;
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::Server;
use tonic::Code;
use tonic::transport::Channel;

fn settings() -> Settings {
    Settings {
        retry_after: Duration::from_millis(20),
        ..Settings::default()
    }
}

/// A registered agent as a client sees it.
#[derive(Clone, Debug)]
struct Identity {
    id: String,
    secret: String,
}

async fn register(
    agents: &mut AgentServiceClient<Channel>,
    id: &str,
    secret: &str,
) -> Result<Identity, tonic::Status> {
    let registration = agents
        .register_agent(pb::RegisterAgentRequest {
            capabilities: Some(pb::AgentCapabilities {
                backend: pb::Backend::Cpu as i32,
                slots: 1,
                workloads: vec!["function".into()],
                ..Default::default()
            }),
            agent_id: id.into(),
            agent_secret: secret.into(),
        })
        .await?
        .into_inner();
    Ok(Identity {
        id: registration.agent_id,
        secret: registration.agent_secret,
    })
}

async fn create(experiments: &mut ExperimentServiceClient<Channel>, budget: u32) -> String {
    let spec = pb::ExperimentSpec {
        name: "identity".into(),
        metric: "value".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism: budget,
        parameters: vec![pb::ParameterSpec {
            name: "x".into(),
            kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
                step: None,
                low: 0.0,
                high: 1.0,
                log: false,
                default_value: None,
            })),
        }],
        seed: 3,
        workload: Some(pb::Workload {
            kind: "function".into(),
            dataset: "branin".into(),
            fixed_params: HashMap::new(),
            ..Default::default()
        }),
        ..Default::default()
    };
    experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await
        .expect("creates")
        .into_inner()
        .experiment
        .expect("has an experiment")
        .id
}

async fn lease(agents: &mut AgentServiceClient<Channel>, agent: &Identity) -> pb::Lease {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = agents
            .lease_trial(pb::LeaseTrialRequest {
                agent_id: agent.id.clone(),
                agent_secret: agent.secret.clone(),
                wait_seconds: 1.0,
                experiment_id: String::new(),
            })
            .await
            .expect("lease call")
            .into_inner()
            .outcome;
        if let Some(pb::lease_trial_response::Outcome::Lease(lease)) = outcome {
            return lease;
        }
        assert!(Instant::now() < deadline, "no lease within the deadline");
    }
}

fn completion(lease: &pb::Lease, secret: &str, value: f64) -> pb::CompleteTrialRequest {
    pb::CompleteTrialRequest {
        lease_id: lease.lease_id.clone(),
        agent_secret: secret.into(),
        outcome: pb::TrialOutcome::Succeeded as i32,
        value: Some(value),
        epochs_run: 1,
        best_epoch: 1,
        wall_seconds: 0.01,
        ..Default::default()
    }
}

fn report(lease: &pb::Lease, secret: &str) -> pb::ReportEpochRequest {
    pb::ReportEpochRequest {
        lease_id: lease.lease_id.clone(),
        agent_secret: secret.into(),
        report: Some(pb::EpochReport {
            epoch: 1,
            value: 0.5,
            epoch_seconds: 0.01,
            ..Default::default()
        }),
    }
}

/// Asserts `PERMISSION_DENIED` with `words` in the message.
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, words: &[&str]) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "'{}' lacks '{word}'",
            status.message()
        );
    }
}

/// Runs `bad` while another client on its own channel must be answered within 100 ms.
async fn while_answering<T>(
    other: &mut ExperimentServiceClient<Channel>,
    bad: impl Future<Output = T>,
) -> T {
    let probe = tokio::time::timeout(
        Duration::from_millis(100),
        other.list_experiments(pb::ListExperimentsRequest::default()),
    );
    let (result, answer) = tokio::join!(bad, probe);
    assert!(
        matches!(answer, Ok(Ok(_))),
        "another client waited: {answer:?}"
    );
    result
}

async fn trial_states(experiments: &mut ExperimentServiceClient<Channel>, id: &str) -> Vec<i32> {
    experiments
        .list_trials(pb::ListTrialsRequest {
            experiment_id: id.into(),
            ..Default::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .trials
        .iter()
        .map(|t| t.state)
        .collect()
}

#[tokio::test]
async fn a_lease_is_usable_only_by_the_agent_it_was_granted_to() {
    let server = Server::start(MemoryStore::new(), settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    let experiment = create(&mut experiments, 2).await;
    let owner = register(&mut agents, "", "").await.expect("registers");
    let intruder = register(&mut agents, "", "").await.expect("registers");
    assert_ne!(owner.secret, intruder.secret);
    assert_eq!(owner.secret.len(), 64);
    let held = lease(&mut agents, &owner).await;

    let stolen = while_answering(
        &mut other,
        agents.complete_trial(completion(&held, &intruder.secret, -100.0)),
    )
    .await;
    assert_denied(stolen, &["granted to another agent"]);
    assert_denied(
        agents.complete_trial(completion(&held, "", -100.0)).await,
        &["agent_secret"],
    );
    assert_denied(
        agents.report_epoch(report(&held, &intruder.secret)).await,
        &["granted to another agent"],
    );
    // The intruder's heartbeat does not renew the owner's lease.
    let beat = agents
        .heartbeat(pb::HeartbeatRequest {
            agent_id: intruder.id.clone(),
            agent_secret: intruder.secret.clone(),
            lease_ids: vec![held.lease_id.clone()],
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert_eq!(beat.leases[0].action(), pb::LeaseAction::Abandon);
    // Claiming to be the owner with a wrong secret is refused outright.
    assert_denied(
        agents
            .heartbeat(pb::HeartbeatRequest {
                agent_id: owner.id.clone(),
                agent_secret: intruder.secret.clone(),
                lease_ids: vec![held.lease_id.clone()],
            })
            .await,
        &["wrong agent_secret"],
    );
    assert_denied(
        agents
            .unregister_agent(pb::UnregisterAgentRequest {
                agent_id: owner.id.clone(),
                agent_secret: String::new(),
            })
            .await,
        &["missing agent_secret"],
    );
    // Nothing the intruder did changed the trial: still leased, and the owner completes it.
    let mut states = trial_states(&mut experiments, &experiment).await;
    states.sort_unstable();
    assert_eq!(
        states,
        [
            pb::TrialState::Pending as i32,
            pb::TrialState::Leased as i32
        ],
        "the lease was neither renewed into running nor completed nor released"
    );
    agents
        .report_epoch(report(&held, &owner.secret))
        .await
        .expect("the owner reports");
    agents
        .complete_trial(completion(&held, &owner.secret, 0.5))
        .await
        .expect("the owner completes");
    let best = experiments
        .get_best_trial(pb::GetBestTrialRequest {
            experiment_id: experiment.clone(),
        })
        .await
        .expect("best")
        .into_inner();
    assert_eq!(best.trial.and_then(|t| t.value), Some(0.5));
    server.shutdown().await;
}

#[tokio::test]
async fn a_registered_id_needs_its_secret_and_the_victim_keeps_working() {
    let server = Server::start(MemoryStore::new(), settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    create(&mut experiments, 1).await;
    let victim = register(&mut agents, "", "").await.expect("registers");

    let takeover = while_answering(&mut other, register(&mut agents, &victim.id, "")).await;
    assert_denied(takeover, &["is registered", "agent_secret"]);
    assert_denied(
        register(&mut agents, &victim.id, &"0".repeat(64)).await,
        &["is registered"],
    );
    // The victim's registration stands: it leases with its own secret.
    let held = lease(&mut agents, &victim).await;
    // Re-registering with the secret keeps the id and the secret.
    let again = register(&mut agents, &victim.id, &victim.secret)
        .await
        .expect("re-registers with its secret");
    assert_eq!((&again.id, &again.secret), (&victim.id, &victim.secret));
    agents
        .complete_trial(completion(&held, &victim.secret, 1.0))
        .await
        .expect("completes after re-registering");
    // A new id of the client's choosing is simply a new agent.
    let fresh = register(&mut agents, "agent-chosen-by-client", "")
        .await
        .expect("an unknown id registers");
    assert_eq!(fresh.id, "agent-chosen-by-client");
    assert_ne!(fresh.secret, victim.secret);
    server.shutdown().await;
}

#[tokio::test]
async fn secrets_survive_a_restart() {
    let store = MemoryStore::new();
    let server = Server::start(store.clone(), settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    create(&mut experiments, 2).await;
    let agent = register(&mut agents, "", "").await.expect("registers");
    let held = lease(&mut agents, &agent).await;
    server.shutdown().await;

    let server = Server::start(store, settings(), None).await;
    let (_, mut agents) = server.clients().await;
    assert_denied(
        agents
            .complete_trial(completion(&held, &"f".repeat(64), 2.0))
            .await,
        &["granted to another agent"],
    );
    agents
        .complete_trial(completion(&held, &agent.secret, 2.0))
        .await
        .expect("the old secret still completes the old lease");
    assert_denied(
        register(&mut agents, &agent.id, "").await,
        &["is registered"],
    );
    let again = register(&mut agents, &agent.id, &agent.secret)
        .await
        .expect("re-registers after the restart");
    assert_eq!(again.secret, agent.secret);
    let released = agents
        .unregister_agent(pb::UnregisterAgentRequest {
            agent_id: agent.id.clone(),
            agent_secret: agent.secret.clone(),
        })
        .await
        .expect("unregisters")
        .into_inner();
    assert_eq!(released.leases_released, 0);
    // Unregistered agents are forgotten: their id is free again.
    let taken = register(&mut agents, &agent.id, "")
        .await
        .expect("the id of an unregistered agent is free");
    assert_ne!(taken.secret, agent.secret);
    server.shutdown().await;
}
