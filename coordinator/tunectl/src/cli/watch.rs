//! `tunectl watch`: the experiment's progress (trials done of budget, running, best so far)
//! until it ends, then its status. On a terminal the progress is a live bar on stderr; when
//! stdout is not a terminal (a pipe, a log file, CI) it is one plain line on stdout per change,
//! with no bar and no escape codes.
//!
//! A coordinator that does not answer (it restarts, or the network drops) is polled again until
//! it answers: for up to `--connect-secs` before its first answer (a coordinator still starting,
//! [`super::connect_lazily`]; a wrong URL fails in that time, not in ten minutes), and for up to
//! `--reconnect-secs` once it has answered; notes on stderr say when it went away and came back.
//! A refusal (an unknown experiment, a wrong token) ends the watch at once.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use proto::v1 as pb;

use super::{Client, StatusError, get_experiment, list_trials, numbers, output};

/// How often to poll, and how long to wait for a coordinator that does not answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    interval: Duration,
    connect: Duration,
    reconnect: Duration,
}

impl Timing {
    /// Polls every `interval_secs` (0.05 to 3,600); waits up to `connect_secs` for the
    /// coordinator's first answer and up to `reconnect_secs` for one that stopped answering
    /// (each 0 to a week).
    ///
    /// # Errors
    /// When one is out of range or not a number.
    pub fn new(
        interval_secs: f64,
        connect_secs: f64,
        reconnect_secs: f64,
    ) -> anyhow::Result<Timing> {
        if !(0.05..=3600.0).contains(&interval_secs) {
            anyhow::bail!("--interval-secs must be from 0.05 to 3600 (got {interval_secs})");
        }
        for (flag, secs) in [
            ("--connect-secs", connect_secs),
            ("--reconnect-secs", reconnect_secs),
        ] {
            if !(0.0..=604_800.0).contains(&secs) {
                anyhow::bail!("{flag} must be from 0 to 604800 (got {secs})");
            }
        }
        Ok(Timing {
            interval: Duration::from_secs_f64(interval_secs),
            connect: Duration::from_secs_f64(connect_secs),
            reconnect: Duration::from_secs_f64(reconnect_secs),
        })
    }
}

/// Whether a failed poll means the coordinator is away (and may come back) rather than that it
/// refused: it could not be reached, or it was shutting down or overloaded.
fn is_transient(error: &anyhow::Error) -> bool {
    matches!(
        StatusError::code(error),
        Some(tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
    )
}

/// When the current outage began, so the watch knows how long it has waited, and whether the
/// coordinator ever answered (which window applies).
#[derive(Debug, Default)]
struct Outage {
    since: Option<std::time::Instant>,
    answered_once: bool,
}

impl Outage {
    /// Handles a failed poll: `Ok` with a note to show when the watch should poll again, else
    /// the error (a refusal, or an outage past the timing's window).
    fn failed(
        &mut self,
        error: anyhow::Error,
        now: std::time::Instant,
        timing: &Timing,
    ) -> anyhow::Result<Option<String>> {
        if !is_transient(&error) {
            return Err(error);
        }
        let (limit, flag) = if self.answered_once {
            (timing.reconnect, "--reconnect-secs")
        } else {
            (timing.connect, "--connect-secs")
        };
        let first = self.since.is_none();
        let since = *self.since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited > limit {
            let never = if self.answered_once {
                ""
            } else {
                " (it never answered: is the URL right?)"
            };
            return Err(error.context(format!(
                "the coordinator did not answer for {:.0} s ({flag}){never}",
                waited.as_secs_f64()
            )));
        }
        Ok(first.then(|| {
            format!(
                "coordinator not answering ({error}); polling again for up to {:.0} s",
                limit.as_secs_f64()
            )
        }))
    }

    /// Handles a poll that was answered: a note when it ends an outage.
    fn answered(&mut self) -> Option<String> {
        self.answered_once = true;
        self.since
            .take()
            .map(|_| "coordinator answering again".to_string())
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// A live bar on stderr.
    Bar,
    /// One plain line on the output per change.
    Lines,
}

impl Display {
    /// [`Display::Bar`] when stdout is a terminal, else [`Display::Lines`].
    pub fn for_stdout() -> Self {
        if std::io::stdout().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }
}

fn trials_done(trials: &[pb::Trial]) -> u64 {
    let terminal = [
        pb::TrialState::Succeeded,
        pb::TrialState::Failed,
        pb::TrialState::Cancelled,
        pb::TrialState::EarlyStopped,
    ];
    trials
        .iter()
        .filter(|t| terminal.contains(&t.state()))
        .count() as u64
}

fn best_text(experiment: &pb::Experiment) -> String {
    experiment.best_value.map_or_else(
        || "-".to_string(),
        |v| numbers::significant(v, numbers::DIGITS),
    )
}

/// The plain progress line: state, trials done of the budget, running, failed, best.
pub fn progress_line(experiment: &pb::Experiment, done: u64) -> String {
    let budget = experiment.spec.as_ref().map_or(0, |s| s.budget_trials);
    format!(
        "{}  {done}/{budget} trials done  {} running  {} failed  best {}",
        output::experiment_state(experiment),
        experiment.trials_running,
        experiment.trials_failed,
        best_text(experiment)
    )
}

/// Remembers the last line printed, so a line is written only when something changed.
#[derive(Debug, Default)]
pub struct LinePrinter {
    last: Option<String>,
}

impl LinePrinter {
    /// The line to print for this poll, or `None` when it says what the last one said.
    pub fn update(&mut self, experiment: &pb::Experiment, done: u64) -> Option<String> {
        let line = progress_line(experiment, done);
        if self.last.as_ref() == Some(&line) {
            return None;
        }
        self.last = Some(line.clone());
        Some(line)
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} trials  {msg}",
        )
        .expect("the progress template is valid"),
    );
    bar
}

