//! Real `agent` processes for the end-to-end tests, and helpers to create experiments and wait
//! for them through the gRPC API.
//!
//! Agents run the CPU backend with one thread each, fast heartbeats and short retry backoffs,
//! so the tests of a killed agent or coordinator finish in seconds.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use integration_tests::{agents, cluster::Cluster};
//! let cluster = Cluster::builder().start()?;
//! let agent = agents::start_agent(&cluster, "agent-a", &[])?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

use crate::cluster::{Cluster, Daemon, START_TIMEOUT, binary, wait_for};

/// Starts a CPU agent against the cluster's coordinator (extra flags appended).
///
/// # Errors
/// When it cannot start or never prints its readiness line.
pub fn start_agent(cluster: &Cluster, name: &str, extra_args: &[&str]) -> Result<Daemon> {
    let command = agent_command(cluster, extra_args)?;
    Daemon::spawn(name, command, cluster.dir(), START_TIMEOUT)
}

/// The command [`start_agent`] runs, for a test that adds settings (TLS files) before it
/// spawns it with [`Daemon::spawn`].
///
/// # Errors
/// When the binary is missing or the coordinator never started.
pub fn agent_command(cluster: &Cluster, extra_args: &[&str]) -> Result<Command> {
    device_agent_command(cluster, &["--cpu"], extra_args)
}

/// The command of an agent on a device (`["--cpu"]` or `["--gpu", "N"]`), as [`agent_command`].
///
/// # Errors
/// When the binary is missing or the coordinator never started.
pub fn device_agent_command(
    cluster: &Cluster,
    device_args: &[&str],
    extra_args: &[&str],
) -> Result<Command> {
    let mut command = Command::new(binary("agent")?);
    command
        .args(["--coordinator", &cluster.grpc_url()?])
        .args(device_args)
        .args(["--metrics-listen-addr", "127.0.0.1:0"])
        .args(["--instance-type", "m4.4xlarge"])
        .args(extra_args)
        .env("RUST_LOG", "info")
        .env("AGENT_CPU_THREADS", "1")
        .env("AGENT_HEARTBEAT_INTERVAL_SECS", "0.3")
        .env("AGENT_RETRY_INITIAL_BACKOFF_SECS", "0.05")
        .env("AGENT_RETRY_MAX_BACKOFF_SECS", "0.5")
        .env("AGENT_IDLE_POLL_MAX_SECS", "0.2")
        .env("AGENT_CONNECT_TIMEOUT_SECS", "1")
        .env("AGENT_REQUEST_TIMEOUT_SECS", "5");
    if let Some(token) = cluster.token() {
        command.env("AGENT_AUTH_TOKEN", token);
    }
    Ok(command)
}

/// An experiment client on the cluster.
///
/// # Errors
/// When the coordinator cannot be reached.
pub async fn experiments(cluster: &Cluster) -> Result<ExperimentServiceClient<Channel>> {
    Ok(ExperimentServiceClient::new(cluster.channel().await?))
}

/// Creates an experiment and returns its id.
///
/// # Errors
/// When the coordinator refuses it.
pub async fn create(
    client: &mut ExperimentServiceClient<Channel>,
    spec: pb::ExperimentSpec,
) -> Result<String> {
    let response = client
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await?;
    Ok(response
        .into_inner()
        .experiment
        .context("no experiment in the response")?
        .id)
}

/// The experiment now.
///
/// # Errors
/// When the call fails.
pub async fn experiment(
    client: &mut ExperimentServiceClient<Channel>,
    id: &str,
) -> Result<pb::Experiment> {
    let response = client
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: id.to_string(),
        })
        .await?;
    response
        .into_inner()
        .experiment
        .context("no experiment in the response")
}

/// The experiment's trials, with their epoch reports.
///
/// # Errors
/// When the call fails.
pub async fn trials(
    client: &mut ExperimentServiceClient<Channel>,
    id: &str,
) -> Result<Vec<pb::Trial>> {
    let mut trials = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListTrialsRequest {
            experiment_id: id.to_string(),
            include_epochs: true,
            page_token,
            page_size: 0,
        };
        let page = client.list_trials(request).await?.into_inner();
        trials.extend(page.trials);
        if page.next_page_token.is_empty() {
            return Ok(trials);
        }
        page_token = page.next_page_token;
    }
}

