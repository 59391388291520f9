//! The example configs of `deploy/config/` load in the daemons' own config loaders (issue 7):
//! the real `coordinator` and `agent` binaries start from them (with their addresses moved to
//! loopback), and refuse the same files with an unknown field, which shows they read them.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use integration_tests::prometheus::daemons::{binary, run_to_exit, start_coordinator, start_cpu_agent};
use integration_tests::prometheus::queries::{deploy_dir, read_text};

#[test]
fn deploy_configs_start_the_daemons() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = start_coordinator(&deploy_dir().join("config/coordinator.toml"), &dir.path().join("data"), dir.path())?;
    let grpc = coordinator.ready_field("grpc")?;
    assert!(dir.path().join("data/coordinator.sqlite3").exists(), "the coordinator did not use --data-dir");
    let agent = start_cpu_agent(&deploy_dir().join("config/agent.toml"), &grpc, dir.path())?;
    assert!(!agent.ready_field("agent_id")?.is_empty(), "{}", agent.ready);
    Ok(())
}

/// Writes `source` plus an unknown field to `dir/name` and returns the copy's path.
fn with_unknown_field(source: &Path, dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let copy = dir.join(name);
    std::fs::write(&copy, format!("{}\nno_such_field = 1\n", read_text(source)?))?;
    Ok(copy)
}

#[test]
fn the_daemons_refuse_a_deploy_config_with_an_unknown_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator_config = with_unknown_field(&deploy_dir().join("config/coordinator.toml"), dir.path(), "c.toml")?;
    let agent_config = with_unknown_field(&deploy_dir().join("config/agent.toml"), dir.path(), "a.toml")?;
    let data_dir = dir.path().join("data").display().to_string();
    let cases = [
        (
            "coordinator",
            vec!["--config", &coordinator_config.display().to_string(), "--listen-addr", "127.0.0.1:0",
                 "--metrics-listen-addr", "127.0.0.1:0", "--data-dir", &data_dir]
                .into_iter().map(str::to_string).collect::<Vec<_>>(),
        ),
        (
            "agent",
            vec!["--config", &agent_config.display().to_string(), "--cpu", "--coordinator", "http://127.0.0.1:9",
                 "--metrics-listen-addr", "127.0.0.1:0"]
                .into_iter().map(str::to_string).collect::<Vec<_>>(),
        ),
    ];
    for (name, args) in cases {
        let (succeeded, stderr) = run_to_exit(&binary(name)?, &args, Duration::from_secs(30))?;
        assert!(!succeeded, "{name} accepted a config with an unknown field");
        assert!(stderr.contains("no_such_field"), "{name}'s error should name the field: {stderr}");
    }
    Ok(())
}
