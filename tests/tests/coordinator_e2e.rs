//! End to end (issue 2): the real `coordinator` binary, experiments created with the real
//! `tunectl`, a Rust test client that evaluates Branin through the agent RPCs, and a coordinator
//! killed and restarted in the middle. Every reported result must survive.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use integration_tests::cluster::{Cluster, tunectl_ok};
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

const BRANIN_SPEC: &str = r#"
name = "branin-e2e"
metric = "value"
direction = "minimize"
strategy = "bo"
budget = 12
parallelism = 2
seed = 42
initial_trials = 4
[[parameters]]
name = "x1"
type = "float"
low = -5.0
high = 10.0
[[parameters]]
name = "x2"
type = "float"
low = 0.0
high = 15.0
[workload]
kind = "function"
dataset = "branin"
"#;

/// Branin-Hoo (Dixon and Szegő 1978), minimum 0.397887.
fn branin(x1: f64, x2: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x1.cos() + 10.0
}

fn float_param(params: &HashMap<String, pb::ParameterValue>, name: &str) -> Result<f64> {
    match params.get(name).and_then(|v| v.kind.clone()) {
        Some(pb::parameter_value::Kind::FloatValue(v)) => Ok(v),
        other => bail!("parameter {name} is not a float: {other:?}"),
    }
}

/// A fake agent: registers, leases, reports one epoch and completes, through the real RPCs.
struct TestAgent {
    client: AgentServiceClient<Channel>,
    agent_id: String,
    secret: String,
}

impl TestAgent {
    /// Registers, or re-registers `previous` (keeping its id with its secret).
    async fn register(channel: Channel, previous: Option<&TestAgent>) -> Result<TestAgent> {
        let mut client = AgentServiceClient::new(channel);
        let capabilities = pb::AgentCapabilities {
            backend: pb::Backend::Cpu as i32,
            device_name: "test client".into(),
            slots: 1,
            workloads: vec!["function".into()],
            price_per_hour_dollars: 0.36,
            ..Default::default()
        };
        let request = pb::RegisterAgentRequest {
            capabilities: Some(capabilities),
            agent_id: previous.map(|p| p.agent_id.clone()).unwrap_or_default(),
            agent_secret: previous.map(|p| p.secret.clone()).unwrap_or_default(),
        };
        let registration = client.register_agent(request).await?.into_inner();
        Ok(TestAgent {
            client,
            agent_id: registration.agent_id,
            secret: registration.agent_secret,
        })
    }

    async fn lease(&mut self) -> Result<Option<pb::Lease>> {
        let request = pb::LeaseTrialRequest {
            agent_id: self.agent_id.clone(),
            agent_secret: self.secret.clone(),
            wait_seconds: 0.0,
            experiment_id: String::new(),
        };
        Ok(
            match self.client.lease_trial(request).await?.into_inner().outcome {
                Some(pb::lease_trial_response::Outcome::Lease(lease)) => Some(lease),
                _ => None,
            },
        )
    }

    async fn report(&mut self, lease: &pb::Lease, value: f64) -> Result<()> {
        let report = pb::EpochReport {
            epoch: 1,
            value,
            train_loss: value,
            train_accuracy: 0.0,
            epoch_seconds: 0.001,
        };
        let request = pb::ReportEpochRequest {
            lease_id: lease.lease_id.clone(),
            report: Some(report),
            agent_secret: self.secret.clone(),
        };
        self.client.report_epoch(request).await?;
        Ok(())
    }

    async fn complete(&mut self, lease: &pb::Lease, value: f64) -> Result<()> {
        let request = pb::CompleteTrialRequest {
            lease_id: lease.lease_id.clone(),
            outcome: pb::TrialOutcome::Succeeded as i32,
            value: Some(value),
            epochs_run: 1,
            best_epoch: 1,
            wall_seconds: 0.001,
            device_seconds: 0.001,
            cost_dollars: 0.0001,
            agent_secret: self.secret.clone(),
            ..Default::default()
        };
        self.client.complete_trial(request).await?;
        Ok(())
    }

