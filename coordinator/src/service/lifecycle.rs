//! The trial as a state machine: every change to a trial's lifecycle goes through [`transition`],
//! a pure function of the trial and one [`TrialEvent`] that returns the new trial or says why the
//! event does not apply. Times come in with the event, so the module reads no clock.
//!
//! ```text
//!            Lease                 Renew (heartbeat, epoch report)
//!  Pending ─────────▶ Leased ─────────────────▶ Running ──┐
//!     ▲  ▲              │ Expire / Release / Complete(Interrupted)   │
//!     │  └──────────────┴───────────────────────────────┘  (back to Pending, same
//!     │                                                        trial, next attempt)
//!     │ Revive (the last lease's holder speaks before anyone else got the trial)
//!  Leased|Running ──Complete──▶ Succeeded | Failed | EarlyStopped | Cancelled
//!  Pending ──Stop──▶ Cancelled        Leased|Running ──Stop──▶ same state, stop requested
//! ```
//!
//! Invariants, checked by the tests: a terminal trial holds no lease and never changes again (a
//! result is counted once); a leased trial's lease is its `last_lease_id`; `attempts` never
//! decreases and numbers the attempt every epoch report belongs to; `interruptions <= attempts`.
//! An attempt that expires counts towards `max_attempts`; an interrupted one does not, but a
//! trial interrupted [`MAX_INTERRUPTIONS`] times fails, so an agent that keeps giving a trial
//! back cannot add attempts (and their epoch reports) without end.

use super::model::{AgentId, LeaseId, LeaseRecord, TrialRecord, TrialState};
use super::{Completion, Outcome};

/// Something that happens to a trial.
#[derive(Clone, Debug, PartialEq)]
pub enum TrialEvent {
    /// The trial is handed to an agent (`Pending → Leased`, a new attempt).
    Lease {
        /// The new attempt's lease.
        lease_id: LeaseId,
        /// The agent taking it.
        agent_id: AgentId,
        /// The agent's instance type, for cost reports.
        instance_type: String,
        /// When the lease expires unless renewed, Unix seconds.
        deadline_unix: f64,
    },
    /// A heartbeat or epoch report renewed the current lease (`Leased → Running`).
    Renew {
        /// The lease renewed.
        lease_id: LeaseId,
        /// The new deadline, Unix seconds.
        deadline_unix: f64,
    },
    /// The holder of the latest, expired lease spoke again before the trial was leased to anyone
    /// else: the same attempt goes on under the same lease (`Pending → Running`).
    Revive {
        /// The expired lease.
        lease_id: LeaseId,
        /// The agent that holds it.
        agent_id: AgentId,
        /// The new deadline, Unix seconds.
        deadline_unix: f64,
    },
    /// The lease ran out without renewal.
    Expire {
        /// When, Unix seconds.
        now_unix: f64,
        /// Attempts the trial gets before it fails (interrupted attempts do not count).
        max_attempts: u32,
    },
    /// The agent holding the lease let it go without a result (it unregistered): like an
    /// interrupted completion.
    Release {
        /// The lease released.
        lease_id: LeaseId,
        /// When, Unix seconds.
        now_unix: f64,
    },
    /// The agent ended its attempt. Accepted for the current lease, and for the latest lease
    /// of a pending trial that nobody else took after it expired (a result delivered late).
    Complete {
        /// The lease the agent held.
        lease_id: LeaseId,
        /// What it reported.
        completion: Completion,
        /// The value of the attempt's last stored epoch, for a stop without a value.
        last_epoch_value: Option<f64>,
        /// Whether the experiment was stopped (a stopped trial is then cancelled).
        experiment_stopped: bool,
        /// When, Unix seconds.
        now_unix: f64,
    },
    /// The experiment was stopped: a pending trial is cancelled, a leased one told to stop.
    Stop {
        /// When, Unix seconds.
        now_unix: f64,
    },
}

impl TrialEvent {
    /// The event's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lease { .. } => "lease",
            Self::Renew { .. } => "renew",
            Self::Revive { .. } => "revive",
            Self::Expire { .. } => "expire",
            Self::Release { .. } => "release",
            Self::Complete { .. } => "complete",
            Self::Stop { .. } => "stop",
        }
    }
}

