//! `tunectl study`: runs BO, random and grid search (each arm with or without early stopping)
//! on a built-in scenario, or on a user's spec file (`--spec`), as one tagged experiment an arm
//! and repeat ([`crate::study::run`]), then prints the study's name for `tunectl report`.
//!
//! With `--local` it first starts a one-machine cluster ([`crate::local::cluster`]); since that
//! coordinator stops with the command, the report is written before it does (`--out`, by default
//! `STUDY-report/`). `--out` works with a remote coordinator too.

use std::path::PathBuf;
use std::time::Duration;

use super::ConnectOptions;
use crate::local::cluster::{AgentOptions, RunningCluster};
use crate::local::signals::{Interrupted, Termination};
use crate::study::run::{self, StudyArm, StudyPlanRequest, rule_by_name};

/// Options of `tunectl study`.
#[derive(Clone, Debug, clap::Args)]
pub struct StudyOptions {
    /// Built-in scenario.
    #[arg(long, value_parser = ["basic", "complex", "basic-mini"], required_unless_present = "spec")]
    pub scenario: Option<String>,
    /// A spec file of your own (as for `tunectl create`) instead of a scenario; with --local, a
    /// `command` workload needs its command declared in --agent-config.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub spec: Option<PathBuf>,
    /// Local cluster: an agent config file each agent reads (its `[[commands]]`).
    #[arg(long, value_name = "FILE")]
    pub agent_config: Option<PathBuf>,
    /// Arms to compare, comma-separated: bo, random, grid, each optionally with an
    /// early-stopping rule of its own (`bo+median`, `random+asha`, `grid+none`).
    #[arg(long, value_delimiter = ',', default_value = "bo,random,grid")]
    pub strategies: Vec<StudyArm>,
    /// Early-stopping rule of the arms that name none: none, median or asha.
    #[arg(long, default_value = "none", value_parser = ["none", "median", "asha"])]
    pub early_stopping: String,
    /// Trials an experiment (default: the scenario's). Grid search uses the coarser grid that fits.
    #[arg(long)]
    pub budget: Option<u32>,
    /// Repeats an arm.
    #[arg(long, default_value_t = 5)]
    pub repeats: u32,
    /// Trials leased at once an experiment (default: the scenario's).
    #[arg(long)]
    pub parallel: Option<u32>,
    /// Study name (default: SCENARIO-UNIXTIME).
    #[arg(long)]
    pub name: Option<String>,
    /// Base seed of the experiments' seeds.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Experiments running at once (default: one an arm, so repeats finish round by round).
    #[arg(long)]
    pub at_once: Option<usize>,
    /// Use only the first N training sentences.
    #[arg(long)]
    pub max_train: Option<u32>,
    /// Use only the first N validation sentences.
    #[arg(long)]
    pub max_dev: Option<u32>,
    /// Run on a one-machine cluster (coordinator and agents as child processes) started for the
    /// study and stopped after it.
    #[arg(long)]
    pub local: bool,
    /// Agents of the local cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub agents: u32,
    /// Local cluster: trials each agent trains at once (several share one GPU).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
    /// Local cluster: GPU agents (one a GPU) instead of CPU agents.
    #[arg(long)]
    pub gpu: bool,
    /// Local cluster: price the trials as this instance type (default: they cost nothing).
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Local cluster: keep the coordinator's database and the logs here (default: a temporary
    /// dir). Running again with the same dir and --name adds experiments to the same study.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the study's report here when it ends (with --local, default STUDY-report/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds between progress polls.
    #[arg(long, default_value_t = 2.0)]
    pub interval_secs: f64,
}

