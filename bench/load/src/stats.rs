//! What the simulated agents measure: the latency of every RPC kind, lease outcomes, and (for the
//! end-to-end test) every call the coordinator acknowledged.
//!
//! Each agent task keeps its own [`AgentStats`] and hands it back when it ends, so recording
//! takes no lock; [`AgentStats::merge`] folds them together and [`RpcLatencies::summary`] sorts
//! the samples once for the percentiles (an exact sorted vector instead of an HDR histogram: a
//! 60 s run holds at most a few million samples).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The RPCs the simulator sends, one latency series each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RpcKind {
    /// `RegisterAgent` (also re-registrations); recorded outside the measured phase too, as
    /// agents register when the fleet starts.
    RegisterAgent,
    /// `LeaseTrial`, long poll included.
    LeaseTrial,
    /// `Heartbeat` of an agent holding a lease.
    Heartbeat,
    /// `ReportEpoch`.
    ReportEpoch,
    /// `CompleteTrial`.
    CompleteTrial,
    /// `UnregisterAgent`; recorded after the measured phase, as agents unregister when stopped.
    UnregisterAgent,
    /// `Heartbeat` of the idle probe agent (no leases, every 100 ms).
    IdleHeartbeat,
}

impl RpcKind {
    /// Every kind, in table order.
    pub const ALL: [RpcKind; 7] = [
        RpcKind::RegisterAgent,
        RpcKind::LeaseTrial,
        RpcKind::Heartbeat,
        RpcKind::ReportEpoch,
        RpcKind::CompleteTrial,
        RpcKind::UnregisterAgent,
        RpcKind::IdleHeartbeat,
    ];
}

/// Latency samples of one RPC kind, in microseconds, and how many calls failed.
#[derive(Clone, Debug, Default)]
pub struct RpcLatencies {
    /// Latency of every answered call (OK or an error status), microseconds.
    samples_us: Vec<u64>,
    /// Calls that ended in an error status (transport errors and client timeouts included).
    errors: u64,
}

impl RpcLatencies {
    /// Records one call.
    pub fn record(&mut self, latency: Duration, ok: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.samples_us.push(micros);
        if !ok {
            self.errors += 1;
        }
    }

    /// Adds another series.
    pub fn merge(&mut self, other: RpcLatencies) {
        self.samples_us.extend(other.samples_us);
        self.errors += other.errors;
    }

    /// Count, errors and p50/p99/max in milliseconds.
    pub fn summary(&self) -> RpcSummary {
        let mut sorted = self.samples_us.clone();
        sorted.sort_unstable();
        let millis = |us: u64| us as f64 / 1000.0;
        RpcSummary {
            count: sorted.len() as u64,
            errors: self.errors,
            p50_ms: percentile(&sorted, 0.50).map(millis),
            p99_ms: percentile(&sorted, 0.99).map(millis),
            max_ms: sorted.last().copied().map(millis),
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least `q` of the
/// samples at or below it.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One RPC kind's figures, as written to the JSON report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RpcSummary {
    /// Calls answered.
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Slowest call.
    pub max_ms: Option<f64>,
}

/// An epoch report the coordinator answered OK.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AckedEpoch {
    /// The trial.
    pub trial_id: String,
    /// The lease it was sent under.
    pub lease_id: String,
    /// The lease's attempt number.
    pub attempt: u32,
    /// The epoch, from 1.
    pub epoch: u32,
    /// The value reported.
    pub value: f64,
}

/// A `CompleteTrial` the coordinator answered OK.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AckedCompletion {
    /// The trial.
    pub trial_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The lease it was sent under.
    pub lease_id: String,
    /// The lease's attempt number.
    pub attempt: u32,
    /// `true` for SUCCEEDED, `false` for STOPPED (the simulator sends no other outcome).
    pub succeeded: bool,
    /// The final value sent.
    pub value: f64,
}

/// A report or completion the coordinator refused as stale (kept with the acknowledgements).
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The trial.
    pub trial_id: String,
    /// The lease it was sent under.
    pub lease_id: String,
    /// `ReportEpoch` or `CompleteTrial`.
    pub rpc: RpcKind,
    /// The status code (FAILED_PRECONDITION or NOT_FOUND).
    pub code: tonic::Code,
    /// The status message.
    pub message: String,
    /// Tries of the call, the refused one included (more than 1: it was retried after a
    /// transient error, for example across a coordinator restart).
    pub after_tries: u32,
}

