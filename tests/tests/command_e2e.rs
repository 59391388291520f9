//! End to end (issue 14, "tune your own model"): the `command` workload with real processes.
//!
//! Agents declare commands in their config (`[[commands]]`) and run the Python scripts of
//! `tests/fixtures/commands/` (standard library only): a logistic regression that prints one
//! JSON line an epoch, a script that crashes, and one that reports the `CUDA_VISIBLE_DEVICES` it
//! was given. The tests check that two agents run an experiment to completion, that early
//! stopping ends a lagging command within one epoch, that a crash is reported failed with its
//! stderr tail, that a command no agent declares is never run and `tunectl create` says so, that
//! the agent's GPU reaches the command, and that `tunectl local --spec` runs a command spec.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, device_agent_command, start_agent};
use integration_tests::cluster::{Cluster, Daemon, START_TIMEOUT, binary};
use proto::v1 as pb;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/commands")
        .join(name)
        .display()
        .to_string()
}

/// An agent config declaring the fixture commands; the logistic regression traces its epochs
/// into `trace_dir` and `echo-env` writes what it saw into `seen_dir`.
fn agent_config(trace_dir: &Path, seen_dir: &Path, echo_name: &str) -> String {
    format!(
        r#"# The fixture commands of command_e2e.rs.
[[commands]]
name = "logreg"
argv = ["python3", "{logreg}", "--learning-rate", "{{learning_rate}}", "--epochs", "{{epochs}}",
        "--epoch-seconds", "{{epoch_seconds}}", "--trace-dir", "{trace}"]
env = {{ PYTHONUNBUFFERED = "1" }}
metrics = ["dev_accuracy", "dev_loss", "train_loss"]
stop_grace_secs = 5
epoch_timeout_secs = 60

[[commands]]
name = "crash"
argv = ["python3", "{crash}"]

[[commands]]
name = "{echo_name}"
argv = ["python3", "{echo}", "{seen}", "{{learning_rate}}"]
metrics_source = "file"
"#,
        logreg = fixture("logreg.py"),
        crash = fixture("crash.py"),
        echo = fixture("echo_env.py"),
        trace = trace_dir.display(),
        seen = seen_dir.display(),
    )
}

fn float_param(name: &str, low: f64, high: f64) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
            step: None,
            low,
            high,
            log: true,
            default_value: None,
        })),
    }
}

/// A command experiment over the learning rate.
fn command_spec(name: &str, command: &str, metric: &str, budget: u32) -> pb::ExperimentSpec {
    let maximize = metric != "dev_loss";
    pb::ExperimentSpec {
        name: name.into(),
        metric: metric.into(),
        direction: if maximize {
            pb::Direction::Maximize
        } else {
            pb::Direction::Minimize
        } as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism: 2,
        seed: 21,
        parameters: vec![float_param("learning_rate", 0.0005, 5.0)],
        workload: Some(pb::Workload {
            kind: "command".into(),
            command: command.into(),
            fixed_params: HashMap::from([
                ("epochs".to_string(), agents::int(5)),
                ("epoch_seconds".to_string(), agents::float(0.05)),
            ]),
            ..pb::Workload::default()
        }),
        ..pb::ExperimentSpec::default()
    }
}

struct Fleet {
    cluster: Cluster,
    _agents: Vec<Daemon>,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn trace_dir(&self) -> PathBuf {
        self.dir.path().join("trace")
    }

    fn seen_dir(&self) -> PathBuf {
        self.dir.path().join("seen")
    }
}

/// A coordinator, two CPU agents declaring the fixture commands, and a third agent on GPU 3
/// that declares only `echo-gpu` (it starts without CUDA: commands bring their own framework).
fn start_fleet() -> Result<Fleet> {
    let dir = tempfile::tempdir()?;
    let fleet_dirs = [dir.path().join("trace"), dir.path().join("seen")];
    for made in &fleet_dirs {
        std::fs::create_dir_all(made)?;
    }
    let cpu_config = dir.path().join("agent-cpu.toml");
    std::fs::write(
        &cpu_config,
        agent_config(&fleet_dirs[0], &fleet_dirs[1], "echo-env"),
    )?;
    let gpu_config = dir.path().join("agent-gpu.toml");
    let gpu_text = agent_config(&fleet_dirs[0], &fleet_dirs[1], "echo-gpu");
    let only_echo = &gpu_text[gpu_text
        .find("[[commands]]\nname = \"echo-gpu\"")
        .context("echo")?..];
    std::fs::write(&gpu_config, only_echo)?;
    let cluster = Cluster::builder().start()?;
    let cpu_config = cpu_config.display().to_string();
    let mut started = Vec::new();
    for name in ["agent-cmd-a", "agent-cmd-b"] {
        started.push(start_agent(&cluster, name, &["--config", &cpu_config])?);
    }
    let gpu_config = gpu_config.display().to_string();
    let gpu = device_agent_command(&cluster, &["--gpu", "3"], &["--config", &gpu_config])?;
    started.push(Daemon::spawn(
        "agent-cmd-gpu",
        gpu,
        cluster.dir(),
        START_TIMEOUT,
    )?);
    Ok(Fleet {
        cluster,
        _agents: started,
        dir,
    })
}

