//! Tests of [`super::lifecycle::transition`]: the whole transition table written out as data
//! (every fixture state × every event, each case matching exactly one row), and property tests
//! that apply random event sequences and check the module's invariants after every step.

use super::Outcome;
use super::lifecycle::{TransitionError, TrialEvent, transition};
use super::model::{AgentId, LeaseId, LeaseRecord, TrialRecord, TrialState};

mod fixtures;
mod properties;

use fixtures::*;

/// Why the table says an event is refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Terminal,
    NotCurrent,
    WrongState { needs: &'static str },
    Invalid,
}

/// The lease after an accepted event.
#[derive(Clone, Copy, Debug)]
enum LeaseAfter {
    /// Unchanged.
    Kept,
    /// The same lease with the event's deadline.
    Renewed,
    /// [`OWN`] again, held by [`HOLDER`] until the event's deadline.
    Revived,
    /// A new attempt: [`NEW`] held by [`NEWCOMER`]; attempts + 1, and the latest lease, agent and
    /// instance type are the new ones.
    NewAttempt,
    /// None.
    Dropped,
}

/// The trial after an accepted event. Every field not named here must be unchanged.
#[derive(Clone, Copy, Debug)]
struct After {
    state: TrialState,
    lease: LeaseAfter,
    /// `interruptions` + 1.
    interrupted: bool,
    /// `Some(v)`: the value becomes `v`.
    value: Option<Option<f64>>,
    /// `finished_unix` becomes [`NOW`].
    finished: bool,
    /// `stop_requested` becomes true.
    stop_requested: bool,
    failure_reason: Option<&'static str>,
    /// The completion's seconds and dollars are added, its epochs recorded.
    accounted: bool,
}

const fn to(state: TrialState) -> After {
    After {
        state,
        lease: LeaseAfter::Kept,
        interrupted: false,
        value: None,
        finished: false,
        stop_requested: false,
        failure_reason: None,
        accounted: false,
    }
}