/// Why an agent lost a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseLoss {
    /// A heartbeat answered ABANDON.
    Abandoned,
    /// A report or completion answered FAILED_PRECONDITION (or NOT_FOUND for the lease).
    Refused,
}

/// Everything one agent (or, merged, the fleet) measured.
#[derive(Clone, Debug, Default)]
pub struct AgentStats {
    /// Latencies by RPC kind (of calls sent while the fleet was recording).
    pub rpc: BTreeMap<RpcKind, RpcLatencies>,
    /// Trials leased while recording.
    pub leases: u64,
    /// `CompleteTrial` calls acknowledged while recording.
    pub completed: u64,
    /// Leases a heartbeat sent while recording was answered ABANDON for.
    pub abandoned: u64,
    /// Leases a report or completion sent while recording was refused for.
    pub refused: u64,
    /// Lost leases (abandoned or refused) that were healthy: the refused call was sent before
    /// the latest deadline the coordinator had given for the lease (sent while recording).
    pub lost_while_healthy: u64,
    /// Calls retried after a transient error while recording.
    pub retries: u64,
    /// Registrations after the first (the coordinator forgot the agent).
    pub reregistrations: u64,
    /// Calls sent while recording that hit the client-side deadline; the coordinator sees each as
    /// a cancelled request.
    pub client_timeouts: u64,
    /// Idle-probe heartbeats not sent because too many earlier ones were still unanswered.
    pub idle_probes_skipped: u64,
    /// Every acknowledged epoch report, when the fleet keeps acknowledgements.
    pub acked_epochs: Vec<AckedEpoch>,
    /// Every acknowledged completion, when the fleet keeps acknowledgements.
    pub acked_completions: Vec<AckedCompletion>,
    /// Every refused report or completion, when the fleet keeps acknowledgements.
    pub refusals: Vec<Refusal>,
}

impl AgentStats {
    /// Records one call's latency.
    pub fn record(&mut self, kind: RpcKind, latency: Duration, ok: bool) {
        self.rpc.entry(kind).or_default().record(latency, ok);
    }

    /// Counts one lost lease.
    pub fn record_loss(&mut self, loss: LeaseLoss, healthy: bool) {
        match loss {
            LeaseLoss::Abandoned => self.abandoned += 1,
            LeaseLoss::Refused => self.refused += 1,
        }
        if healthy {
            self.lost_while_healthy += 1;
        }
    }

    /// Adds another agent's figures.
    pub fn merge(&mut self, other: AgentStats) {
        for (kind, latencies) in other.rpc {
            self.rpc.entry(kind).or_default().merge(latencies);
        }
        self.leases += other.leases;
        self.completed += other.completed;
        self.abandoned += other.abandoned;
        self.refused += other.refused;
        self.lost_while_healthy += other.lost_while_healthy;
        self.retries += other.retries;
        self.reregistrations += other.reregistrations;
        self.idle_probes_skipped += other.idle_probes_skipped;
        self.client_timeouts += other.client_timeouts;
        self.acked_epochs.extend(other.acked_epochs);
        self.acked_completions.extend(other.acked_completions);
        self.refusals.extend(other.refusals);
    }

    /// The summary of every RPC kind that was called.
    pub fn rpc_summaries(&self) -> BTreeMap<RpcKind, RpcSummary> {
        self.rpc
            .iter()
            .map(|(kind, latencies)| (*kind, latencies.summary()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(50));
        assert_eq!(percentile(&sorted, 0.99), Some(99));
        assert_eq!(percentile(&sorted, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn merge_adds_samples_and_counters() {
        let mut a = AgentStats::default();
        a.record(RpcKind::Heartbeat, Duration::from_millis(2), true);
        a.record_loss(LeaseLoss::Abandoned, true);
        let mut b = AgentStats::default();
        b.record(RpcKind::Heartbeat, Duration::from_millis(4), false);
        b.record_loss(LeaseLoss::Refused, false);
        a.merge(b);
        let summary = &a.rpc_summaries()[&RpcKind::Heartbeat];
        assert_eq!((summary.count, summary.errors), (2, 1));
        assert_eq!(summary.max_ms, Some(4.0));
        assert_eq!((a.abandoned, a.refused, a.lost_while_healthy), (1, 1, 1));
    }
}
