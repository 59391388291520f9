//! Suggestion work is bounded and isolated, over real gRPC: an experiment whose suggestions keep
//! failing, or whose round runs past its time budget, is marked failed with the reason (its
//! pending trials cancelled, its leased ones told to stop), while other experiments keep
//! running and another client is answered within 100 ms. An experiment whose budget is spent
//! completes at its last result even while a round is still computing.

#[path = "common/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::service::{Settings, Suggester};
use coordinator::store::MemoryStore;
use coordinator::suggest::{SuggestInput, suggest};
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::{Server, create, get};
use tonic::transport::Channel;

/// How the test suggester treats an experiment, by its name.
#[derive(Clone, Copy)]
enum Behaviour {
    /// The real suggester.
    Healthy,
    /// Every round fails.
    Broken,
    /// The first round works, every later one fails.
    BreaksLater,
    /// Every round takes this long.
    Slow(Duration),
    /// The real suggester, each round's outcome recorded in [`heavy_rounds`].
    Recorded,
    /// The first round works, every later one waits for [`release_held`] first.
    HeldAfterFirst,
}

/// Whether held rounds may go on, and the condition they wait on.
fn held_gate() -> &'static (Mutex<bool>, std::sync::Condvar) {
    static GATE: std::sync::OnceLock<(Mutex<bool>, std::sync::Condvar)> =
        std::sync::OnceLock::new();
    GATE.get_or_init(|| (Mutex::new(false), std::sync::Condvar::new()))
}

/// Blocks a held round until [`release_held`], or 30 s so a failing test does not hang.
fn wait_held() {
    let (released, wake) = held_gate();
    let guard = released.lock().expect("gate lock");
    let _ = wake
        .wait_timeout_while(guard, Duration::from_secs(30), |released| !*released)
        .expect("gate wait");
}

/// Held rounds that have ended.
static HELD_ENDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Lets every held round go on.
fn release_held() {
    let (released, wake) = held_gate();
    *released.lock().expect("gate lock") = true;
    wake.notify_all();
}

/// The outcome of each round of the experiment named `heavy`: the points, or the error.
fn heavy_rounds() -> &'static Mutex<Vec<Result<usize, String>>> {
    static ROUNDS: std::sync::OnceLock<Mutex<Vec<Result<usize, String>>>> =
        std::sync::OnceLock::new();
    ROUNDS.get_or_init(|| Mutex::new(Vec::new()))
}

fn behaviour(name: &str) -> Behaviour {
    match name {
        "broken" => Behaviour::Broken,
        "breaks-later" => Behaviour::BreaksLater,
        "slow" => Behaviour::Slow(Duration::from_secs(3)),
        "heavy" => Behaviour::Recorded,
        "held" => Behaviour::HeldAfterFirst,
        _ => Behaviour::Healthy,
    }
}

/// A suggester that misbehaves for some experiment names, counting the rounds of each.
fn suggester(rounds: Arc<Mutex<HashMap<String, u32>>>) -> Suggester {
    Arc::new(move |input: &SuggestInput, metrics| {
        let round = {
            let mut rounds = rounds.lock().expect("rounds lock");
            let count = rounds.entry(input.spec.name.clone()).or_default();
            *count += 1;
            *count
        };
        match behaviour(&input.spec.name) {
            Behaviour::Healthy => suggest(input, metrics),
            Behaviour::BreaksLater if round == 1 => suggest(input, metrics),
            Behaviour::Broken | Behaviour::BreaksLater => Err(coordinator::Error::Internal(
                format!("the GP could not be fitted (round {round})"),
            )),
            Behaviour::Slow(delay) => {
                std::thread::sleep(delay);
                suggest(input, metrics)
            }
            Behaviour::HeldAfterFirst => {
                if round == 1 {
                    return suggest(input, metrics);
                }
                wait_held();
                let result = suggest(input, metrics);
                HELD_ENDED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                result
            }
            Behaviour::Recorded => {
                let result = suggest(input, metrics);
                let outcome = result.as_ref().map(Vec::len).map_err(ToString::to_string);
                heavy_rounds().lock().expect("heavy rounds").push(outcome);
                result
            }
        }
    })
}

