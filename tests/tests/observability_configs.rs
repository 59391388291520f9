//! The example configs of `deploy/config/` load in the daemons' own config loaders (issue 7):
//! the real `coordinator` and `agent` binaries start from them (with their addresses moved to
//! loopback by flags), and refuse the same files with an unknown field added, which shows that
//! they read every field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use integration_tests::prometheus::daemons::{
    agent_args, coordinator_args, run_to_exit, start_coordinator, start_cpu_agent,
};
use integration_tests::prometheus::queries::{deploy_dir, read_text};

#[test]
fn deploy_configs_start_the_daemons() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let coordinator = start_coordinator(
        &deploy_dir().join("config/coordinator.toml"),
        &data_dir,
        dir.path(),
    )?;
    let grpc = coordinator.ready_field("grpc")?;
    assert!(
        data_dir.join("coordinator.sqlite3").exists(),
        "the coordinator did not use --data-dir"
    );
    let agent = start_cpu_agent(&deploy_dir().join("config/agent.toml"), &grpc, dir.path())?;
    assert!(
        !agent.ready_field("agent_id")?.is_empty(),
        "{}",
        agent.ready
    );
    Ok(())
}

/// Writes `source` plus an unknown field to `dir/name` and returns the copy's path.
fn with_unknown_field(source: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let copy = dir.join(name);
    std::fs::write(
        &copy,
        format!("{}\nno_such_field = 1\n", read_text(source)?),
    )?;
    Ok(copy)
}

#[test]
fn the_daemons_refuse_a_deploy_config_with_an_unknown_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator_config = with_unknown_field(
        &deploy_dir().join("config/coordinator.toml"),
        dir.path(),
        "coordinator.toml",
    )?;
    let agent_config = with_unknown_field(
        &deploy_dir().join("config/agent.toml"),
        dir.path(),
        "agent.toml",
    )?;
    let cases = [
        (
            "coordinator",
            coordinator_args(&coordinator_config, &dir.path().join("data")),
        ),
        // Nothing listens on port 9: the config must be refused before any connection.
        ("agent", agent_args(&agent_config, "http://127.0.0.1:9")),
    ];
    for (name, args) in cases {
        let (succeeded, stderr) = run_to_exit(name, &args, Duration::from_secs(30))?;
        assert!(!succeeded, "{name} accepted a config with an unknown field");
        assert!(
            stderr.contains("no_such_field"),
            "{name}'s error should name the field: {stderr}"
        );
    }
    Ok(())
}
