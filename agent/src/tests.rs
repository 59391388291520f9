//! Tests of the slot loop against the fake coordinator and the function trainer: leases,
//! epochs, stop, abandon, stale reports, an unreachable coordinator and shutdown; and of the
//! whole agent ([`crate::run_with`]) shutting down: interrupted reports, then unregistration.

use std::sync::Arc;
use std::time::Duration;

use proto::v1::{Lease, ParameterValue, TrialOutcome, Workload, parameter_value::Kind};
use tokio::sync::watch;

use crate::cost::Pricing;
use crate::functions::FunctionTrainer;
use crate::metrics::AgentMetrics;
use crate::session::Session;
use crate::slot::{SlotContext, run_slot};
use crate::testing::{FakeCoordinator, fast_timing};
use crate::trainer::Trainer;
use crate::worker::SlotWorker;

fn float(value: f64) -> ParameterValue {
    ParameterValue {
        kind: Some(Kind::FloatValue(value)),
    }
}

fn lease(id: &str, epochs: f64, epoch_seconds: f64) -> Lease {
    Lease {
        lease_id: id.to_string(),
        trial_id: format!("trial-{id}"),
        experiment_id: "exp".to_string(),
        params: [("x".to_string(), float(3.0))].into(),
        workload: Some(Workload {
            kind: "function".into(),
            dataset: "quadratic".into(),
            fixed_params: [
                ("epochs".to_string(), float(epochs)),
                ("epoch_seconds".to_string(), float(epoch_seconds)),
            ]
            .into(),
            ..Workload::default()
        }),
        metric: "value".into(),
        ..Lease::default()
    }
}

struct Harness {
    fake: FakeCoordinator,
    metrics: AgentMetrics,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<SlotWorker>,
}

async fn start(fake: &FakeCoordinator) -> Harness {
    let session = Arc::new(Session::new(
        fake.clone(),
        Default::default(),
        fast_timing(),
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    session
        .register(&mut shutdown_rx.clone())
        .await
        .expect("register");
    let metrics = AgentMetrics::new().expect("metrics");
    let pricing = Pricing::resolve(Some("p2.xlarge"), None, None, true, 1).expect("pricing");
    let ctx = SlotContext {
        slot: 0,
        session,
        metrics: metrics.clone(),
        pricing,
        gpu_label: None,
        shutdown: shutdown_rx,
    };
    let worker = tokio::task::spawn_blocking(|| {
        SlotWorker::spawn(
            0,
            Box::new(|| Ok(Box::new(FunctionTrainer) as Box<dyn Trainer>)),
        )
    })
    .await
    .expect("join")
    .expect("spawn");
    Harness {
        fake: fake.clone(),
        metrics,
        shutdown,
        task: tokio::spawn(run_slot(ctx, worker)),
    }
}

impl Harness {
    async fn wait_for(&self, what: &str, condition: impl Fn(&FakeCoordinator) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition(&self.fake) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.send(true).expect("send shutdown");
        let worker = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("slot stops")
            .expect("join");
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .expect("join worker");
    }
}

#[tokio::test]
async fn trains_leased_trials_and_reports_every_epoch_and_the_cost() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 3.0, 0.0));
    fake.add_lease(lease("l2", 1.0, 0.0));
    let harness = start(&fake).await;
    harness
        .wait_for("both completions", |f| {
            f.completions("l1") == 1 && f.completions("l2") == 1
        })
        .await;
    assert_eq!(fake.reported_epochs("l1"), vec![1, 2, 3]);
    let done = fake.completion("l1").expect("completed");
    assert_eq!(done.outcome(), TrialOutcome::Succeeded);
    assert_eq!(done.value, Some(9.0));
    assert_eq!((done.epochs_run, done.best_epoch), (3, 1));
    assert!(done.wall_seconds >= 0.0);
    assert!((done.cost_dollars - done.wall_seconds * 0.90 / 3600.0).abs() < 1e-12);
    assert_eq!(harness.metrics.epochs_total.get(), 4);
    assert_eq!(
        harness
            .metrics
            .trials_total
            .with_label_values(&["succeeded"])
            .get(),
        2
    );
    harness.stop().await;
}