/// One poll: the experiment and its trials done.
async fn poll(client: &mut Client, id: &str) -> anyhow::Result<(pb::Experiment, u64)> {
    let experiment = get_experiment(client, id).await?;
    let trials = list_trials(client, id, false).await?;
    Ok((experiment, trials_done(&trials)))
}

/// Polls the experiment every interval and shows its progress until it is no longer running,
/// then writes its status to `out`. A coordinator that does not answer is polled again for up
/// to the timing's reconnect window.
///
/// # Errors
/// When a request is refused, the coordinator stays away past the window, a write fails, or
/// the experiment was paused (its status, with the reason, is written first).
pub async fn watch(
    client: &mut Client,
    id: &str,
    timing: Timing,
    display: Display,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let bar = (display == Display::Bar).then(progress_bar);
    let note = |text: String| match &bar {
        Some(bar) => bar.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    };
    let mut lines = LinePrinter::default();
    let mut outage = Outage::default();
    loop {
        let (experiment, done) = match poll(client, id).await {
            Ok(polled) => {
                if let Some(text) = outage.answered() {
                    note(text);
                }
                polled
            }
            Err(error) => {
                let now = std::time::Instant::now();
                if let Some(text) = outage.failed(error, now, &timing)? {
                    note(text);
                }
                tokio::time::sleep(timing.interval).await;
                continue;
            }
        };
        match &bar {
            Some(bar) => {
                let budget = experiment
                    .spec
                    .as_ref()
                    .map_or(0, |s| u64::from(s.budget_trials));
                bar.set_length(budget);
                bar.set_position(done);
                bar.set_message(format!(
                    "best {}  running {}",
                    best_text(&experiment),
                    experiment.trials_running
                ));
            }
            None => {
                if let Some(line) = lines.update(&experiment, done) {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
            }
        }
        if experiment.state() != pb::ExperimentState::Running {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            write!(out, "{}", output::experiment_status(&experiment))?;
            if experiment.state() == pb::ExperimentState::Paused {
                // Nothing happens until someone resumes it: say so, and fail scripts.
                anyhow::bail!("experiment {id} is paused: {}", experiment.paused_reason);
            }
            return Ok(());
        }
        tokio::time::sleep(timing.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(running: u32, best: Option<f64>, state: pb::ExperimentState) -> pb::Experiment {
        pb::Experiment {
            spec: Some(pb::ExperimentSpec {
                budget_trials: 10,
                ..pb::ExperimentSpec::default()
            }),
            state: state as i32,
            trials_running: running,
            best_value: best,
            ..pb::Experiment::default()
        }
    }

    #[test]
    fn plain_lines_come_once_per_change_without_escape_codes() {
        let mut printer = LinePrinter::default();
        let running = pb::ExperimentState::Running;
        let first = printer
            .update(&experiment(2, None, running), 0)
            .expect("the first poll prints");
        assert_eq!(
            first,
            "running  0/10 trials done  2 running  0 failed  best -"
        );
        assert_eq!(printer.update(&experiment(2, None, running), 0), None);
        let progressed = printer
            .update(&experiment(2, Some(0.771_234), running), 1)
            .expect("a change prints");
        assert!(progressed.contains("1/10") && progressed.contains("best 0.7712"));
        let ended = printer
            .update(
                &experiment(0, Some(0.771_234), pb::ExperimentState::Completed),
                10,
            )
            .expect("the end prints");
        assert!(ended.starts_with("completed  10/10"), "{ended}");
        for line in [first, progressed, ended] {
            assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line:?}");
        }
    }

    fn status(code: tonic::Code) -> anyhow::Error {
        super::super::status_error(tonic::Status::new(code, "down"))
    }

    #[test]
    fn an_away_coordinator_is_polled_again_until_the_window_ends() {
        let timing = Timing::new(1.0, 10.0, 60.0).expect("valid");
        let start = std::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let unavailable = || status(tonic::Code::Unavailable);

        // Never answered: the connect window, and an error that asks about the URL.
        let mut never = Outage::default();
        let first = never
            .failed(unavailable(), start, &timing)
            .expect("polls again");
        assert!(
            first
                .is_some_and(|n| n.contains("not answering (down (Unavailable))")
                    && n.contains("up to 10 s")),
            "the first failure says so"
        );
        let gave_up = never
            .failed(unavailable(), at(11), &timing)
            .expect_err("past the connect window");
        assert!(
            format!("{gave_up:#}").starts_with(
                "the coordinator did not answer for 11 s (--connect-secs) (it never answered: \
                 is the URL right?)"
            ),
            "{gave_up:#}"
        );

        // Answered once: later outages get the reconnect window, each with its own note.
        let mut outage = Outage::default();
        assert!(
            outage
                .failed(unavailable(), start, &timing)
                .expect("polls")
                .is_some()
        );
        assert_eq!(
            outage.answered().as_deref(),
            Some("coordinator answering again")
        );
        assert_eq!(outage.answered(), None, "nothing to say when it never left");
        let again = outage
            .failed(unavailable(), at(100), &timing)
            .expect("new window");
        assert!(
            again.is_some_and(|n| n.contains("up to 60 s")),
            "a note a new outage"
        );
        let later = outage
            .failed(status(tonic::Code::DeadlineExceeded), at(130), &timing)
            .expect("still within the window");
        assert_eq!(later, None, "one note an outage");
        let past = outage
            .failed(unavailable(), at(161), &timing)
            .expect_err("past the window");
        assert!(
            format!("{past:#}")
                .starts_with("the coordinator did not answer for 61 s (--reconnect-secs)"),
            "{past:#}"
        );
    }

    #[test]
    fn a_refusal_ends_the_watch_at_once() {
        let mut outage = Outage::default();
        for code in [
            tonic::Code::NotFound,
            tonic::Code::Unauthenticated,
            tonic::Code::Internal,
        ] {
            let timing = Timing::new(1.0, 600.0, 600.0).expect("valid");
            let err = outage
                .failed(status(code), std::time::Instant::now(), &timing)
                .expect_err("refused");
            assert_eq!(StatusError::code(&err), Some(code));
        }
        assert!(Timing::new(0.0, 10.0, 10.0).is_err() && Timing::new(1.0, 10.0, -1.0).is_err());
        assert!(
            Timing::new(f64::NAN, 10.0, 10.0).is_err() && Timing::new(1.0, -1.0, 10.0).is_err()
        );
    }
}
