//! The agent side of the domain: registration, fair leasing with a long poll, heartbeats, epoch
//! reports, completions, unregistering, and the sweep that expires leases and forgets silent
//! agents.
//!
//! Every request reads the monotonic clock once, when it arrives, before it takes any lock, and
//! judges and renews deadlines from that instant. A lease that expired while its trial was not
//! leased to anyone else is still honoured: the holder's next heartbeat or report revives it and
//! a late completion is accepted ([`lifecycle`](super::lifecycle)).
//!
//! Agents prove who they are with the secret their registration returned
//! ([`credentials`](super::credentials)): the gRPC layer calls [`AgentService::authorize_agent`]
//! or [`AgentService::authorize_lease`] before every call but the first registration. An agent
//! silent for the agent timeout is disconnected (not counted, told to register again when it asks
//! for work); one silent for the agent retention is forgotten, with its secret.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

use super::cell::ExperimentCell;
use super::credentials::{SecretDigest, generate_secret};
use super::early_stop::{Decision, Rule, decide_one};
use super::lifecycle::{TransitionError, TrialEvent, progress, transition};
use super::limits;
use super::model::{
    AgentCapabilities, AgentId, AgentRecord, EpochRecord, ExperimentId, ExperimentState, LeaseId,
    TrialId, TrialRecord, TrialState, now_unix,
};
use super::registry::{AgentEntry, LeaseHome};
use super::state::Live;
use super::workloads::leased_only_by_name;
use super::{
    AgentService, Completion, Coordinator, EpochInput, Lease, LeaseAction, LeaseOutcome,
    LeaseStatus, Registration,
};
use crate::store::Change;
use crate::store::writer::Ticket;
use crate::{Error, Result};

/// Wall-clock seconds of a monotonic deadline, for the API.
fn deadline_unix(deadline: Instant) -> f64 {
    now_unix()
        + deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
}

/// The shortest stall (time the coordinator did not run, beyond the sweep period) that
/// [`Coordinator::sweep`] forgives; shorter ones are scheduling noise.
pub const STALL_FORGIVEN: Duration = Duration::from_secs(1);

fn unknown_lease(lease_id: &LeaseId) -> Error {
    Error::FailedPrecondition(format!(
        "lease '{lease_id}' is not current (expired, reassigned or finished)"
    ))
}

impl Coordinator {
    /// The experiment and trial a lease belongs to.
    fn home(&self, lease_id: &LeaseId) -> Result<(Arc<ExperimentCell>, TrialId)> {
        let home = self
            .inner
            .leases
            .get(lease_id)
            .ok_or_else(|| unknown_lease(lease_id))?;
        let cell = self
            .cell(&home.experiment)
            .map_err(|_| unknown_lease(lease_id))?;
        Ok((cell, home.trial))
    }

    /// Whether the agent holding this trial should stop it: the experiment was stopped or ended,
    /// or its early-stopping rule stopped the trial at its latest epoch. A paused experiment's
    /// leased trials run to their end.
    fn should_stop(live: &Live, trial: &TrialRecord) -> bool {
        trial.stop_requested
            || !matches!(
                live.record.state,
                ExperimentState::Running | ExperimentState::Paused
            )
            || live.stop_decided(&trial.id)
    }

    fn action(live: &Live, trial: &TrialId) -> LeaseAction {
        match live.trial(trial) {
            Some(trial) if !Self::should_stop(live, trial) => LeaseAction::Continue,
            _ => LeaseAction::Stop,
        }
    }

    /// Applies the experiment's early-stopping rule to a trial's latest epoch and remembers the
    /// decision (heartbeats read it).
    fn decide_early_stop(live: &mut Live, trial_id: &TrialId) {
        let rule = live.record.spec.early_stopping;
        if rule == Rule::None {
            return;
        }
        let (curves, index) = live.learning_curves(trial_id);
        let Some(index) = index else { return };
        let direction = live.record.spec.direction;
        let stop = decide_one(&rule, direction, &curves, index) == Decision::Stop;
        if stop && !live.stop_decided(trial_id) {
            let epoch = live.trial(trial_id).map_or(0, |t| t.epochs_run);
            info!(trial_id = %trial_id, rule = rule.label(), epoch, "early stop");
        }
        live.set_stop_decided(trial_id, stop);
    }

