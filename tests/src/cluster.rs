//! The general end-to-end harness: finds the workspace binaries, starts real `coordinator`
//! processes on loopback port 0 with temporary data dirs, reads their readiness lines, runs
//! `tunectl`, and kills every child on drop. `wait_for` polls with a deadline (never a bare sleep).
//!
//! The binaries must be built first: `cargo test --workspace` builds them (the `coordinator`,
//! `tunectl` and `agent` packages have integration tests, which makes cargo build their
//! binaries), or run `cargo build --workspace --bins`. Other modules (agents, Prometheus) build
//! on [`Daemon`] and [`Cluster`].
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! let cluster = integration_tests::cluster::Cluster::builder().start()?;
//! println!("coordinator at {}", cluster.grpc_url()?);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Prefix of the readiness line both daemons print on stdout.
pub const READY_PREFIX: &str = "TUNEFLEET_READY ";

/// How long a daemon gets to print its readiness line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The folder with the workspace binaries: the test executable is `target/<profile>/deps/NAME`,
/// the binaries sit in `target/<profile>/`.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let parent = exe
        .parent()
        .context("the test executable has no parent folder")?;
    let dir = if parent.ends_with("deps") {
        parent.parent().context("no profile folder above deps")?
    } else {
        parent
    };
    Ok(dir.to_path_buf())
}

/// The path of a workspace binary, or an error saying how to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "binary {} not found: run `cargo build --workspace --bins` (or `cargo test --workspace`)",
            path.display()
        );
    }
    Ok(path)
}

/// A child daemon with its readiness line; killed on drop. Its stderr goes to a log file.
pub struct Daemon {
    name: String,
    child: Child,
    /// The readiness line's JSON object.
    pub ready: serde_json::Value,
    log_path: PathBuf,
}

impl Daemon {
    /// Spawns `command` (stdout piped, stderr to `log_dir/NAME.log`, appended) and waits for its
    /// readiness line.
    ///
    /// # Errors
    /// When it cannot start, or exits or stays silent past `timeout`; the error holds its log.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<Daemon> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot create log {}", log_path.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout after the readiness line so the child never blocks on a full pipe.
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if let Some(json) = line.strip_prefix(READY_PREFIX) {
                    let _ = sender.send(json.to_owned());
                }
            }
        });
        let mut daemon = Daemon {
            name: name.to_owned(),
            child,
            ready: serde_json::Value::Null,
            log_path,
        };
        let deadline = Instant::now() + timeout;
        let line = loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = daemon.child.try_wait() {
                        bail!(
                            "{name} exited ({status}) before it was ready; log:\n{}",
                            daemon.log()
                        );
                    }
                }
                Err(_) => bail!(
                    "{name} printed no readiness line within {timeout:?}; log:\n{}",
                    daemon.log()
                ),
            }
        };
        daemon.ready = serde_json::from_str(&line)
            .with_context(|| format!("bad readiness line from {name}: {line}"))?;
        Ok(daemon)
    }

    /// A string field of the readiness line (`grpc`, `metrics`, `agent_id`).
    ///
    /// # Errors
    /// When the field is missing.
    pub fn ready_field(&self, field: &str) -> Result<String> {
        let value = self.ready[field].as_str();
        value.map(str::to_owned).with_context(|| {
            format!(
                "{} readiness line has no '{field}': {}",
                self.name, self.ready
            )
        })
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for it to exit on its own and returns how it exited.
    ///
    /// # Errors
    /// When it is still running at the deadline (the error holds its log).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot wait for the child")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still runs after {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (through `kill`, so no unsafe code) and waits up to `timeout` for it to
    /// exit; returns whether it exited successfully.
    ///
    /// # Errors
    /// When the signal cannot be sent or it does not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let name = self.name.clone();
        let status = self
            .wait_exit(timeout)
            .with_context(|| format!("{name} did not exit within {timeout:?} of SIGTERM"))?;
        Ok(status.success())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds a [`Cluster`].
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    token: Option<String>,
    config_lines: Vec<String>,
    https: bool,
    file_size_limit: Option<u64>,
}

impl ClusterBuilder {
    /// Requires this bearer token on every RPC.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Makes [`Cluster::grpc_url`] `https://`, for a coordinator given its TLS files with
    /// [`ClusterBuilder::config_line`]. [`Cluster::channel`] speaks plain HTTP/2 only, so such a
    /// test builds its own TLS clients.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Starts the coordinator with every file it writes limited to `blocks` of 512 bytes
    /// (`ulimit -f`, with `SIGXFSZ` ignored so that a write past it fails with `EFBIG`): a disk
    /// that fills up, without root.
    pub fn file_size_limit(mut self, blocks: u64) -> Self {
        self.file_size_limit = Some(blocks);
        self
    }

    /// Adds a raw line to the coordinator's config file (e.g. `lease_timeout_secs = 3`).
    pub fn config_line(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_owned());
        self
    }

    /// Starts the coordinator.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn start(self) -> Result<Cluster> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let mut config = format!(
            "version = 1\nlisten_addr = \"127.0.0.1:0\"\nmetrics_listen_addr = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        );
        for line in &self.config_lines {
            config.push_str(line);
            config.push('\n');
        }
        if let Some(token) = &self.token {
            config.push_str(&format!("auth_token = {token:?}\n"));
        }
        let config_path = dir.path().join("coordinator.toml");
        std::fs::write(&config_path, config).context("cannot write the coordinator config")?;
        let mut cluster = Cluster {
            dir,
            config_path,
            token: self.token,
            coordinator: None,
            grpc_addr: None,
            scheme: if self.https { "https" } else { "http" },
            file_size_limit: self.file_size_limit,
        };
        cluster.start_coordinator()?;
        Ok(cluster)
    }
}

