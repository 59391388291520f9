//! Runs one trial's command to its end: starts it in a process group of its own, reads its
//! epoch lines (stdout or the metrics file), hands each to the slot, and stops it (SIGTERM to
//! the group, then SIGKILL after the grace period) on early stopping, an experiment stop, agent
//! shutdown, a broken epoch line, or no epoch for too long.
//!
//! It runs on a current-thread tokio runtime of the slot's own training thread, so the slot's
//! epoch callback, which blocks until the coordinator answers, runs here as it does for the
//! built-in workloads.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::epoch_line::{self, MAX_LINE_BYTES};
use super::metrics_file::MetricsFile;
use super::spec::{CommandSpec, MetricsSource};
use crate::trainer::{BestEpoch, EpochControl, EpochMetrics, TrainOutcome, TrialFailure};

/// Lines of stderr kept for the failure reason.
const STDERR_TAIL_LINES: usize = 12;
/// Longest stderr line kept.
const STDERR_LINE_CHARS: usize = 240;
/// How often stop requests, the epoch timeout and the metrics file are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// After the command exits, how long to wait for the rest of its output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to start the command.
pub struct Launch<'a> {
    /// The declaration.
    pub spec: &'a CommandSpec,
    /// The filled-in argv.
    pub argv: Vec<String>,
    /// Environment set for the command, over the agent's own.
    pub env: Vec<(String, String)>,
    /// The objective's name.
    pub metric: &'a str,
    /// Whether a larger objective is better (for the best epoch).
    pub maximize: bool,
    /// The file `TUNEFLEET_METRICS_FILE` names.
    pub metrics_file: MetricsFile,
}

/// Why the command ended.
enum End {
    Exited(ExitStatus),
    Stopped,
    Failed(String),
}

/// What the command has shown so far.
struct Progress<'a> {
    launch: &'a Launch<'a>,
    started: Instant,
    last_epoch_at: Instant,
    epochs: u32,
    last_value: f64,
    best: BestEpoch,
    stderr_tail: VecDeque<String>,
}

impl Progress<'_> {
    /// Handles one line of epoch output; `Some` ends the command.
    fn line(
        &mut self,
        line: &str,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> Option<End> {
        let parsed = match epoch_line::parse(line, self.launch.metric) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                tracing::debug!(command = %self.launch.spec.name, line, "command output");
                return None;
            }
            Err(error) => {
                return Some(End::Failed(format!(
                    "command '{}': {error}",
                    self.launch.spec.name
                )));
            }
        };
        if parsed.epoch <= self.epochs {
            return Some(End::Failed(format!(
                "command '{}' reported epoch {} after epoch {}: epochs must increase",
                self.launch.spec.name, parsed.epoch, self.epochs
            )));
        }
        let now = Instant::now();
        let metrics = EpochMetrics {
            epoch: parsed.epoch,
            value: parsed.value,
            train_loss: parsed.train_loss,
            train_accuracy: parsed.train_accuracy,
            epoch_seconds: now.duration_since(self.last_epoch_at).as_secs_f64(),
            examples: 0,
            device_memory_bytes: None,
        };
        self.last_epoch_at = now;
        self.epochs = parsed.epoch;
        self.last_value = parsed.value;
        self.best
            .record(parsed.epoch, parsed.value, self.launch.maximize);
        match on_epoch(&metrics) {
            EpochControl::Continue => None,
            EpochControl::Stop => Some(End::Stopped),
        }
    }

    /// The end of a command that exited by itself, once the epoch lines read after its exit
    /// are handled (a stop asked for at one of them changes nothing: it is over).
    fn after_exit(
        &mut self,
        status: ExitStatus,
        lines: &[String],
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    ) -> End {
        for line in lines {
            match self.line(line, on_epoch) {
                None => {}
                Some(End::Stopped) => break,
                Some(failed) => return failed,
            }
        }
        End::Exited(status)
    }

    fn stderr(&mut self, line: String) {
        tracing::debug!(command = %self.launch.spec.name, line, "command stderr");
        if self.stderr_tail.len() == STDERR_TAIL_LINES {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail
            .push_back(line.chars().take(STDERR_LINE_CHARS).collect());
    }

    fn tail(&self) -> String {
        if self.stderr_tail.is_empty() {
            return "no output on stderr".to_string();
        }
        let lines: Vec<&str> = self.stderr_tail.iter().map(String::as_str).collect();
        format!("last lines of stderr:\n{}", lines.join("\n"))
    }

    fn outcome(&self, end: End) -> Result<TrainOutcome, TrialFailure> {
        let name = &self.launch.spec.name;
        let ran = format!("after {} epoch(s)", self.epochs);
        let stopped = match end {
            End::Stopped => true,
            End::Exited(status) if status.success() && self.epochs > 0 => false,
            End::Exited(status) if status.success() => {
                return Err(TrialFailure::new(format!(
                    "command '{name}' exited without reporting an epoch of '{}'; {}",
                    self.launch.metric,
                    self.tail()
                )));
            }
            End::Exited(status) => {
                return Err(TrialFailure::new(format!(
                    "command '{name}' exited with {} {ran}; {}",
                    describe(status),
                    self.tail()
                )));
            }
            End::Failed(reason) => {
                return Err(TrialFailure::new(format!(
                    "{reason} ({ran}); {}",
                    self.tail()
                )));
            }
        };
        Ok(TrainOutcome {
            final_value: self.last_value,
            best_epoch: self.best.epoch(),
            epochs_run: self.epochs,
            stopped,
            device_seconds: self.started.elapsed().as_secs_f64(),
            metrics: Default::default(),
        })
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

fn spawn(launch: &Launch<'_>) -> Result<Child, TrialFailure> {
    let (program, args) = launch
        .argv
        .split_first()
        .expect("validated argv is never empty");
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // The agent's own settings (its bearer token among them) are not the command's business.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AGENT_") {
            command.env_remove(&key);
        }
    }
    command
        .envs(launch.spec.env.iter())
        .envs(launch.env.iter().cloned());
    if let Some(dir) = &launch.spec.workdir {
        command.current_dir(dir);
    }
    command.spawn().map_err(|error| {
        TrialFailure::new(format!(
            "failed to start command '{}' ('{program}'): {error}",
            launch.spec.name
        ))
    })
}

