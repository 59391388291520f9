//! The agent side of the domain: registration, leases, heartbeats, epoch reports, completions
//! and the lease-expiry sweep.

use std::time::Duration;

use tracing::{debug, info, instrument, warn};

use super::early_stop::{Decision, Rule, decide_one};
use super::model::{
    AgentCapabilities, AgentId, AgentRecord, Direction, EpochRecord, ExperimentState, LeaseId,
    LeaseRecord, TrialRecord, TrialState, now_unix,
};
use super::state::State;
use super::{
    AgentService, Completion, Coordinator, EpochInput, Lease, LeaseAction, LeaseOutcome,
    LeaseStatus, Outcome, Registration,
};
use crate::store::Change;
use crate::{Error, Result};

fn check_finite(what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} must be finite, got {value}"
        )))
    }
}

impl Coordinator {
    fn deadline(&self) -> f64 {
        now_unix() + self.inner.settings.lease_timeout.as_secs_f64()
    }

    /// The trial holding a current, unexpired lease.
    fn current_lease<'s>(state: &'s State, lease_id: &LeaseId) -> Result<&'s TrialRecord> {
        let trial = state.trial_by_lease(lease_id).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "lease '{lease_id}' is not current (expired, reassigned or finished)"
            ))
        })?;
        let deadline = trial.lease.as_ref().map_or(0.0, |l| l.deadline_unix);
        if deadline < now_unix() {
            return Err(Error::FailedPrecondition(format!(
                "lease '{lease_id}' expired"
            )));
        }
        Ok(trial)
    }

    /// Whether the agent holding this trial should stop it: the experiment was stopped or
    /// ended, or its early-stopping rule says the trial lags at its latest epoch.
    fn should_stop(state: &State, trial: &TrialRecord) -> bool {
        let Ok(experiment) = state.experiment(&trial.experiment_id) else {
            return true;
        };
        trial.stop_requested
            || experiment.state != ExperimentState::Running
            || Self::early_stop(
                state,
                experiment.spec.early_stopping,
                experiment.spec.direction,
                trial,
            )
    }

    /// The experiment's early-stopping rule applied to the trial's latest epoch.
    fn early_stop(state: &State, rule: Rule, direction: Direction, trial: &TrialRecord) -> bool {
        if rule == Rule::None {
            return false;
        }
        let (curves, index) = state.learning_curves(&trial.experiment_id, &trial.id);
        let Some(index) = index else { return false };
        let direction = match direction {
            Direction::Maximize => tuner::Direction::Maximize,
            Direction::Minimize => tuner::Direction::Minimize,
        };
        let stop = decide_one(&rule, direction, &curves, index) == Decision::Stop;
        if stop {
            info!(trial_id = %trial.id, rule = rule.label(), epoch = trial.epochs_run, "early stop");
        }
        stop
    }

    /// Requeues (or fails, after `max_attempts`) every trial whose lease expired.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub async fn expire_leases(&self) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        let now = now_unix();
        let mut changes = Vec::new();
        let mut experiments = Vec::new();
        for trial in state.leased_trials() {
            if trial.lease.as_ref().is_none_or(|l| l.deadline_unix >= now) {
                continue;
            }
            let max_attempts = state
                .experiment(&trial.experiment_id)
                .map_or(1, |e| e.spec.max_attempts);
            let mut updated = trial.clone();
            updated.lease = None;
            if trial.attempts >= max_attempts {
                updated.state = TrialState::Failed;
                updated.failure_reason =
                    format!("lease expired on each of {} attempts", trial.attempts);
                updated.finished_unix = Some(now);
            } else if trial.stop_requested {
                updated.state = TrialState::Cancelled;
                updated.finished_unix = Some(now);
            } else {
                updated.state = TrialState::Pending;
            }
            warn!(trial_id = %trial.id, attempts = trial.attempts, state = updated.state.as_str(), "lease expired");
            self.inner.metrics.leases_expired_total.inc();
            experiments.push(trial.experiment_id.clone());
            changes.push(Change::PutTrial(updated));
        }
        self.commit(&mut state, changes).await?;
        experiments.dedup();
        for id in experiments {
            self.advance_or_log(&mut state, &id).await;
        }
        self.refresh_gauges(&state);
        Ok(())
    }

    /// Leases the first pending trial of `experiment` the agent can take.
    async fn lease_from(&self, state: &mut State, agent: &AgentRecord) -> Result<Option<Lease>> {
        for id in state.running_experiments() {
            let experiment = state.experiment(&id)?.clone();
            if !agent.accepts(experiment.spec.workload.as_ref()) {
                continue;
            }
            let has_pending = |s: &State| {
                s.trials_of(&id)
                    .iter()
                    .any(|t| t.state == TrialState::Pending)
            };
            if !has_pending(state) {
                self.advance_or_log(state, &id).await;
            }
            let Some(trial) = state
                .trials_of(&id)
                .into_iter()
                .find(|t| t.state == TrialState::Pending)
            else {
                continue;
            };
            let mut updated = trial.clone();
            let lease = LeaseRecord {
                lease_id: LeaseId::generate(),
                agent_id: agent.id.clone(),
                deadline_unix: self.deadline(),
            };
            updated.state = TrialState::Leased;
            updated.attempts += 1;
            updated.agent_id = Some(agent.id.clone());
            updated
                .instance_type
                .clone_from(&agent.capabilities.instance_type);
            updated.lease = Some(lease.clone());
            updated.stop_requested = false;
            self.commit(state, vec![Change::PutTrial(updated.clone())])
                .await?;
            info!(trial_id = %updated.id, agent_id = %agent.id, attempt = updated.attempts, "trial leased");
            return Ok(Some(Lease {
                lease_id: lease.lease_id,
                trial_id: updated.id,
                experiment_id: id,
                params: updated.params,
                workload: experiment.spec.workload,
                deadline_unix: lease.deadline_unix,
                attempt: updated.attempts,
                metric: experiment.spec.metric,
                direction: experiment.spec.direction,
            }));
        }
        Ok(None)
    }

    /// The trial after an attempt ends, or an error when the completion is invalid.
    fn completed_trial(
        state: &State,
        trial: &TrialRecord,
        completion: &Completion,
    ) -> Result<TrialRecord> {
        let mut updated = trial.clone();
        updated.lease = None;
        updated.wall_seconds += completion.wall_seconds;
        updated.device_seconds += completion.device_seconds;
        updated.cost_dollars += completion.cost_dollars;
        updated.epochs_run = completion.epochs_run;
        updated.best_epoch = completion.best_epoch;
        updated.finished_unix = Some(now_unix());
        let last_epoch_value = || {
            state
                .epochs_of(&trial.id, trial.attempts)
                .last()
                .map(|e| e.value)
        };
        match completion.outcome {
            Outcome::Succeeded => {
                let value = completion.value.ok_or_else(|| {
                    Error::InvalidArgument("a succeeded trial needs a value".into())
                })?;
                updated.state = TrialState::Succeeded;
                updated.value = Some(value);
            }
            Outcome::Failed => {
                updated.state = TrialState::Failed;
                updated.failure_reason = if completion.failure_reason.is_empty() {
                    "failed without a reason".into()
                } else {
                    completion.failure_reason.clone()
                };
            }
            Outcome::Stopped => {
                let experiment_stopped = state
                    .experiment(&trial.experiment_id)
                    .map_or(true, |e| e.state == ExperimentState::Stopped);
                updated.state = if experiment_stopped {
                    TrialState::Cancelled
                } else {
                    TrialState::EarlyStopped
                };
                updated.value = completion.value.or_else(last_epoch_value);
                if updated.state == TrialState::EarlyStopped && updated.value.is_none() {
                    updated.state = TrialState::Cancelled;
                }
            }
            Outcome::Interrupted => {
                updated.state = if trial.stop_requested {
                    TrialState::Cancelled
                } else {
                    TrialState::Pending
                };
                updated.attempts = updated.attempts.saturating_sub(1);
                updated.finished_unix = None;
            }
        }
        if updated.state == TrialState::Cancelled {
            updated.finished_unix = Some(now_unix());
        }
        Ok(updated)
    }
}