    /// Recomputes the early-stopping decisions of every leased trial (after a restart).
    pub(crate) fn refresh_early_stops(&self, cell: &ExperimentCell) {
        let mut live = cell.lock();
        let leased: Vec<TrialId> = live
            .trials()
            .iter()
            .filter(|t| t.state.is_leased())
            .map(|t| t.id.clone())
            .collect();
        for id in leased {
            Self::decide_early_stop(&mut live, &id);
        }
    }

    /// Renews the lease `lease_id` of a trial at `arrival`, or revives it when it expired and
    /// nobody took the trial since. `agent` is checked when given. Returns the trial and the
    /// change to store, if the renewal changed the trial (its first renewal, or a revival). The
    /// caller applies the change, then sets the returned deadline.
    fn hold(
        &self,
        live: &mut Live,
        trial_id: &TrialId,
        lease_id: &LeaseId,
        agent: Option<&AgentId>,
        arrival: Instant,
    ) -> Result<(TrialRecord, Option<Change>, Instant)> {
        let trial = live
            .trial(trial_id)
            .cloned()
            .ok_or_else(|| unknown_lease(lease_id))?;
        let deadline = arrival + self.inner.settings.lease_timeout;
        let wall_deadline = deadline_unix(deadline);
        let holder = trial
            .lease
            .as_ref()
            .map(|l| &l.agent_id)
            .or(trial.agent_id.as_ref());
        if agent.is_some_and(|a| holder != Some(a)) {
            return Err(unknown_lease(lease_id));
        }
        let event = if trial
            .lease
            .as_ref()
            .is_some_and(|l| &l.lease_id == lease_id)
        {
            if trial.state == TrialState::Running {
                return Ok((trial, None, deadline));
            }
            TrialEvent::Renew {
                lease_id: lease_id.clone(),
                deadline_unix: wall_deadline,
            }
        } else {
            TrialEvent::Revive {
                lease_id: lease_id.clone(),
                agent_id: holder.cloned().unwrap_or_else(|| AgentId(String::new())),
                deadline_unix: wall_deadline,
            }
        };
        let updated = transition(&trial, &event)?;
        if matches!(event, TrialEvent::Revive { .. }) {
            info!(trial_id = %trial.id, lease_id = %lease_id, "expired lease revived: nobody else took the trial");
        }
        Ok((updated.clone(), Some(Change::PutTrial(updated)), deadline))
    }

    /// Leases a ready trial from the experiment with the smallest share of its parallelism in
    /// use (ties: the one that got fewest leases), among those the agent can train.
    async fn try_lease(
        &self,
        agent: &AgentRecord,
        only: Option<&ExperimentId>,
    ) -> Result<Option<Lease>> {
        let mut candidates: Vec<Arc<ExperimentCell>> = self
            .cells()
            .into_iter()
            .filter(|c| {
                only.is_none_or(|id| &c.id == id)
                    && (only.is_some() || !leased_only_by_name(c.workload.as_ref()))
                    && c.has_ready()
                    && agent.accepts(c.workload.as_ref())
            })
            .collect();
        candidates.sort_by(|a, b| {
            a.load().total_cmp(&b.load()).then_with(|| {
                a.leases_granted
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .cmp(&b.leases_granted.load(std::sync::atomic::Ordering::Relaxed))
            })
        });
        for cell in candidates {
            let Some((lease, ticket)) = self.lease_from(&cell, agent)? else {
                continue;
            };
            ticket.durable().await?;
            info!(trial_id = %lease.trial_id, agent_id = %agent.id, attempt = lease.attempt, "trial leased");
            return Ok(Some(lease));
        }
        Ok(None)
    }