#[tokio::test]
async fn bad_parameters_fail_the_trial_with_a_reason_and_the_loop_goes_on() {
    let fake = FakeCoordinator::new();
    let mut bad = lease("bad", 1.0, 0.0);
    bad.workload.as_mut().expect("workload").dataset = "branin".into();
    fake.add_lease(bad);
    fake.add_lease(lease("good", 1.0, 0.0));
    let harness = start(&fake).await;
    harness
        .wait_for("both completions", |f| {
            f.completions("bad") == 1 && f.completions("good") == 1
        })
        .await;
    let failed = fake.completion("bad").expect("completed");
    assert_eq!(failed.outcome(), TrialOutcome::Failed);
    assert!(
        failed.failure_reason.contains("'x1'"),
        "{}",
        failed.failure_reason
    );
    assert_eq!(failed.value, None);
    assert_eq!(
        fake.completion("good").expect("completed").outcome(),
        TrialOutcome::Succeeded
    );
    harness.stop().await;
}

#[tokio::test]
async fn stop_from_the_coordinator_ends_the_trial_at_an_epoch_boundary() {
    let fake = FakeCoordinator::new();
    fake.stop_lease("l1");
    fake.add_lease(lease("l1", 50.0, 0.01));
    let harness = start(&fake).await;
    harness
        .wait_for("completion", |f| f.completions("l1") == 1)
        .await;
    let done = fake.completion("l1").expect("completed");
    assert_eq!(done.outcome(), TrialOutcome::Stopped);
    // The answer to epoch 1's report says stop, and the trainer waits for it.
    assert_eq!(done.epochs_run, 1);
    assert_eq!(fake.reported_epochs("l1").len() as u32, done.epochs_run);
    harness.stop().await;
}

#[tokio::test]
async fn an_abandoned_lease_reports_nothing_more() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 200.0, 0.01));
    fake.add_lease(lease("l2", 1.0, 0.0));
    let harness = start(&fake).await;
    harness
        .wait_for("an epoch", |f| !f.reported_epochs("l1").is_empty())
        .await;
    fake.abandon_lease("l1");
    harness
        .wait_for("the next trial", |f| f.completions("l2") == 1)
        .await;
    assert_eq!(fake.completions("l1"), 0);
    assert!(fake.reported_epochs("l1").len() < 200);
    assert_eq!(
        harness
            .metrics
            .trials_total
            .with_label_values(&["abandoned"])
            .get(),
        1
    );
    harness.stop().await;
}

#[tokio::test]
async fn reports_kept_while_the_coordinator_is_down_are_delivered_once_when_it_is_back() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 6.0, 0.02));
    let harness = start(&fake).await;
    harness
        .wait_for("an epoch", |f| !f.reported_epochs("l1").is_empty())
        .await;
    fake.set_down(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    fake.set_down(false);
    harness
        .wait_for("completion", |f| f.completions("l1") == 1)
        .await;
    assert_eq!(fake.reported_epochs("l1"), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        fake.completion("l1").expect("done").outcome(),
        TrialOutcome::Succeeded
    );
    harness.stop().await;
}

#[tokio::test]
async fn late_reports_of_a_lease_that_went_elsewhere_are_dropped() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 4.0, 0.02));
    fake.add_lease(lease("l2", 1.0, 0.0));
    let harness = start(&fake).await;
    harness
        .wait_for("an epoch", |f| !f.reported_epochs("l1").is_empty())
        .await;
    fake.set_down(true);
    fake.make_stale("l1");
    tokio::time::sleep(Duration::from_millis(60)).await;
    fake.set_down(false);
    harness
        .wait_for("the next trial", |f| f.completions("l2") == 1)
        .await;
    assert_eq!(fake.completions("l1"), 0, "a stale result is never counted");
    harness.stop().await;
}

#[tokio::test]
async fn shutdown_interrupts_the_running_trial_and_reports_it() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 500.0, 0.01));
    let harness = start(&fake).await;
    harness
        .wait_for("an epoch", |f| !f.reported_epochs("l1").is_empty())
        .await;
    harness
        .wait_for("a heartbeat", |f| f.heartbeats() > 0)
        .await;
    let metrics = harness.metrics.clone();
    harness.stop().await;
    let done = fake.completion("l1").expect("reported on shutdown");
    assert_eq!(done.outcome(), TrialOutcome::Interrupted);
    assert!(done.epochs_run < 500);
    assert_eq!(metrics.slots_busy.get(), 0);
    assert_eq!(fake.pending_leases(), 0);
}

