//! `tunectl local`: a whole cluster on one machine ([`cluster`]), running one experiment of a
//! built-in [`crate::scenario`] or of a user's spec file ([`user_spec`]) with live progress,
//! then the results, then a clean shutdown (also on SIGTERM, SIGHUP and Ctrl-C, after which it
//! exits 128 + the signal's number; see [`signals`]).

pub mod cluster;
pub mod signals;
pub mod user_spec;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster::{AgentOptions, RunningCluster};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use proto::v1 as pb;
use signals::{Interrupted, Termination};

use crate::cli::{self, Client, ConnectOptions};

/// Options of `tunectl local`.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalOptions {
    /// Built-in scenario: basic, complex or basic-mini.
    #[arg(long, default_value = "basic-mini")]
    pub scenario: String,
    /// A spec file of your own (as for `tunectl create`) instead of a scenario: your data set
    /// file, or your own command (declared for the agents with --agent-config).
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub spec: Option<PathBuf>,
    /// An agent config file each agent reads (`agent --config FILE`); its `[[commands]]` declare
    /// the commands a spec's `command` workload runs. The flags tunectl gives the agents win.
    #[arg(long, value_name = "FILE")]
    pub agent_config: Option<PathBuf>,
    /// Agents to start (with --gpu: GPUs to use, one agent each), 1 to 1,024.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub agents: u32,
    /// Search strategy: bo, random or grid (default: the scenario's, bo).
    #[arg(long, value_parser = ["bo", "random", "grid"])]
    pub strategy: Option<String>,
    /// Trials in total (default: the scenario's).
    #[arg(long)]
    pub budget: Option<u32>,
    /// Trials leased at once (default: one per agent).
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// Seed of the suggestions (default: the coordinator chooses one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Trials each agent trains at once (several share one GPU), 1 to 1,024 (the agent's
    /// bound).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
    /// Start one agent per GPU (agents 0..N on GPUs 0..N) instead of CPU agents.
    #[arg(long)]
    pub gpu: bool,
    /// Data dir of the coordinator (default: a temporary dir, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training sentences.
    #[arg(long)]
    pub max_train: Option<u32>,
    /// Use only the first N validation sentences.
    #[arg(long)]
    pub max_dev: Option<u32>,
    /// Early stopping of lagging trials: none, median or asha (default: none, or the spec's).
    #[arg(long, value_parser = ["none", "median", "asha"])]
    pub early_stopping: Option<String>,
    /// Price the agents' trials as this cloud instance (e.g. m4.4xlarge, p2.xlarge); by default
    /// trials cost nothing, as on one's own machine.
    #[arg(long)]
    pub instance_type: Option<String>,
}

impl LocalOptions {
    /// The agents these options ask for.
    pub fn agent_options(&self) -> AgentOptions {
        AgentOptions {
            agents: self.agents,
            gpu: self.gpu,
            instance_type: self.instance_type.clone(),
            slots: self.slots,
            config: self.agent_config.clone(),
        }
    }
}

/// Runs `tunectl local`.
///
/// # Errors
/// When a binary is missing, a child does not become ready, the scenario is unknown, or the
/// coordinator refuses the experiment.
pub fn run(opts: &LocalOptions) -> anyhow::Result<()> {
    let spec = build_spec(opts)?;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start tokio")?;
    // Before the children start: a signal during their start-up is queued, not fatal.
    let mut termination = {
        let _entered = runtime.enter();
        Termination::listen()?
    };
    let mut cluster = RunningCluster::start(opts.data_dir.clone(), &opts.agent_options())?;
    let url = cluster.url.clone();
    let outcome = runtime.block_on(drive(&url, spec, &mut cluster, &mut termination, started));
    cluster.finish(outcome.is_ok());
    let report = outcome?;
    print!("{report}");
    Ok(())
}