    fn lease_from(
        &self,
        cell: &ExperimentCell,
        agent: &AgentRecord,
    ) -> Result<Option<(Lease, Ticket)>> {
        let mut live = cell.lock();
        if live.record.state != ExperimentState::Running {
            return Ok(None);
        }
        let Some(trial) = live.next_ready().cloned() else {
            return Ok(None);
        };
        let lease_id = LeaseId::generate();
        let deadline = Instant::now() + self.inner.settings.lease_timeout;
        let updated = transition(
            &trial,
            &TrialEvent::Lease {
                lease_id: lease_id.clone(),
                agent_id: agent.id.clone(),
                instance_type: agent.capabilities.instance_type.clone(),
                deadline_unix: deadline_unix(deadline),
            },
        )?;
        self.inner.leases.insert(
            lease_id.clone(),
            LeaseHome {
                experiment: cell.id.clone(),
                trial: trial.id.clone(),
                agent: agent.id.clone(),
            },
        );
        let ticket = self.mutate(cell, &mut live, vec![Change::PutTrial(updated.clone())]);
        live.set_deadline(&updated.id, deadline);
        cell.leases_granted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spec = &live.record.spec;
        let lease = Lease {
            lease_id,
            trial_id: updated.id,
            experiment_id: cell.id.clone(),
            params: updated.params,
            workload: spec.workload.clone(),
            deadline_unix: deadline_unix(deadline),
            attempt: updated.attempts,
            metric: spec.metric.clone(),
            direction: spec.direction,
        };
        Ok(Some((lease, ticket)))
    }

