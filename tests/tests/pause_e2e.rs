//! End to end (issue 16): a text-CNN experiment whose dataset path has a typo fails every trial
//! the same way on a real CPU agent, so the coordinator pauses it after three failures instead of
//! burning its budget; `tunectl status` and `tunectl watch` say why, and `tunectl resume` makes
//! the agent lease its trials again. The daemons' log files carry no ANSI colour codes.

use std::time::Duration;

use anyhow::{Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::{Cluster, tunectl_ok, wait_for};
use proto::v1 as pb;

const TYPO: &str = "data/mr-tpyo.txt";

async fn wait_paused(cluster: &Cluster, id: &str, failed: u32) -> Result<pb::Experiment> {
    let client = agents::experiments(cluster).await?;
    wait_for("the experiment to pause", Duration::from_secs(60), || {
        let mut client = client.clone();
        async move {
            let current = agents::experiment(&mut client, id).await?;
            Ok(
                (current.state() == pb::ExperimentState::Paused && current.trials_failed >= failed)
                    .then_some(current),
            )
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_a_mistyped_dataset_pauses_after_three_failures_and_resume_continues() -> Result<()> {
    let cluster = Cluster::builder().start()?;
    let agent = start_agent(&cluster, "agent-a", &[])?;
    let mut client = agents::experiments(&cluster).await?;
    let mut spec = agents::tiny_textcnn_spec("typo", 20, 1);
    if let Some(workload) = spec.workload.as_mut() {
        workload.dataset = TYPO.to_string();
    }
    let id = agents::create(&mut client, spec).await?;
    let paused = wait_paused(&cluster, &id, 3).await?;
    ensure!(paused.trials_failed == 3, "failed {}", paused.trials_failed);
    ensure!(paused.trials_created < 20, "the budget was not burnt");

    let status = tunectl_ok(&cluster, &["status", &id])?;
    ensure!(status.contains("state: paused"), "{status}");
    ensure!(
        status.contains("paused because: 3 trials in a row failed with the same reason")
            && status.contains(TYPO),
        "{status}"
    );
    ensure!(status.contains(&format!("tunectl resume {id}")), "{status}");

    let watched = cluster.tunectl(&["watch", &id])?;
    let watch_err = String::from_utf8_lossy(&watched.stderr);
    ensure!(
        !watched.status.success() && watch_err.contains("is paused") && watch_err.contains(TYPO),
        "watch: {watch_err}"
    );
    ensure!(
        String::from_utf8_lossy(&watched.stdout).contains("paused because"),
        "watch printed the status"
    );

    let resumed = tunectl_ok(&cluster, &["resume", &id])?;
    ensure!(resumed.trim() == format!("{id} running"), "{resumed}");
    // The dataset is still wrong: the agent leases again and the next three fail, pausing it again.
    let again = wait_paused(&cluster, &id, 6).await?;
    ensure!(again.trials_failed == 6, "failed {}", again.trials_failed);
    // Both daemons log to files here (stderr is not a terminal): no colour codes in them.
    for (name, log) in [
        ("coordinator", cluster.coordinator_log()),
        ("agent", agent.log()),
    ] {
        ensure!(log.contains("INFO"), "{name} logged nothing: {log}");
        ensure!(
            !log.contains('\u{1b}'),
            "{name} log has ANSI escape codes: {log:?}"
        );
    }
    Ok(())
}
