//! One slot's loop: lease a trial, train it on the slot's thread, report, repeat.
//!
//! While a trial trains, the slot heartbeats its lease, forwards each epoch to the coordinator
//! through an [`Outbox`] (kept while the coordinator is unreachable), applies the coordinator's
//! answers (stop, abandon) and the agent's shutdown (interrupt) at the next epoch boundary, and
//! finally delivers `CompleteTrial`.

use std::sync::Arc;
use std::time::Duration;

use proto::v1::{
    CompleteTrialRequest, EpochReport, Lease, LeaseAction, ReportEpochRequest, TrialOutcome,
    lease_trial_response,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::client::CoordinatorApi;
use crate::cost::Pricing;
use crate::metrics::AgentMetrics;
use crate::outbox::{FlushState, Outbox, Report};
use crate::retry::{Backoff, jitter_seed};
use crate::session::{Session, wait_or_shutdown};
use crate::trainer::{EpochMetrics, TrialJob};
use crate::worker::{Finished, Signal, SlotWorker, TrialControl, WorkerEvent};

/// Everything a slot needs.
pub struct SlotContext<A> {
    /// Slot number, from 0.
    pub slot: usize,
    /// The agent's registration.
    pub session: Arc<Session<A>>,
    /// The agent's metrics.
    pub metrics: AgentMetrics,
    /// How trials are priced.
    pub pricing: Pricing,
    /// GPU label for `gpu_memory_used_bytes`, for CUDA agents.
    pub gpu_label: Option<String>,
    /// Becomes true on shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// Leases and trains trials until shutdown.
pub async fn run_slot<A: CoordinatorApi>(
    mut ctx: SlotContext<A>,
    worker: SlotWorker,
) -> SlotWorker {
    let timing = ctx.session.timing().clone();
    let mut backoff = Backoff::new(
        timing.retry_initial_backoff,
        timing.retry_max_backoff,
        jitter_seed(ctx.slot),
    );
    while !*ctx.shutdown.borrow() {
        // A long poll may wait at the coordinator for seconds: shutdown does not wait for it.
        // A trial leased in that moment goes back to the queue when the agent unregisters.
        let leased = tokio::select! {
            leased = ctx.session.lease() => leased,
            _ = ctx.shutdown.wait_for(|stop| *stop) => break,
        };
        let delay = match leased {
            Ok(response) => match response.outcome {
                Some(lease_trial_response::Outcome::Lease(lease)) => {
                    backoff.reset();
                    drive_trial(&mut ctx, &worker, lease).await;
                    continue;
                }
                Some(lease_trial_response::Outcome::RetryAfterSeconds(seconds)) => {
                    backoff.reset();
                    idle_delay(seconds, timing.idle_poll_max)
                }
                None => timing.idle_poll_max,
            },
            Err(status) => {
                let delay = backoff.next_delay();
                tracing::warn!(slot = ctx.slot, code = ?status.code(), message = status.message(), ?delay,
                    "lease request failed, will retry");
                delay
            }
        };
        if wait_or_shutdown(delay, &mut ctx.shutdown).await {
            break;
        }
    }
    tracing::info!(slot = ctx.slot, "slot stopped leasing");
    worker
}

fn idle_delay(retry_after_seconds: f64, cap: Duration) -> Duration {
    if retry_after_seconds.is_finite() && retry_after_seconds > 0.0 {
        Duration::from_secs_f64(retry_after_seconds).min(cap)
    } else {
        cap.min(Duration::from_millis(100))
    }
}

/// The state of one trial on the async side.
struct TrialRun {
    lease: Lease,
    /// The agent's secret when the lease was granted: its reports must carry it.
    secret: String,
    control: Arc<TrialControl>,
    outbox: Outbox,
    /// Epochs the trainer finished (for failed trials, which have no outcome).
    epochs_seen: u32,
}

async fn drive_trial<A: CoordinatorApi>(
    ctx: &mut SlotContext<A>,
    worker: &SlotWorker,
    lease: Lease,
) {
    let span = tracing::info_span!("trial", trial_id = %lease.trial_id, experiment_id = %lease.experiment_id,
        agent_id = %ctx.session.agent_id(), slot = ctx.slot);
    // Instrumented, not entered: a guard held across an await stays entered on the thread while
    // the task waits, so the other slots' lines were logged inside this trial's span.
    run_trial(ctx, worker, lease).instrument(span).await;
}

async fn run_trial<A: CoordinatorApi>(ctx: &mut SlotContext<A>, worker: &SlotWorker, lease: Lease) {
    let job = TrialJob::from_lease(&lease);
    tracing::info!(attempt = lease.attempt, workload = %job.workload.kind, "trial leased");
    let mut run = TrialRun {
        lease,
        secret: ctx.session.secret(),
        control: Arc::new(TrialControl::new()),
        outbox: Outbox::new(),
        epochs_seen: 0,
    };
    ctx.metrics.slots_busy.inc();
    let finished = match worker.submit(job, run.control.clone()) {
        Ok(events) => train_loop(ctx, &mut run, events).await,
        Err(error) => Finished {
            result: Err(crate::trainer::TrialFailure::new(error.to_string())),
            wall_seconds: 0.0,
        },
    };
    ctx.metrics.slots_busy.dec();
    finish(ctx, &mut run, finished).await;
}

async fn train_loop<A: CoordinatorApi>(
    ctx: &mut SlotContext<A>,
    run: &mut TrialRun,
    mut events: tokio::sync::mpsc::UnboundedReceiver<WorkerEvent>,
) -> Finished {
    let mut heartbeat = tokio::time::interval(ctx.session.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut shutdown_seen = *ctx.shutdown.borrow();
    if shutdown_seen {
        run.control.request(Signal::Interrupt);
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(WorkerEvent::Epoch(metrics)) => {
                    on_epoch(ctx, run, &metrics).await;
                    // The training thread waits for this before its next epoch.
                    run.control.acknowledge(metrics.epoch);
                }
                Some(WorkerEvent::Finished(finished)) => return finished,
                None => {
                    let failure = crate::trainer::TrialFailure::new("training thread exited during the trial");
                    return Finished { result: Err(failure), wall_seconds: 0.0 };
                }
            },
            _ = heartbeat.tick() => on_heartbeat(ctx, run).await,
            changed = ctx.shutdown.changed(), if !shutdown_seen => {
                shutdown_seen = true;
                if changed.is_err() || *ctx.shutdown.borrow() {
                    tracing::info!("shutting down: interrupting the trial at the next epoch boundary");
                    run.control.request(Signal::Interrupt);
                }
            }
        }
    }
}

async fn on_epoch<A: CoordinatorApi>(
    ctx: &SlotContext<A>,
    run: &mut TrialRun,
    metrics: &EpochMetrics,
) {
    ctx.metrics.epochs_total.inc();
    ctx.metrics.examples_total.inc_by(metrics.examples);
    ctx.metrics
        .epoch_duration_seconds
        .observe(metrics.epoch_seconds);
    if let (Some(label), Some(bytes)) = (&ctx.gpu_label, metrics.device_memory_bytes) {
        ctx.metrics
            .gpu_memory_used_bytes
            .with_label_values(&[label.as_str()])
            .set(bytes as i64);
    }
    tracing::info!(
        epoch = metrics.epoch,
        value = metrics.value,
        train_loss = metrics.train_loss,
        epoch_seconds = metrics.epoch_seconds,
        "epoch done"
    );
    run.epochs_seen = metrics.epoch;
    if run.control.get() == Signal::Abandon {
        return;
    }
    run.outbox.push(Report::Epoch(ReportEpochRequest {
        lease_id: run.lease.lease_id.clone(),
        agent_secret: run.secret.clone(),
        report: Some(EpochReport {
            epoch: metrics.epoch,
            value: metrics.value,
            train_loss: metrics.train_loss,
            train_accuracy: metrics.train_accuracy,
            epoch_seconds: metrics.epoch_seconds,
        }),
    }));
    flush_once(ctx, run).await;
}

async fn flush_once<A: CoordinatorApi>(ctx: &SlotContext<A>, run: &mut TrialRun) {
    let flush = run.outbox.flush(ctx.session.api()).await;
    if flush.stop_requested {
        tracing::info!("coordinator asked to stop the trial");
        run.control.request(Signal::Stop);
    }
    match flush.state {
        FlushState::Empty => {}
        FlushState::Pending(status) => {
            tracing::warn!(code = ?status.code(), queued = run.outbox.len(), "coordinator unreachable, keeping reports");
        }
        FlushState::Stale(_) => abandon(run, "reports refused as stale"),
    }
}

fn abandon(run: &mut TrialRun, why: &str) {
    if run.control.get() != Signal::Abandon {
        tracing::warn!(reason = why, "lease lost, abandoning the trial");
    }
    run.control.request(Signal::Abandon);
    run.outbox.clear();
}

async fn on_heartbeat<A: CoordinatorApi>(ctx: &SlotContext<A>, run: &mut TrialRun) {
    if run.control.get() == Signal::Abandon {
        return;
    }
    match ctx
        .session
        .heartbeat(vec![run.lease.lease_id.clone()])
        .await
    {
        Ok(response) => {
            let status = response
                .leases
                .iter()
                .find(|status| status.lease_id == run.lease.lease_id);
            match status.map(|status| status.action()) {
                Some(LeaseAction::Stop) => run.control.request(Signal::Stop),
                Some(LeaseAction::Abandon) => abandon(run, "heartbeat answered abandon"),
                _ => {}
            }
            if !run.outbox.is_empty() {
                flush_once(ctx, run).await;
            }
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "heartbeat failed")
        }
    }
}