/// The scenario's spec with the command line's overrides applied.
///
/// # Errors
/// When the scenario is unknown.
pub fn build_spec(opts: &LocalOptions) -> anyhow::Result<pb::ExperimentSpec> {
    if let Some(path) = &opts.spec {
        return user_spec::build(path, opts);
    }
    let mut spec = crate::scenario::scenario(&opts.scenario).with_context(|| {
        format!(
            "unknown scenario '{}': use one of {}",
            opts.scenario,
            crate::scenario::NAMES.join(", ")
        )
    })?;
    if let Some(strategy) = &opts.strategy {
        spec.set_strategy(match strategy.as_str() {
            "random" => pb::Strategy::Random,
            "grid" => pb::Strategy::Grid,
            _ => pb::Strategy::Bo,
        });
    }
    spec.budget_trials = opts.budget.unwrap_or(spec.budget_trials);
    spec.parallelism = opts
        .parallelism
        .unwrap_or(opts.agents.max(1) * opts.slots.max(1));
    spec.seed = opts.seed.unwrap_or(0);
    spec.name = format!("{}-local", spec.name);
    spec.early_stopping = coordinator::grpc::convert::rule_to_pb(&crate::study::run::rule_by_name(
        opts.early_stopping.as_deref().unwrap_or("none"),
    )?);
    if let Some(workload) = spec.workload.as_mut() {
        workload.max_train_examples = opts.max_train.unwrap_or(workload.max_train_examples);
        workload.max_dev_examples = opts.max_dev.unwrap_or(workload.max_dev_examples);
    }
    Ok(spec)
}

/// Creates the experiment, follows it to the end (or a termination signal, which stops it),
/// and builds the report.
async fn drive(
    url: &str,
    spec: pb::ExperimentSpec,
    cluster: &mut RunningCluster,
    termination: &mut Termination,
    started: Instant,
) -> anyhow::Result<String> {
    let options = ConnectOptions::plain(url);
    let created = async {
        let mut client = cli::connect(&options).await?;
        let experiment = cli::create_experiment(&mut client, spec).await?;
        anyhow::Ok((client, experiment.id))
    };
    let (mut client, experiment_id) = tokio::select! {
        created = created => created?,
        signal = termination.recv() => {
            return Err(Interrupted::new(signal, "no experiment was created").into());
        }
    };
    eprintln!("experiment {experiment_id} created");
    tokio::select! {
        followed = follow(&mut client, &experiment_id, cluster) => followed?,
        signal = termination.recv() => {
            let _ = client.stop_experiment(pb::StopExperimentRequest { experiment_id: experiment_id.clone() }).await;
            return Err(Interrupted::new(signal, format!("experiment {experiment_id} stopped")).into());
        }
    }
    let experiment = cli::get_experiment(&mut client, &experiment_id).await?;
    let trials = cli::list_trials(&mut client, &experiment_id, false).await?;
    Ok(report(&experiment, &trials, started.elapsed()))
}

