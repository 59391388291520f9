//! Warm start over real gRPC: `AddTrials` adds results obtained elsewhere, which the strategy
//! sees like its own and which do not count towards the budget; `EnqueueTrials` queues
//! configurations that run first, in order, within the parallelism and the budget. Both refuse
//! a bad request whole, naming what was wrong.

#[path = "common/server.rs"]
mod server;

use std::sync::{Arc, Mutex};

use coordinator::service::{Settings, Suggester};
use coordinator::store::MemoryStore;
use coordinator::suggest::{SuggestInput, suggest};
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::{Server, create, get};
use tonic::transport::Channel;

/// What each suggestion round saw: (results, pending points).
type Seen = Arc<Mutex<Vec<(Vec<f64>, Vec<f64>)>>>;

/// The real suggester, recording the `x` of every observation and pending point it is given.
fn spy(seen: Seen) -> Suggester {
    Arc::new(move |input: &SuggestInput, metrics| {
        let x = |a: &tuner::space::Assignment| a.get("x").and_then(|v| v.as_f64()).unwrap_or(-1.0);
        seen.lock().expect("seen lock").push((
            input.observations.iter().map(|o| x(&o.params)).collect(),
            input.pending.iter().map(x).collect(),
        ));
        suggest(input, metrics)
    })
}

