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

impl Heartbeater {
    pub(super) async fn run(
        mut self,
        interval: Duration,
        mut done: watch::Receiver<bool>,
        deadline: Instant,
    ) -> AgentStats {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
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