/// Shows progress bars until the experiment is no longer running.
async fn follow(
    client: &mut Client,
    experiment_id: &str,
    cluster: &mut RunningCluster,
) -> anyhow::Result<()> {
    let bars = MultiProgress::new();
    let trials = bars.add(ProgressBar::new(0));
    trials.set_style(
        ProgressStyle::with_template(
            "{spinner} trials [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
        )
        .context("bad progress template")?
        .progress_chars("=> "),
    );
    let status = bars.add(ProgressBar::new_spinner());
    loop {
        cluster.check_alive()?;
        let experiment = cli::get_experiment(client, experiment_id).await?;
        let spec = experiment.spec.clone().unwrap_or_default();
        trials.set_length(u64::from(spec.budget_trials));
        trials.set_position(u64::from(
            experiment.trials_succeeded
                + experiment.trials_failed
                + experiment.trials_early_stopped,
        ));
        trials.set_message(format!(
            "{} running, {} failed, {} stopped early",
            experiment.trials_running, experiment.trials_failed, experiment.trials_early_stopped
        ));
        status.set_message(format!(
            "best {}  epochs {}  cost {}",
            experiment
                .best_value
                .map_or_else(|| "-".to_string(), |v| format!("{v:.4}")),
            experiment.epochs_reported,
            cli::numbers::dollars(experiment.cost_dollars, experiment.epochs_reported > 0)
        ));
        status.tick();
        if experiment.state() != pb::ExperimentState::Running {
            trials.finish();
            status.finish();
            if experiment.state() == pb::ExperimentState::Paused {
                anyhow::bail!(
                    "experiment {experiment_id} is paused: {}",
                    experiment.paused_reason
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The results table: best value and parameters, trials, epochs, wall time and cost.
pub fn report(experiment: &pb::Experiment, trials: &[pb::Trial], wall: Duration) -> String {
    use std::fmt::Write as _;
    let spec = experiment.spec.clone().unwrap_or_default();
    let best = trials
        .iter()
        .find(|trial| Some(&trial.id) == experiment.best_trial_id.as_ref());
    let epochs: u32 = trials.iter().map(|trial| trial.epochs_run).sum();
    let device_seconds: f64 = trials.iter().map(|trial| trial.device_seconds).sum();
    let mut text = String::new();
    let _ = writeln!(text, "\nexperiment   {} ({})", experiment.id, spec.name);
    let _ = writeln!(
        text,
        "strategy     {}",
        spec.strategy()
            .as_str_name()
            .trim_start_matches("STRATEGY_")
            .to_lowercase()
    );
    let _ = writeln!(
        text,
        "trials       {} succeeded, {} stopped early, {} failed, {} created",
        experiment.trials_succeeded,
        experiment.trials_early_stopped,
        experiment.trials_failed,
        experiment.trials_created
    );
    for (count, reason) in failure_reasons(trials) {
        let _ = writeln!(text, "failed       {count} × {reason}");
    }
    let _ = writeln!(text, "epochs       {epochs} (device {device_seconds:.1} s)");
    let _ = writeln!(text, "wall time    {:.1} s", wall.as_secs_f64());
    let _ = writeln!(
        text,
        "cost         {}",
        cli::numbers::dollars_with_hint(experiment.cost_dollars, epochs > 0)
    );
    match (experiment.best_value, best) {
        (Some(value), Some(trial)) => {
            let _ = writeln!(
                text,
                "best {}  {value:.4} (trial {}, {} epochs)",
                spec.metric, trial.number, trial.epochs_run
            );
            let mut params: Vec<_> = trial.params.iter().collect();
            params.sort_by(|a, b| a.0.cmp(b.0));
            for (name, value) in params {
                let _ = writeln!(text, "  {name:<18} {}", cli::output::value_text(value));
            }
        }
        _ => {
            let _ = writeln!(text, "best         - (no trial succeeded)");
        }
    }
    text
}

/// Distinct reasons a report lists for failed trials, at most.
const MAX_FAILURE_REASONS: usize = 3;

/// Why trials failed: the most frequent reasons first (ties in trial order), with their counts,
/// each on one line ([`cli::output::reason_line`]).
fn failure_reasons(trials: &[pb::Trial]) -> Vec<(usize, String)> {
    // Each reason's count and the index of its first trial, for ties.
    let mut seen: std::collections::HashMap<String, (usize, usize)> = Default::default();
    let failed = trials
        .iter()
        .filter(|trial| trial.state() == pb::TrialState::Failed);
    for (index, trial) in failed.enumerate() {
        let entry = seen
            .entry(cli::output::reason_line(&trial.failure_reason))
            .or_insert((0, index));
        entry.0 += 1;
    }
    let mut counts: Vec<(usize, usize, String)> = seen
        .into_iter()
        .map(|(reason, (count, first))| (count, first, reason))
        .collect();
    counts.sort_by_key(|(count, first, _)| (std::cmp::Reverse(*count), *first));
    counts
        .into_iter()
        .take(MAX_FAILURE_REASONS)
        .map(|(count, _, reason)| (count, reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        local: LocalOptions,
    }

    #[test]
    fn defaults_and_overrides_reach_the_spec() {
        let defaults = Wrapper::parse_from(["tunectl"]).local;
        assert_eq!(
            (defaults.scenario.as_str(), defaults.agents),
            ("basic-mini", 2)
        );
        let spec = build_spec(&defaults).expect("spec");
        assert_eq!((spec.budget_trials, spec.parallelism), (30, 2));
        let opts = Wrapper::parse_from([
            "tunectl",
            "--scenario",
            "basic",
            "--strategy",
            "random",
            "--budget",
            "5",
            "--seed",
            "9",
            "--max-train",
            "300",
        ])
        .local;
        let spec = build_spec(&opts).expect("spec");
        assert_eq!(spec.strategy(), pb::Strategy::Random);
        assert_eq!((spec.budget_trials, spec.seed), (5, 9));
        assert_eq!(spec.workload.expect("workload").max_train_examples, 300);
    }

    #[test]
    fn unknown_scenarios_list_the_known_ones() {
        let mut opts = Wrapper::parse_from(["tunectl"]).local;
        opts.scenario = "giant".into();
        let err = build_spec(&opts).expect_err("unknown").to_string();
        assert!(err.contains("giant") && err.contains("basic-mini"), "{err}");
    }

    #[test]
    fn zero_or_too_many_agents_or_slots_are_refused_naming_the_flag() {
        for flag in ["--agents", "--slots"] {
            for count in ["0", "1025"] {
                let err = Wrapper::try_parse_from(["tunectl", flag, count])
                    .err()
                    .unwrap_or_else(|| panic!("{flag} {count} was accepted"))
                    .to_string();
                assert!(err.contains(flag) && err.contains(count), "{err}");
            }
        }
        assert_eq!(
            Wrapper::parse_from(["tunectl", "--agents", "3"])
                .local
                .agents,
            3
        );
    }

    #[test]
    fn report_shows_best_params_cost_and_time() {
        let experiment = pb::Experiment {
            id: "e1".into(),
            spec: Some(crate::scenario::basic_mini()),
            trials_succeeded: 1,
            best_value: Some(0.75),
            best_trial_id: Some("t1".into()),
            cost_dollars: 0.01,
            ..pb::Experiment::default()
        };
        let trial = pb::Trial {
            id: "t1".into(),
            epochs_run: 3,
            params: [(
                "embed_dim".to_string(),
                pb::ParameterValue {
                    kind: Some(pb::parameter_value::Kind::IntValue(32)),
                },
            )]
            .into(),
            ..pb::Trial::default()
        };
        let text = report(
            &experiment,
            std::slice::from_ref(&trial),
            Duration::from_secs(12),
        );
        for expected in [
            "0.7500",
            "embed_dim",
            "32",
            "$0.01",
            "12.0 s",
            "epochs       3",
        ] {
            assert!(text.contains(expected), "missing {expected} in {text}");
        }
        let unpriced = pb::Experiment {
            cost_dollars: 0.0,
            ..experiment
        };
        let text = report(&unpriced, &[trial], Duration::from_secs(12));
        assert!(
            text.contains("cost         unknown (") && text.contains("--instance-type"),
            "{text}"
        );
        assert!(!text.contains("$0"), "{text}");
    }

    #[test]
    fn the_report_says_why_trials_failed_most_frequent_first() {
        let failed = |reason: &str| pb::Trial {
            state: pb::TrialState::Failed as i32,
            failure_reason: reason.to_string(),
            ..pb::Trial::default()
        };
        let long = format!("line one\n{}", "x".repeat(1000));
        let trials = [
            failed("command 'a' exited with status 3"),
            failed("epoch line is not valid JSON"),
            failed("epoch line is not valid JSON"),
            failed(""),
            failed(&long),
            pb::Trial {
                state: pb::TrialState::Succeeded as i32,
                failure_reason: "not a failure".into(),
                ..pb::Trial::default()
            },
        ];
        let experiment = pb::Experiment {
            trials_failed: 5,
            ..pb::Experiment::default()
        };
        let text = report(&experiment, &trials, Duration::from_secs(1));
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("failed ")).collect();
        assert_eq!(lines.len(), MAX_FAILURE_REASONS, "{text}");
        assert_eq!(lines[0], "failed       2 × epoch line is not valid JSON");
        assert_eq!(
            lines[1],
            "failed       1 × command 'a' exited with status 3"
        );
        assert_eq!(lines[2], "failed       1 × no reason given");
        assert!(!text.contains("not a failure"), "{text}");
        let only_long = report(&experiment, &[failed(&long)], Duration::from_secs(1));
        let line = only_long
            .lines()
            .find(|l| l.starts_with("failed "))
            .expect("a failure line");
        assert!(line.contains("line one x") && line.ends_with('…'), "{line}");
        assert!(
            line.chars().count() < cli::output::REASON_CHARS + 30,
            "{line}"
        );
    }
}
