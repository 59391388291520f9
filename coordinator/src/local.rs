//! `tunectl local`: a whole cluster on one machine, as child processes on loopback.
//!
//! It starts the `coordinator` binary (an embedded SQLite file in a data dir) and N `agent`
//! binaries, both found next to the running `tunectl`, reads their readiness lines, creates the
//! experiment of a built-in [`crate::scenario`], shows live progress, prints the results, and
//! shuts the children down (SIGTERM, then a kill after a timeout; also on Ctrl-C). `tunectl`
//! never links the agent (STYLE.md §1): it only runs its binary.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use proto::v1 as pb;

use crate::cli::{self, Client, ConnectOptions};

/// Options of `tunectl local`.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalOptions {
    /// Built-in scenario: basic, complex or basic-mini.
    #[arg(long, default_value = "basic-mini")]
    pub scenario: String,
    /// Agents to start (with --gpu: GPUs to use, one agent each).
    #[arg(long, default_value_t = 2)]
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
    /// Price the agents' trials as this cloud instance (e.g. m4.4xlarge, p2.xlarge); by default
    /// trials cost nothing, as on one's own machine.
    #[arg(long)]
    pub instance_type: Option<String>,
}

/// Runs `tunectl local`.
///
/// # Errors
/// When a binary is missing, a child does not become ready, the scenario is unknown, or the
/// coordinator refuses the experiment.
pub fn run(opts: &LocalOptions) -> anyhow::Result<()> {
    let spec = build_spec(opts)?;
    let bin_dir = binary_dir()?;
    let data = DataDir::new(opts.data_dir.clone())?;
    let mut cluster = LocalCluster::default();
    let started = Instant::now();
    let coordinator = cluster.start_coordinator(&bin_dir, data.path())?;
    let url = format!("http://{}", coordinator.grpc);
    for index in 0..opts.agents.max(1) {
        cluster.start_agent(&bin_dir, data.path(), &url, index, opts)?;
    }
    eprintln!(
        "started a coordinator on {} and {} agent(s); logs in {}",
        coordinator.grpc,
        opts.agents.max(1),
        data.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start tokio")?;
    let outcome = runtime.block_on(drive(&url, spec, &mut cluster, started));
    cluster.shutdown();
    data.finish(outcome.is_ok());
    let report = outcome?;
    print!("{report}");
    Ok(())
}

/// The scenario's spec with the command line's overrides applied.
///
/// # Errors
/// When the scenario is unknown.
pub fn build_spec(opts: &LocalOptions) -> anyhow::Result<pb::ExperimentSpec> {
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
    spec.parallelism = opts.parallelism.unwrap_or(opts.agents.max(1));
    spec.seed = opts.seed.unwrap_or(0);
    spec.name = format!("{}-local", spec.name);
    if let Some(workload) = spec.workload.as_mut() {
        workload.max_train_examples = opts.max_train.unwrap_or(workload.max_train_examples);
        workload.max_dev_examples = opts.max_dev.unwrap_or(workload.max_dev_examples);
    }
    Ok(spec)
}

fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to locate the tunectl binary")?;
    let dir = exe
        .parent()
        .context("the tunectl binary has no parent dir")?
        .to_path_buf();
    for name in ["coordinator", "agent"] {
        if !dir.join(name).is_file() {
            bail!(
                "the '{name}' binary is not next to tunectl in {}: build the workspace (cargo build --release --workspace)",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// The data dir: given by the user (kept), or temporary (removed after a successful run).
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    fn new(given: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, temporary) = match given {
            Some(path) => (path, false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                (
                    std::env::temp_dir()
                        .join(format!("tunefleet-local-{}-{stamp}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("failed to create the data dir {}", path.display()))?;
        Ok(Self { path, temporary })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn finish(&self, success: bool) {
        if self.temporary && success {
            if let Err(error) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: failed to remove {}: {error}", self.path.display());
            }
        } else if !success {
            eprintln!("logs kept in {}", self.path.display());
        }
    }
}

/// A child daemon and what its readiness line said.
struct Daemon {
    name: String,
    child: Child,
}

/// The coordinator's addresses.
struct CoordinatorAddrs {
    grpc: String,
}

#[derive(Default)]
struct LocalCluster {
    agents: Vec<Daemon>,
    coordinator: Option<Daemon>,
}

impl LocalCluster {
    fn start_coordinator(
        &mut self,
        bin_dir: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<CoordinatorAddrs> {
        let mut command = Command::new(bin_dir.join("coordinator"));
        command
            .args([
                "--listen-addr",
                "127.0.0.1:0",
                "--metrics-listen-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir);
        let (daemon, ready) =
            spawn_daemon("coordinator", command, &data_dir.join("coordinator.log"))?;
        self.coordinator = Some(daemon);
        let grpc = ready["grpc"]
            .as_str()
            .context("coordinator readiness line has no grpc address")?;
        Ok(CoordinatorAddrs {
            grpc: grpc.to_string(),
        })
    }

    fn start_agent(
        &mut self,
        bin_dir: &Path,
        data_dir: &Path,
        url: &str,
        index: u32,
        opts: &LocalOptions,
    ) -> anyhow::Result<()> {
        let name = format!("agent-{index}");
        let mut command = Command::new(bin_dir.join("agent"));
        command.args(["--coordinator", url, "--metrics-listen-addr", "127.0.0.1:0"]);
        if let Some(instance_type) = &opts.instance_type {
            command.args(["--instance-type", instance_type]);
        }
        if opts.gpu {
            command.args(["--gpu", &index.to_string()]);
        } else {
            command.arg("--cpu");
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = (cores / opts.agents.max(1) as usize).max(1);
            command.env("AGENT_CPU_THREADS", threads.to_string());
        }
        let (daemon, _) = spawn_daemon(&name, command, &data_dir.join(format!("{name}.log")))?;
        self.agents.push(daemon);
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(coordinator) = self.coordinator.as_mut()
            && let Ok(Some(status)) = coordinator.child.try_wait()
        {
            bail!("the coordinator exited ({status}) during the study");
        }
        let alive = self
            .agents
            .iter_mut()
            .filter_map(|agent| matches!(agent.child.try_wait(), Ok(None)).then_some(()))
            .count();
        if alive == 0 {
            bail!("every agent exited during the study");
        }
        Ok(())
    }

    /// SIGTERM the agents (they report running trials as interrupted), then the coordinator.
    fn shutdown(&mut self) {
        for agent in &mut self.agents {
            terminate(agent);
        }
        for agent in &mut self.agents {
            wait_or_kill(agent, Duration::from_secs(15));
        }
        if let Some(coordinator) = self.coordinator.as_mut() {
            terminate(coordinator);
            wait_or_kill(coordinator, Duration::from_secs(10));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for daemon in self.agents.iter_mut().chain(self.coordinator.as_mut()) {
            if matches!(daemon.child.try_wait(), Ok(None)) {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
            }
        }
    }
}

/// Starts a daemon with stdout piped and stderr to `log`, and waits for its readiness line.
fn spawn_daemon(
    name: &str,
    mut command: Command,
    log: &Path,
) -> anyhow::Result<(Daemon, serde_json::Value)> {
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("failed to create {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file));
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    let stdout = child.stdout.take().context("child stdout is piped")?;
    let mut daemon = Daemon {
        name: name.to_string(),
        child,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(body) = line.strip_prefix(crate::READY_PREFIX) {
                sent = tx.send(body.trim().to_string()).is_ok();
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(body) => {
            let ready = serde_json::from_str(&body)
                .with_context(|| format!("{name} printed a bad readiness line: {body}"))?;
            Ok((daemon, ready))
        }
        Err(_) => {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            bail!(
                "{name} did not become ready within 60 s; see {}",
                log.display()
            )
        }
    }
}

/// Sends SIGTERM through the `kill` utility (tunectl forbids unsafe code, so no libc call).
fn terminate(daemon: &mut Daemon) {
    if !matches!(daemon.child.try_wait(), Ok(None)) {
        return;
    }
    let pid = daemon.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        let _ = daemon.child.kill();
    }
}

fn wait_or_kill(daemon: &mut Daemon, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(daemon.child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "warning: {} did not stop within {timeout:?}, killing it",
        daemon.name
    );
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
}

/// Creates the experiment, follows it to the end (or Ctrl-C), and builds the report.
async fn drive(
    url: &str,
    spec: pb::ExperimentSpec,
    cluster: &mut LocalCluster,
    started: Instant,
) -> anyhow::Result<String> {
    let options = ConnectOptions {
        coordinator: url.to_string(),
        token: None,
    };
    let mut client = cli::connect(&options).await?;
    let request = pb::CreateExperimentRequest { spec: Some(spec) };
    let created = client
        .create_experiment(request)
        .await
        .map_err(cli::status_error)?
        .into_inner();
    let experiment = created
        .experiment
        .context("coordinator returned no experiment")?;
    let experiment_id = experiment.id.clone();
    eprintln!("experiment {experiment_id} created");
    tokio::select! {
        followed = follow(&mut client, &experiment_id, cluster) => followed?,
        _ = tokio::signal::ctrl_c() => {
            let _ = client.stop_experiment(pb::StopExperimentRequest { experiment_id: experiment_id.clone() }).await;
            bail!("interrupted: experiment {experiment_id} stopped");
        }
    }
    let experiment = cli::get_experiment(&mut client, &experiment_id).await?;
    let request = pb::ListTrialsRequest {
        experiment_id: experiment_id.clone(),
        include_epochs: false,
    };
    let trials = client
        .list_trials(request)
        .await
        .map_err(cli::status_error)?
        .into_inner()
        .trials;
    Ok(report(&experiment, &trials, started.elapsed()))
}

/// Shows progress bars until the experiment is no longer running.
async fn follow(
    client: &mut Client,
    experiment_id: &str,
    cluster: &mut LocalCluster,
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
            experiment.trials_succeeded + experiment.trials_failed,
        ));
        trials.set_message(format!(
            "{} running, {} failed",
            experiment.trials_running, experiment.trials_failed
        ));
        status.set_message(format!(
            "best {}  epochs {}  cost ${:.4}",
            experiment
                .best_value
                .map_or_else(|| "-".to_string(), |v| format!("{v:.4}")),
            experiment.epochs_reported,
            experiment.cost_dollars
        ));
        status.tick();
        if experiment.state() != pb::ExperimentState::Running {
            trials.finish();
            status.finish();
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
        "trials       {} succeeded, {} failed, {} created",
        experiment.trials_succeeded, experiment.trials_failed, experiment.trials_created
    );
    let _ = writeln!(text, "epochs       {epochs} (device {device_seconds:.1} s)");
    let _ = writeln!(text, "wall time    {:.1} s", wall.as_secs_f64());
    let _ = writeln!(text, "cost         ${:.6}", experiment.cost_dollars);
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
        let text = report(&experiment, &[trial], Duration::from_secs(12));
        for expected in [
            "0.7500",
            "embed_dim",
            "32",
            "$0.010000",
            "12.0 s",
            "epochs       3",
        ] {
            assert!(text.contains(expected), "missing {expected} in {text}");
        }
    }
}