/// Sends each line of `reader` (cut at [`MAX_LINE_BYTES`]) until end of file.
async fn forward_lines(reader: impl AsyncBufRead + Unpin, lines: UnboundedSender<String>) {
    let mut reader = reader;
    loop {
        let mut buffer = Vec::new();
        match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buffer)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
                if lines.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

fn pipe<R>(stream: Option<R>) -> UnboundedReceiver<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (sender, receiver) = unbounded_channel();
    if let Some(stream) = stream {
        tokio::spawn(forward_lines(BufReader::new(stream), sender));
    }
    receiver
}

/// Signals the command's whole process group (it leads it); a group already gone is fine.
fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    if let Err(error) = kill_process_group(pid, signal) {
        tracing::debug!(%error, ?signal, "process group already gone");
    }
}

/// SIGTERM to the group, SIGKILL after the grace period; returns once the command exited.
async fn terminate(child: &mut Child, pid: Option<u32>, grace: Duration) {
    signal_group(pid, Signal::TERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "command ignored SIGTERM, killing it"
        );
        signal_group(pid, Signal::KILL);
        let _ = child.wait().await;
    }
}

/// Runs the command to its end and builds the trial's outcome.
///
/// # Errors
/// A [`TrialFailure`] with the exit status and the last lines of stderr, or the reason it was
/// stopped (no epoch for too long, a broken epoch line).
pub async fn drive(
    mut launch: Launch<'_>,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
    stop_requested: &dyn Fn() -> bool,
) -> Result<TrainOutcome, TrialFailure> {
    let mut child = match spawn(&launch) {
        Ok(child) => child,
        Err(failure) => {
            launch.metrics_file.remove();
            return Err(failure);
        }
    };
    let pid = child.id();
    let mut stdout = pipe(child.stdout.take());
    let mut stderr = pipe(child.stderr.take());
    let mut file = std::mem::take(&mut launch.metrics_file);
    let reads_file = launch.spec.metrics_source == MetricsSource::File;
    let now = Instant::now();
    let mut progress = Progress {
        launch: &launch,
        started: now,
        last_epoch_at: now,
        epochs: 0,
        last_value: f64::NAN,
        best: BestEpoch::default(),
        stderr_tail: VecDeque::new(),
    };
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    let end = loop {
        let mut lines = Vec::new();
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => End::Exited(status),
                Err(error) => End::Failed(format!("failed to wait for command '{}': {error}", launch.spec.name)),
            },
            Some(line) = stdout.recv() => if reads_file {
                tracing::debug!(command = %launch.spec.name, line, "command output");
            } else {
                lines.push(line);
            },
            Some(line) = stderr.recv() => progress.stderr(line),
            _ = poll.tick() => {
                if stop_requested() {
                    break End::Stopped;
                }
                if progress.last_epoch_at.elapsed() > launch.spec.epoch_timeout {
                    break End::Failed(format!(
                        "command '{}' printed no epoch for {} s and was stopped",
                        launch.spec.name,
                        launch.spec.epoch_timeout.as_secs_f64()
                    ));
                }
                if reads_file {
                    lines = file.new_lines();
                }
            }
        }
        if let Some(end) = lines.iter().find_map(|line| progress.line(line, on_epoch)) {
            break end;
        }
    };
    let end = match end {
        End::Exited(status) => {
            // The command is gone; its output may not all have been read yet.
            let drained = drain(
                &mut stdout,
                &mut stderr,
                &mut progress,
                reads_file,
                &mut file,
            )
            .await;
            progress.after_exit(status, &drained, on_epoch)
        }
        other => {
            terminate(&mut child, pid, launch.spec.stop_grace).await;
            other
        }
    };
    // Children the command left behind in its group go with it.
    signal_group(pid, Signal::KILL);
    let outcome = progress.outcome(end);
    file.remove();
    outcome
}

/// The epoch lines still in the pipes (or the metrics file) after the command exited; stderr
/// goes to the tail. Waits at most [`DRAIN_TIMEOUT`] for pipes that children hold open.
async fn drain(
    stdout: &mut UnboundedReceiver<String>,
    stderr: &mut UnboundedReceiver<String>,
    progress: &mut Progress<'_>,
    reads_file: bool,
    file: &mut MetricsFile,
) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let (mut stdout_open, mut stderr_open) = (true, true);
    while stdout_open || stderr_open {
        tokio::select! {
            line = stdout.recv(), if stdout_open => match line {
                Some(line) if !reads_file => lines.push(line),
                Some(_) => {}
                None => stdout_open = false,
            },
            line = stderr.recv(), if stderr_open => match line {
                Some(line) => progress.stderr(line),
                None => stderr_open = false,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    if reads_file {
        lines = file.new_lines();
    }
    lines
}
