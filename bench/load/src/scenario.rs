//! One benchmark run against one coordinator binary: start it on a fresh data dir, create the
//! experiments, start the fleet, seed the BO experiments, measure for the run's duration, stop
//! everything and report.
//!
//! Seeding: each BO experiment is created with `initial_trials = seed_results`, so its trials come
//! from the cheap space-filling design until it has that many results; the run waits until every
//! BO experiment has at least `seed_results` results and only then starts measuring. Every BO
//! suggestion made while measuring therefore fits a GP to at least `seed_results` observations
//! (plus the running trials as constant-liar fantasies).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

use crate::agent::AgentConfig;
use crate::daemon::{CoordinatorProcess, summarize_log};
use crate::disk::SyncLatency;
use crate::fleet::{Fleet, FleetConfig, channels};
use crate::objective::branin_spec;
use crate::procfs::{CpuWindow, peak_rss_bytes};
use crate::report::{LeaseFigures, RunReport, Seeding};
use crate::retry::RetryPolicy;
use crate::scrape::{CoordinatorCounters, scrape};
use crate::stats::RpcKind;

/// Trials each experiment may create: more than any run finishes.
pub const BUDGET_TRIALS: u32 = 100_000;

/// The scenario, the same for every coordinator of one invocation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scenario {
    /// Simulated agents.
    pub agents: usize,
    /// BO experiments.
    pub bo: usize,
    /// Random-search experiments.
    pub random: usize,
    /// Results each BO experiment has before measuring starts.
    pub seed_results: u32,
    /// Measured phase.
    pub duration: Duration,
    /// Epochs a trial.
    pub epochs: u32,
    /// Simulated training time per epoch, on average.
    pub work_per_epoch: Duration,
    /// Spread of each trial's epoch length ([`AgentConfig::work_jitter`]).
    pub work_jitter: f64,
    /// The long poll agents ask for in `LeaseTrial` (0: none, so its latency is the
    /// coordinator's service time).
    pub lease_wait: Duration,
    /// `COORDINATOR_LEASE_TIMEOUT_SECS` for the child, when set.
    pub lease_timeout_secs: Option<u64>,
    /// `COORDINATOR_HEARTBEAT_INTERVAL_SECS` for the child, when set.
    pub heartbeat_secs: Option<u64>,
    /// HTTP/2 connections the agents share.
    pub channels: usize,
    /// Client-side deadline of each call.
    pub rpc_timeout: Duration,
    /// Longest wait for seeding; measuring starts anyway after it (the report says so).
    pub seed_timeout: Duration,
    /// Copy each coordinator's log into this folder.
    pub keep_logs: Option<PathBuf>,
    /// Agents heartbeat in lockstep ([`AgentConfig::heartbeat_lockstep`]).
    pub heartbeat_lockstep: bool,
}

impl Scenario {
    /// Trials each experiment may lease at once: a fair share of the agents.
    pub fn parallelism(&self) -> u32 {
        let experiments = (self.bo + self.random).max(1);
        u32::try_from((self.agents / experiments).max(1)).unwrap_or(u32::MAX)
    }

    fn child_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(secs) = self.lease_timeout_secs {
            env.push(("COORDINATOR_LEASE_TIMEOUT_SECS".into(), secs.to_string()));
        }
        if let Some(secs) = self.heartbeat_secs {
            env.push((
                "COORDINATOR_HEARTBEAT_INTERVAL_SECS".into(),
                secs.to_string(),
            ));
        }
        env
    }

    fn fleet_config(&self) -> FleetConfig {
        FleetConfig {
            agents: self.agents,
            agent: AgentConfig {
                epochs: self.epochs,
                work_per_epoch: self.work_per_epoch,
                work_jitter: self.work_jitter,
                lease_wait: self.lease_wait,
                rpc_timeout: self.rpc_timeout,
                retry: RetryPolicy::default(),
                keep_acks: false,
                max_run: self.seed_timeout + self.duration + Duration::from_secs(120),
                heartbeat_lockstep: self.heartbeat_lockstep,
            },
            idle_probe_period: Some(Duration::from_millis(100)),
        }
    }
}

/// A coordinator binary to measure, with the label its table row gets.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Target {
    /// Row label.
    pub label: String,
    /// The binary.
    pub binary: PathBuf,
}

impl Target {
    /// `LABEL=PATH`, or a bare `PATH` labelled by itself.
    pub fn parse(arg: &str) -> Target {
        match arg.split_once('=') {
            Some((label, path)) if !label.is_empty() => Target {
                label: label.to_owned(),
                binary: PathBuf::from(path),
            },
            _ => Target {
                label: arg.to_owned(),
                binary: PathBuf::from(arg),
            },
        }
    }
}

