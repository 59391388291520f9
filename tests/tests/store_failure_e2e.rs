//! A store write that fails (here: every file the coordinator writes is capped, as on a full
//! disk) stops the coordinator with an error, so that its supervisor restarts it; the restart
//! reloads the store, loses no experiment it acknowledged, and writes again.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::cluster::{Cluster, tunectl_ok};

/// A spec of about 20 KB (64 parameters with long names), so that a few dozen fill the cap.
fn big_spec(index: usize) -> String {
    let mut spec = format!(
        "name = \"fill-{index}\"\nmetric = \"value\"\ndirection = \"minimize\"\n\
         strategy = \"random\"\nbudget = 10\n[workload]\nkind = \"function\"\n\
         dataset = \"quadratic\"\n"
    );
    for p in 0..64 {
        spec.push_str(&format!(
            "[[parameters]]\nname = \"p{p:02}_{}\"\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n",
            "x".repeat(200)
        ));
    }
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_coordinator_and_its_restart_loses_nothing_acknowledged() -> Result<()>
{
    // 2,048 blocks of 512 bytes: the database and its WAL stop growing at 1 MiB.
    let mut cluster = Cluster::builder().file_size_limit(2048).start()?;
    let mut created = Vec::new();
    let mut refusal = None;
    for index in 0..300 {
        let path = cluster.dir().join(format!("fill-{index}.toml"));
        std::fs::write(&path, big_spec(index))?;
        let output = cluster.tunectl(&["create", &path.display().to_string()])?;
        if output.status.success() {
            created.push(String::from_utf8(output.stdout)?.trim().to_owned());
        } else {
            refusal = Some(String::from_utf8_lossy(&output.stderr).into_owned());
            break;
        }
    }
    // The create whose write failed, or the next one, which finds the coordinator gone (a
    // write of the background suggestions may fail first).
    let refusal = refusal.context("300 experiments of 20 KB never filled 1 MiB")?;
    ensure!(
        created.len() >= 5,
        "only {} created: {refusal}",
        created.len()
    );

    let exit = cluster
        .coordinator()?
        .wait_exit(Duration::from_secs(60))
        .context("the coordinator must stop after a failed store write")?;
    let log = cluster.coordinator_log();
    ensure!(
        !exit.success()
            && log.contains("a store write failed; stopping so that a restart reloads the store"),
        "exit {exit}, refusal '{refusal}', log:\n{log}"
    );

    // The disk was freed; the supervisor restarts it.
    cluster.lift_file_size_limit();
    cluster.start_coordinator()?;
    let listed = tunectl_ok(&cluster, &["list"])?;
    for id in &created {
        ensure!(listed.contains(id.as_str()), "{id} was lost:\n{listed}");
    }
    let path = cluster.dir().join("after.toml");
    std::fs::write(&path, big_spec(999))?;
    let id = tunectl_ok(&cluster, &["create", &path.display().to_string()])?;
    ensure!(tunectl_ok(&cluster, &["list"])?.contains(id.trim()));
    Ok(())
}