    /// Expires every lease whose deadline passed, requeueing (or failing, after `max_attempts`)
    /// its trial, then tops the experiments up.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub async fn expire_leases(&self) -> Result<()> {
        let now = Instant::now();
        let now_wall = now_unix();
        for cell in self.cells() {
            let (ticket, requeued) = {
                let mut live = cell.lock();
                let expired = live.expired(now);
                if expired.is_empty() {
                    continue;
                }
                let max_attempts = live.record.spec.max_attempts;
                let mut changes = Vec::new();
                let mut requeued = 0;
                for id in expired {
                    let Some(trial) = live.trial(&id) else {
                        continue;
                    };
                    let event = TrialEvent::Expire {
                        now_unix: now_wall,
                        max_attempts,
                    };
                    match transition(trial, &event) {
                        Ok(updated) => {
                            warn!(trial_id = %id, attempts = updated.attempts, state = updated.state.as_str(), "lease expired");
                            self.inner.metrics.leases_expired_total.inc();
                            requeued += usize::from(updated.state == TrialState::Pending);
                            changes.push(Change::PutTrial(updated));
                        }
                        Err(error) => warn!(trial_id = %id, %error, "cannot expire lease"),
                    }
                }
                (self.mutate(&cell, &mut live, changes), requeued)
            };
            self.announce(&cell, requeued);
            self.refill(&cell);
            ticket.durable().await?;
        }
        Ok(())
    }

    /// Disconnects agents not heard from for `agent_timeout` (their leases go on until they
    /// expire; their next lease request is told to register again) and forgets, in memory and in
    /// the store, those silent for `agent_retention`. Returns how many were disconnected now.
    pub fn prune_agents(&self) -> usize {
        let timeout = self.inner.settings.agent_timeout;
        let retention = self.inner.settings.agent_retention.max(timeout);
        let now = Instant::now();
        let mut disconnected = 0;
        self.inner.agents.for_each_mut(|id, entry| {
            if entry.connected && now.saturating_duration_since(entry.last_seen) >= timeout {
                entry.connected = false;
                disconnected += 1;
                info!(agent_id = %id, "agent disconnected: no request for {}s", timeout.as_secs());
            }
        });
        let forgotten = self
            .inner
            .agents
            .retain(|_, entry| now.saturating_duration_since(entry.last_seen) < retention);
        if !forgotten.is_empty() {
            info!(
                agents = forgotten.len(),
                "agents forgotten: no request for {}s",
                retention.as_secs()
            );
            self.delete_forgotten(forgotten);
        }
        disconnected
    }

    /// Runs the lease-expiry sweep and the agent pruning every `lease_check_interval` until the
    /// task is aborted.
    pub fn spawn_lease_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let coordinator = self.clone();
        tokio::spawn(async move {
            let period = coordinator.inner.settings.lease_check_interval;
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_done: Option<Instant> = None;
            loop {
                interval.tick().await;
                // From the end of the last sweep, the next was due one period later; the rest
                // of the gap is time the process did not run (a sweep that overran its period
                // makes the next one due at once, so it is not counted).
                let stalled = last_done.map_or(Duration::ZERO, |done| {
                    Instant::now()
                        .saturating_duration_since(done)
                        .saturating_sub(period)
                });
                coordinator.sweep(stalled).await;
                last_done = Some(Instant::now());
            }
        })
    }

    /// One sweep of the lease sweeper: when the coordinator did not run for `stalled` (at least
    /// [`STALL_FORGIVEN`]), it first moves every lease deadline and every agent's last-seen time
    /// that much later, since nobody could renew anything meanwhile (and every deadline to at
    /// least one lease timeout from now); then it expires leases and prunes agents.
    ///
    /// Why: a process that was paused (SIGSTOP, a VM paused or migrated, a swap storm) for
    /// longer than the lease timeout used to expire every lease at its first sweep after
    /// resuming, before the agents' heartbeats could arrive, and requeue trials that were
    /// training fine. A restart gives every lease a fresh deadline for the same reason.
    pub async fn sweep(&self, stalled: Duration) {
        if stalled >= STALL_FORGIVEN {
            let now = Instant::now();
            let mut moved = 0;
            // At least a full lease timeout from now, as after a restart: a lease about to
            // expire when the pause began would otherwise expire before its agent, whose calls
            // timed out during the pause, is back from its backoff.
            let fresh = now + self.inner.settings.lease_timeout;
            for cell in self.cells() {
                moved += cell.lock().postpone_deadlines(stalled, fresh);
            }
            self.inner.agents.for_each_mut(|_, entry| {
                entry.last_seen = (entry.last_seen + stalled).min(now);
            });
            warn!(
                stalled_seconds = stalled.as_secs_f64(),
                leases = moved,
                "the coordinator did not run for a while (paused or starved): lease deadlines and \
                 agent clocks moved that much later"
            );
        }
        if let Err(error) = self.expire_leases().await {
            tracing::error!(error = %crate::display_chain(&error), "lease expiry sweep failed");
        }
        self.prune_agents();
        self.refresh_gauges();
    }

    /// Keeps the registry under [`Settings::max_known_agents`](super::Settings): when it is
    /// full, forgets the disconnected agents silent longest, a tenth of the limit at once (so a
    /// flood of registrations pays for this scan once in many), in memory and in the store.
    ///
    /// # Errors
    /// `ResourceExhausted` when the registry is full and every agent in it is connected (agents
    /// retry it with backoff, and get a place once one disconnects).
    fn make_room_for_an_agent(&self) -> Result<()> {
        let limit = self.inner.settings.max_known_agents;
        if self.inner.agents.len() < limit {
            return Ok(());
        }
        let mut silent: Vec<(Instant, AgentId)> = Vec::new();
        self.inner.agents.for_each_mut(|id, entry| {
            if !entry.connected {
                silent.push((entry.last_seen, id.clone()));
            }
        });
        if silent.is_empty() {
            return Err(Error::ResourceExhausted(format!(
                "the coordinator knows {limit} agents, its limit, and every one is connected; \
                 an agent silent for agent_timeout_secs is disconnected, and its place can then \
                 be taken"
            )));
        }
        silent.sort_by_key(|(last_seen, _)| *last_seen);
        let oldest: std::collections::HashSet<AgentId> = silent
            .into_iter()
            .take((limit / 10).max(1))
            .map(|(_, id)| id)
            .collect();
        let forgotten = self
            .inner
            .agents
            .retain(|id, entry| entry.connected || !oldest.contains(id));
        warn!(
            agents = forgotten.len(),
            "disconnected agents forgotten early: the coordinator knows {limit} agents, its limit"
        );
        self.delete_forgotten(forgotten);
        Ok(())
    }

    /// Deletes agents already forgotten in memory from the store. Not durable before anything
    /// answers: an agent the store still holds after a crash would be forgotten again.
    fn delete_forgotten(&self, forgotten: Vec<AgentEntry>) {
        let changes = forgotten
            .into_iter()
            .map(|entry| Change::DeleteAgent(entry.record.id))
            .collect();
        drop(self.inner.writer.submit(changes));
    }

    /// Marks an agent seen at `at` (so it is not forgotten); its record, or `None` when it is
    /// unknown or was disconnected (it must register again to get work).
    fn touch(&self, agent_id: &AgentId, at: Instant) -> Option<AgentRecord> {
        let mut record = None;
        self.inner.agents.update(agent_id, |entry| {
            entry.last_seen = at;
            if entry.connected {
                record = Some(entry.record.clone());
            }
        });
        record
    }
}

