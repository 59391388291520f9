//! The benchmark's results: one [`RunReport`] per coordinator binary, written as JSON and printed
//! as markdown tables (one row per binary).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::daemon::LogSummary;
use crate::disk::SyncLatency;
use crate::scenario::{Scenario, Target};
use crate::scrape::CoordinatorCounters;
use crate::stats::{RpcKind, RpcSummary};

/// How seeding went.
#[derive(Clone, Debug, Serialize)]
pub struct Seeding {
    /// Time from the fleet's start to the measured phase.
    pub seconds: f64,
    /// Whether every BO experiment reached the seed results before the seed timeout.
    pub reached: bool,
    /// Results of each BO experiment when measuring began.
    pub bo_results_at_start: Vec<u32>,
}

/// Lease outcomes while measuring.
#[derive(Clone, Debug, Serialize)]
pub struct LeaseFigures {
    /// Trials leased.
    pub leased: u64,
    /// Leases abandoned or refused although the refused call was sent before the deadline the
    /// coordinator had last given.
    pub lost_while_healthy: u64,
    /// Leases a heartbeat answered ABANDON for.
    pub abandoned: u64,
    /// Leases whose report or completion was refused (FAILED_PRECONDITION or NOT_FOUND).
    pub refused: u64,
}

/// One coordinator binary's figures over the measured phase.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `fdatasync` latency of the data directory's disk just before the coordinator started.
    pub disk_sync_before: Option<SyncLatency>,
    /// The same just after it stopped.
    pub disk_sync_after: Option<SyncLatency>,
    /// Row label.
    pub label: String,
    /// The binary measured.
    pub binary: String,
    /// Seeding.
    pub seeding: Seeding,
    /// Length of the measured phase.
    pub measured_seconds: f64,
    /// Acknowledged completions while measuring.
    pub completed: u64,
    /// `completed / measured_seconds`.
    pub completed_per_second: f64,
    /// Acknowledged completions before measuring (seeding).
    pub completions_during_seeding: u64,
    /// Lease outcomes.
    pub leases: LeaseFigures,
    /// Calls retried after a transient error.
    pub retries: u64,
    /// Agents that registered again because the coordinator forgot them.
    pub reregistrations: u64,
    /// Agents that did not stop within the join deadline.
    pub stragglers: usize,
    /// Latency by RPC kind.
    pub rpc: BTreeMap<RpcKind, RpcSummary>,
    /// The idle probe's heartbeats (also in `rpc`).
    pub idle_heartbeat: RpcSummary,
    /// Probe heartbeats not sent because 150 earlier ones were unanswered (each would have
    /// waited at least 15 s).
    pub idle_probes_skipped: u64,
    /// Average cores the coordinator used while measuring.
    pub coordinator_cpu_cores: f64,
    /// The highest 5-second average.
    pub coordinator_cpu_cores_peak_5s: f64,
    /// Average cores the benchmark itself (agents and probe) used while measuring.
    pub client_cpu_cores: f64,
    /// The coordinator's peak RSS over its whole life (seeding included).
    pub coordinator_peak_rss_bytes: u64,
    /// The coordinator's own counters over the measured phase.
    pub coordinator: CoordinatorCounters,
    /// WARN and ERROR lines in the coordinator's log over the whole run (seeding included).
    pub coordinator_log: LogSummary,
    /// Calls that hit the client-side deadline while measuring.
    pub client_timeouts: u64,
    /// Results of each BO experiment at the end.
    pub bo_results_at_end: Vec<u32>,
}

/// The machine the benchmark ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `nproc`.
    pub nproc: String,
    /// `lscpu`'s model name.
    pub cpu_model: String,
    /// `/proc/loadavg` when the benchmark started.
    pub load_average_at_start: String,
    /// Seconds since the Unix epoch when the benchmark started.
    pub started_unix_seconds: f64,
}

impl Machine {
    /// Reads the figures of this machine (empty strings where a tool is missing).
    pub fn probe() -> Machine {
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .unwrap_or_default()
        };
        let cpu_model = run("lscpu", &[])
            .lines()
            .find_map(|line| line.strip_prefix("Model name:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Machine {
            nproc: run("nproc", &[]).trim().to_owned(),
            cpu_model,
            load_average_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            started_unix_seconds: crate::agent::now_unix(),
        }
    }
}

/// Everything one invocation wrote.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// What ran.
    pub scenario: Scenario,
    /// The binaries, in run order.
    pub targets: Vec<Target>,
    /// One report per binary, in run order.
    pub runs: Vec<RunReport>,
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "–".into(),
    }
}

fn p50_p99(summary: Option<&RpcSummary>) -> String {
    summary.map_or_else(
        || "–".into(),
        |s| format!("{} / {}", ms(s.p50_ms), ms(s.p99_ms)),
    )
}

fn sync(latency: Option<&SyncLatency>) -> String {
    latency.map_or_else(
        || "–".into(),
        |l| format!("{} / {}", ms(Some(l.p50_ms)), ms(Some(l.p99_ms))),
    )
}

