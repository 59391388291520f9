//! Service tests: the real tonic server on 127.0.0.1:0 with the in-memory store, driven by a
//! fake agent through the generated clients (STYLE.md §9.5).

#[path = "common/server.rs"]
mod server;

use std::time::{Duration, Instant};

use coordinator::service::Settings;
use coordinator::store::MemoryStore;
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::{Server, remember, secret_of};
use tonic::Code;
use tonic::transport::Channel;

fn fast_settings() -> Settings {
    Settings {
        lease_timeout: Duration::from_millis(400),
        heartbeat_interval: Duration::from_millis(100),
        lease_check_interval: Duration::from_millis(50),
        retry_after: Duration::from_millis(20),
        ..Settings::default()
    }
}

fn float_param(name: &str, low: f64, high: f64) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
            step: None,
            low,
            high,
            log: false,
            default_value: None,
        })),
    }
}

fn branin_spec(budget: u32, parallelism: u32) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: "branin".into(),
        metric: "value".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism,
        parameters: vec![float_param("x1", -5.0, 10.0), float_param("x2", 0.0, 15.0)],
        seed: 11,
        workload: Some(pb::Workload {
            kind: "function".into(),
            dataset: "branin".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn branin(params: &std::collections::HashMap<String, pb::ParameterValue>) -> f64 {
    let get = |name: &str| match params.get(name).and_then(|v| v.kind.clone()) {
        Some(pb::parameter_value::Kind::FloatValue(v)) => v,
        other => panic!("parameter {name} is not a float: {other:?}"),
    };
    let (x1, x2) = (get("x1"), get("x2"));
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x1.cos() + 10.0
}

async fn create(
    experiments: &mut ExperimentServiceClient<Channel>,
    spec: pb::ExperimentSpec,
) -> pb::Experiment {
    let response = experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await
        .expect("creates");
    response.into_inner().experiment.expect("has an experiment")
}

async fn register(agents: &mut AgentServiceClient<Channel>) -> String {
    let capabilities = pb::AgentCapabilities {
        backend: pb::Backend::Cpu as i32,
        slots: 1,
        workloads: vec!["function".into()],
        ..Default::default()
    };
    let request = pb::RegisterAgentRequest {
        capabilities: Some(capabilities),
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

/// Polls `lease_trial` until a lease comes back or the deadline passes.
async fn lease(agents: &mut AgentServiceClient<Channel>, agent_id: &str) -> pb::Lease {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = agents
            .lease_trial(pb::LeaseTrialRequest {
                agent_id: agent_id.into(),
                agent_secret: secret_of(agent_id),
                wait_seconds: 0.0,
                experiment_id: String::new(),
            })
            .await
            .expect("lease call");
        match response.into_inner().outcome {
            Some(pb::lease_trial_response::Outcome::Lease(lease)) => {
                remember(&lease.lease_id, secret_of(agent_id));
                return lease;
            }
            Some(pb::lease_trial_response::Outcome::RetryAfterSeconds(after)) => {
                assert!(Instant::now() < deadline, "no lease within the deadline");
                tokio::time::sleep(Duration::from_secs_f64(after)).await;
            }
            None => panic!("empty lease response"),
        }
    }
}

fn epoch(number: u32, value: f64) -> pb::EpochReport {
    pb::EpochReport {
        epoch: number,
        value,
        train_loss: 0.5,
        train_accuracy: 0.5,
        epoch_seconds: 0.01,
    }
}

async fn report(
    agents: &mut AgentServiceClient<Channel>,
    lease_id: &str,
    report: pb::EpochReport,
) -> Result<pb::LeaseAction, tonic::Status> {
    let request = pb::ReportEpochRequest {
        lease_id: lease_id.into(),
        report: Some(report),
        agent_secret: secret_of(lease_id),
    };
    agents
        .report_epoch(request)
        .await
        .map(|r| r.into_inner().action())
}

async fn complete(
    agents: &mut AgentServiceClient<Channel>,
    lease_id: &str,
    outcome: pb::TrialOutcome,
    value: Option<f64>,
) -> Result<(), tonic::Status> {
    let request = pb::CompleteTrialRequest {
        lease_id: lease_id.into(),
        agent_secret: secret_of(lease_id),
        outcome: outcome as i32,
        value,
        epochs_run: 1,
        wall_seconds: 0.01,
        device_seconds: 0.01,
        cost_dollars: 0.001,
        ..Default::default()
    };
    agents.complete_trial(request).await.map(|_| ())
}

/// Waits (with a deadline) until the background suggester has created `n` trials: trials are
/// computed ahead of demand, not inside `CreateExperiment`.
async fn wait_created(experiments: &mut ExperimentServiceClient<Channel>, id: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let created = get(experiments, id).await.trials_created;
        if created >= n {
            assert_eq!(created, n, "parallelism caps the trials created ahead");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {created} of {n} trials created"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get(experiments: &mut ExperimentServiceClient<Channel>, id: &str) -> pb::Experiment {
    let request = pb::GetExperimentRequest {
        experiment_id: id.into(),
    };
    experiments
        .get_experiment(request)
        .await
        .expect("gets")
        .into_inner()
        .experiment
        .expect("has an experiment")
}

async fn trials(experiments: &mut ExperimentServiceClient<Channel>, id: &str) -> Vec<pb::Trial> {
    let request = pb::ListTrialsRequest {
        experiment_id: id.into(),
        include_epochs: true,
        ..Default::default()
    };
    experiments
        .list_trials(request)
        .await
        .expect("lists")
        .into_inner()
        .trials
}

#[tokio::test]
async fn fake_agent_runs_an_experiment_to_completion() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let experiment = create(&mut experiments, branin_spec(6, 2)).await;
    wait_created(&mut experiments, &experiment.id, 2).await;
    let agent_id = register(&mut agents).await;
    for _ in 0..6 {
        let lease = lease(&mut agents, &agent_id).await;
        let value = branin(&lease.params);
        assert_eq!(
            report(&mut agents, &lease.lease_id, epoch(1, value))
                .await
                .expect("reports"),
            pb::LeaseAction::Continue
        );
        complete(
            &mut agents,
            &lease.lease_id,
            pb::TrialOutcome::Succeeded,
            Some(value),
        )
        .await
        .expect("completes");
    }
    let done = get(&mut experiments, &experiment.id).await;
    assert_eq!(done.state(), pb::ExperimentState::Completed);
    assert_eq!(
        (
            done.trials_created,
            done.trials_succeeded,
            done.epochs_reported
        ),
        (6, 6, 6)
    );
    let all = trials(&mut experiments, &experiment.id).await;
    let best = all
        .iter()
        .filter_map(|t| t.value)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(done.best_value, Some(best));
    assert!(
        all.iter()
            .all(|t| t.epochs.len() == 1 && t.state() == pb::TrialState::Succeeded)
    );
    let response = agents
        .lease_trial(pb::LeaseTrialRequest {
            agent_secret: secret_of(&agent_id),
            agent_id,
            ..Default::default()
        })
        .await
        .expect("lease call")
        .into_inner();
    assert!(matches!(
        response.outcome,
        Some(pb::lease_trial_response::Outcome::RetryAfterSeconds(_))
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn expired_lease_is_requeued_and_stale_reports_refused() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let experiment = create(&mut experiments, branin_spec(1, 1)).await;
    let agent_id = register(&mut agents).await;
    let first = lease(&mut agents, &agent_id).await;
    // No heartbeat: the lease expires and the trial goes back to the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = trials(&mut experiments, &experiment.id).await;
        if all[0].state() == pb::TrialState::Pending {
            assert_eq!(all[0].attempts, 1);
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another agent takes the trial: the first lease is now stale for good.
    let other = register(&mut agents).await;
    let second = lease(&mut agents, &other).await;
    assert_eq!(
        (second.trial_id.as_str(), second.attempt),
        (first.trial_id.as_str(), 2)
    );
    let stale = report(&mut agents, &first.lease_id, epoch(1, 1.0))
        .await
        .expect_err("stale report refused");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let stale = complete(
        &mut agents,
        &first.lease_id,
        pb::TrialOutcome::Succeeded,
        Some(1.0),
    )
    .await
    .expect_err("refused");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let beat = agents
        .heartbeat(pb::HeartbeatRequest {
            agent_id: agent_id.clone(),
            agent_secret: secret_of(&agent_id),
            lease_ids: vec![first.lease_id.clone()],
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert_eq!(beat.leases[0].action(), pb::LeaseAction::Abandon);
    complete(
        &mut agents,
        &second.lease_id,
        pb::TrialOutcome::Succeeded,
        Some(3.0),
    )
    .await
    .expect("completes");
    let done = get(&mut experiments, &experiment.id).await;
    assert_eq!(
        (done.state(), done.best_value),
        (pb::ExperimentState::Completed, Some(3.0))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_keep_a_lease_and_attempts_run_out() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut spec = branin_spec(1, 1);
    spec.max_attempts = 1;
    let experiment = create(&mut experiments, spec).await;
    let agent_id = register(&mut agents).await;
    let held = lease(&mut agents, &agent_id).await;
    // Heartbeats past several lease timeouts keep it alive.
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        let request = pb::HeartbeatRequest {
            agent_id: agent_id.clone(),
            agent_secret: secret_of(&agent_id),
            lease_ids: vec![held.lease_id.clone()],
        };
        let beat = agents
            .heartbeat(request)
            .await
            .expect("heartbeat")
            .into_inner();
        assert_eq!(beat.leases[0].action(), pb::LeaseAction::Continue);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        trials(&mut experiments, &experiment.id).await[0].state(),
        pb::TrialState::Running
    );
    // Then it stops heartbeating: with one attempt allowed, the trial fails and the experiment ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&mut experiments, &experiment.id).await.state() != pb::ExperimentState::Completed {
        assert!(Instant::now() < deadline, "experiment never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = trials(&mut experiments, &experiment.id).await;
    assert_eq!(all[0].state(), pb::TrialState::Failed);
    assert!(
        all[0].failure_reason.contains("lease expired"),
        "{}",
        all[0].failure_reason
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut bad = branin_spec(1, 1);
    bad.parameters[0] = float_param("x1", 10.0, -5.0);
    let err = experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(bad) })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("x1"), "{}", err.message());
    let missing = experiments
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "exp-nope".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);

    let experiment = create(&mut experiments, branin_spec(1, 1)).await;
    let agent_id = register(&mut agents).await;
    let held = lease(&mut agents, &agent_id).await;
    let nan = report(&mut agents, &held.lease_id, epoch(1, f64::NAN))
        .await
        .expect_err("nan refused");
    assert_eq!(nan.code(), Code::InvalidArgument);
    let inf = complete(
        &mut agents,
        &held.lease_id,
        pb::TrialOutcome::Succeeded,
        Some(f64::INFINITY),
    )
    .await;
    assert_eq!(inf.expect_err("inf refused").code(), Code::InvalidArgument);
    assert_eq!(
        report(&mut agents, &held.lease_id, epoch(1, 2.0))
            .await
            .expect("reports"),
        pb::LeaseAction::Continue
    );
    // The same epoch again is ignored, not double counted.
    report(&mut agents, &held.lease_id, epoch(1, 5.0))
        .await
        .expect("repeat accepted");
    let all = trials(&mut experiments, &experiment.id).await;
    assert_eq!(all[0].epochs.len(), 1);
    assert_eq!(all[0].epochs[0].value, 2.0);
    assert_eq!(
        get(&mut experiments, &experiment.id).await.epochs_reported,
        1
    );
    let unknown = agents
        .lease_trial(pb::LeaseTrialRequest {
            agent_id: "agent-nope".into(),
            agent_secret: String::new(),
            wait_seconds: 0.0,
            experiment_id: String::new(),
        })
        .await;
    assert_eq!(
        unknown.expect_err("unregistered agent").code(),
        Code::NotFound
    );
    server.shutdown().await;
}

#[tokio::test]
async fn interrupted_trials_keep_their_attempts_and_stop_cancels() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let experiment = create(&mut experiments, branin_spec(4, 2)).await;
    let agent_id = register(&mut agents).await;
    let first = lease(&mut agents, &agent_id).await;
    complete(
        &mut agents,
        &first.lease_id,
        pb::TrialOutcome::Interrupted,
        None,
    )
    .await
    .expect("interrupted");
    let again = lease(&mut agents, &agent_id).await;
    // Attempts never decrease (each numbers its own epoch reports); the interrupted one does
    // not count towards max_attempts.
    assert_eq!(
        (again.trial_id.as_str(), again.attempt),
        (first.trial_id.as_str(), 2)
    );

    let request = pb::StopExperimentRequest {
        experiment_id: experiment.id.clone(),
    };
    let stopped = experiments
        .stop_experiment(request)
        .await
        .expect("stops")
        .into_inner()
        .experiment
        .expect("experiment");
    assert_eq!(stopped.state(), pb::ExperimentState::Stopped);
    assert_eq!(
        report(&mut agents, &again.lease_id, epoch(1, 4.0))
            .await
            .expect("reports"),
        pb::LeaseAction::Stop
    );
    complete(
        &mut agents,
        &again.lease_id,
        pb::TrialOutcome::Stopped,
        None,
    )
    .await
    .expect("stopped");
    let all = trials(&mut experiments, &experiment.id).await;
    assert!(
        all.iter().all(|t| t.state() == pb::TrialState::Cancelled),
        "{all:?}"
    );
    assert_eq!(
        all[0].value,
        Some(4.0),
        "a stopped trial keeps its last value"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn restart_resumes_leases_from_the_store() {
    let store = MemoryStore::new();
    let server = Server::start(
        store.clone(),
        Settings {
            lease_timeout: Duration::from_secs(30),
            ..fast_settings()
        },
        None,
    )
    .await;
    let (mut experiments, mut agents) = server.clients().await;
    let experiment = create(&mut experiments, branin_spec(2, 1)).await;
    let agent_id = register(&mut agents).await;
    let held = lease(&mut agents, &agent_id).await;
    report(&mut agents, &held.lease_id, epoch(1, 7.0))
        .await
        .expect("reports");
    server.shutdown().await;

    let server = Server::start(
        store,
        Settings {
            lease_timeout: Duration::from_secs(30),
            ..fast_settings()
        },
        None,
    )
    .await;
    let (mut experiments, mut agents) = server.clients().await;
    report(&mut agents, &held.lease_id, epoch(2, 6.0))
        .await
        .expect("the lease survived the restart");
    complete(
        &mut agents,
        &held.lease_id,
        pb::TrialOutcome::Succeeded,
        Some(6.0),
    )
    .await
    .expect("completes");
    let next = lease(&mut agents, &agent_id).await;
    complete(
        &mut agents,
        &next.lease_id,
        pb::TrialOutcome::Succeeded,
        Some(8.0),
    )
    .await
    .expect("completes");
    let done = get(&mut experiments, &experiment.id).await;
    assert_eq!(
        (done.state(), done.trials_succeeded, done.epochs_reported),
        (pb::ExperimentState::Completed, 2, 2)
    );
    assert_eq!(done.best_value, Some(6.0));
    server.shutdown().await;
}

#[tokio::test]
async fn grid_completes_when_exhausted() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut spec = branin_spec(50, 4);
    spec.strategy = pb::Strategy::Grid as i32;
    spec.parameters = vec![pb::ParameterSpec {
        name: "opt".into(),
        kind: Some(pb::parameter_spec::Kind::Categorical(
            pb::CategoricalParam {
                choices: vec!["a".into(), "b".into()],
                default_value: None,
            },
        )),
    }];
    let experiment = create(&mut experiments, spec).await;
    wait_created(&mut experiments, &experiment.id, 2).await;
    let agent_id = register(&mut agents).await;
    for value in [1.0, 2.0] {
        let held = lease(&mut agents, &agent_id).await;
        complete(
            &mut agents,
            &held.lease_id,
            pb::TrialOutcome::Succeeded,
            Some(value),
        )
        .await
        .expect("completes");
    }
    let done = get(&mut experiments, &experiment.id).await;
    assert_eq!(
        (done.state(), done.trials_created),
        (pb::ExperimentState::Completed, 2)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_required_except_for_health() {
    let server = Server::start(MemoryStore::new(), fast_settings(), Some("s3cret")).await;
    let channel = server.channel().await;
    let mut anonymous = ExperimentServiceClient::new(channel.clone());
    let err = anonymous
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated);
    let token: tonic::metadata::MetadataValue<_> = "Bearer s3cret".parse().expect("ascii");
    let mut authed = ExperimentServiceClient::with_interceptor(
        channel.clone(),
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
            Ok(request)
        },
    );
    authed
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect("accepted with the token");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest {
        service: "tunefleet.v1.AgentService".into(),
    };
    let status = health
        .check(request)
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_median_rule_stops_a_lagging_trial_through_reports_and_heartbeats() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    let median = pb::EarlyStopping {
        rule: Some(pb::early_stopping::Rule::Median(pb::MedianStopping {
            min_epochs: 1,
            min_trials: 2,
        })),
    };
    let mut spec = branin_spec(3, 3);
    spec.early_stopping = Some(median);
    let experiment = create(&mut experiments, spec).await;
    assert_eq!(
        experiment.spec.as_ref().and_then(|s| s.early_stopping),
        Some(median),
        "the rule is stored as given"
    );
    let agent_id = register(&mut agents).await;
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(lease(&mut agents, &agent_id).await);
    }
    // Minimizing: 3.0 is worse than the median (1.5) of the two others at epoch 1.
    let mut actions = Vec::new();
    for (held, value) in leases.iter().zip([1.0, 2.0, 3.0]) {
        actions.push(
            report(&mut agents, &held.lease_id, epoch(1, value))
                .await
                .expect("reports"),
        );
    }
    use pb::LeaseAction::{Continue, Stop};
    assert_eq!(
        actions,
        [Continue, Continue, Stop],
        "no decision below min_trials, then the lagging trial stops at the epoch it reported"
    );
    let heartbeat = agents
        .heartbeat(pb::HeartbeatRequest {
            agent_id: agent_id.clone(),
            agent_secret: secret_of(&agent_id),
            lease_ids: leases.iter().map(|l| l.lease_id.clone()).collect(),
        })
        .await
        .expect("heartbeat")
        .into_inner();
    let beat: Vec<_> = heartbeat.leases.iter().map(|s| s.action()).collect();
    assert_eq!(beat, [Continue, Continue, Stop], "heartbeats agree");
    complete(
        &mut agents,
        &leases[2].lease_id,
        pb::TrialOutcome::Stopped,
        None,
    )
    .await
    .expect("completes");
    let stopped = trials(&mut experiments, &experiment.id)
        .await
        .into_iter()
        .find(|t| t.id == leases[2].trial_id)
        .expect("listed");
    assert_eq!(stopped.state(), pb::TrialState::EarlyStopped);
    assert_eq!(stopped.value, Some(3.0), "it keeps the value it reached");
    assert_eq!(
        get(&mut experiments, &experiment.id).await.state(),
        pb::ExperimentState::Running,
        "an early stop is not an experiment stop"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_rule_nothing_stops_and_bad_rules_are_refused() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, mut agents) = server.clients().await;
    create(&mut experiments, branin_spec(3, 3)).await;
    let agent_id = register(&mut agents).await;
    for value in [1.0, 2.0, 3.0] {
        let held = lease(&mut agents, &agent_id).await;
        let action = report(&mut agents, &held.lease_id, epoch(1, value))
            .await
            .expect("reports");
        assert_eq!(action, pb::LeaseAction::Continue);
    }
    let mut bad = branin_spec(3, 3);
    bad.early_stopping = Some(pb::EarlyStopping {
        rule: Some(pb::early_stopping::Rule::Asha(pb::SuccessiveHalving {
            min_epochs: 1,
            eta: 1,
        })),
    });
    let err = experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(bad) })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("eta"), "{}", err.message());
    server.shutdown().await;
}

#[tokio::test]
async fn lists_come_in_pages_that_add_up_to_the_whole_list() {
    let server = Server::start(MemoryStore::new(), fast_settings(), None).await;
    let (mut experiments, _) = server.clients().await;
    let experiment = create(&mut experiments, branin_spec(25, 25)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&mut experiments, &experiment.id).await.trials_created < 25 {
        assert!(
            Instant::now() < deadline,
            "25 trials were not created in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let whole = trials(&mut experiments, &experiment.id).await;
    assert_eq!(whole.len(), 25, "the default page holds them all");
    let mut paged = Vec::new();
    let mut tokens = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = experiments
            .list_trials(pb::ListTrialsRequest {
                experiment_id: experiment.id.clone(),
                include_epochs: true,
                page_size: 10,
                page_token,
            })
            .await
            .expect("a page")
            .into_inner();
        assert!(page.trials.len() <= 10);
        paged.extend(page.trials);
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        page_token = page.next_page_token;
    }
    assert_eq!(tokens, ["10", "20"]);
    assert_eq!(paged, whole);

    for name in ["second", "third"] {
        let mut spec = branin_spec(1, 1);
        spec.name = name.into();
        create(&mut experiments, spec).await;
    }
    let first = experiments
        .list_experiments(pb::ListExperimentsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("a page")
        .into_inner();
    let rest = experiments
        .list_experiments(pb::ListExperimentsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("the last page")
        .into_inner();
    let names: Vec<_> = first
        .experiments
        .iter()
        .chain(&rest.experiments)
        .filter_map(|e| e.spec.as_ref().map(|s| s.name.clone()))
        .collect();
    assert_eq!(names, ["branin", "second", "third"]);
    assert_eq!(
        (
            first.next_page_token.as_str(),
            rest.next_page_token.as_str()
        ),
        ("2", "")
    );
    let bad = experiments
        .list_experiments(pb::ListExperimentsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a token the server never gave");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"), "{}", bad.message());
    server.shutdown().await;
}