/// The disk's sync latency in `dir` ([`crate::disk`]), or `None` (with a warning) when it
/// cannot be measured: the run goes on without it.
async fn disk_probe(dir: &std::path::Path, label: &str) -> Option<SyncLatency> {
    let dir = dir.to_owned();
    let measured =
        tokio::task::spawn_blocking(move || crate::disk::probe(&dir, crate::disk::SYNCS))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
    match measured {
        Ok(latency) => Some(latency),
        Err(error) => {
            eprintln!("[{label}] warning: the disk sync probe failed: {error:#}");
            None
        }
    }
}

/// Runs the scenario against one coordinator.
///
/// # Errors
/// When the coordinator cannot start, refuses the experiments or dies during the run.
pub async fn run(target: &Target, scenario: &Scenario) -> Result<RunReport> {
    if scenario.bo + scenario.random == 0 {
        bail!("no experiments: give --bo or --random at least 1");
    }
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let disk_sync_before = disk_probe(dir.path(), &target.label).await;
    let log_path = dir.path().join("coordinator.log");
    let coordinator = CoordinatorProcess::start(
        &target.binary,
        &dir.path().join("data"),
        &log_path,
        &scenario.child_env(),
        Duration::from_secs(60),
    )
    .await?;
    let url = coordinator.grpc_url();
    let mut experiments = ExperimentServiceClient::new(channels(&url, 1)?.remove(0));
    let (bo_ids, all_ids) = create_experiments(&mut experiments, scenario).await?;
    eprintln!(
        "[{}] {} experiments created; starting {} agents",
        target.label,
        all_ids.len(),
        scenario.agents
    );
    let probe_channel = channels(&url, 1)?.remove(0);
    let fleet = Fleet::start(
        &channels(&url, scenario.channels)?,
        &probe_channel,
        scenario.fleet_config(),
    );
    let seeding = seed(&mut experiments, &bo_ids, scenario, &target.label).await?;
    let completions_during_seeding = fleet.progress().completions();
    let measured = measure(&coordinator, &fleet, scenario, &target.label).await;
    // Calls in flight finish (or time out) before the agents end: the long poll plus one deadline.
    let outcome = fleet
        .stop(scenario.rpc_timeout + Duration::from_secs(35))
        .await;
    let peak_rss = peak_rss_bytes(coordinator.pid());
    let bo_results_at_end = results(&mut experiments, &bo_ids).await;
    coordinator.stop(Duration::from_secs(20)).await?;
    let disk_sync_after = disk_probe(dir.path(), &target.label).await;
    let log = summarize_log(&std::fs::read_to_string(&log_path).unwrap_or_default());
    if let Some(keep) = &scenario.keep_logs {
        keep_log(&log_path, keep, &target.label)?;
    }
    let measured = measured?;

    let stats = outcome.stats;
    let rpc = stats.rpc_summaries();
    let seconds = measured.wall.as_secs_f64();
    Ok(RunReport {
        disk_sync_before,
        disk_sync_after,
        label: target.label.clone(),
        binary: target.binary.display().to_string(),
        seeding,
        measured_seconds: seconds,
        completed: stats.completed,
        completed_per_second: stats.completed as f64 / seconds,
        completions_during_seeding,
        leases: LeaseFigures {
            leased: stats.leases,
            lost_while_healthy: stats.lost_while_healthy,
            abandoned: stats.abandoned,
            refused: stats.refused,
        },
        retries: stats.retries,
        reregistrations: stats.reregistrations,
        stragglers: outcome.stragglers,
        idle_heartbeat: rpc
            .get(&RpcKind::IdleHeartbeat)
            .cloned()
            .unwrap_or_default(),
        idle_probes_skipped: stats.idle_probes_skipped,
        rpc,
        coordinator_cpu_cores: measured.coordinator_cores,
        coordinator_cpu_cores_peak_5s: measured.peak_cores,
        client_cpu_cores: measured.client_cores,
        coordinator_peak_rss_bytes: peak_rss?,
        coordinator: measured.counters,
        coordinator_log: log,
        client_timeouts: stats.client_timeouts,
        bo_results_at_end: bo_results_at_end?,
    })
}

/// What the measured phase saw of the coordinator process.
struct Measured {
    wall: Duration,
    coordinator_cores: f64,
    peak_cores: f64,
    client_cores: f64,
    counters: CoordinatorCounters,
}

async fn counters(coordinator: &CoordinatorProcess) -> CoordinatorCounters {
    match scrape(coordinator.metrics_addr(), Duration::from_secs(10)).await {
        Ok(text) => CoordinatorCounters::read(&text),
        Err(error) => {
            eprintln!("warning: cannot scrape the coordinator's metrics: {error:#}");
            CoordinatorCounters::default()
        }
    }
}

