//! `tunectl watch`: the experiment's progress (trials done of budget, running, best so far)
//! until it ends, then its status. On a terminal the progress is a live bar on stderr; when
//! stdout is not a terminal (a pipe, a log file, CI) it is one plain line on stdout per change,
//! with no bar and no escape codes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use proto::v1 as pb;

use super::{Client, get_experiment, list_trials, numbers, output};

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

/// Polls the experiment every `interval_secs` and shows its progress until it is no longer
/// running, then writes its status to `out`.
///
/// # Errors
/// When a request or a write fails, or the experiment was paused (its status, with the reason,
/// is written first).
pub async fn watch(
    client: &mut Client,
    id: &str,
    interval_secs: f64,
    display: Display,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(interval_secs.clamp(0.05, 3600.0));
    let bar = (display == Display::Bar).then(progress_bar);
    let mut lines = LinePrinter::default();
    loop {
        let experiment = get_experiment(client, id).await?;
        let trials = list_trials(client, id, false).await?;
        let done = trials_done(&trials);
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
        tokio::time::sleep(interval).await;
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
}