/// A coordinator (and whatever other modules add) on loopback, in a temp dir.
pub struct Cluster {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    token: Option<String>,
    coordinator: Option<Daemon>,
    grpc_addr: Option<String>,
    scheme: &'static str,
    file_size_limit: Option<u64>,
}

impl Cluster {
    /// A builder with the defaults (no token).
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The temp dir holding configs, logs and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The coordinator's data dir (it holds `coordinator.sqlite3`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The coordinator's SQLite file, to open read-only in checks.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir().join("coordinator.sqlite3")
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Starts the coordinator; after the first start it reuses the same gRPC port, so clients
    /// and agents find it again after a restart.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn start_coordinator(&mut self) -> Result<()> {
        let mut command = match self.file_size_limit {
            None => Command::new(binary("coordinator")?),
            Some(blocks) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!(
                        "ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
                    ))
                    .arg(binary("coordinator")?);
                shell
            }
        };
        command
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info,coordinator=debug");
        if let Some(addr) = &self.grpc_addr {
            command.arg("--listen-addr").arg(addr);
        }
        let daemon = Daemon::spawn("coordinator", command, self.dir.path(), START_TIMEOUT)?;
        self.grpc_addr = Some(daemon.ready_field("grpc")?);
        self.coordinator = Some(daemon);
        Ok(())
    }

    /// The running coordinator.
    ///
    /// # Errors
    /// When it is stopped.
    pub fn coordinator(&mut self) -> Result<&mut Daemon> {
        self.coordinator
            .as_mut()
            .context("the coordinator is not running")
    }

    /// Starts the coordinator without the [`ClusterBuilder::file_size_limit`] from its next start
    /// on (the disk was freed).
    pub fn lift_file_size_limit(&mut self) {
        self.file_size_limit = None;
    }

    /// Kills the coordinator with SIGKILL (a crash).
    pub fn kill_coordinator(&mut self) {
        if let Some(mut daemon) = self.coordinator.take() {
            daemon.kill();
        }
    }

    /// Kills and starts the coordinator again on the same port and data dir.
    ///
    /// # Errors
    /// When it cannot start again.
    pub fn restart_coordinator(&mut self) -> Result<()> {
        self.kill_coordinator();
        self.start_coordinator()
    }

    /// `http://127.0.0.1:PORT` of the coordinator's gRPC listener (`https://` after
    /// [`ClusterBuilder::https`]).
    ///
    /// # Errors
    /// Before the first start.
    pub fn grpc_url(&self) -> Result<String> {
        Ok(format!(
            "{}://{}",
            self.scheme,
            self.grpc_addr
                .as_deref()
                .context("the coordinator never started")?
        ))
    }

    /// `http://127.0.0.1:PORT/metrics` of the running coordinator.
    ///
    /// # Errors
    /// When it is not running.
    pub fn metrics_url(&self) -> Result<String> {
        let daemon = self
            .coordinator
            .as_ref()
            .context("the coordinator is not running")?;
        Ok(format!("http://{}/metrics", daemon.ready_field("metrics")?))
    }

    /// The coordinator's log so far.
    pub fn coordinator_log(&self) -> String {
        self.coordinator
            .as_ref()
            .map_or_else(|| "(not running)".into(), Daemon::log)
    }

    /// Runs `tunectl ARGS` against this cluster and returns its output (whatever the exit code).
    /// The caller's `TUNEFLEET_*` token and TLS variables are not passed on.
    ///
    /// # Errors
    /// When `tunectl` cannot be started.
    pub fn tunectl(&self, args: &[&str]) -> Result<Output> {
        self.tunectl_command(args)?
            .output()
            .context("cannot run tunectl")
    }

    /// The command [`Cluster::tunectl`] runs, for a test that spawns it and reads it as it runs.
    ///
    /// # Errors
    /// When the binary is missing or the coordinator never started.
    pub fn tunectl_command(&self, args: &[&str]) -> Result<Command> {
        let mut command = Command::new(binary("tunectl")?);
        command
            .args(args)
            .env("TUNEFLEET_COORDINATOR", self.grpc_url()?)
            .env_remove("TUNEFLEET_TOKEN")
            .env_remove("TUNEFLEET_TOKEN_FILE")
            .env_remove("TUNEFLEET_CA_FILE")
            .env_remove("TUNEFLEET_CERT_FILE")
            .env_remove("TUNEFLEET_KEY_FILE");
        if let Some(token) = &self.token {
            command.env("TUNEFLEET_TOKEN", token);
        }
        Ok(command)
    }

    /// A tonic channel to the coordinator.
    ///
    /// # Errors
    /// When it cannot connect.
    pub async fn channel(&self) -> Result<tonic::transport::Channel> {
        let url = self.grpc_url()?;
        let endpoint = tonic::transport::Endpoint::from_shared(url.clone())?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))
    }
}

/// Runs `tunectl ARGS` and returns its stdout, failing with its stderr on a non-zero exit.
///
/// # Errors
/// When it fails.
pub fn tunectl_ok(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let output = cluster.tunectl(args)?;
    if !output.status.success() {
        bail!(
            "tunectl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `timeout` with `what`.
///
/// # Errors
/// When the deadline passes or `check` fails.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