impl StudyOptions {
    /// The plan request these options describe.
    ///
    /// # Errors
    /// When `--early-stopping` names no rule.
    pub fn plan_request(&self) -> anyhow::Result<StudyPlanRequest> {
        let base = match &self.spec {
            Some(path) => Some(self.user_spec(path)?),
            None => None,
        };
        let scenario = match (&base, &self.scenario) {
            (Some(spec), _) => spec.name.clone(),
            (None, Some(scenario)) => scenario.clone(),
            (None, None) => anyhow::bail!("give --scenario NAME or --spec FILE"),
        };
        let name = self.name.clone().unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{scenario}-{stamp}")
        });
        Ok(StudyPlanRequest {
            name,
            scenario,
            base,
            arms: self.strategies.clone(),
            early_stopping: rule_by_name(&self.early_stopping)?,
            budget: self.budget,
            repeats: self.repeats,
            parallel: self.parallel,
            seed: self.seed,
            max_train: self.max_train,
            max_dev: self.max_dev,
        })
    }

    /// The spec of `path`; with `--local`, a command it runs must be declared for the agents.
    fn user_spec(&self, path: &std::path::Path) -> anyhow::Result<proto::v1::ExperimentSpec> {
        let spec = super::spec::SpecFile::read(path)?.to_pb();
        if let Some(workload) = spec.workload.as_ref().filter(|w| w.kind == "command")
            && self.local
        {
            crate::local::user_spec::check_declared(
                &workload.command,
                self.agent_config.as_deref(),
            )?;
        }
        Ok(spec)
    }

    /// Where the report goes, if anywhere.
    fn report_dir(&self, study: &str) -> Option<PathBuf> {
        self.out.clone().or_else(|| {
            self.local
                .then(|| PathBuf::from(format!("{}-report", study.replace('/', "_"))))
        })
    }
}

/// Runs `tunectl study`; prints the study's name on `out` once every experiment ended.
///
/// # Errors
/// When the plan is invalid, the local cluster cannot start, the coordinator refuses an
/// experiment, or the run is interrupted.
pub async fn run(
    connect: &ConnectOptions,
    options: &StudyOptions,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let request = options.plan_request()?;
    let planned = run::plan(&request)?;
    // Before a local cluster starts: a signal during its start-up is queued, not fatal.
    let mut termination = Termination::listen()?;
    if !options.local {
        return drive_and_report(
            connect,
            options,
            &request,
            planned,
            None,
            &mut termination,
            out,
        )
        .await;
    }
    let agents = AgentOptions {
        agents: options.agents,
        gpu: options.gpu,
        instance_type: options.instance_type.clone(),
        slots: options.slots,
        config: options.agent_config.clone(),
    };
    let mut cluster = RunningCluster::start(options.data_dir.clone(), &agents)?;
    let local = ConnectOptions::plain(&cluster.url);
    let outcome = drive_and_report(
        &local,
        options,
        &request,
        planned,
        Some(&mut cluster),
        &mut termination,
        out,
    )
    .await;
    // Off the runtime's one thread, so the closed client connections are wound down while the
    // coordinator drains them in its graceful shutdown.
    let success = outcome.is_ok();
    tokio::task::spawn_blocking(move || cluster.finish(success))
        .await
        .map_err(|e| anyhow::anyhow!("stopping the local cluster failed: {e}"))?;
    outcome
}

async fn drive_and_report(
    connect: &ConnectOptions,
    options: &StudyOptions,
    request: &StudyPlanRequest,
    planned: Vec<run::PlannedExperiment>,
    mut cluster: Option<&mut RunningCluster>,
    termination: &mut Termination,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let mut client = super::connect(connect).await?;
    eprintln!("study {}: {} experiments", request.name, planned.len());
    let at_once = options.at_once.unwrap_or(request.arms.len());
    let poll = Duration::from_secs_f64(options.interval_secs.clamp(0.1, 3600.0));
    let mut stopper = client.clone();
    let study = request.name.clone();
    let mut alive = || {
        cluster
            .as_deref_mut()
            .map_or(Ok(()), RunningCluster::check_alive)
    };
    tokio::select! {
        driven = run::drive(&mut client, planned, at_once, poll, &mut alive) => { driven?; }
        signal = termination.recv() => {
            let listed = super::list_experiments(&mut stopper, &study).await;
            let ids: Vec<String> = listed.map(|all| all.into_iter().map(|e| e.id).collect()).unwrap_or_default();
            run::stop_all(&mut stopper, &ids).await;
            return Err(Interrupted::new(signal, format!("the experiments of study {study} were stopped")).into());
        }
    }
    if let Some(dir) = options.report_dir(&study) {
        let data = crate::study::data::fetch(&mut client, &study).await?;
        let written = crate::study::report::write(&data, &dir, None)?;
        eprintln!(
            "report of study {study}: {} files in {}",
            written.len(),
            dir.display()
        );
    }
    writeln!(out, "{study}")?;
    Ok(())
}
