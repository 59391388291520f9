//! The `load-bench` binary: parses flags, runs the scenario against each `--coordinator` in turn,
//! prints the markdown tables and writes the JSON report.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use load_bench::report::{
    BenchReport, Machine, coordinator_table, rpc_table, server_table, summary_table,
};
use load_bench::scenario::{Scenario, Target, run};

/// Measures coordinators under a fleet of simulated agents (see docs/BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "load-bench", version)]
struct Args {
    /// A coordinator binary, as PATH or LABEL=PATH; repeat to compare binaries in one run.
    #[arg(long = "coordinator", value_name = "[LABEL=]PATH", required = true)]
    coordinators: Vec<String>,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// BO experiments.
    #[arg(long, default_value_t = 4)]
    bo: usize,
    /// Random-search experiments.
    #[arg(long, default_value_t = 4)]
    random: usize,
    /// Results each BO experiment has before measuring (its initial design size).
    #[arg(long, default_value_t = 200)]
    seed_results: u32,
    /// Measured phase, seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Epochs per trial.
    #[arg(long, default_value_t = 3)]
    epochs: u32,
    /// Simulated training time per epoch, milliseconds.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Each trial's epochs take --work-ms times a factor uniform in [1 - J, 1 + J], as trials
    /// of different configurations train at different speeds; 0 makes every epoch equal, so a
    /// fleet started at once reports in the same millisecond every epoch.
    #[arg(long, value_name = "J", default_value_t = 0.5)]
    work_jitter: f64,
    /// The long poll agents ask for in LeaseTrial, seconds (0: none; the LeaseTrial latency is
    /// then the coordinator's service time).
    #[arg(long, default_value_t = 5.0)]
    lease_wait_secs: f64,
    /// Lease timeout given to the coordinator (COORDINATOR_LEASE_TIMEOUT_SECS); default: its own.
    #[arg(long)]
    lease_timeout_secs: Option<u64>,
    /// Heartbeat interval given to the coordinator (COORDINATOR_HEARTBEAT_INTERVAL_SECS).
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    /// Client-side deadline of each call, seconds (LeaseTrial gets its 5 s long poll on top).
    /// The default is twice the coordinator's default lease timeout, so a coordinator that
    /// expires a lease while its agent's call waits in a queue answers, and the loss is counted;
    /// the real agent uses 10 s.
    #[arg(long, default_value_t = 120)]
    rpc_timeout_secs: u64,
    /// HTTP/2 connections the agents share (round robin).
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Start every agent's heartbeat clock at registration, so the whole fleet heartbeats in the
    /// same millisecond every interval (by default each agent's first heartbeat is spread over
    /// the interval, like a fleet whose agents lease at different times).
    #[arg(long)]
    heartbeat_lockstep: bool,
    /// Longest wait for seeding, seconds; measuring starts anyway after it.
    #[arg(long, default_value_t = 600)]
    seed_timeout_secs: u64,
    /// Copy each coordinator's log into this folder (as LABEL.log).
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

async fn bench(args: Args) -> Result<()> {
    let scenario = Scenario {
        agents: args.agents,
        bo: args.bo,
        random: args.random,
        seed_results: args.seed_results,
        duration: Duration::from_secs(args.duration),
        epochs: args.epochs.max(1),
        work_per_epoch: Duration::from_millis(args.work_ms),
        work_jitter: if (0.0..=1.0).contains(&args.work_jitter) {
            args.work_jitter
        } else {
            anyhow::bail!("--work-jitter {}: must be in [0, 1]", args.work_jitter)
        },
        lease_wait: Duration::try_from_secs_f64(args.lease_wait_secs)
            .map_err(|e| anyhow::anyhow!("--lease-wait-secs {}: {e}", args.lease_wait_secs))?,
        lease_timeout_secs: args.lease_timeout_secs,
        heartbeat_secs: args.heartbeat_secs,
        channels: args.channels,
        rpc_timeout: Duration::from_secs(args.rpc_timeout_secs.max(1)),
        seed_timeout: Duration::from_secs(args.seed_timeout_secs),
        keep_logs: args.keep_logs,
        heartbeat_lockstep: args.heartbeat_lockstep,
    };
    let machine = Machine::probe();
    let targets: Vec<Target> = args.coordinators.iter().map(|a| Target::parse(a)).collect();
    let mut runs = Vec::new();
    for target in &targets {
        let report = run(target, &scenario)
            .await
            .with_context(|| format!("run against {} failed", target.binary.display()))?;
        runs.push(report);
    }
    println!("{}", summary_table(&runs));
    println!("{}", rpc_table(&runs));
    println!("{}", coordinator_table(&runs));
    println!("{}", server_table(&runs));
    for run in &runs {
        if let Some(first) = &run.coordinator_log.first_error {
            println!(
                "{} logged {} errors; the first: `{first}`",
                run.label, run.coordinator_log.errors
            );
        }
    }
    let report = BenchReport {
        machine,
        scenario,
        targets,
        runs,
    };
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
