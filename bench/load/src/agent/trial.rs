//! Running one leased trial: epoch reports, the completion, and what a refused call means for
//! the lease (counted once, healthy or not, and kept when the fleet keeps acknowledgements).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proto::v1 as pb;
use tonic::{Code, Status};

use super::SimAgent;
use super::shared::HeldLease;
use crate::objective::{epoch_value, evaluate};
use crate::stats::{AckedCompletion, AckedEpoch, LeaseLoss, Refusal, RpcKind};

impl SimAgent {
    /// Counts a lost lease once (the heartbeat task may have seen it first) when the refused
    /// call was sent while recording, and keeps the refusal when the fleet keeps
    /// acknowledgements.
    fn lost(&mut self, lease: &pb::Lease, kind: RpcKind, sent: (f64, bool), status: &Status) {
        let (sent_unix, recorded) = sent;
        let healthy = self.shared.mark_lost(&lease.lease_id, sent_unix);
        if let Some(healthy) = healthy
            && recorded
        {
            self.stats.record_loss(LeaseLoss::Refused, healthy);
        }
        if self.config.keep_acks {
            self.stats.refusals.push(Refusal {
                trial_id: lease.trial_id.clone(),
                lease_id: lease.lease_id.clone(),
                rpc: kind,
                code: status.code(),
                message: status.message().to_owned(),
                after_tries: self.last_tries,
            });
        }
    }

    fn is_stale(status: &Status) -> bool {
        matches!(status.code(), Code::FailedPrecondition | Code::NotFound)
    }

    /// The length of each epoch of the next trial: `work_per_epoch` scaled by a factor uniform
    /// in `[1 − work_jitter, 1 + work_jitter]`.
    fn epoch_work(&mut self) -> Duration {
        let u = crate::retry::unit(&mut self.work_rng);
        jittered(self.config.work_per_epoch, self.config.work_jitter, u)
    }

    /// Runs one leased trial to its end (or until the lease is lost).
    pub(super) async fn run_trial(&mut self, lease: pb::Lease) {
        if self.recording() {
            self.stats.leases += 1;
        }
        *self.shared.held() = Some(HeldLease {
            lease_id: lease.lease_id.clone(),
            deadline_unix: lease.deadline_unix_seconds,
            lost: false,
            stop: false,
            completing: false,
        });
        let started = Instant::now();
        let final_value = evaluate(&lease.params).ok();
        let work = self.epoch_work();
        let mut reported = None;
        let mut stopped_early = false;
        for epoch in 1..=self.config.epochs {
            let Some(value) = final_value else { break };
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            let (lost, stop) = self
                .shared
                .held()
                .as_ref()
                .map_or((true, false), |l| (l.lost, l.stop));
            if lost {
                *self.shared.held() = None;
                return;
            }
            if stop {
                stopped_early = true;
                break;
            }
            let value = epoch_value(value, epoch, self.config.epochs);
            match self.report(&lease, epoch, value, work).await {
                Some(action) => {
                    reported = Some(value);
                    if action == pb::LeaseAction::Stop {
                        stopped_early = true;
                        break;
                    }
                }
                None => {
                    *self.shared.held() = None;
                    return;
                }
            }
        }
        let outcome = match (final_value, stopped_early) {
            (None, _) => pb::TrialOutcome::Failed,
            (Some(_), true) => pb::TrialOutcome::Stopped,
            (Some(_), false) => pb::TrialOutcome::Succeeded,
        };
        let value = if stopped_early { reported } else { final_value };
        self.complete(&lease, outcome, value, started.elapsed())
            .await;
        *self.shared.held() = None;
    }