impl After {
    const fn lease(self, lease: LeaseAfter) -> Self {
        Self { lease, ..self }
    }
    const fn dropped(self) -> Self {
        self.lease(LeaseAfter::Dropped)
    }
    const fn interrupted(self) -> Self {
        Self {
            interrupted: true,
            ..self
        }
    }
    const fn value(self, value: Option<f64>) -> Self {
        Self {
            value: Some(value),
            ..self
        }
    }
    const fn finished(self) -> Self {
        Self {
            finished: true,
            ..self
        }
    }
    const fn stop_requested(self) -> Self {
        Self {
            stop_requested: true,
            ..self
        }
    }
    const fn reason(self, reason: &'static str) -> Self {
        Self {
            failure_reason: Some(reason),
            ..self
        }
    }
    /// A completion ended the attempt: lease dropped, amounts added.
    const fn ended(self) -> Self {
        Self {
            accounted: true,
            ..self.dropped()
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Refused(Refusal),
    Accepted(After),
}

/// A row applies to every fixture in `fixtures` × every event in `events`.
struct Row {
    fixtures: &'static [Fx],
    events: &'static [Ev],
    expect: Expect,
}

const fn row(fixtures: &'static [Fx], events: &'static [Ev], expect: Expect) -> Row {
    Row {
        fixtures,
        events,
        expect,
    }
}

use Expect::{Accepted, Refused};
use TrialState::{Cancelled, EarlyStopped, Failed, Leased, Pending, Running, Succeeded};

/// The transition table. Each (fixture, event) pair must match exactly one row.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // A terminal trial never changes again: a result is counted once.
    row(TERMINAL, &ALL_EVENTS, Refused(Refusal::Terminal)),
    // Lease: a pending trial starts a new attempt.
    row(PENDING, &[Ev::Lease], Accepted(to(Leased).lease(LeaseAfter::NewAttempt))),
    row(HELD, &[Ev::Lease], Refused(Refusal::WrongState { needs: "pending" })),
    // Renew: only the current lease, which makes the trial running.
    row(PENDING, &[Ev::Renew(Who::Own)], Refused(Refusal::NotCurrent)),
    row(HELD, &[Ev::Renew(Who::Own)], Accepted(to(Running).lease(LeaseAfter::Renewed))),
    row(LIVE, &[Ev::Renew(Who::Earlier)], Refused(Refusal::NotCurrent)),
    // Revive: only the latest lease of a pending trial, continuing the same attempt.
    row(&[Fx::PendingNew], &[Ev::Revive(Who::Own)], Refused(Refusal::NotCurrent)),
    row(&[Fx::PendingRetry], &[Ev::Revive(Who::Own)], Accepted(to(Running).lease(LeaseAfter::Revived))),
    row(HELD, &[Ev::Revive(Who::Own)], Refused(Refusal::NotCurrent)),
    row(LIVE, &[Ev::Revive(Who::Earlier)], Refused(Refusal::NotCurrent)),
    // Expire: back to the queue while counted attempts (2 here) are below max_attempts.
    row(PENDING, EXPIRES, Refused(Refusal::WrongState { needs: "leased or running" })),
    row(GOING, &[Ev::Expire(4), Ev::Expire(3)], Accepted(to(Pending).dropped())),
    row(GOING, &[Ev::Expire(2)], Accepted(to(Failed).dropped().finished().reason("lease expired on each of 2 attempts"))),
    row(STOPPING, EXPIRES, Accepted(to(Cancelled).dropped().finished())),
    // Release: like an interrupted completion, without amounts.
    row(PENDING, &[Ev::Release(Who::Own)], Refused(Refusal::NotCurrent)),
    row(GOING, &[Ev::Release(Who::Own)], Accepted(to(Pending).dropped().interrupted())),
    row(STOPPING, &[Ev::Release(Who::Own)], Accepted(to(Cancelled).dropped().interrupted().finished())),
    row(LIVE, &[Ev::Release(Who::Earlier)], Refused(Refusal::NotCurrent)),
    // Stop: a pending trial is cancelled, a held one told to stop.
    row(PENDING, &[Ev::Stop], Accepted(to(Cancelled).finished())),
    row(&[Fx::Leased, Fx::LeasedStopping], &[Ev::Stop], Accepted(to(Leased).stop_requested())),
    row(&[Fx::Running, Fx::RunningStopping], &[Ev::Stop], Accepted(to(Running).stop_requested())),
    // Complete: the current lease, or the latest one of a pending trial (a late result).
    row(&[Fx::PendingNew], &COMPLETE_OWN, Refused(Refusal::NotCurrent)),
    row(LIVE, &COMPLETE_EARLIER, Refused(Refusal::NotCurrent)),
    row(OWNED, &[own(Done::SucceededValue), own(Done::SucceededValueExpStopped)],
        Accepted(to(Succeeded).ended().finished().value(Some(REPORTED)))),
    row(OWNED, &[own(Done::SucceededNoValue)], Refused(Refusal::Invalid)),
    row(OWNED, &[own(Done::FailedReason)], Accepted(to(Failed).ended().finished().reason("diverged"))),
    row(OWNED, &[own(Done::FailedNoReason)],
        Accepted(to(Failed).ended().finished().reason("failed without a reason"))),
    row(OWNED, &[own(Done::StoppedValue)], Accepted(to(EarlyStopped).ended().finished().value(Some(REPORTED)))),
    row(OWNED, &[own(Done::StoppedValueExpStopped)], Accepted(to(Cancelled).ended().finished().value(Some(REPORTED)))),
    row(OWNED, &[own(Done::StoppedLastEpoch)], Accepted(to(EarlyStopped).ended().finished().value(Some(LAST_EPOCH)))),
    row(OWNED, &[own(Done::StoppedLastEpochExpStopped)],
        Accepted(to(Cancelled).ended().finished().value(Some(LAST_EPOCH)))),
    row(OWNED, &[own(Done::StoppedNeither), own(Done::StoppedNeitherExpStopped)],
        Accepted(to(Cancelled).ended().finished().value(None))),
    // A late interrupted result changes nothing: the attempt is already back in the queue.
    row(&[Fx::PendingRetry], &[own(Done::Interrupted)], Accepted(to(Pending))),
    row(GOING, &[own(Done::Interrupted)], Accepted(to(Pending).ended().interrupted())),
    row(STOPPING, &[own(Done::Interrupted)], Accepted(to(Cancelled).ended().interrupted().finished())),
];

fn lease_named(ev: Ev) -> Option<&'static str> {
    match ev {
        Ev::Renew(who) | Ev::Revive(who) | Ev::Release(who) | Ev::Complete(who, _) => {
            Some(who.lease())
        }
        Ev::Lease | Ev::Expire(_) | Ev::Stop => None,
    }
}