fn spec(name: &str, budget: u32, parallelism: u32) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: name.into(),
        metric: "value".into(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism,
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
            dataset: "branin".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start(settings: Settings) -> (Server, Arc<Mutex<HashMap<String, u32>>>) {
    let rounds = Arc::new(Mutex::new(HashMap::new()));
    let server = Server::start_with_suggester(
        MemoryStore::new(),
        settings,
        None,
        suggester(Arc::clone(&rounds)),
    )
    .await;
    (server, rounds)
}

/// Polls until the experiment leaves `Running` (within `deadline`), checking on every poll that
/// another client on its own channel is answered within 100 ms.
async fn wait_ended(
    experiments: &mut ExperimentServiceClient<Channel>,
    other: &mut ExperimentServiceClient<Channel>,
    id: &str,
    deadline: Duration,
) -> pb::Experiment {
    let until = Instant::now() + deadline;
    loop {
        let probe = tokio::time::timeout(
            Duration::from_millis(100),
            other.list_experiments(pb::ListExperimentsRequest::default()),
        )
        .await;
        assert!(
            matches!(probe, Ok(Ok(_))),
            "another client waited: {probe:?}"
        );
        let experiment = get(experiments, id).await;
        if experiment.state() != pb::ExperimentState::Running {
            return experiment;
        }
        assert!(Instant::now() < until, "still running after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers an agent of the `function` workload.
async fn register(agents: &mut AgentServiceClient<Channel>) -> pb::RegisterAgentResponse {
    agents
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
        .into_inner()
}

/// Long-polls until the agent gets a lease.
async fn lease_one(
    agents: &mut AgentServiceClient<Channel>,
    registration: &pb::RegisterAgentResponse,
) -> pb::Lease {
    loop {
        let outcome = agents
            .lease_trial(pb::LeaseTrialRequest {
                agent_id: registration.agent_id.clone(),
                agent_secret: registration.agent_secret.clone(),
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
    }
}

/// Completes `lease` as a success of value 0.5 after one epoch.
async fn succeed(
    agents: &mut AgentServiceClient<Channel>,
    registration: &pb::RegisterAgentResponse,
    lease: pb::Lease,
) {
    agents
        .complete_trial(pb::CompleteTrialRequest {
            lease_id: lease.lease_id,
            agent_secret: registration.agent_secret.clone(),
            outcome: pb::TrialOutcome::Succeeded as i32,
            value: Some(0.5),
            epochs_run: 1,
            best_epoch: 1,
            ..Default::default()
        })
        .await
        .expect("completes");
}

/// An agent that runs the healthy experiment to the end: every trial reports `x` and completes.
async fn run_to_completion(agents: &mut AgentServiceClient<Channel>, budget: u32) {
    let registration = register(agents).await;
    let until = Instant::now() + Duration::from_secs(20);
    let mut done = 0;
    while done < budget {
        assert!(Instant::now() < until, "only {done} of {budget} trials ran");
        let outcome = agents
            .lease_trial(pb::LeaseTrialRequest {
                agent_id: registration.agent_id.clone(),
                agent_secret: registration.agent_secret.clone(),
                wait_seconds: 1.0,
                experiment_id: String::new(),
            })
            .await
            .expect("lease call")
            .into_inner()
            .outcome;
        let Some(pb::lease_trial_response::Outcome::Lease(lease)) = outcome else {
            continue;
        };
        succeed(agents, &registration, lease).await;
        done += 1;
    }
}

#[tokio::test]
async fn an_experiment_whose_suggestions_keep_failing_is_failed_and_the_others_run_on() {
    let (server, rounds) = start(Settings::default()).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    let broken = create(&mut experiments, spec("broken", 4, 2)).await;
    let healthy = create(&mut experiments, spec("healthy", 3, 1)).await;
    run_to_completion(&mut agents, 3).await;

    let failed = wait_ended(
        &mut experiments,
        &mut other,
        &broken,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(failed.state(), pb::ExperimentState::Failed);
    for words in ["failed 3 times in a row", "the GP could not be fitted"] {
        assert!(
            failed.failure_reason.contains(words),
            "'{}' lacks '{words}'",
            failed.failure_reason
        );
    }
    assert_eq!(failed.trials_created, 0);
    assert_eq!(
        get(&mut experiments, &healthy).await.state(),
        pb::ExperimentState::Completed
    );
    // Failed for good: no more rounds are tried.
    let tried = rounds.lock().expect("rounds")["broken"];
    assert_eq!(tried, 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rounds.lock().expect("rounds")["broken"], tried);
    server.shutdown().await;
}

#[tokio::test]
async fn a_round_past_its_time_budget_fails_the_experiment_without_freezing_anyone() {
    let settings = Settings {
        suggest_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let (server, _) = start(settings).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    let slow = create(&mut experiments, spec("slow", 4, 2)).await;
    let healthy = create(&mut experiments, spec("healthy", 2, 1)).await;

    let failed = wait_ended(&mut experiments, &mut other, &slow, Duration::from_secs(5)).await;
    assert_eq!(failed.state(), pb::ExperimentState::Failed);
    assert!(
        failed.failure_reason.contains("time budget of 0.3 s"),
        "{}",
        failed.failure_reason
    );
    run_to_completion(&mut agents, 2).await;
    assert_eq!(
        get(&mut experiments, &healthy).await.state(),
        pb::ExperimentState::Completed
    );
    server.shutdown().await;
}

/// A real BO round past its budget stops computing: the tuner gets the deadline, so the round
/// ends with the deadline's error soon after the coordinator gave up on it, instead of fitting
/// 800 results on (which holds a suggestion thread for many seconds).
#[tokio::test]
async fn a_real_round_past_its_time_budget_stops_at_its_deadline() {
    let settings = Settings {
        suggest_timeout: Duration::from_millis(200),
        ..Settings::default()
    };
    let (server, _) = start(settings).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    let heavy_spec = pb::ExperimentSpec {
        strategy: pb::Strategy::Bo as i32,
        initial_trials: 2,
        ..spec("heavy", 50, 1)
    };
    let heavy = create(&mut experiments, heavy_spec).await;
    let results = (0..800)
        .map(|i| {
            let x = (f64::from(i) * 0.618_034) % 1.0;
            pb::ImportedTrial {
                params: HashMap::from([(
                    "x".to_string(),
                    pb::ParameterValue {
                        kind: Some(pb::parameter_value::Kind::FloatValue(x)),
                    },
                )]),
                value: Some((x - 0.3).powi(2) + 0.01 * ((f64::from(i) * 12.9898).sin())),
                ..Default::default()
            }
        })
        .collect();
    experiments
        .add_trials(pb::AddTrialsRequest {
            experiment_id: heavy.clone(),
            trials: results,
        })
        .await
        .expect("imports");
    // A result frees the slot, and the next round fits the GP to 801 results.
    let registration = register(&mut agents).await;
    let lease = lease_one(&mut agents, &registration).await;
    succeed(&mut agents, &registration, lease).await;
    let failed = wait_ended(
        &mut experiments,
        &mut other,
        &heavy,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(failed.state(), pb::ExperimentState::Failed, "{failed:?}");
    assert!(
        failed.failure_reason.contains("time budget of 0.2 s"),
        "{}",
        failed.failure_reason
    );
    let until = Instant::now() + Duration::from_secs(20);
    let last = loop {
        let rounds = heavy_rounds().lock().expect("heavy rounds").clone();
        if let Some(last @ Err(_)) = rounds.last() {
            break last.clone();
        }
        assert!(
            Instant::now() < until,
            "the round past its budget computed on: rounds so far {rounds:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = last.expect_err("stopped");
    assert!(error.contains("deadline"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn failing_later_cancels_pending_trials_and_stops_leased_ones() {
    let (server, _) = start(Settings::default()).await;
    let (mut experiments, mut agents) = server.clients().await;
    let mut other = server.experiments().await;
    let id = create(&mut experiments, spec("breaks-later", 20, 2)).await;
    let registration = register(&mut agents).await;
    // A result frees a slot; topping up then asks for more points, and those rounds fail.
    let first = lease_one(&mut agents, &registration).await;
    succeed(&mut agents, &registration, first).await;
    let lease = lease_one(&mut agents, &registration).await;
    let failed = wait_ended(&mut experiments, &mut other, &id, Duration::from_secs(10)).await;
    assert_eq!(failed.state(), pb::ExperimentState::Failed, "{failed:?}");
    let beat = agents
        .heartbeat(pb::HeartbeatRequest {
            agent_id: registration.agent_id.clone(),
            agent_secret: registration.agent_secret.clone(),
            lease_ids: vec![lease.lease_id.clone()],
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert_eq!(beat.leases[0].action(), pb::LeaseAction::Stop);
    let trials = experiments
        .list_trials(pb::ListTrialsRequest {
            experiment_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .trials;
    assert!(
        trials.iter().all(|t| t.state() != pb::TrialState::Pending),
        "no trial is left pending: {trials:?}"
    );
    // The agent's stopped trial is still accepted, and the experiment stays failed.
    agents
        .complete_trial(pb::CompleteTrialRequest {
            lease_id: lease.lease_id,
            agent_secret: registration.agent_secret,
            outcome: pb::TrialOutcome::Stopped as i32,
            value: Some(0.25),
            epochs_run: 1,
            best_epoch: 1,
            ..Default::default()
        })
        .await
        .expect("a stopped trial completes");
    assert_eq!(
        get(&mut experiments, &id).await.state(),
        pb::ExperimentState::Failed
    );
    server.shutdown().await;
}

/// A BO round replacing the buffer can still be computing when the budget is spent (the buffer
/// it would replace supplied the last trials): the last result completes the experiment at
/// once, and the round's points, when they come, are dropped.
#[tokio::test]
async fn the_last_result_completes_the_experiment_while_a_round_still_computes() {
    let (server, rounds) = start(Settings::default()).await;
    let (mut experiments, mut agents) = server.clients().await;
    let held_spec = pb::ExperimentSpec {
        strategy: pb::Strategy::Bo as i32,
        initial_trials: 2,
        ..spec("held", 4, 2)
    };
    let id = create(&mut experiments, held_spec).await;
    let (first, second) = (register(&mut agents).await, register(&mut agents).await);
    // Round 1 computes four points: two trials and a buffer of two.
    let one = lease_one(&mut agents, &first).await;
    let two = lease_one(&mut agents, &second).await;
    // A result: the buffer supplies the third trial and round 2 (held) starts to replace it.
    succeed(&mut agents, &first, one).await;
    let until = Instant::now() + Duration::from_secs(10);
    while rounds.lock().expect("rounds").get("held").copied() < Some(2) {
        assert!(Instant::now() < until, "round 2 never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let three = lease_one(&mut agents, &first).await;
    // The next result takes the buffer's last point as the fourth trial: the budget is spent.
    succeed(&mut agents, &second, two).await;
    let four = lease_one(&mut agents, &second).await;
    succeed(&mut agents, &first, three).await;
    succeed(&mut agents, &second, four).await;
    let view = get(&mut experiments, &id).await;
    assert_eq!(
        (view.state(), view.trials_created),
        (pb::ExperimentState::Completed, 4),
        "{view:?}"
    );
    // The held round ends; its points become nothing.
    release_held();
    let until = Instant::now() + Duration::from_secs(10);
    while HELD_ENDED.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the held round never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The coordinator takes the round's end asynchronously; a promoted point would show within
    // a few requests.
    for _ in 0..20 {
        let view = get(&mut experiments, &id).await;
        assert_eq!(
            (view.state(), view.trials_created),
            (pb::ExperimentState::Completed, 4),
            "{view:?}"
        );
        tokio::task::yield_now().await;
    }
    server.shutdown().await;
}