    /// Reports one epoch; `None` when the lease is lost or the call failed for good.
    async fn report(
        &mut self,
        lease: &pb::Lease,
        epoch: u32,
        value: f64,
        work: Duration,
    ) -> Option<pb::LeaseAction> {
        let request = pb::ReportEpochRequest {
            lease_id: lease.lease_id.clone(),
            agent_secret: self.shared.secret(),
            report: Some(pb::EpochReport {
                epoch,
                value,
                train_loss: value,
                train_accuracy: 0.0,
                epoch_seconds: work.as_secs_f64(),
            }),
        };
        let client = self.client.clone();
        let answer = self
            .call(
                RpcKind::ReportEpoch,
                self.config.rpc_timeout,
                false,
                move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.report_epoch(request).await }
                },
            )
            .await;
        match answer.result {
            Ok(response) => {
                self.progress.epochs.fetch_add(1, Ordering::Relaxed);
                if self.config.keep_acks {
                    self.stats.acked_epochs.push(AckedEpoch {
                        trial_id: lease.trial_id.clone(),
                        lease_id: lease.lease_id.clone(),
                        attempt: lease.attempt,
                        epoch,
                        value,
                    });
                }
                Some(response.action())
            }
            Err(status) => {
                if Self::is_stale(&status) {
                    let sent = (answer.sent_unix, answer.recorded);
                    self.lost(lease, RpcKind::ReportEpoch, sent, &status);
                }
                None
            }
        }
    }

    async fn complete(
        &mut self,
        lease: &pb::Lease,
        outcome: pb::TrialOutcome,
        value: Option<f64>,
        wall: Duration,
    ) {
        if let Some(held) = self.shared.held().as_mut() {
            held.completing = true;
        }
        let request = pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            agent_secret: self.shared.secret(),
            outcome: outcome as i32,
            value,
            epochs_run: self.config.epochs,
            best_epoch: self.config.epochs,
            wall_seconds: wall.as_secs_f64(),
            device_seconds: wall.as_secs_f64(),
            failure_reason: if outcome == pb::TrialOutcome::Failed {
                "the lease lacks the x and y parameters".into()
            } else {
                String::new()
            },
            ..pb::CompleteTrialRequest::default()
        };
        let client = self.client.clone();
        let answer = self
            .call(
                RpcKind::CompleteTrial,
                self.config.rpc_timeout,
                false,
                move || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.complete_trial(request).await }
                },
            )
            .await;
        match answer.result {
            Ok(_) => {
                self.progress.completions.fetch_add(1, Ordering::Relaxed);
                if self.recording() {
                    self.stats.completed += 1;
                }
                if self.config.keep_acks
                    && let Some(value) = value
                    && outcome != pb::TrialOutcome::Failed
                {
                    self.stats.acked_completions.push(AckedCompletion {
                        trial_id: lease.trial_id.clone(),
                        experiment_id: lease.experiment_id.clone(),
                        lease_id: lease.lease_id.clone(),
                        attempt: lease.attempt,
                        succeeded: outcome == pb::TrialOutcome::Succeeded,
                        value,
                    });
                }
            }
            Err(status) if Self::is_stale(&status) => {
                let sent = (answer.sent_unix, answer.recorded);
                self.lost(lease, RpcKind::CompleteTrial, sent, &status);
            }
            Err(_) => {}
        }
    }

    /// Hands a lease back unrun (outcome INTERRUPTED), once, without retries.
    pub(super) async fn interrupt(&mut self, lease: &pb::Lease) {
        let request = pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            agent_secret: self.shared.secret(),
            outcome: pb::TrialOutcome::Interrupted as i32,
            ..pb::CompleteTrialRequest::default()
        };
        let client = self.client.clone();
        let timeout = self.config.rpc_timeout;
        self.call(RpcKind::CompleteTrial, timeout, true, move || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.complete_trial(request).await }
        })
        .await;
    }
}

/// `work` scaled by `1 − jitter + 2·jitter·u` for `u` in `[0, 1)` (`jitter` clamped to `[0, 1]`).
fn jittered(work: Duration, jitter: f64, u: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    work.mul_f64(1.0 - jitter + 2.0 * jitter * u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_lengths_spread_around_the_mean_and_none_without_jitter() {
        let work = Duration::from_millis(1000);
        assert_eq!(jittered(work, 0.0, 0.9), work);
        assert_eq!(jittered(work, 0.5, 0.0), Duration::from_millis(500));
        assert_eq!(jittered(work, 0.5, 0.5), work);
        let mut state = 7;
        let draws: Vec<Duration> = (0..10_000)
            .map(|_| jittered(work, 0.5, crate::retry::unit(&mut state)))
            .collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(500) && *d < Duration::from_millis(1500))
        );
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    }
}
