//! The `external` workload kind (the Python SDK's default): its trials go only to workers that
//! name the experiment when they lease, never to an agent, even one that trains every kind.

#[path = "common/server.rs"]
mod server;

use coordinator::service::Settings;
use coordinator::store::MemoryStore;
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use server::{Server, create};
use tonic::transport::Channel;

fn spec() -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: "own-loop".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: 2,
        parallelism: 1,
        parameters: vec![pb::ParameterSpec {
            name: "lr".into(),
            kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
                step: None,
                low: 1e-4,
                high: 1.0,
                log: true,
                default_value: None,
            })),
        }],
        workload: Some(pb::Workload {
            kind: "external".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Registers a worker declaring `workloads` (empty: every kind).
async fn register(
    agents: &mut AgentServiceClient<Channel>,
    workloads: &[&str],
) -> pb::RegisterAgentResponse {
    agents
        .register_agent(pb::RegisterAgentRequest {
            capabilities: Some(pb::AgentCapabilities {
                slots: 1,
                workloads: workloads.iter().map(|w| (*w).to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("registers")
        .into_inner()
}

async fn lease(
    agents: &mut AgentServiceClient<Channel>,
    worker: &pb::RegisterAgentResponse,
    experiment_id: &str,
) -> Option<pb::Lease> {
    let outcome = agents
        .lease_trial(pb::LeaseTrialRequest {
            agent_id: worker.agent_id.clone(),
            agent_secret: worker.agent_secret.clone(),
            wait_seconds: 0.5,
            experiment_id: experiment_id.into(),
        })
        .await
        .expect("lease call")
        .into_inner()
        .outcome;
    match outcome {
        Some(pb::lease_trial_response::Outcome::Lease(lease)) => Some(lease),
        _ => None,
    }
}

#[tokio::test]
async fn external_trials_go_only_to_workers_that_name_the_experiment() {
    let server = Server::start(MemoryStore::new(), Settings::default(), None).await;
    let mut experiments = server.experiments().await;
    let mut agents = server.agents().await;
    let id = create(&mut experiments, spec()).await;
    let every_kind = register(&mut agents, &[]).await;
    let declares_it = register(&mut agents, &["external", "function"]).await;
    for worker in [&every_kind, &declares_it] {
        // Long polls of half a second each: the experiment's trial is ready within them.
        for _ in 0..3 {
            assert_eq!(
                lease(&mut agents, worker, "").await,
                None,
                "an agent leasing any experiment never gets an external trial"
            );
        }
    }
    let sdk = register(&mut agents, &["external"]).await;
    let lease = lease(&mut agents, &sdk, &id)
        .await
        .expect("the worker naming the experiment gets its trial");
    assert_eq!(lease.experiment_id, id);
    assert_eq!(lease.metric, "value", "external's default metric");
    server.shutdown().await;
}
