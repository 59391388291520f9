//! `tunectl watch`: a live progress bar (trials done of budget, best so far) until the experiment
//! ends. The bar draws on stderr; the final summary goes to stdout.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use proto::v1 as pb;

use super::{Client, get_experiment, list_trials, output};

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

/// Polls the experiment every `interval_secs` and draws its progress until it is no longer running.
///
/// # Errors
/// When a request fails.
pub async fn watch(
    client: &mut Client,
    id: &str,
    interval_secs: f64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(interval_secs.clamp(0.05, 3600.0));
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} trials  {msg}",
        )
        .expect("the progress template is valid"),
    );
    loop {
        let experiment = get_experiment(client, id).await?;
        let trials = list_trials(client, id, false).await?;
        let budget = experiment
            .spec
            .as_ref()
            .map_or(0, |s| u64::from(s.budget_trials));
        bar.set_length(budget);
        bar.set_position(trials_done(&trials));
        let best = experiment
            .best_value
            .map_or_else(|| "-".to_string(), |v| format!("{v:.6}"));
        bar.set_message(format!(
            "best {best}  running {}",
            experiment.trials_running
        ));
        if experiment.state() != pb::ExperimentState::Running {
            bar.finish_and_clear();
            write!(out, "{}", output::experiment_status(&experiment))?;
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}
