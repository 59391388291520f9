//! The fixtures of the transition table: one trial per state, built consistently, and the
//! events applied to each.

use tuner::space::Assignment;

use crate::service::lifecycle::TrialEvent;
use crate::service::model::{
    AgentId, ExperimentId, LeaseId, LeaseRecord, TrialId, TrialRecord, TrialState,
};
use crate::service::{Completion, Outcome};

pub(super) const TRIAL: &str = "trial-t";
/// The latest attempt's lease (attempt 3): current while leased, expired while pending.
pub(super) const OWN: &str = "lease-3";
/// The lease of an earlier attempt (attempt 2, expired): never current again.
pub(super) const EARLIER: &str = "lease-2";
/// The lease a `Lease` event hands out (attempt 4).
pub(super) const NEW: &str = "lease-4";
/// The agent holding (or last holding) the trial.
pub(super) const HOLDER: &str = "agent-a";
/// The agent a `Lease` event hands the trial to.
pub(super) const NEWCOMER: &str = "agent-b";
pub(super) const NEWCOMER_INSTANCE: &str = "p5.48xlarge";
/// Every event happens at this time.
pub(super) const NOW: f64 = 1000.0;
/// The deadline of the fixtures' current lease.
pub(super) const OLD_DEADLINE: f64 = 990.0;
/// The deadline an event sets.
pub(super) const NEW_DEADLINE: f64 = 1060.0;

/// The trial fixtures. Those with a history had three attempts: the first interrupted, the
/// second expired, the third under [`OWN`]. So two attempts count towards `max_attempts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fx {
    /// Never leased.
    PendingNew,
    /// Back in the queue after [`OWN`] expired.
    PendingRetry,
    Leased,
    /// Leased, and the experiment was stopped since.
    LeasedStopping,
    Running,
    RunningStopping,
    Succeeded,
    Failed,
    Cancelled,
    EarlyStopped,
}

pub(super) const ALL_FIXTURES: [Fx; 10] = [
    Fx::PendingNew,
    Fx::PendingRetry,
    Fx::Leased,
    Fx::LeasedStopping,
    Fx::Running,
    Fx::RunningStopping,
    Fx::Succeeded,
    Fx::Failed,
    Fx::Cancelled,
    Fx::EarlyStopped,
];
pub(super) const PENDING: &[Fx] = &[Fx::PendingNew, Fx::PendingRetry];
/// Held by an agent, no stop requested.
pub(super) const GOING: &[Fx] = &[Fx::Leased, Fx::Running];
/// Held by an agent, stop requested.
pub(super) const STOPPING: &[Fx] = &[Fx::LeasedStopping, Fx::RunningStopping];
pub(super) const HELD: &[Fx] = &[
    Fx::Leased,
    Fx::LeasedStopping,
    Fx::Running,
    Fx::RunningStopping,
];
/// Those for which [`OWN`] may still complete: held, or pending after it expired.
pub(super) const OWNED: &[Fx] = &[
    Fx::PendingRetry,
    Fx::Leased,
    Fx::LeasedStopping,
    Fx::Running,
    Fx::RunningStopping,
];
pub(super) const LIVE: &[Fx] = &[
    Fx::PendingNew,
    Fx::PendingRetry,
    Fx::Leased,
    Fx::LeasedStopping,
    Fx::Running,
    Fx::RunningStopping,
];
pub(super) const TERMINAL: &[Fx] = &[Fx::Succeeded, Fx::Failed, Fx::Cancelled, Fx::EarlyStopped];

pub(super) fn lease_record(lease: &str, agent: &str, deadline_unix: f64) -> LeaseRecord {
    LeaseRecord {
        lease_id: LeaseId::from(lease),
        agent_id: AgentId::from(agent),
        deadline_unix,
    }
}

pub(super) fn fresh_trial() -> TrialRecord {
    TrialRecord {
        id: TrialId::from(TRIAL),
        experiment_id: ExperimentId::from("exp-e"),
        number: 7,
        params: Assignment::new(),
        state: TrialState::Pending,
        value: None,
        attempts: 0,
        interruptions: 0,
        agent_id: None,
        lease: None,
        last_lease_id: None,
        epochs_run: 0,
        best_epoch: 0,
        wall_seconds: 0.0,
        device_seconds: 0.0,
        cost_dollars: 0.0,
        failure_reason: String::new(),
        metrics: Default::default(),
        instance_type: String::new(),
        created_unix: 100.0,
        finished_unix: None,
        stop_requested: false,
        imported: false,
    }
}

