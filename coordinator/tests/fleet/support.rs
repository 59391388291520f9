//! Shared pieces of the fleet tests: specs, agents and a coordinator over an in-memory store,
//! driven through the domain traits (no gRPC), so time can be paused.

use std::sync::Arc;
use std::time::Duration;

use coordinator::metrics::Metrics;
use coordinator::service::model::{
    AgentCapabilities, AgentId, BatchStrategy, Direction, ExperimentId, ExperimentSpec, Strategy,
    Workload,
};
use coordinator::service::{
    AgentService, Completion, Coordinator, EpochInput, ExperimentService, Lease, LeaseOutcome,
    Outcome, Settings, WriteMode,
};
use coordinator::store::{ExperimentStore, MemoryStore};
use tuner::space::ParamSpec;

/// Settings for tests: a 10 s lease, a 2 s heartbeat, a 30 s agent timeout.
pub fn settings() -> Settings {
    Settings {
        lease_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(2),
        lease_check_interval: Duration::from_secs(1),
        agent_timeout: Duration::from_secs(30),
        retry_after: Duration::from_millis(100),
        max_lease_wait: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// A random-search experiment on a 2-D box with the `function` workload.
pub fn spec(name: &str, budget: u32, parallelism: u32) -> ExperimentSpec {
    let parameters: Vec<ParamSpec> = serde_json::from_str(
        r#"[{"name":"x","type":"float","low":-5.0,"high":10.0},{"name":"y","type":"float","low":0.0,"high":15.0}]"#,
    )
    .expect("space parses");
    ExperimentSpec {
        name: name.into(),
        metric: "value".into(),
        direction: Direction::Minimize,
        strategy: Strategy::Random,
        batch: BatchStrategy::ClMin,
        budget_trials: budget,
        parallelism,
        parameters,
        seed: 7,
        grid_levels: 0,
        initial_trials: 0,
        max_attempts: 3,
        workload: Some(Workload {
            kind: "function".into(),
            dataset: "branin".into(),
            ..Workload::default()
        }),
        budget_dollars: 0.0,
        study: String::new(),
        deterministic: false,
        max_model_points: 0,
        early_stopping: Default::default(),
    }
}

/// Starts a coordinator that commits inline (no writer thread), for paused time.
pub async fn start(store: &MemoryStore, settings: Settings) -> Coordinator {
    let store: Arc<dyn ExperimentStore> = Arc::new(store.clone());
    Coordinator::start_with(store, settings, Arc::new(Metrics::new()), WriteMode::Inline)
        .await
        .expect("coordinator starts")
}

/// Registers an agent that trains the `function` workload.
pub async fn agent(coordinator: &Coordinator) -> AgentId {
    let capabilities = AgentCapabilities {
        backend: "cpu".into(),
        slots: 1,
        workloads: vec!["function".into()],
        ..AgentCapabilities::default()
    };
    coordinator
        .register_agent(capabilities, None, None)
        .await
        .expect("registers")
        .agent_id
}

/// Waits (bounded in real iterations, not virtual time) until an experiment has `n` trials:
/// they are computed on a blocking thread.
pub async fn wait_created(
    coordinator: &Coordinator,
    id: &coordinator::service::model::ExperimentId,
    n: u32,
) {
    let started = std::time::Instant::now();
    loop {
        let view = coordinator.get_experiment(id.clone()).await.expect("gets");
        if view.counts.created >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} of {n} trials created",
            view.counts.created
        );
        std::thread::sleep(Duration::from_millis(2));
        tokio::task::yield_now().await;
    }
}

/// Leases a trial without waiting, or panics.
pub async fn lease_now(coordinator: &Coordinator, agent: &AgentId) -> Lease {
    match coordinator
        .lease_trial(agent.clone(), Duration::ZERO, None)
        .await
        .expect("lease call")
    {
        LeaseOutcome::Lease(lease) => *lease,
        LeaseOutcome::RetryAfter(_) => panic!("no trial ready for {agent}"),
    }
}

/// An epoch report with value `value`.
pub fn epoch(number: u32, value: f64) -> EpochInput {
    EpochInput {
        epoch: number,
        value,
        train_loss: 0.5,
        train_accuracy: 0.5,
        epoch_seconds: 0.1,
    }
}

/// A successful completion at `value`.
pub fn success(value: f64) -> Completion {
    Completion {
        outcome: Outcome::Succeeded,
        value: Some(value),
        epochs_run: 1,
        best_epoch: 1,
        wall_seconds: 1.0,
        device_seconds: 1.0,
        cost_dollars: 0.01,
        failure_reason: String::new(),
        metrics: Default::default(),
    }
}

/// Creates an experiment and waits until its first `ready` trials exist.
pub async fn running(coordinator: &Coordinator, spec: ExperimentSpec, ready: u32) -> ExperimentId {
    let id = coordinator
        .create_experiment(spec)
        .await
        .expect("creates")
        .record
        .id;
    wait_created(coordinator, &id, ready).await;
    id
}
