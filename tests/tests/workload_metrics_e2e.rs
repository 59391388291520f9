//! End to end (issue 16, "a new user's first hour"): the metrics the coordinator accepts for a
//! workload (`coordinator/src/service/workloads.rs`) are the ones a real agent reports. The
//! coordinator names them when it refuses an unknown metric; every one named must train a
//! trial to success on a CPU agent, and the default metric must be the first one named.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::Cluster;
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

/// The metrics the coordinator says `spec`'s workload reports, read from its refusal of a
/// metric no workload reports.
async fn reported_metrics(
    client: &mut ExperimentServiceClient<Channel>,
    mut spec: pb::ExperimentSpec,
) -> Result<Vec<String>> {
    spec.metric = "no_such_metric".into();
    let refused = client
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await
        .err()
        .context("an unknown metric must be refused")?;
    ensure!(
        refused.code() == tonic::Code::InvalidArgument,
        "{refused:?}"
    );
    let list = refused
        .message()
        .split_once("(it reports: ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .with_context(|| format!("no metric list in '{}'", refused.message()))?;
    Ok(list.split(", ").map(str::to_string).collect())
}

/// Creates `spec` with `metric` (empty: the default) and returns the id and the stored metric.
async fn create_with(
    client: &mut ExperimentServiceClient<Channel>,
    mut spec: pb::ExperimentSpec,
    metric: &str,
) -> Result<(String, String)> {
    spec.name = format!(
        "{}-{}",
        spec.name,
        if metric.is_empty() { "default" } else { metric }
    );
    spec.metric = metric.into();
    let experiment = client
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await
        .with_context(|| format!("metric '{metric}' refused"))?
        .into_inner()
        .experiment
        .context("no experiment in the response")?;
    let stored = experiment.spec.context("no spec")?.metric;
    Ok((experiment.id, stored))
}

/// Each epoch's objective is the column the metric names, where the report has that column.
fn check_objective(metric: &str, trial: &pb::Trial) -> Result<()> {
    for epoch in &trial.epochs {
        let column = match metric {
            "train_loss" => Some(epoch.train_loss),
            "train_accuracy" => Some(epoch.train_accuracy),
            _ => None,
        };
        if let Some(column) = column {
            ensure!(
                epoch.value == column,
                "metric {metric}: epoch {} value {} is not its {metric} {column}",
                epoch.epoch,
                epoch.value
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_every_metric_the_coordinator_accepts_is_one_the_agent_reports() -> Result<()> {
    let cluster = Cluster::builder().start()?;
    let _agent = start_agent(&cluster, "agent-metrics", &[])?;
    let mut client = agents::experiments(&cluster).await?;
    let workloads = [
        agents::tiny_textcnn_spec("metrics-textcnn", 1, 1),
        agents::slow_function_spec("metrics-function", 1, 1, 1, 0.0),
    ];
    let mut created = Vec::new();
    for spec in workloads {
        let metrics = reported_metrics(&mut client, spec.clone()).await?;
        ensure!(!metrics.is_empty(), "no metrics for {}", spec.name);
        let (id, default) = create_with(&mut client, spec.clone(), "").await?;
        ensure!(
            default == metrics[0],
            "{}: default metric {default}, expected {}",
            spec.name,
            metrics[0]
        );
        created.push((id, default));
        for metric in &metrics[1..] {
            created.push(create_with(&mut client, spec.clone(), metric).await?);
        }
    }
    ensure!(
        created.iter().any(|(_, metric)| metric == "dev_accuracy"),
        "textcnn must report dev_accuracy: {created:?}"
    );
    for (id, metric) in &created {
        let done = agents::wait_until_done(&cluster, id, Duration::from_secs(180)).await?;
        let trials = agents::trials(&mut client, id).await?;
        let trial = trials.first().context("no trial")?;
        ensure!(
            done.state() == pb::ExperimentState::Completed
                && trial.state() == pb::TrialState::Succeeded,
            "metric {metric}: experiment {:?}, trial {:?}: {}",
            done.state(),
            trial.state(),
            trial.failure_reason
        );
        ensure!(trial.value.is_some(), "metric {metric}: no value");
        check_objective(metric, trial)?;
    }
    Ok(())
}
