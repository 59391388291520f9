//! Reports not yet delivered to the coordinator, kept in order and delivered when it answers.
//!
//! One outbox per running trial (one lease). Epoch reports and the final `CompleteTrial` queue up
//! while the coordinator is unreachable and go out, oldest first, once it is back. When the
//! coordinator refuses them as stale (`FailedPrecondition`: the lease went to another attempt;
//! `NotFound`: it does not know the lease), everything queued for the lease is dropped, so a late
//! result is never counted twice.

use std::collections::VecDeque;

use proto::v1::{CompleteTrialRequest, LeaseAction, ReportEpochRequest};
use tonic::Status;

use crate::client::CoordinatorApi;
use crate::retry::{Disposition, disposition};

/// A report waiting to be delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `ReportEpoch`.
    Epoch(ReportEpochRequest),
    /// `CompleteTrial`.
    Complete(CompleteTrialRequest),
}

/// Where an outbox stands after a flush.
#[derive(Debug, Clone)]
pub enum FlushState {
    /// Everything was delivered.
    Empty,
    /// The coordinator could not be reached; the rest stays queued.
    Pending(Status),
    /// The lease is stale; everything queued was dropped.
    Stale(Status),
}

/// What one flush did.
#[derive(Debug, Clone)]
pub struct Flush {
    /// Reports delivered by this flush.
    pub delivered: usize,
    /// The coordinator answered an epoch report with `STOP`.
    pub stop_requested: bool,
    /// Where the outbox stands now.
    pub state: FlushState,
}

/// Queued reports of one lease.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Report>,
    /// Reports refused as not retryable (bad request, unauthenticated): dropped one by one.
    rejected: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a report behind the others.
    pub fn push(&mut self, report: Report) {
        self.queue.push_back(report);
    }

    /// Reports still queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Reports the coordinator rejected for good (not stale, not transient).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Drops everything queued (the trial was abandoned).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Delivers queued reports in order until one fails or none are left.
    pub async fn flush<A: CoordinatorApi>(&mut self, api: &A) -> Flush {
        let mut delivered = 0;
        let mut stop_requested = false;
        while let Some(report) = self.queue.front().cloned() {
            let result = match report {
                Report::Epoch(req) => api
                    .report_epoch(req)
                    .await
                    .map(|resp| resp.action() == LeaseAction::Stop),
                Report::Complete(req) => api.complete(req).await.map(|_| false),
            };
            match result {
                Ok(stop) => {
                    self.queue.pop_front();
                    delivered += 1;
                    stop_requested |= stop;
                }
                Err(status) => match disposition(status.code()) {
                    Disposition::Retry => {
                        return Flush {
                            delivered,
                            stop_requested,
                            state: FlushState::Pending(status),
                        };
                    }
                    Disposition::Stale => {
                        tracing::warn!(code = ?status.code(), message = status.message(), dropped = self.queue.len(),
                            "coordinator refused reports of a stale lease, dropping them");
                        self.queue.clear();
                        return Flush {
                            delivered,
                            stop_requested,
                            state: FlushState::Stale(status),
                        };
                    }
                    Disposition::Fatal => {
                        tracing::error!(code = ?status.code(), message = status.message(),
                            "coordinator rejected a report, dropping it");
                        self.queue.pop_front();
                        self.rejected += 1;
                    }
                },
            }
        }
        Flush {
            delivered,
            stop_requested,
            state: FlushState::Empty,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::FakeCoordinator;
    use proto::v1::EpochReport;

    pub(crate) fn epoch(lease: &str, epoch: u32) -> Report {
        Report::Epoch(ReportEpochRequest {
            lease_id: lease.to_string(),
            agent_secret: crate::testing::secret_of("agent-1"),
            report: Some(EpochReport {
                epoch,
                value: 0.5,
                ..EpochReport::default()
            }),
        })
    }

    fn complete(lease: &str) -> Report {
        Report::Complete(CompleteTrialRequest {
            lease_id: lease.to_string(),
            agent_secret: crate::testing::secret_of("agent-1"),
            ..CompleteTrialRequest::default()
        })
    }

    #[tokio::test]
    async fn keeps_reports_while_down_and_delivers_them_in_order_when_back() {
        let fake = FakeCoordinator::new();
        fake.set_down(true);
        let mut outbox = Outbox::new();
        outbox.push(epoch("l1", 1));
        outbox.push(epoch("l1", 2));
        let flush = outbox.flush(&fake).await;
        assert!(matches!(flush.state, FlushState::Pending(_)), "{flush:?}");
        outbox.push(complete("l1"));
        assert_eq!(outbox.len(), 3);
        fake.set_down(false);
        let flush = outbox.flush(&fake).await;
        assert!(matches!(flush.state, FlushState::Empty), "{flush:?}");
        assert_eq!(flush.delivered, 3);
        assert_eq!(fake.reported_epochs("l1"), vec![1, 2]);
        assert_eq!(fake.completions("l1"), 1);
    }

    #[tokio::test]
    async fn stale_lease_drops_everything_and_counts_nothing() {
        let fake = FakeCoordinator::new();
        fake.make_stale("l1");
        let mut outbox = Outbox::new();
        outbox.push(epoch("l1", 1));
        outbox.push(complete("l1"));
        let flush = outbox.flush(&fake).await;
        assert!(matches!(flush.state, FlushState::Stale(_)), "{flush:?}");
        assert!(outbox.is_empty());
        assert!(fake.reported_epochs("l1").is_empty());
        assert_eq!(fake.completions("l1"), 0);
    }

    #[tokio::test]
    async fn stop_answer_is_surfaced() {
        let fake = FakeCoordinator::new();
        fake.stop_lease("l1");
        let mut outbox = Outbox::new();
        outbox.push(epoch("l1", 1));
        let flush = outbox.flush(&fake).await;
        assert!(flush.stop_requested);
        assert!(matches!(flush.state, FlushState::Empty), "{flush:?}");
    }

    #[tokio::test]
    async fn a_rejected_report_is_dropped_alone() {
        let fake = FakeCoordinator::new();
        fake.reject_epoch(2);
        let mut outbox = Outbox::new();
        for number in 1..=3 {
            outbox.push(epoch("l1", number));
        }
        let flush = outbox.flush(&fake).await;
        assert!(matches!(flush.state, FlushState::Empty), "{flush:?}");
        assert_eq!(outbox.rejected(), 1);
        assert_eq!(fake.reported_epochs("l1"), vec![1, 3]);
    }
}
