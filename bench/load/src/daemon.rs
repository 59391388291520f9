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

/// What the coordinator logged at WARN and ERROR level.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LogSummary {
    /// ERROR lines.
    pub errors: u64,
    /// WARN lines.
    pub warnings: u64,
    /// The first ERROR line, without colour codes.
    pub first_error: Option<String>,
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Counts the WARN and ERROR lines of a `tracing` text log.
pub fn summarize_log(text: &str) -> LogSummary {
    let mut summary = LogSummary::default();
    for line in text.lines() {
        let plain = strip_ansi(line);
        let level = plain.split_whitespace().nth(1).unwrap_or_default();
        match level {
            "ERROR" => {
                summary.errors += 1;
                if summary.first_error.is_none() {
                    summary.first_error = Some(plain);
                }
            }
            "WARN" => summary.warnings += 1,
            _ => {}
        }
    }
    summary
}

/// A running coordinator; killed when dropped.
pub struct CoordinatorProcess {
    child: Child,
    pid: u32,
    grpc_addr: String,
    metrics_addr: String,
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
        let metrics_addr = ready["metrics"].as_str().unwrap_or_default().to_owned();
        Ok(Self {
            child,
            pid,
            grpc_addr,
            metrics_addr,
            log_path: log_path.to_owned(),
        })
    }

    /// `http://ADDR` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `ADDR` of the `/metrics` listener (empty when the readiness line has none).
    pub fn metrics_addr(&self) -> &str {
        &self.metrics_addr
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_levels_of_coloured_lines() {
        let log = "\u{1b}[2m2026-12-01T23:16:41Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m store: failed\n\
                   2026-12-01T23:16:42Z  WARN lease expired\n\
                   2026-12-01T23:16:43Z  INFO trial leased ERROR in a field\n";
        let summary = summarize_log(log);
        assert_eq!((summary.errors, summary.warnings), (1, 1));
        assert_eq!(
            summary.first_error.as_deref(),
            Some("2026-12-01T23:16:41Z ERROR store: failed")
        );
    }
}