fn spec(strategy: pb::Strategy, budget: u32, parallelism: u32) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: "warm".into(),
        metric: "value".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: strategy as i32,
        budget_trials: budget,
        parallelism,
        initial_trials: 2,
        parameters: vec![
            pb::ParameterSpec {
                name: "x".into(),
                kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
                    step: None,
                    low: 0.0,
                    high: 1.0,
                    log: false,
                    default_value: None,
                })),
            },
            pb::ParameterSpec {
                name: "n".into(),
                kind: Some(pb::parameter_spec::Kind::Int(pb::IntParam {
                    step: None,
                    low: 1,
                    high: 4,
                    log: false,
                    default_value: None,
                })),
            },
        ],
        seed: 11,
        workload: Some(pb::Workload {
            kind: "function".into(),
            dataset: "branin".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn params(x: f64, n: i64) -> std::collections::HashMap<String, pb::ParameterValue> {
    use pb::parameter_value::Kind;
    [
        ("x".to_string(), Kind::FloatValue(x)),
        ("n".to_string(), Kind::IntValue(n)),
    ]
    .into_iter()
    .map(|(k, v)| (k, pb::ParameterValue { kind: Some(v) }))
    .collect()
}

fn imported(x: f64, value: Option<f64>) -> pb::ImportedTrial {
    pb::ImportedTrial {
        params: params(x, 2),
        value,
        epochs: value
            .map(|v| {
                vec![
                    pb::EpochReport {
                        epoch: 1,
                        value: v + 1.0,
                        ..Default::default()
                    },
                    pb::EpochReport {
                        epoch: 2,
                        value: v,
                        ..Default::default()
                    },
                ]
            })
            .unwrap_or_default(),
        metrics: Default::default(),
    }
}

async fn start() -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let server = Server::start_with_suggester(
        MemoryStore::new(),
        Settings::default(),
        None,
        spy(Arc::clone(&seen)),
    )
    .await;
    (server, seen)
}

/// A registered test agent: its id and secret.
struct TestAgent {
    id: String,
    secret: String,
}

async fn register(agents: &mut AgentServiceClient<Channel>) -> TestAgent {
    let registration = agents
        .register_agent(pb::RegisterAgentRequest {
            capabilities: Some(pb::AgentCapabilities {
                slots: 1,
                workloads: vec!["function".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("registers")
        .into_inner();
    TestAgent {
        id: registration.agent_id,
        secret: registration.agent_secret,
    }
}

/// Leases the experiment's next trial (waiting up to a second); its lease id and `x`.
async fn lease_next(
    agents: &mut AgentServiceClient<Channel>,
    agent: &TestAgent,
    id: &str,
) -> Option<(String, f64)> {
    let outcome = agents
        .lease_trial(pb::LeaseTrialRequest {
            agent_id: agent.id.clone(),
            agent_secret: agent.secret.clone(),
            wait_seconds: 1.0,
            experiment_id: id.into(),
        })
        .await
        .expect("lease call")
        .into_inner()
        .outcome;
    let Some(pb::lease_trial_response::Outcome::Lease(lease)) = outcome else {
        return None;
    };
    let x = match lease.params["x"].kind {
        Some(pb::parameter_value::Kind::FloatValue(x)) => x,
        ref other => panic!("x is {other:?}"),
    };
    Some((lease.lease_id, x))
}

/// Leases trials of the experiment until the configuration whose `x` is `expected`, completing
/// the `skippable` trials before it (a trial suggested before the configurations were queued);
/// its lease id.
async fn lease_expecting(
    agents: &mut AgentServiceClient<Channel>,
    agent: &TestAgent,
    id: &str,
    expected: f64,
    mut skippable: usize,
) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < until, "no lease of {expected}");
        let Some((lease_id, x)) = lease_next(agents, agent, id).await else {
            continue;
        };
        if x == expected {
            return lease_id;
        }
        assert!(skippable > 0, "{x} ran where queued {expected} should have");
        skippable -= 1;
        complete(agents, agent, lease_id, x).await;
    }
}

/// Completes a leased trial with value `x`.
async fn complete(
    agents: &mut AgentServiceClient<Channel>,
    agent: &TestAgent,
    lease_id: String,
    x: f64,
) {
    agents
        .complete_trial(pb::CompleteTrialRequest {
            lease_id,
            agent_secret: agent.secret.clone(),
            outcome: pb::TrialOutcome::Succeeded as i32,
            value: Some(x),
            epochs_run: 1,
            best_epoch: 1,
            ..Default::default()
        })
        .await
        .expect("completes");
}

/// Leases every trial of the experiment in turn and completes it with value `x`, until the
/// experiment ends; returns the `x` of each trial in lease order.
async fn run_all(
    agents: &mut AgentServiceClient<Channel>,
    experiments: &mut ExperimentServiceClient<Channel>,
    id: &str,
) -> Vec<f64> {
    let agent = register(agents).await;
    let mut order = Vec::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(experiments, id).await.state() == pb::ExperimentState::Running {
        assert!(
            std::time::Instant::now() < until,
            "the experiment never ended"
        );
        if let Some((lease_id, x)) = lease_next(agents, &agent, id).await {
            order.push(x);
            complete(agents, &agent, lease_id, x).await;
        }
    }
    order
}

#[tokio::test]
async fn imported_results_reach_bo_and_take_no_part_of_the_budget() {
    let (server, seen) = start().await;
    let mut experiments = server.experiments().await;
    let mut agents = server.agents().await;
    let id = create(&mut experiments, spec(pb::Strategy::Bo, 3, 1)).await;
    let answer = experiments
        .add_trials(pb::AddTrialsRequest {
            experiment_id: id.clone(),
            trials: vec![
                imported(0.1, Some(0.1)),
                imported(0.2, Some(0.2)),
                imported(0.3, Some(0.3)),
                imported(0.9, None),
            ],
        })
        .await
        .expect("adds")
        .into_inner();
    assert_eq!(answer.trial_ids.len(), 4);
    let experiment = answer.experiment.expect("has the experiment");
    assert_eq!(experiment.trials_imported, 4);
    assert_eq!(experiment.best_value, Some(0.1));

    let trials = experiments
        .list_trials(pb::ListTrialsRequest {
            experiment_id: id.clone(),
            include_epochs: true,
            ..Default::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .trials;
    let first = trials
        .iter()
        .find(|t| t.id == answer.trial_ids[0])
        .expect("the first imported trial is listed");
    assert!(first.imported);
    assert_eq!(first.state(), pb::TrialState::Succeeded);
    assert_eq!((first.epochs.len(), first.best_epoch), (2, 2));
    let failed = trials
        .iter()
        .find(|t| t.id == answer.trial_ids[3])
        .expect("listed");
    assert_eq!(failed.state(), pb::TrialState::Failed);

    let ran = run_all(&mut agents, &mut experiments, &id).await;
    assert_eq!(
        ran.len(),
        3,
        "the budget counts only the trials it ran: {ran:?}"
    );
    let experiment = get(&mut experiments, &id).await;
    assert_eq!(experiment.state(), pb::ExperimentState::Completed);
    assert_eq!(
        (experiment.trials_created, experiment.trials_imported),
        (7, 4)
    );
    let rounds = seen.lock().expect("seen").clone();
    let last = rounds.last().expect("BO suggested");
    for x in [0.1, 0.2, 0.3] {
        assert!(
            last.0.contains(&x),
            "the imported result {x} is among BO's observations: {last:?}"
        );
    }
    assert!(!last.0.contains(&0.9), "a failed import is not a result");
    server.shutdown().await;
}

#[tokio::test]
async fn queued_configurations_run_first_in_order_and_count_as_pending() {
    let (server, seen) = start().await;
    let mut experiments = server.experiments().await;
    let mut agents = server.agents().await;
    let id = create(&mut experiments, spec(pb::Strategy::Random, 4, 1)).await;
    let configurations = [0.625, 0.375, 0.125]
        .into_iter()
        .map(|x| pb::Configuration {
            params: params(x, 3),
        })
        .collect();
    let experiment = experiments
        .enqueue_trials(pb::EnqueueTrialsRequest {
            experiment_id: id.clone(),
            configurations,
        })
        .await
        .expect("enqueues")
        .into_inner()
        .experiment
        .expect("has the experiment");
    // The answer is taken before any queued configuration becomes a trial.
    assert_eq!(experiment.trials_queued, 3);

    // A fourth and fifth configuration do not fit the budget of 4 with 3 queued and one trial.
    let refused = experiments
        .enqueue_trials(pb::EnqueueTrialsRequest {
            experiment_id: id.clone(),
            configurations: vec![
                pb::Configuration {
                    params: params(0.5, 1),
                },
                pb::Configuration {
                    params: params(0.5, 2),
                },
            ],
        })
        .await
        .expect_err("over the budget");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("budget_trials is 4"),
        "{}",
        refused.message()
    );

    let ran = run_all(&mut agents, &mut experiments, &id).await;
    assert_eq!(ran.len(), 4, "{ran:?}");
    let queued_order: Vec<f64> = ran
        .iter()
        .copied()
        .filter(|x| [0.625, 0.375, 0.125].contains(x))
        .collect();
    assert_eq!(
        queued_order,
        vec![0.625, 0.375, 0.125],
        "in the order queued: {ran:?}"
    );
    assert_eq!(get(&mut experiments, &id).await.trials_queued, 0);
    // Random search over a float space keeps no history, so check the pending set of BO instead:
    // the round that follows the first queued result must see the second queued configuration,
    // leased and not yet completed, as pending.
    drop(seen);
    let (server_bo, seen_bo) = start().await;
    let mut experiments_bo = server_bo.experiments().await;
    let bo = create(&mut experiments_bo, spec(pb::Strategy::Bo, 6, 1)).await;
    experiments_bo
        .enqueue_trials(pb::EnqueueTrialsRequest {
            experiment_id: bo.clone(),
            configurations: vec![
                pb::Configuration {
                    params: params(0.5, 1),
                },
                pb::Configuration {
                    params: params(0.75, 1),
                },
            ],
        })
        .await
        .expect("enqueues");
    let mut agents_bo = server_bo.agents().await;
    let agent = register(&mut agents_bo).await;
    // With parallelism 1, the creation's first suggestion may become a trial before the queue
    // arrives; the queued configurations run next, in order.
    let first = lease_expecting(&mut agents_bo, &agent, &bo, 0.5, 1).await;
    complete(&mut agents_bo, &agent, first, 0.5).await;
    let second = lease_expecting(&mut agents_bo, &agent, &bo, 0.75, 0).await;
    // A new result makes BO recompute its buffer: wait for the round that saw 0.5.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after_first = loop {
        let rounds = seen_bo.lock().expect("seen").clone();
        if let Some(round) = rounds.iter().find(|(observed, _)| observed.contains(&0.5)) {
            break round.clone();
        }
        assert!(
            std::time::Instant::now() < until,
            "no suggestion round saw the first result: {rounds:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(
        !after_first.0.contains(&0.75) && after_first.1.contains(&0.75),
        "the leased queued configuration is pending, not a result: {after_first:?}"
    );
    complete(&mut agents_bo, &agent, second, 0.75).await;
    run_all(&mut agents_bo, &mut experiments_bo, &bo).await;
    assert_eq!(
        get(&mut experiments_bo, &bo).await.state(),
        pb::ExperimentState::Completed
    );
    server.shutdown().await;
    server_bo.shutdown().await;
}

#[tokio::test]
async fn a_bad_import_or_queue_is_refused_whole_naming_the_trial() {
    let (server, _seen) = start().await;
    let mut experiments = server.experiments().await;
    let id = create(&mut experiments, spec(pb::Strategy::Bo, 10, 1)).await;
    let mut out_of_range = imported(0.5, Some(1.0));
    out_of_range.params = params(1.5, 2);
    let cases: Vec<(Vec<pb::ImportedTrial>, &str)> = vec![
        (
            vec![imported(0.1, Some(1.0)), out_of_range],
            "trial 1: parameter 'x'",
        ),
        (
            vec![imported(0.1, Some(f64::NAN))],
            "trial 0: value must be a finite number",
        ),
        (
            vec![pb::ImportedTrial {
                params: params(0.1, 9),
                value: Some(1.0),
                ..Default::default()
            }],
            "trial 0: parameter 'n'",
        ),
        (
            vec![pb::ImportedTrial {
                params: [("x".to_string(), params(0.1, 1)["x"].clone())].into(),
                value: Some(1.0),
                ..Default::default()
            }],
            "missing parameter 'n'",
        ),
        (
            vec![pb::ImportedTrial {
                epochs: vec![
                    pb::EpochReport {
                        epoch: 2,
                        value: 1.0,
                        ..Default::default()
                    },
                    pb::EpochReport {
                        epoch: 1,
                        value: 1.0,
                        ..Default::default()
                    },
                ],
                ..imported(0.1, Some(1.0))
            }],
            "epochs must be numbered from 1 and increase",
        ),
    ];
    for (trials, expected) in cases {
        let error = experiments
            .add_trials(pb::AddTrialsRequest {
                experiment_id: id.clone(),
                trials,
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        assert!(
            error.message().contains(expected),
            "{expected}: {}",
            error.message()
        );
    }
    assert_eq!(
        get(&mut experiments, &id).await.trials_imported,
        0,
        "nothing was added"
    );

    let unknown = experiments
        .add_trials(pb::AddTrialsRequest {
            experiment_id: "exp-none".into(),
            trials: vec![imported(0.1, Some(1.0))],
        })
        .await
        .expect_err("unknown experiment");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let bad_queue = experiments
        .enqueue_trials(pb::EnqueueTrialsRequest {
            experiment_id: id.clone(),
            configurations: vec![
                pb::Configuration {
                    params: params(0.5, 1),
                },
                pb::Configuration {
                    params: params(0.5, 0),
                },
            ],
        })
        .await
        .expect_err("refused");
    assert!(
        bad_queue.message().contains("configuration 1"),
        "{}",
        bad_queue.message()
    );
    assert_eq!(get(&mut experiments, &id).await.trials_queued, 0);

    experiments
        .stop_experiment(pb::StopExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect("stops");
    let ended = experiments
        .enqueue_trials(pb::EnqueueTrialsRequest {
            experiment_id: id.clone(),
            configurations: vec![pb::Configuration {
                params: params(0.5, 1),
            }],
        })
        .await
        .expect_err("an ended experiment takes no queue");
    assert_eq!(ended.code(), tonic::Code::FailedPrecondition);
    // Results can still be added to an ended experiment, for the record.
    experiments
        .add_trials(pb::AddTrialsRequest {
            experiment_id: id,
            trials: vec![imported(0.4, Some(0.4))],
        })
        .await
        .expect("adds to an ended experiment");
    server.shutdown().await;
}