/// Why an event does not apply to a trial.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TransitionError {
    /// The trial is terminal: it never changes again.
    #[error("trial '{trial}' already ended {state}; '{event}' does not apply")]
    Terminal {
        /// The trial.
        trial: String,
        /// Its terminal state.
        state: &'static str,
        /// The event refused.
        event: &'static str,
    },
    /// The lease named is not the trial's current one (expired and reassigned, or finished).
    #[error("lease '{lease}' is not current for trial '{trial}' (expired, reassigned or finished)")]
    NotCurrent {
        /// The trial.
        trial: String,
        /// The lease named.
        lease: String,
    },
    /// The event needs another state.
    #[error("trial '{trial}' is {state}; '{event}' needs it {needs}")]
    WrongState {
        /// The trial.
        trial: String,
        /// Its state.
        state: &'static str,
        /// The event refused.
        event: &'static str,
        /// What the event needs.
        needs: &'static str,
    },
    /// The event itself is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl From<TransitionError> for crate::Error {
    fn from(error: TransitionError) -> Self {
        match error {
            TransitionError::Invalid(message) => crate::Error::InvalidArgument(message),
            other => crate::Error::FailedPrecondition(other.to_string()),
        }
    }
}

fn wrong_state(trial: &TrialRecord, event: &TrialEvent, needs: &'static str) -> TransitionError {
    TransitionError::WrongState {
        trial: trial.id.0.clone(),
        state: trial.state.as_str(),
        event: event.name(),
        needs,
    }
}

fn not_current(trial: &TrialRecord, lease: &LeaseId) -> TransitionError {
    TransitionError::NotCurrent {
        trial: trial.id.0.clone(),
        lease: lease.0.clone(),
    }
}

/// Whether `lease` is the trial's current lease.
fn holds(trial: &TrialRecord, lease: &LeaseId) -> bool {
    trial.lease.as_ref().is_some_and(|l| &l.lease_id == lease)
}

/// Whether `lease` is the latest lease of a pending trial that nobody took after it expired.
fn expired_latest(trial: &TrialRecord, lease: &LeaseId) -> bool {
    trial.state == TrialState::Pending
        && trial.lease.is_none()
        && trial.last_lease_id.as_ref() == Some(lease)
}

/// Applies one event to a trial.
///
/// # Errors
/// A [`TransitionError`] saying why the event does not apply; the trial is then unchanged.
pub fn transition(trial: &TrialRecord, event: &TrialEvent) -> Result<TrialRecord, TransitionError> {
    if trial.state.is_terminal() {
        return Err(TransitionError::Terminal {
            trial: trial.id.0.clone(),
            state: trial.state.as_str(),
            event: event.name(),
        });
    }
    let mut next = trial.clone();
    match event {
        TrialEvent::Lease {
            lease_id,
            agent_id,
            instance_type,
            deadline_unix,
        } => {
            if trial.state != TrialState::Pending {
                return Err(wrong_state(trial, event, "pending"));
            }
            next.state = TrialState::Leased;
            next.attempts += 1;
            next.agent_id = Some(agent_id.clone());
            next.instance_type.clone_from(instance_type);
            next.lease = Some(LeaseRecord {
                lease_id: lease_id.clone(),
                agent_id: agent_id.clone(),
                deadline_unix: *deadline_unix,
            });
            next.last_lease_id = Some(lease_id.clone());
            next.stop_requested = false;
        }
        TrialEvent::Renew {
            lease_id,
            deadline_unix,
        } => {
            if !holds(trial, lease_id) {
                return Err(not_current(trial, lease_id));
            }
            next.state = TrialState::Running;
            if let Some(lease) = next.lease.as_mut() {
                lease.deadline_unix = *deadline_unix;
            }
        }
        TrialEvent::Revive {
            lease_id,
            agent_id,
            deadline_unix,
        } => {
            if !expired_latest(trial, lease_id) {
                return Err(not_current(trial, lease_id));
            }
            next.state = TrialState::Running;
            next.agent_id = Some(agent_id.clone());
            next.lease = Some(LeaseRecord {
                lease_id: lease_id.clone(),
                agent_id: agent_id.clone(),
                deadline_unix: *deadline_unix,
            });
        }
        TrialEvent::Expire {
            now_unix,
            max_attempts,
        } => {
            if !trial.state.is_leased() {
                return Err(wrong_state(trial, event, "leased or running"));
            }
            next.lease = None;
            let counted = trial.attempts.saturating_sub(trial.interruptions);
            if trial.stop_requested {
                next.state = TrialState::Cancelled;
                next.finished_unix = Some(*now_unix);
            } else if counted >= *max_attempts {
                next.state = TrialState::Failed;
                next.failure_reason = format!("lease expired on each of {counted} attempts");
                next.finished_unix = Some(*now_unix);
            } else {
                next.state = TrialState::Pending;
            }
        }
        TrialEvent::Release { lease_id, now_unix } => {
            if !holds(trial, lease_id) {
                return Err(not_current(trial, lease_id));
            }
            interrupt(&mut next, *now_unix);
        }
        TrialEvent::Complete {
            lease_id,
            completion,
            last_epoch_value,
            experiment_stopped,
            now_unix,
        } => {
            let late = expired_latest(trial, lease_id);
            if !holds(trial, lease_id) && !late {
                return Err(not_current(trial, lease_id));
            }
            if late && completion.outcome == Outcome::Interrupted {
                // The attempt is already back in the queue.
                return Ok(next);
            }
            complete(
                &mut next,
                completion,
                *last_epoch_value,
                *experiment_stopped,
                *now_unix,
            )?;
        }
        TrialEvent::Stop { now_unix } => match trial.state {
            TrialState::Pending => {
                next.state = TrialState::Cancelled;
                next.finished_unix = Some(*now_unix);
            }
            _ => next.stop_requested = true,
        },
    }
    Ok(next)
}

