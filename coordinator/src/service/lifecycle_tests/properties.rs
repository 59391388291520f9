//! Property tests of [`transition`]: random sequences of up to 40 random events, applied from a
//! fresh pending trial (the result kept when Ok, the old trial when Err), with lease ids drawn
//! from the trial's own leases and a stranger. The invariants are checked after every step.

use proptest::prelude::*;

use super::consistent;
use super::fixtures::{HOLDER, NOW, fresh_trial};
use crate::service::lifecycle::{TransitionError, TrialEvent, transition};
use crate::service::model::{AgentId, LeaseId, TrialRecord, TrialState};
use crate::service::{Completion, Outcome};

/// Which lease a random event names, resolved against the trial's history when applied.
#[derive(Clone, Debug)]
enum Pick {
    /// The trial's `last_lease_id` (the current lease while held).
    Latest,
    /// Any lease handed out so far (index modulo their number).
    Issued(usize),
    /// A lease this trial never had.
    Stranger,
}

#[derive(Clone, Debug)]
enum Step {
    Lease,
    Renew(Pick),
    Revive(Pick),
    Expire,
    Release(Pick),
    Complete {
        pick: Pick,
        completion: Completion,
        last_epoch_value: Option<f64>,
        experiment_stopped: bool,
    },
    Stop,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => Just(Pick::Latest),
        2 => (0_usize..8).prop_map(Pick::Issued),
        1 => Just(Pick::Stranger),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    // Interrupted attempts keep the trial going, so they come more often.
    prop_oneof![
        1 => Just(Outcome::Succeeded),
        1 => Just(Outcome::Failed),
        1 => Just(Outcome::Stopped),
        3 => Just(Outcome::Interrupted),
    ]
}

fn completion() -> impl Strategy<Value = Completion> {
    (
        outcome(),
        prop::option::of(0.0..1.0_f64),
        0_u32..20,
        0.0..100.0_f64,
        0.0..100.0_f64,
        0.0..5.0_f64,
        prop::bool::ANY,
    )
        .prop_map(
            |(outcome, value, epochs_run, wall, device, cost, has_reason)| Completion {
                outcome,
                value,
                epochs_run,
                best_epoch: epochs_run / 2,
                wall_seconds: wall,
                device_seconds: device,
                cost_dollars: cost,
                failure_reason: if has_reason {
                    "boom".into()
                } else {
                    String::new()
                },
                metrics: Default::default(),
            },
        )
}

/// Stop cancels a pending trial at once, so it is rare: most sequences see several attempts.
fn step() -> impl Strategy<Value = Step> {
    let complete = (
        pick(),
        completion(),
        prop::option::of(0.0..1.0_f64),
        prop::bool::ANY,
    )
        .prop_map(
            |(pick, completion, last_epoch_value, experiment_stopped)| Step::Complete {
                pick,
                completion,
                last_epoch_value,
                experiment_stopped,
            },
        );
    prop_oneof![
        6 => Just(Step::Lease),
        6 => pick().prop_map(Step::Renew),
        4 => pick().prop_map(Step::Revive),
        4 => Just(Step::Expire),
        3 => pick().prop_map(Step::Release),
        6 => complete,
        1 => Just(Step::Stop),
    ]
}

/// The driver's state: the trial as kept (the result when Ok, the old trial when Err).
struct Run {
    trial: TrialRecord,
    issued: Vec<LeaseId>,
    max_attempts: u32,
    clock_unix: f64,
    accepted_leases: u32,
    /// The trial as it first became terminal.
    ended: Option<TrialRecord>,
}

impl Run {
    fn resolve(&self, pick: &Pick) -> LeaseId {
        match pick {
            Pick::Latest => self
                .trial
                .last_lease_id
                .clone()
                .unwrap_or_else(|| LeaseId::from("lease-none")),
            Pick::Issued(_) if self.issued.is_empty() => LeaseId::from("lease-none"),
            Pick::Issued(i) => self.issued[i % self.issued.len()].clone(),
            Pick::Stranger => LeaseId::from("lease-stranger"),
        }
    }