pub(super) fn fixture(fx: Fx) -> TrialRecord {
    if fx == Fx::PendingNew {
        return fresh_trial();
    }
    let mut trial = TrialRecord {
        attempts: 3,
        interruptions: 1,
        agent_id: Some(AgentId::from(HOLDER)),
        last_lease_id: Some(LeaseId::from(OWN)),
        epochs_run: 4,
        best_epoch: 2,
        wall_seconds: 30.0,
        device_seconds: 20.0,
        cost_dollars: 1.5,
        instance_type: "g5.xlarge".into(),
        ..fresh_trial()
    };
    let held = lease_record(OWN, HOLDER, OLD_DEADLINE);
    match fx {
        Fx::PendingNew | Fx::PendingRetry => {}
        Fx::Leased | Fx::LeasedStopping => {
            trial.state = TrialState::Leased;
            trial.lease = Some(held);
            trial.stop_requested = fx == Fx::LeasedStopping;
        }
        Fx::Running | Fx::RunningStopping => {
            trial.state = TrialState::Running;
            trial.lease = Some(held);
            trial.stop_requested = fx == Fx::RunningStopping;
        }
        Fx::Succeeded => {
            trial.state = TrialState::Succeeded;
            trial.value = Some(0.9);
            trial.finished_unix = Some(900.0);
        }
        Fx::Failed => {
            trial.state = TrialState::Failed;
            trial.failure_reason = "out of memory".into();
            trial.finished_unix = Some(900.0);
        }
        Fx::Cancelled => {
            trial.state = TrialState::Cancelled;
            trial.finished_unix = Some(900.0);
        }
        Fx::EarlyStopped => {
            trial.state = TrialState::EarlyStopped;
            trial.value = Some(0.7);
            trial.finished_unix = Some(900.0);
        }
    }
    trial
}

// Events.

/// The lease an event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Who {
    /// [`OWN`]: the current lease, or the latest, expired one of a pending trial.
    Own,
    /// [`EARLIER`]: a stranger to the current attempt.
    Earlier,
}

impl Who {
    pub(super) fn lease(self) -> &'static str {
        match self {
            Who::Own => OWN,
            Who::Earlier => EARLIER,
        }
    }
}

/// What a completion reports. `ExpStopped` variants say the experiment was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Done {
    SucceededValue,
    SucceededValueExpStopped,
    SucceededNoValue,
    FailedReason,
    FailedNoReason,
    StoppedValue,
    StoppedValueExpStopped,
    StoppedLastEpoch,
    StoppedLastEpochExpStopped,
    StoppedNeither,
    StoppedNeitherExpStopped,
    /// With a value, which an interrupted attempt must not record.
    Interrupted,
}

pub(super) const ALL_DONE: [Done; 12] = [
    Done::SucceededValue,
    Done::SucceededValueExpStopped,
    Done::SucceededNoValue,
    Done::FailedReason,
    Done::FailedNoReason,
    Done::StoppedValue,
    Done::StoppedValueExpStopped,
    Done::StoppedLastEpoch,
    Done::StoppedLastEpochExpStopped,
    Done::StoppedNeither,
    Done::StoppedNeitherExpStopped,
    Done::Interrupted,
];

/// The amounts every completion reports.
pub(super) const DONE_WALL_SECONDS: f64 = 10.0;
pub(super) const DONE_DEVICE_SECONDS: f64 = 8.0;
pub(super) const DONE_COST_DOLLARS: f64 = 0.25;
pub(super) const DONE_EPOCHS_RUN: u32 = 6;
pub(super) const DONE_BEST_EPOCH: u32 = 5;
/// The value a completion reports (when it has one).
pub(super) const REPORTED: f64 = 0.8;
/// The value of the attempt's last stored epoch (when there is one).
pub(super) const LAST_EPOCH: f64 = 0.6;

/// One event of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ev {
    Lease,
    Renew(Who),
    Revive(Who),
    /// With this `max_attempts`.
    Expire(u32),
    Release(Who),
    Complete(Who, Done),
    Stop,
}

pub(super) const fn completions(who: Who) -> [Ev; 12] {
    let mut out = [Ev::Stop; 12];
    let mut i = 0;
    while i < ALL_DONE.len() {
        out[i] = Ev::Complete(who, ALL_DONE[i]);
        i += 1;
    }
    out
}

pub(super) const COMPLETE_OWN: [Ev; 12] = completions(Who::Own);
pub(super) const COMPLETE_EARLIER: [Ev; 12] = completions(Who::Earlier);
/// `max_attempts` above the attempts, equal to them (one was interrupted, so 2 count), and equal
/// to the 2 counted attempts.
pub(super) const EXPIRES: &[Ev] = &[Ev::Expire(4), Ev::Expire(3), Ev::Expire(2)];
pub(super) const OTHER_EVENTS: [Ev; 11] = [
    Ev::Lease,
    Ev::Renew(Who::Own),
    Ev::Renew(Who::Earlier),
    Ev::Revive(Who::Own),
    Ev::Revive(Who::Earlier),
    Ev::Expire(4),
    Ev::Expire(3),
    Ev::Expire(2),
    Ev::Release(Who::Own),
    Ev::Release(Who::Earlier),
    Ev::Stop,
];

