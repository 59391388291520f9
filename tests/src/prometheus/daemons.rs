//! Starts the real `coordinator` and `agent` binaries from the configs of `deploy/config/`
//! (addresses moved to loopback port 0 by flags), on top of [`crate::cluster::Daemon`].
//!
//! The observability tests start the daemons from the deployment's own config files, rather
//! than the harness's generated ones, because that is part of what they check: the daemons'
//! config loaders accept every field of `deploy/config/*.toml`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{Daemon, START_TIMEOUT, binary};

/// Starts the coordinator with `config` (a TOML file), listeners on loopback port 0 and its
/// database in `data_dir`; logs go to `log_dir/coordinator.log`.
///
/// # Errors
/// When it cannot start or prints no readiness line.
pub fn start_coordinator(config: &Path, data_dir: &Path, log_dir: &Path) -> Result<Daemon> {
    let mut command = Command::new(binary("coordinator")?);
    command
        .args(coordinator_args(config, data_dir))
        .env("RUST_LOG", "info");
    Daemon::spawn("coordinator", command, log_dir, START_TIMEOUT)
}

/// Flags that start the coordinator from `config` on loopback with its data in `data_dir`.
pub fn coordinator_args(config: &Path, data_dir: &Path) -> Vec<String> {
    let mut args = vec!["--config".to_string(), config.display().to_string()];
    args.extend(
        [
            "--listen-addr",
            "127.0.0.1:0",
            "--metrics-listen-addr",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    args.extend(["--data-dir".to_string(), data_dir.display().to_string()]);
    args
}

/// Starts a CPU agent with `config` (a TOML file) against the coordinator at `grpc_addr`, with
/// its metrics on loopback port 0; logs go to `log_dir/agent.log`.
///
/// # Errors
/// When it cannot start or prints no readiness line.
pub fn start_cpu_agent(config: &Path, grpc_addr: &str, log_dir: &Path) -> Result<Daemon> {
    let mut command = Command::new(binary("agent")?);
    command
        .args(agent_args(config, &format!("http://{grpc_addr}")))
        .env("RUST_LOG", "info");
    Daemon::spawn("agent", command, log_dir, START_TIMEOUT)
}

/// Flags that start a CPU agent from `config` against `coordinator_url`, metrics on loopback.
pub fn agent_args(config: &Path, coordinator_url: &str) -> Vec<String> {
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--cpu".to_string(),
    ];
    args.extend(["--coordinator".to_string(), coordinator_url.to_string()]);
    args.extend(["--metrics-listen-addr", "127.0.0.1:0"].map(String::from));
    args
}

/// Runs the workspace binary `name` with `args` to its exit (for configs it must refuse) and
/// returns whether it succeeded and its stderr, giving up after `timeout`.
///
/// # Errors
/// When it cannot start or is still running at the deadline.
pub fn run_to_exit(name: &str, args: &[String], timeout: Duration) -> Result<(bool, String)> {
    let dir = tempfile::tempdir().context("failed to create a temporary folder")?;
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).context("failed to create a stderr file")?;
    let mut child = Command::new(binary(name)?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("failed to poll a child")? {
            let stderr = std::fs::read_to_string(&stderr_path)
                .context("failed to read the child's stderr")?;
            return Ok((status.success(), stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} was still running {timeout:?} after it started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
