//! `tunectl study`: runs BO, random and grid search on a built-in scenario as one tagged
//! experiment a strategy and repeat ([`crate::study::run`]), then prints the study's name for
//! `tunectl report`.

use std::time::Duration;

use super::ConnectOptions;
use crate::study::run::{self, StrategyName, StudyPlanRequest};

/// Options of `tunectl study`.
#[derive(Clone, Debug, clap::Args)]
pub struct StudyOptions {
    /// Built-in scenario.
    #[arg(long, value_parser = ["basic", "complex", "basic-mini"])]
    pub scenario: String,
    /// Strategies to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bo,random,grid"
    )]
    pub strategies: Vec<StrategyName>,
    /// Trials an experiment (default: the scenario's). Grid search uses the coarser grid that fits.
    #[arg(long)]
    pub budget: Option<u32>,
    /// Repeats a strategy.
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
    /// Experiments running at once (default: one a strategy, so repeats finish round by round).
    #[arg(long)]
    pub at_once: Option<usize>,
    /// Use only the first N training sentences.
    #[arg(long)]
    pub max_train: Option<u32>,
    /// Use only the first N validation sentences.
    #[arg(long)]
    pub max_dev: Option<u32>,
    /// Run on a one-machine cluster started for the study (not available yet: see the error).
    #[arg(long)]
    pub local: bool,
    /// Agents of the local cluster.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Seconds between progress polls.
    #[arg(long, default_value_t = 2.0)]
    pub interval_secs: f64,
}

impl StudyOptions {
    /// The plan request these options describe.
    pub fn plan_request(&self) -> StudyPlanRequest {
        let name = self.name.clone().unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{}-{stamp}", self.scenario)
        });
        StudyPlanRequest {
            name,
            scenario: self.scenario.clone(),
            strategies: self.strategies.clone(),
            budget: self.budget,
            repeats: self.repeats,
            parallel: self.parallel,
            seed: self.seed,
            max_train: self.max_train,
            max_dev: self.max_dev,
        }
    }
}

/// Runs `tunectl study`; prints the study's name on `out` once every experiment ended.
///
/// # Errors
/// When the plan is invalid, the coordinator refuses an experiment, or the run is interrupted.
pub async fn run(
    connect: &ConnectOptions,
    options: &StudyOptions,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !options.local,
        "--local is not available yet: start `coordinator` and `agent --cpu` (or `agent --gpu 0`) and pass --coordinator"
    );
    let request = options.plan_request();
    let planned = run::plan(&request)?;
    let mut client = super::connect(connect).await?;
    eprintln!("study {}: {} experiments", request.name, planned.len());
    let at_once = options.at_once.unwrap_or(request.strategies.len());
    let poll = Duration::from_secs_f64(options.interval_secs.clamp(0.1, 3600.0));
    let mut stopper = client.clone();
    let study = request.name.clone();
    tokio::select! {
        driven = run::drive(&mut client, planned, at_once, poll) => { driven?; }
        _ = tokio::signal::ctrl_c() => {
            let listed = stopper.list_experiments(proto::v1::ListExperimentsRequest { study: study.clone() }).await;
            let ids: Vec<String> = listed.map(|r| r.into_inner().experiments.into_iter().map(|e| e.id).collect()).unwrap_or_default();
            run::stop_all(&mut stopper, &ids).await;
            anyhow::bail!("interrupted: the experiments of study {study} were stopped");
        }
    }
    writeln!(out, "{}", request.name)?;
    Ok(())
}