/// Builds the final report and delivers it (with everything still queued).
async fn finish<A: CoordinatorApi>(
    ctx: &mut SlotContext<A>,
    run: &mut TrialRun,
    finished: Finished,
) {
    let signal = run.control.get();
    ctx.metrics
        .trial_duration_seconds
        .observe(finished.wall_seconds);
    if signal == Signal::Abandon {
        ctx.metrics
            .trials_total
            .with_label_values(&["abandoned"])
            .inc();
        tracing::warn!("trial abandoned, nothing reported");
        return;
    }
    let cost_dollars = ctx.pricing.trial_cost_dollars(finished.wall_seconds);
    ctx.metrics.cost_dollars_total.inc_by(cost_dollars);
    let request = complete_request(run, &finished, signal, cost_dollars);
    let label = outcome_label(request.outcome());
    ctx.metrics.trials_total.with_label_values(&[label]).inc();
    tracing::info!(outcome = label, value = ?request.value, epochs_run = request.epochs_run,
        wall_seconds = request.wall_seconds, cost_dollars, reason = %request.failure_reason, "trial finished");
    run.outbox.push(Report::Complete(request));
    deliver_all(ctx, run).await;
}

fn complete_request(
    run: &TrialRun,
    finished: &Finished,
    signal: Signal,
    cost_dollars: f64,
) -> CompleteTrialRequest {
    let mut request = CompleteTrialRequest {
        lease_id: run.lease.lease_id.clone(),
        agent_secret: run.secret.clone(),
        wall_seconds: finished.wall_seconds,
        cost_dollars,
        ..CompleteTrialRequest::default()
    };
    match &finished.result {
        Ok(outcome) => {
            let trial_outcome = match (outcome.stopped, signal) {
                (false, _) => TrialOutcome::Succeeded,
                (true, Signal::Interrupt) => TrialOutcome::Interrupted,
                (true, _) => TrialOutcome::Stopped,
            };
            request.set_outcome(trial_outcome);
            // A command stopped before its first epoch has no value.
            request.value =
                (outcome.epochs_run > 0 || !outcome.stopped).then_some(outcome.final_value);
            request.epochs_run = outcome.epochs_run;
            request.best_epoch = outcome.best_epoch;
            request.device_seconds = outcome.device_seconds;
            request.metrics = outcome.metrics.clone().into_iter().collect();
        }
        Err(failure) => {
            request.set_outcome(TrialOutcome::Failed);
            request.failure_reason = failure.reason.clone();
            request.epochs_run = run.epochs_seen;
        }
    }
    request
}