    fn event(&self, step: &Step) -> TrialEvent {
        let now_unix = self.clock_unix;
        let deadline_unix = now_unix + 60.0;
        match step {
            Step::Lease => TrialEvent::Lease {
                lease_id: LeaseId(format!("lease-{}", self.issued.len() + 1)),
                agent_id: AgentId(format!("agent-{}", self.issued.len() % 3)),
                instance_type: "g5.xlarge".into(),
                deadline_unix,
            },
            Step::Renew(pick) => TrialEvent::Renew {
                lease_id: self.resolve(pick),
                deadline_unix,
            },
            Step::Revive(pick) => TrialEvent::Revive {
                lease_id: self.resolve(pick),
                agent_id: AgentId::from(HOLDER),
                deadline_unix,
            },
            Step::Expire => TrialEvent::Expire {
                now_unix,
                max_attempts: self.max_attempts,
            },
            Step::Release(pick) => TrialEvent::Release {
                lease_id: self.resolve(pick),
                now_unix,
            },
            Step::Complete {
                pick,
                completion,
                last_epoch_value,
                experiment_stopped,
            } => TrialEvent::Complete {
                lease_id: self.resolve(pick),
                completion: completion.clone(),
                last_epoch_value: *last_epoch_value,
                experiment_stopped: *experiment_stopped,
                now_unix,
            },
            Step::Stop => TrialEvent::Stop { now_unix },
        }
    }
}

/// Whether an accepted event may leave the trial as it was: a late interrupted completion (the
/// attempt is already back in the queue) and a repeated stop request.
fn may_change_nothing(before: &TrialRecord, event: &TrialEvent) -> bool {
    match event {
        TrialEvent::Complete { completion, .. } => {
            before.state == TrialState::Pending && completion.outcome == Outcome::Interrupted
        }
        TrialEvent::Stop { .. } => before.state.is_leased() && before.stop_requested,
        _ => false,
    }
}

/// Applies one step and checks every invariant that relates the trial before and after it.
fn apply(run: &mut Run, step: &Step) -> Result<(), TestCaseError> {
    run.clock_unix += 1.0;
    let before = run.trial.clone();
    let event = run.event(step);
    let result = transition(&before, &event);
    prop_assert_eq!(
        &result,
        &transition(&before, &event),
        "transition is not deterministic"
    );
    if before.state.is_terminal() {
        prop_assert!(
            matches!(result, Err(TransitionError::Terminal { .. })),
            "a terminal trial accepted {:?}: {:?}",
            event,
            result
        );
    }
    let after = match result {
        Ok(next) => {
            if next == before {
                prop_assert!(
                    may_change_nothing(&before, &event),
                    "{:?} was accepted but changed nothing",
                    event
                );
            }
            if let TrialEvent::Lease { lease_id, .. } = &event {
                run.accepted_leases += 1;
                run.issued.push(lease_id.clone());
            }
            next
        }
        // The caller keeps the trial it had: a refusal changes nothing.
        Err(_) => before.clone(),
    };
    prop_assert!(after.attempts >= before.attempts, "attempts decreased");
    prop_assert!(
        after.wall_seconds >= before.wall_seconds,
        "wall_seconds decreased"
    );
    prop_assert!(
        after.device_seconds >= before.device_seconds,
        "device_seconds decreased"
    );
    prop_assert!(
        after.cost_dollars >= before.cost_dollars,
        "cost_dollars decreased"
    );
    if let Err(why) = consistent(&after) {
        return Err(TestCaseError::fail(format!("after {event:?}: {why}")));
    }
    prop_assert_eq!(
        after.attempts,
        run.accepted_leases,
        "attempts != accepted leases"
    );
    let counted = after.attempts - after.interruptions;
    prop_assert!(
        counted <= run.max_attempts,
        "{} counted attempts exceed max_attempts {}",
        counted,
        run.max_attempts
    );
    if let Some(ended) = &run.ended {
        prop_assert_eq!(&after, ended, "a terminal trial changed");
    } else if after.state.is_terminal() {
        run.ended = Some(after.clone());
    }
    run.trial = after;
    Ok(())
}

proptest! {
    #[test]
    fn random_event_sequences_keep_the_invariants(
        max_attempts in 1_u32..=4,
        steps in prop::collection::vec(step(), 1..=40),
    ) {
        let mut run = Run {
            trial: fresh_trial(),
            issued: Vec::new(),
            max_attempts,
            clock_unix: NOW,
            accepted_leases: 0,
            ended: None,
        };
        for step in &steps {
            apply(&mut run, step)?;
        }
    }
}
