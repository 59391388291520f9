//! Starts the real `coordinator` and `agent` binaries with the configs of `deploy/config/`
//! (addresses moved to loopback port 0), and waits for their readiness lines.
//!
//! The observability tests use this rather than the general cluster harness because they must
//! start the daemons from the deployment's own config files, which is itself part of what they
//! check: the daemons' config loaders accept every field of `deploy/config/*.toml`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The line prefix both daemons print on stdout once their listeners are bound.
pub const READY_PREFIX: &str = "TUNEFLEET_READY ";

/// The folder holding the workspace's binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up (as in ripgrep's `tests/util.rs`).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to find the test executable")?;
    let deps = exe.parent().context("the test executable has no folder")?;
    let dir = if deps.ends_with("deps") { deps.parent().context("no target folder")? } else { deps };
    Ok(dir.to_path_buf())
}

/// The path of a workspace binary, or an error saying how to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!("{} not found: build the binaries first (cargo build --workspace --bins)", path.display());
    }
    Ok(path)
}

/// A daemon started as a child process, killed on drop; its stderr goes to a log file.
pub struct Daemon {
    child: Child,
    /// The readiness line's JSON object.
    pub ready: serde_json::Value,
    log_path: PathBuf,
}

impl Daemon {
    /// Starts `binary ARGS` and waits up to `timeout` for its readiness line.
    pub fn start(binary: &Path, args: &[String], log_dir: &Path, timeout: Duration) -> Result<Daemon> {
        let name = binary.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("failed to create {}", log_path.display()))?;
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix(READY_PREFIX) {
                    let _ = sender.send(json.to_string());
                }
            }
        });
        let mut daemon = Daemon { child, ready: serde_json::Value::Null, log_path };
        let line = match receiver.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => bail!("{name} printed no readiness line within {timeout:?}; its log:\n{}", daemon.log()),
        };
        daemon.ready = serde_json::from_str(&line).with_context(|| format!("bad readiness line from {name}: {line}"))?;
        Ok(daemon)
    }

    /// A string field of the readiness line (`grpc`, `metrics`, `agent_id`).
    pub fn ready_field(&self, field: &str) -> Result<String> {
        let value = self.ready[field].as_str();
        value.map(str::to_string).with_context(|| format!("readiness line has no '{field}': {}", self.ready))
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("failed to kill a daemon")?;
        self.child.wait().context("failed to wait for a daemon")?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the coordinator with `config` (a TOML file), listeners on loopback port 0 and its
/// database in `data_dir`.
pub fn start_coordinator(config: &Path, data_dir: &Path, log_dir: &Path) -> Result<Daemon> {
    let args = [
        "--config".to_string(),
        config.display().to_string(),
        "--listen-addr".to_string(),
        "127.0.0.1:0".to_string(),
        "--metrics-listen-addr".to_string(),
        "127.0.0.1:0".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    Daemon::start(&binary("coordinator")?, &args, log_dir, Duration::from_secs(60))
}

/// Starts a CPU agent with `config` (a TOML file) against the coordinator at `grpc_addr`, with
/// its metrics on loopback port 0.
pub fn start_cpu_agent(config: &Path, grpc_addr: &str, log_dir: &Path) -> Result<Daemon> {
    let args = [
        "--config".to_string(),
        config.display().to_string(),
        "--cpu".to_string(),
        "--coordinator".to_string(),
        format!("http://{grpc_addr}"),
        "--metrics-listen-addr".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    Daemon::start(&binary("agent")?, &args, log_dir, Duration::from_secs(60))
}

/// Runs `binary ARGS` to completion (for configs that must be refused) and returns whether it
/// succeeded and its stderr, giving up after `timeout`.
pub fn run_to_exit(binary: &Path, args: &[String], timeout: Duration) -> Result<(bool, String)> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("failed to poll a child")? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).context("failed to read stderr")?;
            }
            return Ok((status.success(), stderr));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} was still running after {timeout:?}", binary.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