async fn run_to_end(fleet: &Fleet, spec: pb::ExperimentSpec) -> Result<(String, Vec<pb::Trial>)> {
    let mut client = agents::experiments(&fleet.cluster).await?;
    let id = agents::create(&mut client, spec).await?;
    agents::wait_until_done(&fleet.cluster, &id, Duration::from_secs(120)).await?;
    let trials = agents::trials(&mut client, &id).await?;
    Ok((id, trials))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_command_workloads_run_on_the_agents_that_declare_them() -> Result<()> {
    let fleet = start_fleet()?;
    let mut client = agents::experiments(&fleet.cluster).await?;

    // A command nobody declares: created with a warning, and never run.
    let spec_path = fleet.dir.path().join("nope.toml");
    std::fs::write(
        &spec_path,
        "name = \"nope\"\ndirection = \"maximize\"\nbudget = 1\n[[parameters]]\nname = \"x\"\n\
         type = \"float\"\nlow = 0.0\nhigh = 1.0\n[workload]\nkind = \"command\"\ncommand = \"nope\"\n",
    )?;
    let created = fleet
        .cluster
        .tunectl(&["create", &spec_path.display().to_string()])?;
    let stderr = String::from_utf8_lossy(&created.stderr);
    ensure!(created.status.success(), "{stderr}");
    ensure!(
        stderr.contains("warning: no connected agent declares command 'nope'"),
        "{stderr}"
    );
    let undeclared = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let bad = fleet.cluster.tunectl(&["create", &{
        let path = fleet.dir.path().join("bad.toml");
        let text = std::fs::read_to_string(&spec_path)?.replace("\"nope\"\n", "\"rm -rf /\"\n");
        std::fs::write(&path, text)?;
        path.display().to_string()
    }])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(
        !bad.status.success() && stderr.contains("workload.command") && stderr.contains("rm -rf /"),
        "{stderr}"
    );

    // Two agents run the logistic regression to completion, each epoch reported and priced.
    let (_, trials) =
        run_to_end(&fleet, command_spec("logreg", "logreg", "dev_accuracy", 4)).await?;
    ensure!(trials.len() == 4, "{} trials", trials.len());
    let mut ran_on = BTreeSet::new();
    for trial in &trials {
        ensure!(
            trial.state() == pb::TrialState::Succeeded,
            "trial {} {:?}: {}",
            trial.number,
            trial.state(),
            trial.failure_reason
        );
        ensure!(
            trial.epochs_run == 5 && trial.epochs.len() == 5,
            "{trial:?}"
        );
        let last = trial
            .epochs
            .iter()
            .max_by_key(|e| e.epoch)
            .context("epochs")?;
        ensure!(
            trial.value == Some(last.value),
            "the value is the last epoch's"
        );
        ensure!(
            (0.0..=1.0).contains(&last.value) && last.train_loss > 0.0,
            "{last:?}"
        );
        ensure!(
            trial.cost_dollars > 0.0 && trial.device_seconds > 0.0,
            "{trial:?}"
        );
        ran_on.insert(trial.agent_id.clone());
    }
    ensure!(ran_on.len() == 2, "both CPU agents ran trials: {ran_on:?}");

    // A crash is a failed trial with the exit status and the end of stderr.
    let (_, trials) = run_to_end(&fleet, command_spec("crash", "crash", "value", 1)).await?;
    let trial = trials.first().context("no trial")?;
    ensure!(
        trial.state() == pb::TrialState::Failed
            && trial
                .failure_reason
                .contains("command 'crash' exited with status 3 after 1 epoch(s)")
            && trial
                .failure_reason
                .ends_with("ValueError: the learning rate blew up at epoch 2"),
        "{:?}: {}",
        trial.state(),
        trial.failure_reason
    );

    // The agent's GPU reaches the command as CUDA_VISIBLE_DEVICES (empty on a CPU agent).
    for (command, gpu) in [("echo-gpu", 3.0), ("echo-env", -1.0)] {
        let (_, trials) = run_to_end(&fleet, command_spec(command, command, "gpu", 1)).await?;
        let trial = trials.first().context("no trial")?;
        ensure!(
            trial.state() == pb::TrialState::Succeeded && trial.value == Some(gpu),
            "{command}: {:?} {:?} {}",
            trial.state(),
            trial.value,
            trial.failure_reason
        );
        let seen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            fleet.seen_dir().join(format!("{}.json", trial.id)),
        )?)?;
        let params: serde_json::Value =
            serde_json::from_str(seen["TUNEFLEET_PARAMS"].as_str().context("params")?)?;
        let learning_rate = match trial.params["learning_rate"].kind {
            Some(pb::parameter_value::Kind::FloatValue(value)) => value,
            _ => anyhow::bail!("learning_rate is not a float"),
        };
        ensure!(
            params["learning_rate"].as_f64() == Some(learning_rate),
            "{seen}"
        );
        ensure!(
            params["epochs"].as_i64() == Some(5),
            "fixed params too: {seen}"
        );
        ensure!(
            seen["argv"][1].as_str() == Some(&learning_rate.to_string()),
            "{seen}"
        );
        ensure!(
            seen["TUNEFLEET_METRIC"] == "gpu" && seen["AGENT_CPU_THREADS"].is_null(),
            "{seen}"
        );
    }

    let nope = agents::experiment(&mut client, &undeclared).await?;
    ensure!(
        nope.state() == pb::ExperimentState::Running
            && nope.trials_running == 0
            && nope.trials_succeeded + nope.trials_failed == 0,
        "no agent ran the undeclared command: {nope:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_early_stopping_ends_a_lagging_command_within_one_epoch() -> Result<()> {
    let fleet = start_fleet()?;
    // One trial at a time, so each is judged against the trials before it; slower epochs, so a
    // command that outlived its stop would be seen starting another.
    let mut spec = command_spec("logreg-median", "logreg", "dev_loss", 8);
    spec.parallelism = 1;
    if let Some(workload) = spec.workload.as_mut() {
        workload
            .fixed_params
            .insert("epochs".into(), agents::int(6));
        workload
            .fixed_params
            .insert("epoch_seconds".into(), agents::float(0.3));
    }
    spec.early_stopping = Some(pb::EarlyStopping {
        rule: Some(pb::early_stopping::Rule::Median(pb::MedianStopping {
            min_epochs: 1,
            min_trials: 2,
        })),
    });
    let (_, trials) = run_to_end(&fleet, spec).await?;
    let stopped: Vec<&pb::Trial> = trials
        .iter()
        .filter(|t| t.state() == pb::TrialState::EarlyStopped)
        .collect();
    ensure!(!stopped.is_empty(), "no trial lagged: {trials:?}");
    for trial in stopped {
        let trace = std::fs::read_to_string(fleet.trace_dir().join(format!("{}.log", trial.id)))?;
        let started = trace
            .lines()
            .filter_map(|line| line.strip_prefix("start "))
            .filter_map(|epoch| epoch.parse::<u32>().ok())
            .max()
            .context("no epoch started")?;
        ensure!(
            trial.epochs_run < 6 && started <= trial.epochs_run + 1,
            "stopped after {} epochs but started epoch {started}: {trace}",
            trial.epochs_run
        );
        ensure!(
            trace.trim_end().ends_with("sigterm"),
            "ended by SIGTERM: {trace}"
        );
    }
    Ok(())
}