impl AgentService for Coordinator {
    #[instrument(skip(self, capabilities, secret))]
    async fn register_agent(
        &self,
        capabilities: AgentCapabilities,
        agent_id: Option<AgentId>,
        secret: Option<String>,
    ) -> Result<Registration> {
        super::capability_limits::check_capabilities(&capabilities)?;
        self.inner.writer.check()?;
        let fresh = generate_secret()?;
        let now = now_unix();
        let arrival = Instant::now();
        let id = agent_id.unwrap_or_else(AgentId::generate);
        let mut record = AgentRecord {
            id: id.clone(),
            capabilities,
            registered_unix: now,
            last_seen_unix: now,
            secret_sha256: SecretDigest::of(&fresh).to_hex(),
        };
        if self.inner.agents.get(&id).is_none() {
            self.make_room_for_an_agent()?;
        }
        let new_entry = |record: &AgentRecord| Some(AgentEntry::new(record.clone(), arrival));
        let secret = self.inner.agents.upsert(id.clone(), |slot| match slot {
            Some(entry) if entry.secret.is_some() => match secret.filter(|s| entry.admits(s)) {
                Some(secret) => {
                    record.secret_sha256.clone_from(&entry.record.secret_sha256);
                    entry.record = record.clone();
                    entry.last_seen = arrival;
                    entry.connected = true;
                    (None, Ok(secret))
                }
                None => (
                    None,
                    Err(Error::PermissionDenied(format!(
                        "agent id '{}' is registered: re-registering it needs its \
                 agent_secret (register without an id to get a new one)",
                        limits::short(&id.0)
                    ))),
                ),
            },
            // A new id, or one stored before agents had secrets.
            Some(entry) => {
                *entry = AgentEntry::new(record.clone(), arrival);
                (None, Ok(fresh.clone()))
            }
            None => (new_entry(&record), Ok(fresh.clone())),
        })?;
        self.inner
            .writer
            .submit(vec![Change::PutAgent(record.clone())])
            .durable()
            .await?;
        info!(agent_id = %record.id, backend = %record.capabilities.backend, device = %record.capabilities.device_name, "agent registered");
        Ok(Registration {
            agent_id: record.id,
            secret,
            heartbeat_interval: self.inner.settings.heartbeat_interval,
            lease_timeout: self.inner.settings.lease_timeout,
        })
    }

    fn authorize_agent(&self, agent_id: &AgentId, secret: &str) -> Result<()> {
        let entry = self
            .inner
            .agents
            .get(agent_id)
            .ok_or_else(|| Error::not_found("agent (register first)", &agent_id.0))?;
        if secret.is_empty() {
            return Err(Error::PermissionDenied(
                "missing agent_secret (RegisterAgent returns it)".into(),
            ));
        }
        if !entry.admits(secret) {
            return Err(Error::PermissionDenied(format!(
                "wrong agent_secret for agent '{}'",
                limits::short(&agent_id.0)
            )));
        }
        Ok(())
    }