/// The trial the table expects: the fixture with the row's changes.
fn expected_trial(before: &TrialRecord, after: &After) -> TrialRecord {
    let mut want = before.clone();
    want.state = after.state;
    match after.lease {
        LeaseAfter::Kept => {}
        LeaseAfter::Renewed => {
            want.lease = before.lease.clone().map(|lease| LeaseRecord {
                deadline_unix: NEW_DEADLINE,
                ..lease
            });
        }
        LeaseAfter::Revived => {
            want.lease = Some(lease_record(OWN, HOLDER, NEW_DEADLINE));
            want.agent_id = Some(AgentId::from(HOLDER));
        }
        LeaseAfter::NewAttempt => {
            want.lease = Some(lease_record(NEW, NEWCOMER, NEW_DEADLINE));
            want.attempts += 1;
            want.last_lease_id = Some(LeaseId::from(NEW));
            want.agent_id = Some(AgentId::from(NEWCOMER));
            want.instance_type = NEWCOMER_INSTANCE.into();
        }
        LeaseAfter::Dropped => want.lease = None,
    }
    if after.interrupted {
        want.interruptions += 1;
    }
    if let Some(value) = after.value {
        want.value = value;
    }
    if after.finished {
        want.finished_unix = Some(NOW);
    }
    if after.stop_requested {
        want.stop_requested = true;
    }
    if let Some(reason) = after.failure_reason {
        want.failure_reason = reason.into();
    }
    if after.accounted {
        want.wall_seconds += DONE_WALL_SECONDS;
        want.device_seconds += DONE_DEVICE_SECONDS;
        want.cost_dollars += DONE_COST_DOLLARS;
        want.epochs_run = DONE_EPOCHS_RUN;
        want.best_epoch = DONE_BEST_EPOCH;
    }
    want
}

/// The error the table expects.
fn expected_error(before: &TrialRecord, ev: Ev, refusal: Refusal) -> TransitionError {
    let trial = TRIAL.to_string();
    let event_name = event(ev).name();
    match refusal {
        Refusal::Terminal => TransitionError::Terminal {
            trial,
            state: before.state.as_str(),
            event: event_name,
        },
        Refusal::NotCurrent => TransitionError::NotCurrent {
            trial,
            lease: lease_named(ev)
                .expect("a not-current refusal names a lease")
                .into(),
        },
        Refusal::WrongState { needs } => TransitionError::WrongState {
            trial,
            state: before.state.as_str(),
            event: event_name,
            needs,
        },
        Refusal::Invalid => TransitionError::Invalid(String::new()),
    }
}