/// Records for the scenario's duration, printing CPU and throughput every 5 s.
async fn measure(
    coordinator: &CoordinatorProcess,
    fleet: &Fleet,
    scenario: &Scenario,
    label: &str,
) -> Result<Measured> {
    let counters_before = counters(coordinator).await;
    let coordinator_cpu = CpuWindow::start(coordinator.pid())?;
    let client_cpu = CpuWindow::start(std::process::id())?;
    fleet.progress().set_recording(true);
    eprintln!("[{label}] measuring for {:?}", scenario.duration);
    let end = Instant::now() + scenario.duration;
    let mut peak_cores: f64 = 0.0;
    let mut interval = (coordinator_cpu, fleet.progress().completions());
    // One step every 5 s, so at most duration / 5 s + 1 steps.
    while Instant::now() < end {
        let step = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(step.min(Duration::from_secs(5))).await;
        let (cores, _) = interval.0.cores()?;
        peak_cores = peak_cores.max(cores);
        let completions = fleet.progress().completions();
        eprintln!(
            "[{label}]   {cores:.2} cores, {} trials in the last interval",
            completions - interval.1
        );
        interval = (CpuWindow::start(coordinator.pid())?, completions);
    }
    let (coordinator_cores, wall) = coordinator_cpu.cores()?;
    let (client_cores, _) = client_cpu.cores()?;
    fleet.progress().set_recording(false);
    let counters = counters(coordinator).await.since(&counters_before);
    Ok(Measured {
        wall,
        coordinator_cores,
        peak_cores,
        client_cores,
        counters,
    })
}

/// Copies the coordinator's log to `dir/LABEL.log` (the label made file-name safe).
fn keep_log(log_path: &std::path::Path, dir: &std::path::Path, label: &str) -> Result<()> {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(format!("{name}.log"));
    std::fs::copy(log_path, &target)
        .with_context(|| format!("cannot copy the log to {}", target.display()))?;
    eprintln!("[{label}] coordinator log kept at {}", target.display());
    Ok(())
}

/// Creates the BO experiments (first) and the random ones; returns the BO ids and all ids.
async fn create_experiments(
    client: &mut ExperimentServiceClient<Channel>,
    scenario: &Scenario,
) -> Result<(Vec<String>, Vec<String>)> {
    let parallelism = scenario.parallelism();
    let mut specs = Vec::new();
    for index in 0..scenario.bo {
        let name = format!("load-bo-{index}");
        let seed = 1000 + index as u64;
        let initial = scenario.seed_results.max(2);
        specs.push(branin_spec(
            &name,
            pb::Strategy::Bo,
            BUDGET_TRIALS,
            parallelism,
            initial,
            seed,
        ));
    }
    for index in 0..scenario.random {
        let name = format!("load-random-{index}");
        let seed = 2000 + index as u64;
        specs.push(branin_spec(
            &name,
            pb::Strategy::Random,
            BUDGET_TRIALS,
            parallelism,
            0,
            seed,
        ));
    }
    let mut ids = Vec::new();
    for spec in specs {
        let name = spec.name.clone();
        let request = pb::CreateExperimentRequest { spec: Some(spec) };
        let response = client
            .create_experiment(request)
            .await
            .with_context(|| format!("cannot create experiment {name}"))?;
        let experiment = response.into_inner().experiment.context("no experiment")?;
        ids.push(experiment.id);
    }
    Ok((ids[..scenario.bo].to_vec(), ids))
}

/// Results (succeeded or early-stopped trials) of each experiment.
async fn results(
    client: &mut ExperimentServiceClient<Channel>,
    ids: &[String],
) -> Result<Vec<u32>> {
    let mut counts = Vec::with_capacity(ids.len());
    for id in ids {
        let request = pb::GetExperimentRequest {
            experiment_id: id.clone(),
        };
        let call = tokio::time::timeout(Duration::from_secs(60), client.get_experiment(request));
        let response = call
            .await
            .context("GetExperiment timed out")?
            .with_context(|| format!("cannot get experiment {id}"))?;
        let experiment = response.into_inner().experiment.context("no experiment")?;
        counts.push(experiment.trials_succeeded + experiment.trials_early_stopped);
    }
    Ok(counts)
}

/// Waits (polling, up to the scenario's seed timeout) until every BO experiment has
/// `seed_results` results.
async fn seed(
    client: &mut ExperimentServiceClient<Channel>,
    bo_ids: &[String],
    scenario: &Scenario,
    label: &str,
) -> Result<Seeding> {
    let started = Instant::now();
    let deadline = started + scenario.seed_timeout;
    let mut last_print = started;
    let mut counts = vec![0; bo_ids.len()];
    loop {
        // A coordinator too slow to answer within the poll's timeout has not seeded yet; the
        // seed deadline still bounds the wait.
        match results(client, bo_ids).await {
            Ok(now) => counts = now,
            Err(error) => eprintln!("[{label}] seeding poll failed, trying again: {error:#}"),
        }
        let reached = counts.iter().all(|c| *c >= scenario.seed_results);
        if reached || Instant::now() >= deadline {
            eprintln!(
                "[{label}] seeded in {:.1?}: results {counts:?}",
                started.elapsed()
            );
            return Ok(Seeding {
                seconds: started.elapsed().as_secs_f64(),
                reached,
                bo_results_at_start: counts,
            });
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!("[{label}] seeding: BO results {counts:?}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