/// Polls until the experiment is no longer running; tolerates a coordinator that is restarting.
///
/// # Errors
/// When `timeout` passes first.
pub async fn wait_until_done(
    cluster: &Cluster,
    id: &str,
    timeout: Duration,
) -> Result<pb::Experiment> {
    wait_for(&format!("experiment {id} to finish"), timeout, || async {
        let Ok(mut client) = experiments(cluster).await else {
            return Ok(None);
        };
        let Ok(current) = experiment(&mut client, id).await else {
            return Ok(None);
        };
        Ok((current.state() != pb::ExperimentState::Running).then_some(current))
    })
    .await
}

/// A parameter value.
pub fn int(value: i64) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(pb::parameter_value::Kind::IntValue(value)),
    }
}

/// A parameter value.
pub fn float(value: f64) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(pb::parameter_value::Kind::FloatValue(value)),
    }
}

fn int_param(name: &str, low: i64, high: i64) -> pb::ParameterSpec {
    let kind = pb::parameter_spec::Kind::Int(pb::IntParam {
        step: None,
        low,
        high,
        log: false,
        default_value: None,
    });
    pb::ParameterSpec {
        name: name.to_string(),
        kind: Some(kind),
    }
}

fn float_param(name: &str, low: f64, high: f64, log: bool) -> pb::ParameterSpec {
    let kind = pb::parameter_spec::Kind::Float(pb::FloatParam {
        step: None,
        low,
        high,
        log,
        default_value: None,
    });
    pb::ParameterSpec {
        name: name.to_string(),
        kind: Some(kind),
    }
}

/// A tiny text-CNN study on a slice of MR: random search over embed_dim, learning rate and
/// dropout with 2 epochs, 4 maps a filter, 300 training and 100 validation sentences.
pub fn tiny_textcnn_spec(name: &str, budget: u32, parallelism: u32) -> pb::ExperimentSpec {
    let fixed = HashMap::from([
        ("epochs".to_string(), int(2)),
        ("num_feature_maps".to_string(), int(4)),
        ("batch_size".to_string(), int(50)),
    ]);
    pb::ExperimentSpec {
        name: name.to_string(),
        metric: "dev_accuracy".to_string(),
        direction: pb::Direction::Maximize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism,
        seed: 11,
        parameters: vec![
            int_param("embed_dim", 4, 12),
            float_param("learning_rate", 1e-4, 1e-2, true),
            float_param("dropout", 0.1, 0.9, false),
        ],
        workload: Some(pb::Workload {
            kind: "textcnn".to_string(),
            dataset: "mr".to_string(),
            fixed_params: fixed,
            max_train_examples: 300,
            max_dev_examples: 100,
            ..pb::Workload::default()
        }),
        ..pb::ExperimentSpec::default()
    }
}

/// A `quadratic` function study whose trials take `epochs × epoch_seconds` each.
pub fn slow_function_spec(
    name: &str,
    budget: u32,
    parallelism: u32,
    epochs: i64,
    epoch_seconds: f64,
) -> pb::ExperimentSpec {
    let fixed = HashMap::from([
        ("epochs".to_string(), int(epochs)),
        ("epoch_seconds".to_string(), float(epoch_seconds)),
    ]);
    pb::ExperimentSpec {
        name: name.to_string(),
        metric: "value".to_string(),
        direction: pb::Direction::Minimize as i32,
        strategy: pb::Strategy::Random as i32,
        budget_trials: budget,
        parallelism,
        seed: 5,
        parameters: vec![
            float_param("x", -1.0, 1.0, false),
            float_param("y", -1.0, 1.0, false),
        ],
        workload: Some(pb::Workload {
            kind: "function".to_string(),
            dataset: "quadratic".to_string(),
            fixed_params: fixed,
            ..pb::Workload::default()
        }),
        ..pb::ExperimentSpec::default()
    }
}