fn outcome_label(outcome: TrialOutcome) -> &'static str {
    match outcome {
        TrialOutcome::Succeeded => "succeeded",
        TrialOutcome::Failed => "failed",
        TrialOutcome::Stopped => "stopped",
        TrialOutcome::Interrupted => "interrupted",
        TrialOutcome::Unspecified => "unspecified",
    }
}

/// Delivers the outbox, retrying with backoff; on shutdown, gives up after the grace period.
async fn deliver_all<A: CoordinatorApi>(ctx: &mut SlotContext<A>, run: &mut TrialRun) {
    let timing = ctx.session.timing().clone();
    let mut backoff = Backoff::new(
        timing.retry_initial_backoff,
        timing.retry_max_backoff,
        jitter_seed(ctx.slot),
    );
    let mut grace_deadline = None;
    loop {
        let flush = run.outbox.flush(ctx.session.api()).await;
        let FlushState::Pending(status) = flush.state else {
            return;
        };
        let now = tokio::time::Instant::now();
        if *ctx.shutdown.borrow() {
            let deadline = *grace_deadline.get_or_insert(now + timing.shutdown_grace);
            if now >= deadline {
                tracing::error!(
                    queued = run.outbox.len(),
                    "shutdown grace period over, reports not delivered"
                );
                return;
            }
        }
        let delay = backoff.next_delay();
        tracing::warn!(code = ?status.code(), queued = run.outbox.len(), ?delay, "coordinator unreachable, will retry reports");
        tokio::time::sleep(delay).await;
    }
}
