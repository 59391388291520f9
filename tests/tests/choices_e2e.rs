//! End to end: a spec searches the text CNN's batch size as a categorical written with numbers
//! (`choices = [25, 50]`, `default = 50`), as Optuna users search it. `tunectl create` sends the
//! choices as their text, a real CPU agent trains with the chosen number, and the trials carry
//! the choice's text.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::{Cluster, tunectl_ok};
use proto::v1 as pb;

const SPEC: &str = r#"
name = "numeric-choices"
direction = "maximize"
strategy = "grid"
budget = 2
parallelism = 1
seed = 3
[[parameters]]
name = "batch_size"
type = "categorical"
choices = [25, 50]
default = 50
[workload]
kind = "textcnn"
dataset = "mr"
max_train_examples = 200
max_dev_examples = 100
[workload.fixed_params]
epochs = 1
embed_dim = 8
num_feature_maps = 4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_categorical_of_numbers_trains_the_cnn_with_each_number() -> Result<()> {
    let cluster = Cluster::builder().start()?;
    let spec = cluster.dir().join("choices.toml");
    std::fs::write(&spec, SPEC)?;
    let printed = tunectl_ok(&cluster, &["create", &spec.display().to_string()])?;
    let id = printed
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("exp-"))
        .with_context(|| format!("no experiment id in '{printed}'"))?
        .to_string();
    let _agent = start_agent(&cluster, "agent-choices", &[])?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(180)).await?;
    ensure!(
        done.state() == pb::ExperimentState::Completed,
        "{:?}",
        done.state()
    );
    let choices = done
        .spec
        .as_ref()
        .and_then(|s| s.parameters.first())
        .and_then(|p| match &p.kind {
            Some(pb::parameter_spec::Kind::Categorical(c)) => Some(c.clone()),
            _ => None,
        })
        .context("batch_size is a categorical")?;
    ensure!(
        choices.choices == ["25", "50"] && choices.default_value.as_deref() == Some("50"),
        "{choices:?}"
    );
    let mut client = agents::experiments(&cluster).await?;
    let trials = agents::trials(&mut client, &id).await?;
    let mut sizes = Vec::new();
    for trial in &trials {
        ensure!(
            trial.state() == pb::TrialState::Succeeded && trial.epochs_run == 1,
            "trial {} {:?} after {} epochs: {}",
            trial.number,
            trial.state(),
            trial.epochs_run,
            trial.failure_reason
        );
        match trial.params.get("batch_size").and_then(|v| v.kind.clone()) {
            Some(pb::parameter_value::Kind::CategoricalValue(text)) => sizes.push(text),
            other => anyhow::bail!("batch_size is {other:?}"),
        }
    }
    sizes.sort();
    ensure!(
        sizes == ["25", "50"],
        "the grid ran each choice once: {sizes:?}"
    );
    Ok(())
}
