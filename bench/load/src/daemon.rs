//! Starts a `coordinator` binary as a child process for one benchmark run: a fresh data dir,
//! both listeners on 127.0.0.1 port 0, config overrides passed by environment, stderr to a log
//! file, and the bound addresses read from its `TUNEFLEET_READY {json}` line on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Prefix of the readiness line.
pub const READY_PREFIX: &str = "TUNEFLEET_READY ";

/// A running coordinator; killed when dropped.
pub struct CoordinatorProcess {
    child: Child,
    pid: u32,
    grpc_addr: String,
    log_path: PathBuf,
}

impl CoordinatorProcess {
    /// Starts `binary` on `data_dir` with `env` (`COORDINATOR_*` variables of this process are
    /// not passed on, so the child runs its defaults plus `env`) and waits up to `timeout` for
    /// its readiness line.
    ///
    /// # Errors
    /// When it cannot start, exits, or prints no readiness line in time.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        log_path: &Path,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-addr", "127.0.0.1:0"])
            .args(["--metrics-listen-addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            if key.starts_with("COORDINATOR_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut ready_tx = Some(ready_tx);
            // Keeps draining stdout so the child never blocks on a full pipe.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix(READY_PREFIX)
                    && let Some(sender) = ready_tx.take()
                {
                    let _ = sender.send(json.to_owned());
                }
            }
        });
        let log_text = || std::fs::read_to_string(log_path).unwrap_or_default();
        let line = match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => bail!(
                "{} exited before it was ready; log:\n{}",
                binary.display(),
                log_text()
            ),
            Err(_) => bail!(
                "{} printed no readiness line within {timeout:?}; log:\n{}",
                binary.display(),
                log_text()
            ),
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("bad readiness line {line}"))?;
        let grpc_addr = ready["grpc"]
            .as_str()
            .with_context(|| format!("readiness line without grpc: {line}"))?
            .to_owned();
        Ok(Self {
            child,
            pid,
            grpc_addr,
            log_path: log_path.to_owned(),
        })
    }

    /// `http://ADDR` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where its stderr goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends SIGTERM (through `kill`, so no unsafe code), waits up to `timeout`, then kills it.
    ///
    /// # Errors
    /// When it cannot be waited for.
    pub async fn stop(mut self, timeout: Duration) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        Ok(())
    }
}
