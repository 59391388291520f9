//! An agent's heartbeat task: every heartbeat interval it renews the lease the agent holds (if
//! any), records the deadline the coordinator gives, and marks the lease lost on ABANDON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use super::shared::{AgentShared, register, timed};
use super::{AgentConfig, Progress, now_unix};
use crate::stats::{AgentStats, LeaseLoss, RpcKind};

/// An agent's heartbeat task: every interval, heartbeats the lease it holds (if any).
pub(super) struct Heartbeater {
    pub(super) index: usize,
    pub(super) client: AgentServiceClient<Channel>,
    pub(super) shared: Arc<AgentShared>,
    pub(super) config: Arc<AgentConfig>,
    pub(super) progress: Arc<Progress>,
    pub(super) stats: AgentStats,
}

/// When agent `index`'s first heartbeat comes after it registered: a whole `interval` in
/// lockstep, else a fraction of it in `(0, 1]` spread evenly over the fleet by the golden ratio
/// (the fractional parts of `(index + 1) × 0.618…` fill the interval without clumping).
pub(super) fn first_beat(index: usize, interval: Duration, lockstep: bool) -> Duration {
    if lockstep {
        return interval;
    }
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let fraction = ((index as f64 + 1.0) * golden).fract();
    interval.mul_f64(1.0 - fraction)
}

impl Heartbeater {
    pub(super) async fn run(
        mut self,
        interval: Duration,
        mut done: watch::Receiver<bool>,
        deadline: Instant,
    ) -> AgentStats {
        let first = first_beat(self.index, interval, self.config.heartbeat_lockstep);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_ticks = (self.config.max_run.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
        for _ in 0..max_ticks.saturating_add(1) {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = done.wait_for(|done| *done) => break,
            }
            if Instant::now() >= deadline {
                break;
            }
            self.beat().await;
        }
        self.stats
    }

    async fn beat(&mut self) {
        let Some(lease_id) = self
            .shared
            .held()
            .as_ref()
            .filter(|l| !l.lost && !l.completing)
            .map(|l| l.lease_id.clone())
        else {
            return;
        };
        let request = pb::HeartbeatRequest {
            agent_id: self.shared.agent_id(),
            agent_secret: self.shared.secret(),
            lease_ids: vec![lease_id.clone()],
        };
        let sent_unix = now_unix();
        let mut client = self.client.clone();
        let call = client.heartbeat(request);
        let timeout = self.config.rpc_timeout;
        let recording = self.progress.recording();
        let result = timed(
            &mut self.stats,
            recording,
            RpcKind::Heartbeat,
            timeout,
            call,
        );
        match result.await {
            Ok(response) => {
                for status in response.leases.iter().filter(|s| s.lease_id == lease_id) {
                    self.apply(status, sent_unix, recording);
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                let (shared, config) = (Arc::clone(&self.shared), Arc::clone(&self.config));
                register(&self.client, &shared, &mut self.stats, &config, self.index).await;
            }
            Err(_) => {}
        }
    }

    /// Applies one lease's answer; a loss counts when the heartbeat was sent while recording.
    fn apply(&mut self, status: &pb::LeaseStatus, sent_unix: f64, recorded: bool) {
        match status.action() {
            pb::LeaseAction::Abandon => {
                if let Some(healthy) = self.shared.mark_lost(&status.lease_id, sent_unix)
                    && recorded
                {
                    self.stats.record_loss(LeaseLoss::Abandoned, healthy);
                }
            }
            action => {
                let mut held = self.shared.held();
                if let Some(lease) = held.as_mut().filter(|l| l.lease_id == status.lease_id) {
                    if status.deadline_unix_seconds > 0.0 {
                        lease.deadline_unix = status.deadline_unix_seconds;
                    }
                    lease.stop |= action == pb::LeaseAction::Stop;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_beats_spread_over_the_interval() {
        let interval = Duration::from_secs(10);
        assert_eq!(first_beat(7, interval, true), interval);
        let mut firsts: Vec<Duration> = (0..1000).map(|i| first_beat(i, interval, false)).collect();
        assert!(firsts.iter().all(|d| *d > Duration::ZERO && *d <= interval));
        firsts.sort();
        // Every tenth of the interval holds about a tenth of the fleet.
        for decile in 0..10u32 {
            let (low, high) = (interval * decile / 10, interval * (decile + 1) / 10);
            let count = firsts.iter().filter(|d| **d > low && **d <= high).count();
            assert!((90..=110).contains(&count), "decile {decile}: {count}");
        }
    }
}