#[tokio::test]
async fn the_agent_registers_again_after_the_coordinator_forgot_it() {
    let fake = FakeCoordinator::new();
    let harness = start(&fake).await;
    fake.forget_agents();
    fake.add_lease(lease("l1", 1.0, 0.0));
    harness
        .wait_for("completion", |f| f.completions("l1") == 1)
        .await;
    assert!(fake.registrations() >= 2);
    harness.stop().await;
}

/// The whole agent (one slot, the function trainer) running against a fake coordinator.
struct Agent {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<crate::Result<()>>,
}

impl Agent {
    fn start(fake: &FakeCoordinator, timing: crate::config::Timing) -> Self {
        let mut config = crate::config::from_toml_str(
            "backend = \"cpu\"\nmetrics_listen_addr = \"127.0.0.1:0\"\n",
        )
        .expect("test config");
        config.timing = timing;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let factory: crate::worker::TrainerFactory =
            Box::new(|| Ok(Box::new(FunctionTrainer) as Box<dyn Trainer>));
        let api = fake.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            crate::run_with(&config, api, Default::default(), vec![factory], shutdown).await
        });
        Self { stop, task }
    }

    /// Shuts the agent down and returns what `run_with` returned.
    async fn shut_down(self) -> crate::Result<()> {
        self.stop.send(()).expect("the agent is running");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the agent stops within 10 s")
            .expect("join")
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn shutdown_unregisters_once_after_reporting_the_trial_interrupted() {
    let fake = FakeCoordinator::new();
    fake.add_lease(lease("l1", 500.0, 0.01));
    let agent = Agent::start(&fake, fast_timing());
    wait_until("an epoch", || !fake.reported_epochs("l1").is_empty()).await;
    agent.shut_down().await.expect("a clean shutdown");
    assert_eq!(
        fake.log(),
        vec![
            "complete l1 TRIAL_OUTCOME_INTERRUPTED",
            "unregister agent-1"
        ]
    );
    assert!(fake.lease_waits().iter().all(|&wait| wait == 0.25));
}

#[tokio::test]
async fn an_old_coordinator_without_unregister_does_not_fail_the_shutdown() {
    let fake = FakeCoordinator::new();
    fake.refuse_unregister(tonic::Status::unimplemented("unknown method"));
    let agent = Agent::start(&fake, fast_timing());
    wait_until("a lease request", || !fake.lease_waits().is_empty()).await;
    agent
        .shut_down()
        .await
        .expect("UNIMPLEMENTED is not an error");
    assert_eq!(fake.log(), vec!["unregister agent-1"]);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_long_poll() {
    let fake = FakeCoordinator::new();
    fake.long_poll();
    let timing = crate::config::Timing {
        lease_wait: Duration::from_secs(60),
        ..fast_timing()
    };
    let agent = Agent::start(&fake, timing);
    wait_until("a lease request", || !fake.lease_waits().is_empty()).await;
    agent
        .shut_down()
        .await
        .expect("a clean shutdown during a 60 s long poll");
    assert_eq!(fake.lease_waits(), vec![60.0]);
    assert_eq!(fake.log(), vec!["unregister agent-1"]);
}

/// Records the most `trial` spans any event was logged inside.
struct TrialSpanDepth(Arc<std::sync::atomic::AtomicUsize>);

impl<S> tracing_subscriber::Layer<S> for TrialSpanDepth
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let depth = ctx.event_scope(event).map_or(0, |scope| {
            scope.filter(|span| span.name() == "trial").count()
        });
        self.0
            .fetch_max(depth, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn each_slot_logs_inside_its_own_trial_only() {
    use tracing_subscriber::layer::SubscriberExt;
    let deepest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(TrialSpanDepth(deepest.clone()));
    // The test's runtime has one thread, so this thread's subscriber sees every slot's events.
    let _default = tracing::subscriber::set_default(subscriber);
    let fake = FakeCoordinator::new();
    for id in ["a1", "b1", "a2", "b2"] {
        fake.add_lease(lease(id, 3.0, 0.01));
    }
    let first = start(&fake).await;
    let second = start(&fake).await;
    first
        .wait_for("four completions", |f| {
            ["a1", "b1", "a2", "b2"]
                .iter()
                .all(|id| f.completions(id) == 1)
        })
        .await;
    first.stop().await;
    second.stop().await;
    let deepest = deepest.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        deepest, 1,
        "an event was logged inside {deepest} trial spans"
    );
}
