//! Fleet behaviour of the coordinator's core, through the domain traits on paused time (the
//! lease clock is tokio's, so `tokio::time::advance` moves it): deadlines judged at arrival,
//! fresh deadlines after a restart, a pause forgiven by the next sweep, late results, fair scheduling, the long poll, pruning, and
//! cancel-safety of a request dropped in the middle of its commit.

#[path = "fleet/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use coordinator::metrics::Metrics;
use coordinator::service::model::TrialState;
use coordinator::service::{
    AgentService, Coordinator, ExperimentService, LeaseAction, LeaseOutcome, Page, Settings,
    WriteMode,
};
use coordinator::store::{Change, ExperimentStore, MemoryStore, Snapshot};
use support::{agent, epoch, lease_now, running, settings, spec, start, success, wait_created};
use tokio::time::advance;

async fn trial_state(
    coordinator: &Coordinator,
    experiment: &coordinator::service::model::ExperimentId,
) -> TrialState {
    let trials = coordinator
        .list_trials(experiment.clone(), false, Page::ALL)
        .await
        .expect("lists");
    trials[0].record.state
}

#[tokio::test(start_paused = true)]
async fn deadlines_are_renewed_from_the_arrival_of_each_heartbeat() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 1, 1), 1).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;

    // Renewed at t = 9 s: the deadline moves to 19 s, no further.
    advance(Duration::from_secs(9)).await;
    let beat = coordinator
        .heartbeat(agent.clone(), vec![lease.lease_id.clone()])
        .await
        .expect("beats");
    assert_eq!(beat[0].action, LeaseAction::Continue);
    advance(Duration::from_millis(9_900)).await;
    coordinator.expire_leases().await.expect("sweeps");
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Running
    );
    advance(Duration::from_millis(200)).await;
    coordinator.expire_leases().await.expect("sweeps");
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Pending
    );
    assert_eq!(
        coordinator.metrics().leases_expired_total.get(),
        1,
        "one expiry counted"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_nobody_took_is_revived_and_its_late_result_accepted() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 2, 1), 1).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;
    advance(Duration::from_secs(11)).await;
    coordinator.expire_leases().await.expect("sweeps");
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Pending
    );

    // The agent was cut off, not dead: its report revives the lease, the same attempt goes on.
    let action = coordinator
        .report_epoch(lease.lease_id.clone(), epoch(1, 3.0))
        .await
        .expect("revived by its holder");
    assert_eq!(action, LeaseAction::Continue);
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Running
    );

    // It expires again; its completion, delivered late, is still the trial's result.
    advance(Duration::from_secs(11)).await;
    coordinator.expire_leases().await.expect("sweeps");
    coordinator
        .complete_trial(lease.lease_id.clone(), success(3.0))
        .await
        .expect("late result accepted");
    let trials = coordinator
        .list_trials(experiment.clone(), true, Page::ALL)
        .await
        .expect("lists");
    let trial = &trials[0];
    assert_eq!(
        (
            trial.record.state,
            trial.record.value,
            trial.record.attempts
        ),
        (TrialState::Succeeded, Some(3.0), 1)
    );
    assert_eq!(trial.epochs.len(), 1, "the revived attempt kept its epoch");

    // A repeated completion of the same lease is answered, not counted again.
    coordinator
        .complete_trial(lease.lease_id, success(3.0))
        .await
        .expect("repeat answered");
    let view = coordinator.get_experiment(experiment).await.expect("gets");
    assert_eq!(view.counts.succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn a_lease_taken_by_another_agent_is_gone_for_the_first() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    running(&coordinator, spec("e", 1, 1), 1).await;
    let first = agent(&coordinator).await;
    let second = agent(&coordinator).await;
    let old = lease_now(&coordinator, &first).await;
    advance(Duration::from_secs(11)).await;
    coordinator.expire_leases().await.expect("sweeps");
    let new = lease_now(&coordinator, &second).await;
    assert_eq!((new.trial_id, new.attempt), (old.trial_id, 2));
    let beat = coordinator
        .heartbeat(first, vec![old.lease_id.clone()])
        .await
        .expect("beats");
    assert_eq!(beat[0].action, LeaseAction::Abandon);
    let refused = coordinator
        .complete_trial(old.lease_id, success(1.0))
        .await
        .expect_err("stale completion refused");
    assert!(
        matches!(refused, coordinator::Error::FailedPrecondition(_)),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_gives_every_lease_a_fresh_deadline() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 1, 1), 1).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;
    drop(coordinator);

    // Down for longer than the lease timeout; the agent kept training.
    advance(Duration::from_secs(120)).await;
    let coordinator = start(&store, settings()).await;
    coordinator.expire_leases().await.expect("sweeps");
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Leased
    );
    let beat = coordinator
        .heartbeat(agent.clone(), vec![lease.lease_id.clone()])
        .await
        .expect("beats");
    assert_eq!(beat[0].action, LeaseAction::Continue);
    coordinator
        .complete_trial(lease.lease_id, success(2.0))
        .await
        .expect("the result of the outage is kept");
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn the_long_poll_waits_up_to_the_cap_then_says_retry() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let agent = agent(&coordinator).await;
    let started = tokio::time::Instant::now();
    let outcome = coordinator
        .lease_trial(agent, Duration::from_secs(100), None)
        .await
        .expect("answers");
    assert!(
        matches!(outcome, LeaseOutcome::RetryAfter(_)),
        "{outcome:?}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "capped at max_lease_wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_gets_the_trial_a_completion_frees() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    running(&coordinator, spec("e", 3, 1), 1).await;
    let busy = agent(&coordinator).await;
    let idle = agent(&coordinator).await;
    let held = lease_now(&coordinator, &busy).await;
    let waiting = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            coordinator
                .lease_trial(idle, Duration::from_secs(5), None)
                .await
        })
    };
    coordinator
        .complete_trial(held.lease_id, success(1.0))
        .await
        .expect("completes");
    let outcome = waiting.await.expect("joins").expect("answers");
    match outcome {
        LeaseOutcome::Lease(lease) => assert_ne!(lease.trial_id, held.trial_id),
        LeaseOutcome::RetryAfter(_) => panic!("the waiting agent was not given the new trial"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_names_an_experiment_gets_only_its_trials() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let first = running(&coordinator, spec("first", 4, 4), 4).await;
    let second = running(&coordinator, spec("second", 4, 4), 4).await;
    let worker = agent(&coordinator).await;
    for _ in 0..4 {
        let outcome = coordinator
            .lease_trial(worker.clone(), Duration::ZERO, Some(second.clone()))
            .await
            .expect("lease call");
        match outcome {
            LeaseOutcome::Lease(lease) => assert_eq!(lease.experiment_id, second),
            LeaseOutcome::RetryAfter(_) => panic!("the second experiment had trials ready"),
        }
    }
    // Its four trials are leased; the first experiment's are not offered instead.
    let none = coordinator
        .lease_trial(worker.clone(), Duration::ZERO, Some(second))
        .await
        .expect("lease call");
    assert!(matches!(none, LeaseOutcome::RetryAfter(_)), "{none:?}");
    let unknown = coordinator
        .lease_trial(worker.clone(), Duration::ZERO, Some("exp-nope".into()))
        .await
        .expect_err("no such experiment");
    assert!(
        matches!(unknown, coordinator::Error::NotFound { .. }),
        "{unknown}"
    );
    let any = lease_now(&coordinator, &worker).await;
    assert_eq!(any.experiment_id, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_of_equal_parallelism_share_the_agents_evenly() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let view = coordinator
            .create_experiment(spec(name, 10_000, 40))
            .await
            .expect("creates");
        ids.push(view.record.id);
    }
    for id in &ids {
        wait_created(&coordinator, id, 40).await;
    }
    let mut agents = Vec::new();
    for _ in 0..50 {
        agents.push(agent(&coordinator).await);
    }
    let mut counts = [0u32; 2];
    for _round in 0..8 {
        let mut held = Vec::new();
        for agent in &agents {
            match coordinator
                .lease_trial(agent.clone(), Duration::from_secs(2), None)
                .await
                .expect("lease call")
            {
                LeaseOutcome::Lease(lease) => {
                    let which = ids.iter().position(|id| *id == lease.experiment_id);
                    counts[which.expect("a known experiment")] += 1;
                    held.push(lease);
                }
                LeaseOutcome::RetryAfter(_) => {}
            }
        }
        for lease in held {
            coordinator
                .complete_trial(lease.lease_id, success(1.0))
                .await
                .expect("completes");
        }
    }
    let total = f64::from(counts[0] + counts[1]);
    assert!(total >= 300.0, "agents were kept busy: {counts:?}");
    for count in counts {
        let share = f64::from(count) / total;
        assert!((0.45..=0.55).contains(&share), "unfair split {counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn silent_agents_are_pruned_and_an_unregistering_agent_gives_its_trials_back() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 4, 2), 2).await;
    let talking = agent(&coordinator).await;
    let silent = agent(&coordinator).await;
    advance(Duration::from_secs(20)).await;
    coordinator
        .heartbeat(talking.clone(), Vec::new())
        .await
        .expect("beats");
    advance(Duration::from_secs(15)).await;
    assert_eq!(coordinator.prune_agents(), 1);
    let forgotten = coordinator
        .lease_trial(silent, Duration::ZERO, None)
        .await
        .expect_err("a pruned agent registers again");
    assert!(
        matches!(forgotten, coordinator::Error::NotFound { .. }),
        "{forgotten}"
    );

    let lease = lease_now(&coordinator, &talking).await;
    assert_eq!(
        coordinator
            .unregister_agent(talking.clone())
            .await
            .expect("unregisters"),
        1
    );
    let trials = coordinator
        .list_trials(experiment, false, Page::ALL)
        .await
        .expect("lists");
    let released = trials
        .iter()
        .find(|t| t.record.id == lease.trial_id)
        .expect("the trial");
    assert_eq!(
        (
            released.record.state,
            released.record.attempts,
            released.record.interruptions
        ),
        (TrialState::Pending, 1, 1)
    );
    assert!(
        coordinator
            .lease_trial(talking, Duration::ZERO, None)
            .await
            .is_err()
    );
}

/// An agent that leases a trial and unregisters, again and again, could add attempts without
/// end. At the interruption cap the trial fails with a reason, and the experiment makes another
/// trial in its place, which the next agent leases.
#[tokio::test(start_paused = true)]
async fn a_trial_given_back_at_every_attempt_fails_at_the_cap_and_is_replaced() {
    use coordinator::service::lifecycle::MAX_INTERRUPTIONS;
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 2, 1), 1).await;
    let mut first = None;
    for _ in 0..MAX_INTERRUPTIONS {
        let quitter = agent(&coordinator).await;
        let lease = lease_now(&coordinator, &quitter).await;
        assert_eq!(*first.get_or_insert(lease.trial_id.clone()), lease.trial_id);
        let released = coordinator
            .unregister_agent(quitter)
            .await
            .expect("unregisters");
        assert_eq!(released, 1);
    }
    let trials = coordinator
        .list_trials(experiment.clone(), false, Page::ALL)
        .await
        .expect("lists");
    let given_back = trials
        .iter()
        .find(|t| Some(&t.record.id) == first.as_ref())
        .expect("the trial");
    assert_eq!(given_back.record.state, TrialState::Failed);
    assert_eq!(
        (given_back.record.attempts, given_back.record.interruptions),
        (MAX_INTERRUPTIONS, MAX_INTERRUPTIONS)
    );
    assert!(
        given_back
            .record
            .failure_reason
            .contains("interrupted 100 times"),
        "{}",
        given_back.record.failure_reason
    );
    wait_created(&coordinator, &experiment, 2).await;
    let honest = agent(&coordinator).await;
    let next = lease_now(&coordinator, &honest).await;
    assert_ne!(
        Some(&next.trial_id),
        first.as_ref(),
        "a new trial replaces it"
    );
}

#[tokio::test(start_paused = true)]
async fn agents_silent_past_the_retention_are_forgotten_in_memory_and_in_the_store() {
    let store = MemoryStore::new();
    let settings = Settings {
        agent_retention: Duration::from_secs(300),
        ..settings()
    };
    let coordinator = start(&store, settings).await;
    let silent = agent(&coordinator).await;
    let kept = agent(&coordinator).await;
    advance(Duration::from_secs(31)).await;
    assert_eq!(
        coordinator.prune_agents(),
        2,
        "both silent past the timeout"
    );
    // Disconnected, not forgotten: the secret still identifies it, so it may re-register.
    assert_eq!(store.load().expect("loads").agents.len(), 2);
    let secret_kept = coordinator
        .authorize_agent(&kept, "not the secret")
        .expect_err("a wrong secret");
    assert!(
        matches!(secret_kept, coordinator::Error::PermissionDenied(_)),
        "{secret_kept}"
    );
    coordinator
        .heartbeat(kept.clone(), Vec::new())
        .await
        .expect("beats");
    advance(Duration::from_secs(270)).await;
    assert_eq!(coordinator.prune_agents(), 0);
    coordinator.flush().await.expect("flushes");
    let stored: Vec<_> = store
        .load()
        .expect("loads")
        .agents
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(stored, [kept], "the silent agent's row is gone");
    let forgotten = coordinator
        .authorize_agent(&silent, "any")
        .expect_err("forgotten");
    assert!(
        matches!(forgotten, coordinator::Error::NotFound { .. }),
        "{forgotten}"
    );
}

/// A store whose commits take a while, so a request can be dropped in the middle of one.
#[derive(Clone, Default)]
struct SlowStore {
    inner: MemoryStore,
}

impl ExperimentStore for SlowStore {
    fn load(&self) -> coordinator::Result<Snapshot> {
        self.inner.load()
    }

    fn commit(&self, changes: &[Change]) -> coordinator::Result<()> {
        std::thread::sleep(Duration::from_millis(30));
        self.inner.commit(changes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_in_the_middle_of_its_commit_leaves_store_and_memory_equal() {
    let store = SlowStore::default();
    let shared: Arc<dyn ExperimentStore> = Arc::new(store.clone());
    let coordinator = Coordinator::start_with(
        shared,
        settings(),
        Arc::new(Metrics::new()),
        WriteMode::Thread,
    )
    .await
    .expect("starts");
    let experiment = running(&coordinator, spec("e", 10, 2), 2).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;

    // Each request is dropped after 5 ms, while its 30 ms commit is under way.
    let cut = Duration::from_millis(5);
    let report = coordinator.report_epoch(lease.lease_id.clone(), epoch(1, 4.0));
    assert!(
        tokio::time::timeout(cut, report).await.is_err(),
        "dropped mid-commit"
    );
    let complete = coordinator.complete_trial(lease.lease_id.clone(), success(4.0));
    assert!(
        tokio::time::timeout(cut, complete).await.is_err(),
        "dropped mid-commit"
    );
    let stop = coordinator.stop_experiment(experiment.clone());
    assert!(
        tokio::time::timeout(cut, stop).await.is_err(),
        "dropped mid-commit"
    );

    // A later request waits for everything before it to be durable (one writer, in order).
    coordinator
        .register_agent(Default::default(), None, None)
        .await
        .expect("registers");
    let snapshot = store.load().expect("loads");
    let memory = coordinator
        .list_trials(experiment.clone(), true, Page::ALL)
        .await
        .expect("lists");
    let stored: Vec<_> = snapshot
        .trials
        .iter()
        .filter(|t| t.experiment_id == experiment)
        .cloned()
        .collect();
    let in_memory: Vec<_> = memory.iter().map(|t| t.record.clone()).collect();
    assert_eq!(stored, in_memory, "store and memory agree trial by trial");
    let done = in_memory
        .iter()
        .find(|t| t.id == lease.trial_id)
        .expect("the trial");
    assert_eq!((done.state, done.value), (TrialState::Succeeded, Some(4.0)));
    let stored_epochs = snapshot
        .epochs
        .iter()
        .filter(|e| e.trial_id == lease.trial_id)
        .count();
    assert_eq!(stored_epochs, 1, "the dropped report is durable");
    let experiment_record = snapshot
        .experiments
        .iter()
        .find(|e| e.id == experiment)
        .expect("stored");
    let view = coordinator.get_experiment(experiment).await.expect("gets");
    assert_eq!(experiment_record, &view.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_turns_a_buffered_suggestion_into_the_next_trial_at_once() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 10, 2), 2).await;
    let agent = agent(&coordinator).await;
    let first = lease_now(&coordinator, &agent).await;
    let _second = lease_now(&coordinator, &agent).await;
    // The first round also filled the buffer, so the completion itself creates trial 3: an agent
    // asking right after it finds a trial ready, without waiting for a suggestion.
    coordinator
        .complete_trial(first.lease_id, success(1.0))
        .await
        .expect("completes");
    let view = coordinator
        .get_experiment(experiment.clone())
        .await
        .expect("gets");
    assert_eq!((view.counts.created, view.counts.pending), (3, 1));
    let next = lease_now(&coordinator, &agent).await;
    assert_eq!(next.experiment_id, experiment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_two_trials_of_a_bo_experiment_coincide() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let mut bo = spec("bo", 24, 4);
    bo.strategy = coordinator::service::model::Strategy::Bo;
    bo.initial_trials = 6;
    let experiment = coordinator
        .create_experiment(bo)
        .await
        .expect("creates")
        .record
        .id;
    let agent = agent(&coordinator).await;
    let mut done = 0;
    let started = std::time::Instant::now();
    while done < 24 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "BO stalled at {done}"
        );
        match coordinator
            .lease_trial(agent.clone(), Duration::from_secs(2), None)
            .await
            .expect("lease call")
        {
            LeaseOutcome::Lease(lease) => {
                let x = match lease.params.get("x") {
                    Some(tuner::space::Value::Float(x)) => *x,
                    other => panic!("x is {other:?}"),
                };
                coordinator
                    .complete_trial(lease.lease_id, success((x - 2.0).powi(2)))
                    .await
                    .expect("completes");
                done += 1;
            }
            LeaseOutcome::RetryAfter(_) => {}
        }
    }
    let trials = coordinator
        .list_trials(experiment.clone(), false, Page::ALL)
        .await
        .expect("lists");
    assert_eq!(trials.len(), 24);
    for (i, a) in trials.iter().enumerate() {
        for b in &trials[i + 1..] {
            assert_ne!(a.record.params, b.record.params, "two trials coincide");
        }
    }
    let view = coordinator.get_experiment(experiment).await.expect("gets");
    assert_eq!(
        view.record.state,
        coordinator::service::model::ExperimentState::Completed
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_crosses_its_own_completion_is_told_stop_not_abandon() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    running(&coordinator, spec("e", 1, 1), 1).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;
    coordinator
        .complete_trial(lease.lease_id.clone(), success(1.0))
        .await
        .expect("completes");
    let beat = coordinator
        .heartbeat(agent, vec![lease.lease_id])
        .await
        .expect("beats");
    assert_eq!(beat[0].action, LeaseAction::Stop);
}

/// Lets every spawned task run until it waits (paused time, one thread).
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_restricted_to_one_experiment_leaves_other_wake_ups_to_others() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let first = running(&coordinator, spec("first", 1, 1), 1).await;
    let second = running(&coordinator, spec("second", 1, 1), 1).await;
    let (holder_a, holder_b) = (agent(&coordinator).await, agent(&coordinator).await);
    for (holder, experiment) in [(&holder_a, &first), (&holder_b, &second)] {
        let outcome = coordinator
            .lease_trial(holder.clone(), Duration::ZERO, Some(experiment.clone()))
            .await
            .expect("lease call");
        assert!(matches!(outcome, LeaseOutcome::Lease(_)), "{outcome:?}");
    }

    // The restricted waiter queues first, so it would be woken first by a shared Notify.
    let restricted = agent(&coordinator).await;
    let restricted_wait = {
        let (coordinator, first) = (coordinator.clone(), first.clone());
        tokio::spawn(async move {
            coordinator
                .lease_trial(restricted, Duration::from_secs(5), Some(first))
                .await
        })
    };
    settle().await;
    let any = agent(&coordinator).await;
    let started = tokio::time::Instant::now();
    let any_wait = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            coordinator
                .lease_trial(any, Duration::from_secs(5), None)
                .await
        })
    };
    settle().await;

    // The second experiment's trial comes free.
    assert_eq!(
        coordinator
            .unregister_agent(holder_b)
            .await
            .expect("unregisters"),
        1
    );
    match any_wait.await.expect("joins").expect("answers") {
        LeaseOutcome::Lease(lease) => assert_eq!(lease.experiment_id, second),
        LeaseOutcome::RetryAfter(_) => panic!("the free trial was not offered"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the unrestricted waiter slept {:?}: its wake-up went to the restricted one",
        started.elapsed()
    );
    let restricted_outcome = restricted_wait.await.expect("joins").expect("answers");
    assert!(
        matches!(restricted_outcome, LeaseOutcome::RetryAfter(_)),
        "{restricted_outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_after_the_coordinator_was_paused_forgives_the_pause() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let experiment = running(&coordinator, spec("e", 1, 1), 1).await;
    let agent = agent(&coordinator).await;
    let lease = lease_now(&coordinator, &agent).await;

    // 9 s into the 10 s lease, the process stops running for 50 s: its first sweep after
    // resuming finds the pause and forgives it, leaving the lease a full timeout (moving the
    // deadline by the pause alone would leave it already expired).
    advance(Duration::from_secs(9)).await;
    advance(Duration::from_secs(50)).await;
    coordinator.sweep(Duration::from_secs(45)).await;
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Leased,
        "the lease outlived the pause"
    );
    let beat = coordinator
        .heartbeat(agent.clone(), vec![lease.lease_id.clone()])
        .await
        .expect("the agent is still known and connected");
    assert_eq!(beat[0].action, LeaseAction::Continue);

    // Time that passes while the coordinator runs is not forgiven: silent past the timeout,
    // the lease expires at the next sweeps.
    advance(Duration::from_secs(11)).await;
    coordinator.sweep(Duration::ZERO).await;
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Pending
    );
    // A stall under a second is scheduling noise, not forgiven either.
    let lease = lease_now(&coordinator, &agent).await;
    advance(Duration::from_secs(11)).await;
    coordinator
        .sweep(coordinator::service::agents::STALL_FORGIVEN - Duration::from_millis(1))
        .await;
    assert_eq!(
        trial_state(&coordinator, &experiment).await,
        TrialState::Pending,
        "{lease:?} expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_forgets_the_agents_silent_longest_and_refuses_when_all_are_connected() {
    let store = MemoryStore::new();
    let settings = Settings {
        max_known_agents: 20,
        ..settings()
    };
    let coordinator = start(&store, settings).await;
    // Twenty agents registered a second apart, as crashing agents that never unregister do.
    let mut fleet = Vec::new();
    for _ in 0..20 {
        fleet.push(agent(&coordinator).await);
        advance(Duration::from_secs(1)).await;
    }
    let capabilities = coordinator::service::model::AgentCapabilities {
        backend: "cpu".into(),
        slots: 1,
        workloads: vec!["function".into()],
        ..Default::default()
    };
    let refused = coordinator
        .register_agent(capabilities.clone(), None, None)
        .await
        .expect_err("every known agent is connected");
    assert!(
        matches!(&refused, coordinator::Error::ResourceExhausted(m) if m.contains("knows 20 agents, its limit")),
        "{refused}"
    );
    // The last ten stay in touch; the first ten go silent past the 30 s agent timeout.
    advance(Duration::from_secs(20)).await;
    for id in &fleet[10..] {
        coordinator
            .heartbeat(id.clone(), Vec::new())
            .await
            .expect("beats");
    }
    advance(Duration::from_secs(15)).await;
    coordinator.prune_agents();
    let newcomer = coordinator
        .register_agent(capabilities, None, None)
        .await
        .expect("a disconnected agent's place is taken");
    // A tenth of the limit (two) was forgotten: the two registered first.
    for (index, id) in fleet.iter().enumerate() {
        // A known agent refuses a wrong secret; a forgotten one is not found.
        let known = !matches!(
            coordinator.authorize_agent(id, "wrong"),
            Err(coordinator::Error::NotFound { .. })
        );
        assert_eq!(known, index >= 2, "agent {index} ({id:?})");
    }
    assert!(
        coordinator
            .authorize_agent(&newcomer.agent_id, &newcomer.secret)
            .is_ok()
    );
}