/// What each completion carries: outcome, value, failure reason, the last stored epoch's value,
/// and whether the experiment was stopped.
#[rustfmt::skip]
pub(super) fn done_parts(done: Done) -> (Outcome, Option<f64>, &'static str, Option<f64>, bool) {
    match done {
        Done::SucceededValue             => (Outcome::Succeeded, Some(REPORTED), "", Some(LAST_EPOCH), false),
        Done::SucceededValueExpStopped   => (Outcome::Succeeded, Some(REPORTED), "", Some(LAST_EPOCH), true),
        Done::SucceededNoValue           => (Outcome::Succeeded, None, "", Some(LAST_EPOCH), false),
        Done::FailedReason               => (Outcome::Failed, None, "diverged", Some(LAST_EPOCH), false),
        Done::FailedNoReason             => (Outcome::Failed, None, "", Some(LAST_EPOCH), false),
        Done::StoppedValue               => (Outcome::Stopped, Some(REPORTED), "", Some(LAST_EPOCH), false),
        Done::StoppedValueExpStopped     => (Outcome::Stopped, Some(REPORTED), "", Some(LAST_EPOCH), true),
        Done::StoppedLastEpoch           => (Outcome::Stopped, None, "", Some(LAST_EPOCH), false),
        Done::StoppedLastEpochExpStopped => (Outcome::Stopped, None, "", Some(LAST_EPOCH), true),
        Done::StoppedNeither             => (Outcome::Stopped, None, "", None, false),
        Done::StoppedNeitherExpStopped   => (Outcome::Stopped, None, "", None, true),
        Done::Interrupted                => (Outcome::Interrupted, Some(REPORTED), "", Some(LAST_EPOCH), false),
    }
}

pub(super) fn completion_event(who: Who, done: Done) -> TrialEvent {
    let (outcome, value, reason, last_epoch_value, experiment_stopped) = done_parts(done);
    TrialEvent::Complete {
        lease_id: LeaseId::from(who.lease()),
        completion: Completion {
            outcome,
            value,
            epochs_run: DONE_EPOCHS_RUN,
            best_epoch: DONE_BEST_EPOCH,
            wall_seconds: DONE_WALL_SECONDS,
            device_seconds: DONE_DEVICE_SECONDS,
            cost_dollars: DONE_COST_DOLLARS,
            failure_reason: reason.into(),
            metrics: Default::default(),
        },
        last_epoch_value,
        experiment_stopped,
        now_unix: NOW,
    }
}

pub(super) fn event(ev: Ev) -> TrialEvent {
    match ev {
        Ev::Lease => TrialEvent::Lease {
            lease_id: LeaseId::from(NEW),
            agent_id: AgentId::from(NEWCOMER),
            instance_type: NEWCOMER_INSTANCE.into(),
            deadline_unix: NEW_DEADLINE,
        },
        Ev::Renew(who) => TrialEvent::Renew {
            lease_id: LeaseId::from(who.lease()),
            deadline_unix: NEW_DEADLINE,
        },
        Ev::Revive(who) => TrialEvent::Revive {
            lease_id: LeaseId::from(who.lease()),
            agent_id: AgentId::from(HOLDER),
            deadline_unix: NEW_DEADLINE,
        },
        Ev::Expire(max_attempts) => TrialEvent::Expire {
            now_unix: NOW,
            max_attempts,
        },
        Ev::Release(who) => TrialEvent::Release {
            lease_id: LeaseId::from(who.lease()),
            now_unix: NOW,
        },
        Ev::Complete(who, done) => completion_event(who, done),
        Ev::Stop => TrialEvent::Stop { now_unix: NOW },
    }
}

/// Every event of the table.
pub(super) const ALL_EVENTS: [Ev; EVENT_COUNT] = {
    let mut out = [Ev::Stop; EVENT_COUNT];
    let mut i = 0;
    while i < OTHER_EVENTS.len() {
        out[i] = OTHER_EVENTS[i];
        i += 1;
    }
    let mut j = 0;
    while j < 12 {
        out[11 + j] = COMPLETE_OWN[j];
        out[23 + j] = COMPLETE_EARLIER[j];
        j += 1;
    }
    out
};

/// The events of the table.
pub(super) const EVENT_COUNT: usize = 35;

/// A completion under [`OWN`].
pub(super) const fn own(done: Done) -> Ev {
    Ev::Complete(Who::Own, done)
}