/// Checks one case against its row; the message says how it differs.
fn check_case(fx: Fx, ev: Ev, expect: Expect) -> Result<(), String> {
    let before = fixture(fx);
    let result = transition(&before, &event(ev));
    match (expect, result) {
        (Accepted(after), Ok(got)) => {
            let want = expected_trial(&before, &after);
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "accepted, but\n    got  {got:?}\n    want {want:?}"
                ))
            }
        }
        (Refused(Refusal::Invalid), Err(TransitionError::Invalid(message))) => {
            if message.is_empty() {
                Err("refused as invalid without a message".into())
            } else {
                Ok(())
            }
        }
        (Refused(refusal), Err(got)) => {
            let want = expected_error(&before, ev, refusal);
            if got == want {
                Ok(())
            } else {
                Err(format!("refused, but\n    got  {got:?}\n    want {want:?}"))
            }
        }
        (Accepted(_), Err(error)) => Err(format!("expected Ok, got Err({error:?})")),
        (Refused(refusal), Ok(got)) => Err(format!("expected {refusal:?}, got Ok({got:?})")),
    }
}

#[test]
fn the_transition_table_holds_for_every_fixture_and_event() {
    let mut rows_used = vec![0_usize; TABLE.len()];
    let mut failures = Vec::new();
    let mut checked = 0;
    for fx in ALL_FIXTURES {
        for ev in ALL_EVENTS {
            let matching: Vec<usize> = (0..TABLE.len())
                .filter(|&i| TABLE[i].fixtures.contains(&fx) && TABLE[i].events.contains(&ev))
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "{fx:?} × {ev:?} must match exactly one row, matches rows {matching:?}"
            );
            let row_index = matching[0];
            rows_used[row_index] += 1;
            if let Err(why) = check_case(fx, ev, TABLE[row_index].expect) {
                failures.push(format!("{fx:?} × {ev:?} (row {row_index}): {why}"));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 350, "10 fixtures × 35 events");
    let unused: Vec<usize> = (0..TABLE.len()).filter(|&i| rows_used[i] == 0).collect();
    assert!(unused.is_empty(), "rows {unused:?} match no case");
}

/// Forces this file to be revisited when a state, an event or an outcome is added.
fn state_index(state: TrialState) -> usize {
    match state {
        TrialState::Pending => 0,
        TrialState::Leased => 1,
        TrialState::Running => 2,
        TrialState::Succeeded => 3,
        TrialState::Failed => 4,
        TrialState::Cancelled => 5,
        TrialState::EarlyStopped => 6,
    }
}

fn event_index(event: &TrialEvent) -> usize {
    match event {
        TrialEvent::Lease { .. } => 0,
        TrialEvent::Renew { .. } => 1,
        TrialEvent::Revive { .. } => 2,
        TrialEvent::Expire { .. } => 3,
        TrialEvent::Release { .. } => 4,
        TrialEvent::Complete { .. } => 5,
        TrialEvent::Stop { .. } => 6,
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed => 1,
        Outcome::Stopped => 2,
        Outcome::Interrupted => 3,
    }
}

#[test]
fn the_table_covers_every_state_event_kind_and_outcome() {
    let mut states = [false; 7];
    for fx in ALL_FIXTURES {
        states[state_index(fixture(fx).state)] = true;
    }
    assert_eq!(states, [true; 7], "a TrialState has no fixture");
    let events = ALL_EVENTS;
    let mut kinds = [false; 7];
    let mut outcomes = [false; 4];
    for (i, &ev) in events.iter().enumerate() {
        assert!(!events[..i].contains(&ev), "{ev:?} is listed twice");
        let built = event(ev);
        kinds[event_index(&built)] = true;
        if let TrialEvent::Complete { completion, .. } = &built {
            outcomes[outcome_index(completion.outcome)] = true;
        }
    }
    assert_eq!(kinds, [true; 7], "an event kind is missing");
    assert_eq!(outcomes, [true; 4], "an outcome is missing");
}

#[test]
fn every_fixture_is_consistent() {
    for fx in ALL_FIXTURES {
        let trial = fixture(fx);
        if let Err(why) = consistent(&trial) {
            panic!("fixture {fx:?} is inconsistent: {why}");
        }
    }
}

#[test]
fn refusals_map_to_grpc_friendly_errors() {
    let invalid = transition(&fixture(Fx::Running), &own_event(Done::SucceededNoValue))
        .expect_err("a success without a value is refused");
    assert!(matches!(
        crate::Error::from(invalid),
        crate::Error::InvalidArgument(_)
    ));
    let stale = transition(&fixture(Fx::Running), &event(Ev::Renew(Who::Earlier)))
        .expect_err("an earlier lease is refused");
    assert!(matches!(
        crate::Error::from(stale),
        crate::Error::FailedPrecondition(_)
    ));
}

/// An agent that leases a trial and gives it back, again and again, gets
/// [`MAX_INTERRUPTIONS`] attempts: the last interruption fails the trial with a reason, whether
/// it comes as a release (unregistering) or as an interrupted completion.
#[test]
fn a_trial_interrupted_without_end_fails_at_the_cap() {
    use super::lifecycle::MAX_INTERRUPTIONS;
    for by_completion in [false, true] {
        let mut trial = fresh_trial();
        for attempt in 1..=MAX_INTERRUPTIONS {
            let lease_id = LeaseId(format!("lease-{attempt}"));
            let lease = TrialEvent::Lease {
                lease_id: lease_id.clone(),
                agent_id: AgentId::from(HOLDER),
                instance_type: String::new(),
                deadline_unix: NOW + 60.0,
            };
            trial = transition(&trial, &lease).expect("a pending trial is leased");
            let give_back = if by_completion {
                TrialEvent::Complete {
                    lease_id,
                    completion: super::Completion {
                        outcome: Outcome::Interrupted,
                        value: None,
                        epochs_run: 0,
                        best_epoch: 0,
                        wall_seconds: 1.0,
                        device_seconds: 1.0,
                        cost_dollars: 0.0,
                        failure_reason: String::new(),
                        metrics: std::collections::BTreeMap::new(),
                    },
                    last_epoch_value: None,
                    experiment_stopped: false,
                    now_unix: NOW,
                }
            } else {
                TrialEvent::Release {
                    lease_id,
                    now_unix: NOW,
                }
            };
            trial = transition(&trial, &give_back).expect("the holder gives it back");
            consistent(&trial).expect("consistent");
            let want = if attempt < MAX_INTERRUPTIONS {
                TrialState::Pending
            } else {
                TrialState::Failed
            };
            assert_eq!(trial.state, want, "after interruption {attempt}");
        }
        assert_eq!(trial.interruptions, MAX_INTERRUPTIONS);
        assert!(
            trial.failure_reason.contains("interrupted 100 times"),
            "{}",
            trial.failure_reason
        );
        assert_eq!(trial.finished_unix, Some(NOW));
    }
}

fn own_event(done: Done) -> TrialEvent {
    event(own(done))
}

/// The invariants of one trial record.
pub(super) fn consistent(trial: &TrialRecord) -> Result<(), String> {
    let state = trial.state;
    if state.is_terminal() && trial.lease.is_some() {
        return Err(format!("terminal ({state:?}) but holds a lease"));
    }
    if state.is_leased() {
        let Some(lease) = &trial.lease else {
            return Err(format!("{state:?} without a lease"));
        };
        if trial.last_lease_id.as_ref() != Some(&lease.lease_id) {
            return Err(format!(
                "lease {:?} is not the last lease {:?}",
                lease.lease_id, trial.last_lease_id
            ));
        }
    }
    if state == TrialState::Pending && trial.lease.is_some() {
        return Err("pending but holds a lease".into());
    }
    if trial.interruptions > trial.attempts {
        return Err(format!(
            "{} interruptions > {} attempts",
            trial.interruptions, trial.attempts
        ));
    }
    if trial.finished_unix.is_some() != state.is_terminal() {
        return Err(format!(
            "{state:?} with finished_unix {:?}",
            trial.finished_unix
        ));
    }
    if matches!(state, TrialState::Succeeded | TrialState::EarlyStopped) && trial.value.is_none() {
        return Err(format!("{state:?} without a value"));
    }
    if state == TrialState::Pending && trial.stop_requested {
        return Err("pending with a stop requested".into());
    }
    Ok(())
}