#[test]
fn issue_14_tunectl_local_and_study_run_a_command_spec_with_the_agent_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("trace");
    std::fs::create_dir_all(&trace)?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, agent_config(&trace, &trace, "echo-env"))?;
    let spec = dir.path().join("logreg.toml");
    std::fs::write(
        &spec,
        "name = \"logreg\"\nmetric = \"dev_accuracy\"\ndirection = \"maximize\"\nbudget = 2\n\
         [[parameters]]\nname = \"learning_rate\"\ntype = \"float\"\nlow = 0.01\nhigh = 1.0\n\
         log = true\n[workload]\nkind = \"command\"\ncommand = \"logreg\"\n\
         [workload.fixed_params]\nepochs = 3\nepoch_seconds = 0.0\n",
    )?;
    let run = |extra: &[&Path]| -> Result<std::process::Output> {
        let mut command = Command::new(binary("tunectl")?);
        command
            .args(["local", "--agents", "2", "--spec"])
            .arg(&spec);
        if let Some(config) = extra.first() {
            command.arg("--agent-config").arg(config);
        }
        Ok(command
            .env("AGENT_CPU_THREADS", "1")
            .stdin(Stdio::null())
            .output()?)
    };
    let missing = run(&[])?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure!(
        !missing.status.success() && stderr.contains("--agent-config"),
        "{stderr}"
    );
    let output = run(&[&config])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("trials       2 succeeded"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        stdout.contains("best dev_accuracy") && stdout.contains("learning_rate"),
        "{stdout}"
    );

    // `tunectl study --spec` compares strategies on the same command spec.
    let out = dir.path().join("report");
    let output = Command::new(binary("tunectl")?)
        .args(["study", "--local", "--spec"])
        .arg(&spec)
        .arg("--agent-config")
        .arg(&config)
        .args([
            "--strategies",
            "random,bo",
            "--repeats",
            "1",
            "--budget",
            "2",
        ])
        .args(["--name", "own-model", "--interval-secs", "0.2", "--out"])
        .arg(&out)
        .env("AGENT_CPU_THREADS", "1")
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "own-model",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(out.join("report.md"))?;
    ensure!(
        report.contains("| random |") && report.contains("| bo |"),
        "{report}"
    );
    Ok(())
}