/// The headline table: one row per coordinator.
pub fn summary_table(runs: &[RunReport]) -> String {
    let mut table = String::from(
        "| coordinator | trials/s | LeaseTrial p50 / p99 ms | Heartbeat p50 / p99 ms | ReportEpoch p50 / p99 ms | CompleteTrial p50 / p99 ms | idle heartbeat p50 / p99 ms | leases lost while healthy | abandoned / refused | coordinator CPU (cores) | peak RSS | disk sync p50 / p99 ms, before / after |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let _ = writeln!(
            table,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} | {:.2} | {:.0} MiB | {} / {} |",
            run.label,
            run.completed_per_second,
            p50_p99(run.rpc.get(&RpcKind::LeaseTrial)),
            p50_p99(run.rpc.get(&RpcKind::Heartbeat)),
            p50_p99(run.rpc.get(&RpcKind::ReportEpoch)),
            p50_p99(run.rpc.get(&RpcKind::CompleteTrial)),
            p50_p99(Some(&run.idle_heartbeat)),
            run.leases.lost_while_healthy,
            run.leases.abandoned,
            run.leases.refused,
            run.coordinator_cpu_cores,
            run.coordinator_peak_rss_bytes as f64 / (1024.0 * 1024.0),
            sync(run.disk_sync_before.as_ref()),
            sync(run.disk_sync_after.as_ref()),
        );
    }
    table
}

/// Every RPC kind of every coordinator: calls, errors, p50, p99 and max.
pub fn rpc_table(runs: &[RunReport]) -> String {
    let mut table = String::from(
        "| coordinator | RPC | calls | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        for kind in RpcKind::ALL {
            let Some(s) = run.rpc.get(&kind) else {
                continue;
            };
            let _ = writeln!(
                table,
                "| {} | {kind:?} | {} | {} | {} | {} | {} |",
                run.label,
                s.count,
                s.errors,
                ms(s.p50_ms),
                ms(s.p99_ms),
                ms(s.max_ms)
            );
        }
    }
    table
}

fn count(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.1}"))
}

/// The coordinator's own view over the measured phase, from its histograms: how long it took to
/// handle each RPC and each group commit. Bucket bounds, so "≤ 5" means the quantile lies in the
/// bucket ending at 5 ms. Set beside the client's percentiles, it tells the coordinator's time
/// from the time a call spent in the client, the network stack and the scheduler.
pub fn server_table(runs: &[RunReport]) -> String {
    let mut table = String::from(
        "| coordinator | ReportEpoch p50 / p99 ms (server) | Heartbeat p50 / p99 ms (server) | CompleteTrial p50 / p99 ms (server) | group commits | commit p50 / p99 ms |\n|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let c = &run.coordinator;
        let commits = c
            .commit_seconds
            .as_ref()
            .map_or_else(|| "–".to_owned(), |b| format!("{:.0}", b.count()));
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {commits} | {} |",
            run.label,
            bounds(c.report_seconds.as_ref()),
            bounds(c.heartbeat_seconds.as_ref()),
            bounds(c.complete_seconds.as_ref()),
            bounds(c.commit_seconds.as_ref()),
        );
    }
    table
}

/// "≤ p50 / ≤ p99" in milliseconds from histogram buckets.
fn bounds(buckets: Option<&crate::scrape::Buckets>) -> String {
    let Some(buckets) = buckets else {
        return "–".to_owned();
    };
    let bound = |q: f64| match buckets.quantile_bound(q) {
        Some(b) if b.is_finite() => format!("≤ {}", ms(Some(b * 1000.0))),
        Some(_) => "> last bucket".to_owned(),
        None => "–".to_owned(),
    };
    format!("{} / {}", bound(0.5), bound(0.99))
}

/// Where the coordinator's time went (its own metrics) and what the benchmark itself cost.
pub fn coordinator_table(runs: &[RunReport]) -> String {
    let mut table = String::from(
        "| coordinator | GP fits | GP fit time (s) | suggestions | suggest time (s) | leases expired (coordinator's count) | client timeouts | log errors / warnings (whole run) | seeding (s) | benchmark client CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let c = &run.coordinator;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {:.1}{} | {:.2} |",
            run.label,
            count(c.gp_fits),
            seconds(c.gp_fit_seconds),
            count(c.suggestions),
            seconds(c.suggest_seconds),
            count(c.leases_expired),
            run.client_timeouts,
            run.coordinator_log.errors,
            run.coordinator_log.warnings,
            run.seeding.seconds,
            if run.seeding.reached {
                ""
            } else {
                " (not reached)"
            },
            run.client_cpu_cores,
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_keep_three_significant_digits() {
        assert_eq!(ms(Some(0.1234)), "0.12");
        assert_eq!(ms(Some(12.34)), "12.3");
        assert_eq!(ms(Some(1234.5)), "1234");
        assert_eq!(ms(None), "–");
    }
}
