//! End to end (issue 6): early stopping through real processes, and `tunectl study --local`.
//!
//! - A real coordinator and CPU agent run a function study under the median rule: every trial
//!   the rule stops trains exactly the epoch it was judged on (the agent waits for the answer),
//!   lagged the median of the finished trials there, and ends `early_stopped` at its value.
//! - `tunectl study --local` starts its own cluster, runs two arms (`bo`, `bo+median`) on a
//!   slice of MR, and writes a report that names both arms before the cluster stops.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::{Cluster, binary};
use proto::v1 as pb;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_the_median_rule_stops_lagging_trials_after_the_epoch_it_judged() -> Result<()> {
    let cluster = Cluster::builder().start()?;
    let _agent = start_agent(&cluster, "agent-es", &[])?;
    let mut client = agents::experiments(&cluster).await?;
    // One trial at a time, so each trial is judged against the trials finished before it.
    let mut spec = agents::slow_function_spec("median-es", 10, 1, 5, 0.02);
    spec.early_stopping = Some(pb::EarlyStopping {
        rule: Some(pb::early_stopping::Rule::Median(pb::MedianStopping {
            min_epochs: 1,
            min_trials: 2,
        })),
    });
    let id = agents::create(&mut client, spec).await?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(90)).await?;
    ensure!(
        done.state() == pb::ExperimentState::Completed,
        "experiment ended {:?}",
        done.state()
    );
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(
        trials.len() == 10,
        "expected 10 trials, got {}",
        trials.len()
    );
    let mut finished: Vec<f64> = Vec::new();
    let mut stopped = 0;
    for trial in &trials {
        let value = trial.value.context("trial without a value")?;
        match trial.state() {
            pb::TrialState::EarlyStopped => {
                stopped += 1;
                ensure!(
                    trial.epochs_run == 1 && trial.epochs.len() == 1,
                    "trial {} was judged at epoch 1 but ran {} epochs",
                    trial.number,
                    trial.epochs_run
                );
                ensure!(
                    finished.len() >= 2 && value > median(&mut finished.clone()),
                    "trial {} ({value}) was stopped without lagging the median of {finished:?}",
                    trial.number
                );
            }
            pb::TrialState::Succeeded => {
                ensure!(
                    trial.epochs_run == 5,
                    "trial {} ran {} epochs",
                    trial.number,
                    trial.epochs_run
                );
                if finished.len() >= 2 {
                    ensure!(
                        value <= median(&mut finished.clone()),
                        "trial {} ({value}) lagged the median of {finished:?} but ran on",
                        trial.number
                    );
                }
            }
            other => anyhow::bail!("trial {} ended {other:?}", trial.number),
        }
        finished.push(value);
    }
    ensure!(stopped > 0, "the rule stopped no trial of {trials:?}");
    ensure!(
        done.trials_early_stopped == stopped,
        "the experiment counts {} early stops, the trials {stopped}",
        done.trials_early_stopped
    );
    Ok(())
}

#[test]
fn study_local_runs_two_arms_and_writes_the_report_before_stopping() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("report");
    let output = std::process::Command::new(binary("tunectl")?)
        .args([
            "study",
            "--local",
            "--scenario",
            "basic-mini",
            "--strategies",
            "bo,bo+median",
            "--budget",
            "4",
            "--repeats",
            "1",
            "--max-train",
            "200",
            "--max-dev",
            "100",
            "--name",
            "e2e-study",
            "--interval-secs",
            "0.2",
            "--out",
        ])
        .arg(&out)
        .output()
        .context("cannot run tunectl study")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "tunectl study failed: {stderr}");
    ensure!(
        String::from_utf8_lossy(&output.stdout).trim() == "e2e-study",
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let report = std::fs::read_to_string(out.join("report.md"))?;
    for needle in ["| bo |", "| bo+median |"] {
        ensure!(
            report.contains(needle),
            "report lacks '{needle}':\n{report}"
        );
    }
    let data = std::fs::read_to_string(out.join("study-data.json"))?;
    ensure!(data.contains("basic-mini"), "study-data.json: {data}");
    Ok(())
}
