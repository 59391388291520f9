//! End to end (issue 14, warm start): the real `tunectl import` against the real coordinator.
//! Results exported by `tunectl trials --format csv` of one experiment are imported into
//! another; JSON lines are queued with `--enqueue`; a file with a value outside the space is
//! refused whole, naming the file's line; the imported trials survive a coordinator restart.

use anyhow::{Context, Result};
use integration_tests::cluster::{Cluster, tunectl_ok};

const SPEC: &str = r#"
name = "import-e2e"
metric = "value"
direction = "minimize"
strategy = "bo"
budget = 3
parallelism = 1
seed = 9
[[parameters]]
name = "x"
type = "float"
low = 0.0
high = 1.0
[[parameters]]
name = "n"
type = "int"
low = 1
high = 4
[workload]
kind = "function"
dataset = "branin"
"#;

fn create(cluster: &Cluster) -> Result<String> {
    let spec = cluster.dir().join("import.toml");
    std::fs::write(&spec, SPEC)?;
    Ok(
        tunectl_ok(cluster, &["create", spec.to_str().context("utf-8 path")?])?
            .trim()
            .to_owned(),
    )
}

fn write(cluster: &Cluster, name: &str, text: &str) -> Result<String> {
    let path = cluster.dir().join(name);
    std::fs::write(&path, text)?;
    Ok(path.to_str().context("utf-8 path")?.to_owned())
}

#[test]
fn import_csv_round_trips_enqueue_runs_first_and_bad_rows_name_their_line() -> Result<()> {
    let mut cluster = Cluster::builder().start()?;
    let first = create(&cluster)?;
    let csv = write(
        &cluster,
        "results.csv",
        "x,n,state,value\n0.25,2,succeeded,1.5\n0.5,3,failed,\n0.75,4,succeeded,0.5\n",
    )?;
    let said = tunectl_ok(&cluster, &["import", &first, &csv])?;
    assert!(
        said.contains(&format!("imported 2 results into {first}")) && said.contains("1 rows"),
        "{said}"
    );
    let status = tunectl_ok(&cluster, &["status", &first])?;
    assert!(
        status.contains("imported: 2 (outside the budget)"),
        "{status}"
    );
    assert!(status.contains("best: 0.5"), "{status}");

    // What `tunectl trials --format csv` writes reads back into another experiment.
    let exported = tunectl_ok(&cluster, &["trials", &first, "--format", "csv"])?;
    let exported_path = write(&cluster, "exported.csv", &exported)?;
    let second = create(&cluster)?;
    let said = tunectl_ok(&cluster, &["import", &second, &exported_path])?;
    assert!(said.contains("imported 2 results"), "{said}\n{exported}");

    // JSON lines queued to run first.
    let lines = write(
        &cluster,
        "queue.jsonl",
        "{\"x\": 0.125, \"n\": 1}\n{\"params\": {\"x\": 0.875, \"n\": 4}}\n",
    )?;
    let said = tunectl_ok(&cluster, &["import", &second, &lines, "--enqueue"])?;
    assert!(said.contains("queued 2 configurations"), "{said}");

    // One bad row refuses the whole file, naming the file's line; nothing is added.
    let bad = write(&cluster, "bad.csv", "x,n,value\n0.5,2,1.0\n1.5,2,1.0\n")?;
    let output = cluster.tunectl(&["import", &second, &bad])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(!output.status.success());
    assert!(
        stderr.contains("bad.csv' line 3") && stderr.contains("'x'"),
        "{stderr}"
    );
    let status = tunectl_ok(&cluster, &["status", &second])?;
    assert!(status.contains("imported: 2 "), "{status}");

    // Durable: a restarted coordinator still has them.
    cluster.restart_coordinator()?;
    let status = tunectl_ok(&cluster, &["status", &first])?;
    assert!(
        status.contains("imported: 2 (outside the budget)"),
        "{status}"
    );
    let trials = tunectl_ok(&cluster, &["trials", &first, "--format", "json"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&trials)?;
    assert_eq!(
        rows.iter()
            .filter(|r| r["value"] == 0.5 || r["value"] == 1.5)
            .count(),
        2,
        "{trials}"
    );
    Ok(())
}