impl AgentService for Coordinator {
    async fn unregister_agent(&self, _agent_id: AgentId) -> Result<u32> {
        Ok(0)
    }

    #[instrument(skip(self, capabilities))]
    async fn register_agent(
        &self,
        capabilities: AgentCapabilities,
        agent_id: Option<AgentId>,
    ) -> Result<Registration> {
        let now = now_unix();
        let agent = AgentRecord {
            id: agent_id.unwrap_or_else(AgentId::generate),
            capabilities,
            registered_unix: now,
            last_seen_unix: now,
        };
        let mut state = self.inner.state.lock().await;
        self.commit(&mut state, vec![Change::PutAgent(agent.clone())])
            .await?;
        info!(agent_id = %agent.id, backend = %agent.capabilities.backend, device = %agent.capabilities.device_name, "agent registered");
        Ok(Registration {
            agent_id: agent.id,
            heartbeat_interval: self.inner.settings.heartbeat_interval,
            lease_timeout: self.inner.settings.lease_timeout,
        })
    }

    #[instrument(skip(self), fields(agent_id = %agent_id))]
    async fn lease_trial(&self, agent_id: AgentId, _wait: Duration) -> Result<LeaseOutcome> {
        let mut state = self.inner.state.lock().await;
        let mut agent = state
            .agent(&agent_id)
            .cloned()
            .ok_or_else(|| Error::not_found("agent (register first)", &agent_id))?;
        agent.last_seen_unix = now_unix();
        state.apply(Change::PutAgent(agent.clone()));
        match self.lease_from(&mut state, &agent).await? {
            Some(lease) => Ok(LeaseOutcome::Lease(Box::new(lease))),
            None => {
                debug!("nothing to lease");
                Ok(LeaseOutcome::RetryAfter(self.inner.settings.retry_after))
            }
        }
    }