    fn authorize_lease(&self, lease_id: &LeaseId, secret: &str) -> Result<()> {
        let home = self
            .inner
            .leases
            .get(lease_id)
            .ok_or_else(|| unknown_lease(lease_id))?;
        let admitted = self
            .inner
            .agents
            .get(&home.agent)
            .is_some_and(|entry| entry.admits(secret));
        if admitted {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "lease '{}' was granted to another agent (or agent_secret is wrong or missing)",
                limits::short(&lease_id.0)
            )))
        }
    }

    #[instrument(skip(self), fields(agent_id = %agent_id))]
    async fn lease_trial(
        &self,
        agent_id: AgentId,
        wait: Duration,
        only: Option<ExperimentId>,
    ) -> Result<LeaseOutcome> {
        let arrival = Instant::now();
        self.inner.writer.check()?;
        let agent = self
            .touch(&agent_id, arrival)
            .ok_or_else(|| Error::not_found("agent (register first)", &agent_id))?;
        let until = arrival + wait.min(self.inner.settings.max_lease_wait);
        let own = only.as_ref().map(|id| self.cell(id)).transpose()?;
        let work = own.as_ref().map_or(&self.inner.work, |cell| &cell.work);
        loop {
            let mut notified = pin!(work.notified());
            notified.as_mut().enable();
            if let Some(lease) = self.try_lease(&agent, only.as_ref()).await? {
                return Ok(LeaseOutcome::Lease(Box::new(lease)));
            }
            if Instant::now() >= until {
                debug!("nothing to lease");
                return Ok(LeaseOutcome::RetryAfter(self.inner.settings.retry_after));
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    #[instrument(skip(self, leases), fields(agent_id = %agent_id, leases = leases.len()))]
    async fn heartbeat(&self, agent_id: AgentId, leases: Vec<LeaseId>) -> Result<Vec<LeaseStatus>> {
        let arrival = Instant::now();
        self.touch(&agent_id, arrival);
        let mut statuses = Vec::with_capacity(leases.len());
        for lease_id in leases {
            let abandon = |lease_id| LeaseStatus {
                lease_id,
                action: LeaseAction::Abandon,
                deadline_unix: 0.0,
            };
            let Ok((cell, trial_id)) = self.home(&lease_id) else {
                statuses.push(abandon(lease_id));
                continue;
            };
            let mut live = cell.lock();
            if live.trial(&trial_id).is_some_and(|t| {
                t.state.is_terminal() && t.last_lease_id.as_ref() == Some(&lease_id)
            }) {
                // The trial ended under this very lease (a heartbeat that crossed the agent's own
                // completion): nothing is lost, there is just nothing left to run.
                statuses.push(LeaseStatus {
                    lease_id,
                    action: LeaseAction::Stop,
                    deadline_unix: 0.0,
                });
                continue;
            }
            match self.hold(&mut live, &trial_id, &lease_id, Some(&agent_id), arrival) {
                Ok((trial, change, deadline)) => {
                    if let Some(change) = change {
                        // Renewals need not be durable; the write is queued in order.
                        drop(self.mutate(&cell, &mut live, vec![change]));
                    }
                    live.set_deadline(&trial_id, deadline);
                    statuses.push(LeaseStatus {
                        lease_id,
                        action: if Self::should_stop(&live, &trial) {
                            LeaseAction::Stop
                        } else {
                            LeaseAction::Continue
                        },
                        deadline_unix: deadline_unix(deadline),
                    });
                }
                Err(_) => statuses.push(abandon(lease_id)),
            }
        }
        Ok(statuses)
    }

    #[instrument(skip(self, report), fields(lease_id = %lease_id, epoch = report.epoch))]
    async fn report_epoch(&self, lease_id: LeaseId, report: EpochInput) -> Result<LeaseAction> {
        let arrival = Instant::now();
        limits::check_epoch_report(&report, None, 0)?;
        self.inner.writer.check()?;
        let (cell, trial_id) = self.home(&lease_id)?;
        let (action, ticket) = {
            let mut live = cell.lock();
            let (trial, change, deadline) =
                self.hold(&mut live, &trial_id, &lease_id, None, arrival)?;
            let others = live.other_epochs_in_attempt(&trial.id, trial.attempts, report.epoch);
            limits::check_epoch_report(&report, live.planned_epochs(&trial.id), others)?;
            let mut changes: Vec<Change> = change.into_iter().collect();
            if live.has_epoch(&trial.id, trial.attempts, report.epoch) {
                debug!(trial_id = %trial.id, "repeated epoch report ignored");
            } else {
                changes.push(Change::AddEpoch(EpochRecord {
                    trial_id: trial.id.clone(),
                    attempt: trial.attempts,
                    epoch: report.epoch,
                    value: report.value,
                    train_loss: report.train_loss,
                    train_accuracy: report.train_accuracy,
                    epoch_seconds: report.epoch_seconds,
                }));
                changes.push(Change::PutTrial(progress(&trial, report.epoch)));
                debug!(trial_id = %trial.id, value = report.value, "epoch done");
            }
            let ticket = self.mutate(&cell, &mut live, changes);
            live.set_deadline(&trial_id, deadline);
            // Decided with this epoch recorded, so the rule judges the epoch just reported.
            Self::decide_early_stop(&mut live, &trial_id);
            (Self::action(&live, &trial_id), ticket)
        };
        ticket.durable().await?;
        Ok(action)
    }

    #[instrument(skip(self, completion), fields(lease_id = %lease_id, outcome = ?completion.outcome))]
    async fn complete_trial(&self, lease_id: LeaseId, completion: Completion) -> Result<()> {
        limits::check_completion(&completion)?;
        self.inner.writer.check()?;
        let (cell, trial_id) = self.home(&lease_id)?;
        let (ticket, requeued) = {
            let mut live = cell.lock();
            let trial = live
                .trial(&trial_id)
                .cloned()
                .ok_or_else(|| unknown_lease(&lease_id))?;
            if trial.state.is_terminal() && trial.last_lease_id.as_ref() == Some(&lease_id) {
                // A retried completion: answered once the first one is durable.
                debug!(trial_id = %trial.id, "repeated completion ignored");
                (self.inner.writer.barrier(), false)
            } else {
                let last_epoch_value = live
                    .epochs_of(&trial.id, trial.attempts)
                    .last()
                    .map(|e| e.value);
                let event = TrialEvent::Complete {
                    lease_id: lease_id.clone(),
                    completion: completion.clone(),
                    last_epoch_value,
                    experiment_stopped: matches!(
                        live.record.state,
                        ExperimentState::Stopped | ExperimentState::Failed
                    ),
                    now_unix: now_unix(),
                };
                let updated = transition(&trial, &event).map_err(|e| match e {
                    TransitionError::Terminal { .. } => unknown_lease(&lease_id),
                    other => other.into(),
                })?;
                info!(trial_id = %trial.id, state = updated.state.as_str(), value = ?updated.value, "trial finished");
                let requeued = updated.state == TrialState::Pending;
                let ticket = self.mutate(&cell, &mut live, vec![Change::PutTrial(updated)]);
                let metrics = &self.inner.metrics;
                metrics
                    .experiment_cost(&cell.id.0)
                    .inc_by(completion.cost_dollars.max(0.0));
                (ticket, requeued)
            }
        };
        if requeued {
            self.announce(&cell, 1);
        }
        // Started before waiting, so a dropped request still tops the experiment up.
        self.refill(&cell);
        ticket.durable().await
    }

    #[instrument(skip(self), fields(agent_id = %agent_id))]
    async fn unregister_agent(&self, agent_id: AgentId) -> Result<u32> {
        self.inner.writer.check()?;
        self.inner.agents.remove(&agent_id);
        let now = now_unix();
        let mut released = 0u32;
        let mut tickets = vec![
            self.inner
                .writer
                .submit(vec![Change::DeleteAgent(agent_id.clone())]),
        ];
        for cell in self.cells() {
            let mut live = cell.lock();
            let changes: Vec<Change> = live
                .trials()
                .iter()
                .filter_map(|t| {
                    let lease = t.lease.as_ref().filter(|l| l.agent_id == agent_id)?;
                    let event = TrialEvent::Release {
                        lease_id: lease.lease_id.clone(),
                        now_unix: now,
                    };
                    transition(t, &event).ok().map(Change::PutTrial)
                })
                .collect();
            if changes.is_empty() {
                continue;
            }
            released += u32::try_from(changes.len()).unwrap_or(u32::MAX);
            let count = changes.len();
            tickets.push(self.mutate(&cell, &mut live, changes));
            drop(live);
            self.announce(&cell, count);
            // A trial at its interruption cap failed: the experiment may need another.
            self.refill(&cell);
        }
        for ticket in tickets {
            ticket.durable().await?;
        }
        info!(released, "agent unregistered");
        Ok(released)
    }
}