/// The most interrupted attempts a trial gets: the next interruption fails it. Far above what
/// a fleet of preemptible instances gives one trial, and it bounds the attempts (each with up
/// to its planned epochs of reports) an agent can add by interrupting.
pub const MAX_INTERRUPTIONS: u32 = 100;

/// The attempt ends without a result: back to the queue (not counted towards `max_attempts`),
/// cancelled when a stop was requested, or failed after [`MAX_INTERRUPTIONS`].
fn interrupt(next: &mut TrialRecord, now_unix: f64) {
    next.lease = None;
    next.interruptions = (next.interruptions + 1).min(next.attempts);
    if next.stop_requested {
        next.state = TrialState::Cancelled;
        next.finished_unix = Some(now_unix);
    } else if next.interruptions >= MAX_INTERRUPTIONS {
        next.state = TrialState::Failed;
        next.failure_reason = format!(
            "interrupted {} times: its agents gave it back (shutting down) before it finished",
            next.interruptions
        );
        next.finished_unix = Some(now_unix);
    } else {
        next.state = TrialState::Pending;
        next.finished_unix = None;
    }
}

fn complete(
    next: &mut TrialRecord,
    completion: &Completion,
    last_epoch_value: Option<f64>,
    experiment_stopped: bool,
    now_unix: f64,
) -> Result<(), TransitionError> {
    if completion.outcome == Outcome::Succeeded && completion.value.is_none() {
        return Err(TransitionError::Invalid(
            "a succeeded trial needs a value".into(),
        ));
    }
    next.wall_seconds += completion.wall_seconds;
    next.device_seconds += completion.device_seconds;
    next.cost_dollars += completion.cost_dollars;
    next.epochs_run = completion.epochs_run;
    next.best_epoch = completion.best_epoch;
    if completion.outcome != Outcome::Interrupted {
        next.metrics = completion.metrics.clone();
    }
    next.lease = None;
    next.finished_unix = Some(now_unix);
    match completion.outcome {
        Outcome::Succeeded => {
            next.state = TrialState::Succeeded;
            next.value = completion.value;
        }
        Outcome::Failed => {
            next.state = TrialState::Failed;
            next.failure_reason = if completion.failure_reason.is_empty() {
                "failed without a reason".into()
            } else {
                completion.failure_reason.clone()
            };
        }
        Outcome::Stopped => {
            next.value = completion.value.or(last_epoch_value);
            next.state = if experiment_stopped || next.value.is_none() {
                TrialState::Cancelled
            } else {
                TrialState::EarlyStopped
            };
        }
        Outcome::Interrupted => interrupt(next, now_unix),
    }
    Ok(())
}

/// The trial after its current attempt reported `epoch`: the epochs it ran so far. Progress is
/// not a change of state, so it is kept apart from [`transition`].
pub fn progress(trial: &TrialRecord, epoch: u32) -> TrialRecord {
    let mut next = trial.clone();
    if trial.state.is_leased() {
        next.epochs_run = next.epochs_run.max(epoch);
    }
    next
}