    #[instrument(skip(self, leases), fields(agent_id = %agent_id, leases = leases.len()))]
    async fn heartbeat(&self, agent_id: AgentId, leases: Vec<LeaseId>) -> Result<Vec<LeaseStatus>> {
        let mut state = self.inner.state.lock().await;
        if let Some(agent) = state.agent(&agent_id).cloned() {
            state.apply(Change::PutAgent(AgentRecord {
                last_seen_unix: now_unix(),
                ..agent
            }));
        }
        let mut statuses = Vec::with_capacity(leases.len());
        let mut changes = Vec::new();
        for lease_id in leases {
            let trial = match Self::current_lease(&state, &lease_id) {
                Ok(trial) if trial.lease.as_ref().is_some_and(|l| l.agent_id == agent_id) => trial,
                _ => {
                    statuses.push(LeaseStatus {
                        lease_id,
                        action: LeaseAction::Abandon,
                        deadline_unix: 0.0,
                    });
                    continue;
                }
            };
            let action = if Self::should_stop(&state, trial) {
                LeaseAction::Stop
            } else {
                LeaseAction::Continue
            };
            let mut updated = trial.clone();
            let deadline_unix = self.deadline();
            if let Some(lease) = updated.lease.as_mut() {
                lease.deadline_unix = deadline_unix;
            }
            if updated.state == TrialState::Leased {
                updated.state = TrialState::Running;
            }
            changes.push(Change::PutTrial(updated));
            statuses.push(LeaseStatus {
                lease_id,
                action,
                deadline_unix,
            });
        }
        self.commit(&mut state, changes).await?;
        Ok(statuses)
    }

    #[instrument(skip(self, report), fields(lease_id = %lease_id, epoch = report.epoch))]
    async fn report_epoch(&self, lease_id: LeaseId, report: EpochInput) -> Result<LeaseAction> {
        check_finite("epoch value", report.value)?;
        check_finite("train_loss", report.train_loss)?;
        check_finite("train_accuracy", report.train_accuracy)?;
        check_finite("epoch_seconds", report.epoch_seconds)?;
        let mut state = self.inner.state.lock().await;
        let trial = Self::current_lease(&state, &lease_id)?;
        let trial_id = trial.id.clone();
        let action = |state: &State| match state.trial(&trial_id) {
            Some(trial) if !Self::should_stop(state, trial) => LeaseAction::Continue,
            _ => LeaseAction::Stop,
        };
        if state.has_epoch(&trial.id, trial.attempts, report.epoch) {
            debug!(trial_id = %trial.id, "repeated epoch report ignored");
            return Ok(action(&state));
        }
        let epoch = EpochRecord {
            trial_id: trial.id.clone(),
            attempt: trial.attempts,
            epoch: report.epoch,
            value: report.value,
            train_loss: report.train_loss,
            train_accuracy: report.train_accuracy,
            epoch_seconds: report.epoch_seconds,
        };
        let mut updated = trial.clone();
        updated.state = TrialState::Running;
        updated.epochs_run = updated.epochs_run.max(report.epoch);
        if let Some(lease) = updated.lease.as_mut() {
            lease.deadline_unix = self.deadline();
        }
        info!(trial_id = %trial.id, value = report.value, "epoch done");
        self.commit(
            &mut state,
            vec![Change::AddEpoch(epoch), Change::PutTrial(updated)],
        )
        .await?;
        // Decided with this epoch recorded, so the rule judges the epoch just reported.
        Ok(action(&state))
    }

    #[instrument(skip(self, completion), fields(lease_id = %lease_id, outcome = ?completion.outcome))]
    async fn complete_trial(&self, lease_id: LeaseId, completion: Completion) -> Result<()> {
        if let Some(value) = completion.value {
            check_finite("value", value)?;
        }
        for (what, amount) in [
            ("wall_seconds", completion.wall_seconds),
            ("device_seconds", completion.device_seconds),
            ("cost_dollars", completion.cost_dollars),
        ] {
            check_finite(what, amount)?;
        }
        let mut state = self.inner.state.lock().await;
        let trial = Self::current_lease(&state, &lease_id)?.clone();
        let updated = Self::completed_trial(&state, &trial, &completion)?;
        let experiment_id = trial.experiment_id.clone();
        self.commit(&mut state, vec![Change::PutTrial(updated.clone())])
            .await?;
        self.inner
            .metrics
            .experiment_cost(&experiment_id.0)
            .inc_by(completion.cost_dollars.max(0.0));
        if let Some(best) = state.best_trial(&experiment_id).and_then(|t| t.value) {
            self.inner
                .metrics
                .best_objective
                .with_label_values(&[&experiment_id.0])
                .set(best);
        }
        info!(trial_id = %trial.id, state = updated.state.as_str(), value = ?updated.value, "trial finished");
        self.advance_or_log(&mut state, &experiment_id).await;
        Ok(())
    }
}