    /// Leases (polling), evaluates and reports one epoch; returns the lease and its value.
    async fn lease_and_report(&mut self) -> Result<(pb::Lease, f64)> {
        let mut lease = None;
        for _ in 0..200 {
            lease = self.lease().await?;
            if lease.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lease = lease.context("no lease within 10 s")?;
        let value = branin(
            float_param(&lease.params, "x1")?,
            float_param(&lease.params, "x2")?,
        );
        self.report(&lease, value).await?;
        Ok((lease, value))
    }
}

async fn experiment(channel: Channel, id: &str) -> Result<pb::Experiment> {
    let request = pb::GetExperimentRequest {
        experiment_id: id.into(),
    };
    let response = ExperimentServiceClient::new(channel)
        .get_experiment(request)
        .await?;
    response.into_inner().experiment.context("no experiment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_survives_a_coordinator_crash() -> Result<()> {
    let mut cluster = Cluster::builder()
        .config_line("lease_timeout_secs = 60")
        .config_line("lease_check_interval_secs = 1")
        .start()?;
    let spec_path = cluster.dir().join("branin.toml");
    std::fs::write(&spec_path, BRANIN_SPEC)?;
    let id = tunectl_ok(
        &cluster,
        &["create", spec_path.to_str().context("utf-8 path")?],
    )?
    .trim()
    .to_owned();
    assert!(id.starts_with("exp-"), "tunectl create printed {id:?}");

    let mut agent = TestAgent::register(cluster.channel().await?, None).await?;
    let mut reported: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..5 {
        let (lease, value) = agent.lease_and_report().await?;
        agent.complete(&lease, value).await?;
        reported.insert(lease.trial_id, value);
    }
    // A trial in flight when the coordinator crashes: its epoch is reported, not yet completed.
    let (held, held_value) = agent.lease_and_report().await?;
    cluster.restart_coordinator()?;

    // Same agent id, same lease: the lease kept its deadline through the restart.
    let mut agent = TestAgent::register(cluster.channel().await?, Some(&agent)).await?;
    agent
        .complete(&held, held_value)
        .await
        .context("completing a lease held across the restart")?;
    reported.insert(held.trial_id.clone(), held_value);
    loop {
        let current = experiment(cluster.channel().await?, &id).await?;
        if current.state() != pb::ExperimentState::Running {
            break;
        }
        let Some(lease) = agent.lease().await? else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let value = branin(
            float_param(&lease.params, "x1")?,
            float_param(&lease.params, "x2")?,
        );
        agent.report(&lease, value).await?;
        agent.complete(&lease, value).await?;
        reported.insert(lease.trial_id, value);
    }

    let done = experiment(cluster.channel().await?, &id).await?;
    assert_eq!(done.state(), pb::ExperimentState::Completed);
    assert_eq!((done.trials_created, done.trials_succeeded), (12, 12));
    assert_eq!(
        done.epochs_reported, 12,
        "every epoch report kept, none double counted"
    );
    let json = tunectl_ok(&cluster, &["trials", &id, "--format", "json", "--epochs"])?;
    let trials: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let stored: BTreeMap<String, f64> = trials
        .iter()
        .map(|t| {
            Ok((
                t["id"].as_str().context("id")?.to_owned(),
                t["value"].as_f64().context("value")?,
            ))
        })
        .collect::<Result<_>>()?;
    assert_eq!(stored, reported, "every reported result is kept");
    let best = reported.values().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(done.best_value, Some(best));
    assert!(tunectl_ok(&cluster, &["best", &id])?.contains("succeeded"));
    assert!(tunectl_ok(&cluster, &["status", &id])?.contains("completed"));
    assert!(tunectl_ok(&cluster, &["list"])?.contains(&id));
    let watched = tunectl_ok(&cluster, &["watch", &id])?;
    assert!(watched.contains("completed"), "{watched}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunectl_errors_are_one_clear_line() -> Result<()> {
    let cluster = Cluster::builder().token("e2e-token").start()?;
    let bad_spec = cluster.dir().join("bad.toml");
    std::fs::write(
        &bad_spec,
        BRANIN_SPEC.replace("high = 10.0", "high = -10.0"),
    )?;
    let output = cluster.tunectl(&["create", bad_spec.to_str().context("utf-8 path")?])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("x1"),
        "the error names the parameter: {stderr}"
    );

    let output = cluster.tunectl(&["status", "exp-missing"])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(
        !output.status.success() && stderr.contains("NotFound"),
        "{stderr}"
    );

    // `Cluster::tunectl` sends the cluster's token; without it the coordinator refuses.
    let anonymous = std::process::Command::new(integration_tests::cluster::binary("tunectl")?)
        .args(["list", "--coordinator", &cluster.grpc_url()?])
        .env_remove("TUNEFLEET_TOKEN")
        .output()?;
    let stderr = String::from_utf8(anonymous.stderr)?;
    assert!(
        !anonymous.status.success() && stderr.contains("Unauthenticated"),
        "{stderr}"
    );
    tunectl_ok(&cluster, &["list"])?;

    let output = cluster.tunectl(&["create", "/nonexistent/spec.toml"])?;
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr)?.contains("/nonexistent/spec.toml"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_config_and_sigterm() -> Result<()> {
    let mut cluster = Cluster::builder().start()?;
    let stopped_cleanly = cluster.coordinator()?.terminate(Duration::from_secs(20))?;
    assert!(
        stopped_cleanly,
        "SIGTERM drains and exits 0; log:\n{}",
        cluster.coordinator_log()
    );

    let corrupt = cluster.dir().join("corrupt.toml");
    std::fs::write(
        &corrupt,
        "version = 1\nlease_timeout_secs = \"sixty\nnot toml",
    )?;
    let output = std::process::Command::new(integration_tests::cluster::binary("coordinator")?)
        .arg("--config")
        .arg(&corrupt)
        .output()?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(!output.status.success());
    assert!(
        stderr.contains("corrupt.toml"),
        "the error names the file: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "no readiness line for a bad config"
    );
    Ok(())
}

/// A running `tunectl watch`, its stdout and stderr lines merged as they come.
struct Watched {
    child: std::process::Child,
    received: std::sync::mpsc::Receiver<String>,
    printed: Vec<String>,
}

impl Watched {
    fn spawn(cluster: &Cluster, id: &str) -> Result<Watched> {
        use std::io::BufRead;
        let mut child = cluster
            .tunectl_command(&["watch", id, "--interval-secs", "0.1"])?
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start tunectl watch")?;
        let (lines, received) = std::sync::mpsc::channel();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().context("no stdout")?),
            Box::new(child.stderr.take().context("no stderr")?),
        ];
        for stream in streams {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines.send(line);
                }
            });
        }
        Ok(Watched {
            child,
            received,
            printed: Vec::new(),
        })
    }

    /// Waits up to 30 s for a line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.received.recv_timeout(left).with_context(|| {
                format!(
                    "no line containing '{needle}' within 30 s; so far: {:?}",
                    self.printed
                )
            })?;
            let found = line.contains(needle);
            self.printed.push(line);
            if found {
                return Ok(());
            }
        }
    }

    /// Waits up to 60 s for it to exit, successfully, having printed the experiment completed.
    fn finish(mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("tunectl watch did not end within 60 s: {:?}", self.printed);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.wait_line("completed")?;
        ensure!(
            status.success(),
            "tunectl watch exited {status}: {:?}",
            self.printed
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunectl_watch_rides_out_a_coordinator_restart() -> Result<()> {
    let mut cluster = Cluster::builder().start()?;
    let spec = cluster.dir().join("watched.toml");
    std::fs::write(
        &spec,
        "name = \"watched\"\nmetric = \"value\"\ndirection = \"minimize\"\nstrategy = \"random\"\n\
         budget = 4\nparallelism = 2\n[[parameters]]\nname = \"x\"\ntype = \"float\"\nlow = 0.0\n\
         high = 1.0\n[workload]\nkind = \"function\"\ndataset = \"quadratic\"\n",
    )?;
    let id = tunectl_ok(&cluster, &["create", &spec.display().to_string()])?;
    let id = id.trim().to_owned();
    let mut during = Watched::spawn(&cluster, &id)?;
    // Connected and polling: its first progress line.
    during.wait_line("trials done")?;
    cluster.kill_coordinator();
    during.wait_line("coordinator not answering")?;
    // A watch started while the coordinator is down waits for it too.
    let mut before = Watched::spawn(&cluster, &id)?;
    before.wait_line("coordinator not answering")?;
    cluster.start_coordinator()?;
    during.wait_line("coordinator answering again")?;
    before.wait_line("coordinator answering again")?;
    let _agent = integration_tests::agents::start_agent(&cluster, "agent", &[])?;
    during.finish()?;
    before.finish()
}

/// A watch of a coordinator that never answers (a wrong port, say) fails within its connect
/// window, asking about the URL, instead of waiting the ten minutes a restart gets.
#[test]
fn tunectl_watch_of_a_coordinator_that_never_answers_fails_in_its_connect_window() -> Result<()> {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = std::time::Instant::now();
    let output = std::process::Command::new(integration_tests::cluster::binary("tunectl")?)
        .args(["--coordinator", &format!("http://127.0.0.1:{port}")])
        .args(["watch", "exp-nowhere", "--interval-secs", "0.2"])
        .args(["--connect-secs", "1"])
        .output()
        .context("cannot run tunectl")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "it failed: {stderr}");
    ensure!(
        stderr.contains("(--connect-secs) (it never answered: is the URL right?)"),
        "{stderr}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "it gave up after {:?}",
        started.elapsed()
    );
    Ok(())
}
