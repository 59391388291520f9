//! End to end (issue 16, "your own data"): a spec names its own train, dev and test files
//! (`label text` and `label<TAB>text` lines); `tunectl create` sends it, a real CPU agent trains
//! on them, the objective is the dev accuracy, the final model's `test_accuracy` is reported
//! beside it and shown by `tunectl status`; a malformed test file fails the trial naming the file
//! and the line.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::{Cluster, tunectl_ok};
use proto::v1 as pb;

/// `count` sentences whose label is carried by one word (`great` or `dull`), half of them with
/// a tab after the label and half with a space.
fn sentences(count: usize, offset: usize) -> String {
    let fillers = [
        "the", "film", "plot", "cast", "story", "music", "ending", "scene",
    ];
    (0..count)
        .map(|i| {
            let positive = (i + offset) % 2 == 1;
            let (label, word) = if positive {
                ("pos", "great")
            } else {
                ("neg", "dull")
            };
            let separator = if i % 4 < 2 { '\t' } else { ' ' };
            let a = fillers[(i * 3 + offset) % fillers.len()];
            let b = fillers[(i * 5 + 1) % fillers.len()];
            format!("{label}{separator}{a} was {word} and the {b} {i}\n")
        })
        .collect()
}

fn spec_text(name: &str, dir: &Path, test_file: &str, budget: u32) -> String {
    let path = |file: &str| dir.join(file).display().to_string();
    format!(
        r#"
name = "{name}"
direction = "maximize"
strategy = "random"
budget = {budget}
parallelism = 1
seed = 3
[[parameters]]
name = "learning_rate"
type = "float"
low = 0.001
high = 0.01
log = true
[workload]
kind = "textcnn"
dataset = "{train}"
dev_dataset = "{dev}"
test_dataset = "{test}"
max_train_examples = 200
[workload.fixed_params]
epochs = 2
embed_dim = 8
num_feature_maps = 4
batch_size = 20
"#,
        train = path("train.txt"),
        dev = path("dev.txt"),
        test = path(test_file),
    )
}

fn create(cluster: &Cluster, dir: &Path, name: &str, spec: &str) -> Result<String> {
    let spec_path = dir.join(format!("{name}.toml"));
    std::fs::write(&spec_path, spec)?;
    let printed = tunectl_ok(cluster, &["create", &spec_path.display().to_string()])?;
    printed
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("exp-"))
        .map(str::to_string)
        .with_context(|| format!("no experiment id in '{printed}'"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_own_train_dev_and_test_files() -> Result<()> {
    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("train.txt"), sentences(300, 0))?;
    std::fs::write(data.path().join("dev.txt"), sentences(100, 1))?;
    std::fs::write(data.path().join("test.txt"), sentences(100, 0))?;
    std::fs::write(
        data.path().join("bad-test.txt"),
        "pos a great film\n\nneg\tdull\njust-a-label\n",
    )?;
    let cluster = Cluster::builder().start()?;
    let _agent = start_agent(&cluster, "agent-own-data", &[])?;
    let mut client = agents::experiments(&cluster).await?;

    let good = create(
        &cluster,
        data.path(),
        "own-data",
        &spec_text("own-data", data.path(), "test.txt", 2),
    )?;
    let done = agents::wait_until_done(&cluster, &good, Duration::from_secs(180)).await?;
    ensure!(
        done.state() == pb::ExperimentState::Completed,
        "{:?}",
        done.state()
    );
    ensure!(
        done.spec.as_ref().map(|s| s.metric.as_str()) == Some("dev_accuracy"),
        "the objective is the dev accuracy: {:?}",
        done.spec.map(|s| s.metric)
    );
    let trials = agents::trials(&mut client, &good).await?;
    ensure!(trials.len() == 2, "{} trials", trials.len());
    for trial in &trials {
        ensure!(
            trial.state() == pb::TrialState::Succeeded,
            "trial {} {:?}: {}",
            trial.number,
            trial.state(),
            trial.failure_reason
        );
        let last_epoch = trial
            .epochs
            .iter()
            .max_by_key(|e| e.epoch)
            .context("no epochs")?;
        ensure!(
            trial.value == Some(last_epoch.value),
            "the value is the last dev accuracy"
        );
        let test = *trial
            .metrics
            .get("test_accuracy")
            .context("no test_accuracy")?;
        ensure!((0.0..=1.0).contains(&test), "test accuracy {test}");
    }
    let status = tunectl_ok(&cluster, &["status", &good])?;
    ensure!(
        status.contains("best test accuracy:") && status.contains("not used for selection"),
        "{status}"
    );

    let bad = create(
        &cluster,
        data.path(),
        "bad-data",
        &spec_text("bad-data", data.path(), "bad-test.txt", 1),
    )?;
    agents::wait_until_done(&cluster, &bad, Duration::from_secs(120)).await?;
    let trials = agents::trials(&mut client, &bad).await?;
    let trial = trials.first().context("no trial")?;
    let needle = "bad-test.txt:4: expected 'label<TAB>text' or 'label text'";
    ensure!(
        trial.state() == pb::TrialState::Failed && trial.failure_reason.contains(needle),
        "{:?}: {}",
        trial.state(),
        trial.failure_reason
    );

    let refused = cluster.tunectl(&["create", &{
        let path = data.path().join("mr-with-test.toml");
        let text = spec_text("mr-test", data.path(), "test.txt", 1).replace(
            &format!("dataset = \"{}\"", data.path().join("train.txt").display()),
            "dataset = \"mr\"",
        );
        std::fs::write(&path, text)?;
        path.display().to_string()
    }])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success()
            && stderr.contains("needs dataset to be the path of a training file"),
        "{stderr}"
    );
    Ok(())
}
