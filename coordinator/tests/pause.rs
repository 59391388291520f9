//! Pausing an experiment whose trials keep failing the same way (`service::pause`), over the
//! real tonic server with the in-memory store: repeated same-reason failures pause it, different
//! reasons do not, resuming leases again, and a restart keeps it paused.

#[path = "common/server.rs"]
mod server;

use std::time::{Duration, Instant};

use coordinator::service::Settings;
use coordinator::store::MemoryStore;
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::{Server, remember, secret_of};
use tonic::transport::Channel;

const TYPO: &str = "failed to load dataset 'data/mr-tpyo.txt': No such file or directory";

fn settings() -> Settings {
    Settings {
        lease_timeout: Duration::from_secs(30),
        retry_after: Duration::from_millis(20),
        max_lease_wait: Duration::from_millis(50),
        ..Settings::default()
    }
}

fn spec(budget: u32) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: "typo".into(),
        metric: "value".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism: 1,
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
        seed: 5,
        workload: Some(pb::Workload {
            kind: "function".into(),
            dataset: "quadratic".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn register(agents: &mut AgentServiceClient<Channel>) -> String {
    let request = pb::RegisterAgentRequest {
        capabilities: Some(pb::AgentCapabilities {
            backend: pb::Backend::Cpu as i32,
            slots: 1,
            workloads: vec!["function".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let registration = agents
        .register_agent(request)
        .await
        .expect("registers")
        .into_inner();
    remember(&registration.agent_id, registration.agent_secret);
    registration.agent_id
}

/// One lease attempt: the lease, or `None` when there is nothing to lease.
async fn try_lease(agents: &mut AgentServiceClient<Channel>, agent_id: &str) -> Option<pb::Lease> {
    let response = agents
        .lease_trial(pb::LeaseTrialRequest {
            agent_id: agent_id.into(),
            agent_secret: secret_of(agent_id),
            wait_seconds: 0.05,
            experiment_id: String::new(),
        })
        .await
        .expect("lease call");
    match response.into_inner().outcome {
        Some(pb::lease_trial_response::Outcome::Lease(lease)) => {
            remember(&lease.lease_id, secret_of(agent_id));
            Some(lease)
        }
        _ => None,
    }
}

async fn lease(agents: &mut AgentServiceClient<Channel>, agent_id: &str) -> pb::Lease {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lease) = try_lease(agents, agent_id).await {
            return lease;
        }
        assert!(Instant::now() < deadline, "no lease within 10 s");
    }
}

async fn fail(agents: &mut AgentServiceClient<Channel>, lease: &pb::Lease, reason: &str) {
    agents
        .complete_trial(pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            agent_secret: secret_of(&lease.lease_id),
            outcome: pb::TrialOutcome::Failed as i32,
            failure_reason: reason.into(),
            ..Default::default()
        })
        .await
        .expect("completes");
}

async fn get(experiments: &mut ExperimentServiceClient<Channel>, id: &str) -> pb::Experiment {
    experiments
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .expect("gets")
        .into_inner()
        .experiment
        .expect("an experiment")
}

async fn create(experiments: &mut ExperimentServiceClient<Channel>, budget: u32) -> String {
    experiments
        .create_experiment(pb::CreateExperimentRequest {
            spec: Some(spec(budget)),
        })
        .await
        .expect("creates")
        .into_inner()
        .experiment
        .expect("an experiment")
        .id
}

async fn resume(experiments: &mut ExperimentServiceClient<Channel>, id: &str) -> pb::Experiment {
    experiments
        .resume_experiment(pb::ResumeExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .expect("resumes")
        .into_inner()
        .experiment
        .expect("an experiment")
}

#[tokio::test]
async fn three_same_reason_failures_pause_and_resume_leases_again() {
    let store = MemoryStore::new();
    let server = Server::start(store.clone(), settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let id = create(&mut experiments, 10).await;
    let agent = register(&mut agents).await;
    for attempt in 0..3 {
        assert_eq!(
            get(&mut experiments, &id).await.state(),
            pb::ExperimentState::Running
        );
        let held = lease(&mut agents, &agent).await;
        // The reasons differ only in a number, which the rule ignores.
        fail(&mut agents, &held, &format!("{TYPO} (attempt {attempt})")).await;
    }
    let paused = get(&mut experiments, &id).await;
    assert_eq!(paused.state(), pb::ExperimentState::Paused);
    assert!(
        paused
            .paused_reason
            .starts_with("3 trials in a row failed with the same reason: ")
            && paused.paused_reason.contains(TYPO),
        "{}",
        paused.paused_reason
    );
    assert_eq!(paused.trials_failed, 3);
    assert!(
        try_lease(&mut agents, &agent).await.is_none(),
        "a paused experiment leases nothing"
    );
    assert_eq!(
        get(&mut experiments, &id).await.trials_created,
        paused.trials_created,
        "and creates nothing"
    );
    server.shutdown().await;

    // Paused survives a restart.
    let server = Server::start(store, settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let reloaded = get(&mut experiments, &id).await;
    assert_eq!(reloaded.state(), pb::ExperimentState::Paused);
    assert_eq!(reloaded.paused_reason, paused.paused_reason);
    let agent = register(&mut agents).await;
    assert!(try_lease(&mut agents, &agent).await.is_none());

    let resumed = resume(&mut experiments, &id).await;
    assert_eq!(resumed.state(), pb::ExperimentState::Running);
    assert!(resumed.paused_reason.is_empty());
    // The streak starts over: two more failures do not pause it, a third does.
    for _ in 0..2 {
        let held = lease(&mut agents, &agent).await;
        fail(&mut agents, &held, TYPO).await;
    }
    assert_eq!(
        get(&mut experiments, &id).await.state(),
        pb::ExperimentState::Running
    );
    let held = lease(&mut agents, &agent).await;
    fail(&mut agents, &held, TYPO).await;
    assert_eq!(
        get(&mut experiments, &id).await.state(),
        pb::ExperimentState::Paused
    );
    // Stopping a paused experiment ends it; an ended one cannot be resumed.
    experiments
        .stop_experiment(pb::StopExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect("stops");
    let refused = experiments
        .resume_experiment(pb::ResumeExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect_err("a stopped experiment is not resumed");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn different_reasons_do_not_pause() {
    let server = Server::start(MemoryStore::new(), settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let id = create(&mut experiments, 4).await;
    let agent = register(&mut agents).await;
    for reason in ["out of memory", TYPO, "loss diverged", "out of memory"] {
        let held = lease(&mut agents, &agent).await;
        fail(&mut agents, &held, reason).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let current = get(&mut experiments, &id).await;
        if current.state() != pb::ExperimentState::Running {
            break current;
        }
        assert!(Instant::now() < deadline, "the experiment did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(done.state(), pb::ExperimentState::Completed);
    assert_eq!(done.trials_failed, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn a_leased_trial_of_a_paused_experiment_runs_to_its_end() {
    let server = Server::start(
        MemoryStore::new(),
        Settings {
            pause_after_failures: 2,
            ..settings()
        },
        None,
    )
    .await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut two = spec(10);
    two.parallelism = 3;
    let id = experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(two) })
        .await
        .expect("creates")
        .into_inner()
        .experiment
        .expect("an experiment")
        .id;
    let agent = register(&mut agents).await;
    let first = lease(&mut agents, &agent).await;
    let second = lease(&mut agents, &agent).await;
    let third = lease(&mut agents, &agent).await;
    fail(&mut agents, &first, TYPO).await;
    fail(&mut agents, &second, TYPO).await;
    assert_eq!(
        get(&mut experiments, &id).await.state(),
        pb::ExperimentState::Paused
    );
    let beat = agents
        .heartbeat(pb::HeartbeatRequest {
            agent_id: agent.clone(),
            lease_ids: vec![third.lease_id.clone()],
            agent_secret: secret_of(&agent),
        })
        .await
        .expect("heartbeats")
        .into_inner();
    assert_eq!(beat.leases[0].action(), pb::LeaseAction::Continue);
    agents
        .complete_trial(pb::CompleteTrialRequest {
            lease_id: third.lease_id.clone(),
            agent_secret: secret_of(&third.lease_id),
            outcome: pb::TrialOutcome::Succeeded as i32,
            value: Some(0.5),
            epochs_run: 1,
            ..Default::default()
        })
        .await
        .expect("the leased trial completes");
    let after = get(&mut experiments, &id).await;
    assert_eq!(
        (after.state(), after.trials_succeeded),
        (pb::ExperimentState::Paused, 1)
    );
    server.shutdown().await;
}
