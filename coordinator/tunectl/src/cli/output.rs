//! How `tunectl` prints experiments and trials: aligned text, CSV or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use proto::v1 as pb;
use serde_json::json;

use super::numbers;

/// `--format` of `tunectl trials`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// A JSON array.
    Json,
}

/// A parameter value for people: integers and categories as they are, floats with
/// [`numbers::DIGITS`] significant digits.
pub fn value_text(value: &pb::ParameterValue) -> String {
    use pb::parameter_value::Kind;
    match &value.kind {
        Some(Kind::FloatValue(v)) => numbers::significant(*v, numbers::DIGITS),
        _ => value_exact(value),
    }
}

/// A parameter value that reads back as the same value (floats in shortest round-trip form).
pub fn value_exact(value: &pb::ParameterValue) -> String {
    use pb::parameter_value::Kind;
    match &value.kind {
        Some(Kind::IntValue(v)) => v.to_string(),
        Some(Kind::FloatValue(v)) => numbers::exact(*v),
        Some(Kind::CategoricalValue(v)) => v.clone(),
        None => String::new(),
    }
}

fn value_json(value: &pb::ParameterValue) -> serde_json::Value {
    use pb::parameter_value::Kind;
    match &value.kind {
        Some(Kind::IntValue(v)) => json!(v),
        Some(Kind::FloatValue(v)) => json!(v),
        Some(Kind::CategoricalValue(v)) => json!(v),
        None => serde_json::Value::Null,
    }
}

/// A state enum's name in lowercase (`EXPERIMENT_STATE_RUNNING` → `running`).
fn short_state(name: &str) -> String {
    name.trim_start_matches("EXPERIMENT_STATE_")
        .trim_start_matches("TRIAL_STATE_")
        .to_ascii_lowercase()
}

/// The trial state's label.
pub fn trial_state(trial: &pb::Trial) -> String {
    short_state(trial.state().as_str_name())
}

/// The experiment state's label.
pub fn experiment_state(experiment: &pb::Experiment) -> String {
    short_state(experiment.state().as_str_name())
}

fn optional(value: Option<f64>) -> String {
    value
        .map(|v| numbers::significant(v, numbers::DIGITS))
        .unwrap_or_else(|| "-".into())
}

fn strategy_name(spec: &pb::ExperimentSpec) -> String {
    spec.strategy()
        .as_str_name()
        .trim_start_matches("STRATEGY_")
        .to_ascii_lowercase()
}

/// Trials of an experiment that ended: succeeded, failed or stopped early.
/// Imported trials (all finished) are not the experiment's own, so they are left out.
pub fn trials_done(e: &pb::Experiment) -> u32 {
    (e.trials_succeeded + e.trials_failed + e.trials_early_stopped)
        .saturating_sub(e.trials_imported)
}

/// Whether an experiment did any work (so a $0 cost means no price was known).
fn experiment_ran(e: &pb::Experiment) -> bool {
    e.epochs_reported > 0 || e.device_seconds > 0.0
}

/// The `tunectl list` table: id, name, strategy, study, state, trials done of the budget and
/// the best value, one experiment a row.
pub fn experiments_table(experiments: &[pb::Experiment]) -> String {
    let header = [
        "id",
        "name",
        "strategy",
        "study",
        "state",
        "done/budget",
        "best",
    ];
    let rows: Vec<Vec<String>> = experiments
        .iter()
        .map(|e| {
            let spec = e.spec.clone().unwrap_or_default();
            vec![
                e.id.clone(),
                spec.name.clone(),
                strategy_name(&spec),
                if spec.study.is_empty() {
                    "-".to_string()
                } else {
                    spec.study.clone()
                },
                experiment_state(e),
                format!("{}/{}", trials_done(e), spec.budget_trials),
                optional(e.best_value),
            ]
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    aligned(&header, &rows)
}

/// Rows under a header, each column padded to its widest cell.
fn aligned(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// The multi-line `tunectl status` report.
pub fn experiment_status(e: &pb::Experiment) -> String {
    let spec = e.spec.clone().unwrap_or_default();
    let mut out = String::new();
    let rows = [
        ("id", e.id.clone()),
        ("name", spec.name.clone()),
        ("state", experiment_state(e)),
        (
            "metric",
            format!("{} ({})", spec.metric, short_dir(spec.direction())),
        ),
        ("strategy", strategy_name(&spec)),
        (
            "trials",
            format!(
                "{} created of {} budget, {} running",
                e.trials_created.saturating_sub(e.trials_imported),
                spec.budget_trials,
                e.trials_running
            ),
        ),
        ("succeeded", e.trials_succeeded.to_string()),
        ("failed", e.trials_failed.to_string()),
        ("early stopped", e.trials_early_stopped.to_string()),
        (
            "best",
            format!(
                "{} (trial {})",
                optional(e.best_value),
                e.best_trial_id.clone().unwrap_or_else(|| "-".into())
            ),
        ),
        ("epochs", e.epochs_reported.to_string()),
        (
            "cost",
            numbers::dollars_with_hint(e.cost_dollars, experiment_ran(e)),
        ),
        ("device seconds", format!("{:.1}", e.device_seconds)),
        ("seed", e.seed.to_string()),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "{key:>15}: {value}");
    }
    if e.trials_imported > 0 {
        let _ = writeln!(
            out,
            "{:>15}: {} (outside the budget)",
            "imported", e.trials_imported
        );
    }
    if e.trials_queued > 0 {
        let _ = writeln!(out, "{:>15}: {} to run first", "queued", e.trials_queued);
    }
    if !e.failure_reason.is_empty() {
        let _ = writeln!(out, "{:>15}: {}", "failed because", e.failure_reason);
    }
    if e.state() == pb::ExperimentState::Paused {
        let _ = writeln!(out, "{:>15}: {}", "paused because", e.paused_reason);
        let _ = writeln!(
            out,
            "{:>15}: fix the cause, then `tunectl resume {}`",
            "to continue", e.id
        );
    }
    out
}

/// The best trial's extra metrics (its `test_accuracy`), one line each under `tunectl status`'s
/// `best` line; empty when it reported none.
pub fn best_trial_metrics(trial: &pb::Trial) -> String {
    let mut names: Vec<&String> = trial.metrics.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let note = if name == "test_accuracy" {
            " (best trial's final model on the test file; not used for selection)"
        } else {
            " (best trial)"
        };
        let label = format!("best {}", name.replace('_', " "));
        let _ = writeln!(
            out,
            "{label:>15}: {}{note}",
            optional(Some(trial.metrics[name]))
        );
    }
    out
}

fn short_dir(direction: pb::Direction) -> &'static str {
    match direction {
        pb::Direction::Maximize => "maximize",
        pb::Direction::Minimize => "minimize",
        pb::Direction::Unspecified => "unspecified",
    }
}

fn param_names(trials: &[pb::Trial]) -> Vec<String> {
    let names: BTreeSet<&String> = trials.iter().flat_map(|t| t.params.keys()).collect();
    names.into_iter().cloned().collect()
}

/// Trials in the chosen format.
pub fn trials(trials: &[pb::Trial], format: Format) -> String {
    match format {
        Format::Table => trials_table(trials),
        Format::Csv => trials_csv(trials),
        Format::Json => trials_json(trials),
    }
}

/// Whether a trial did work, priced by an agent without an instance type.
fn trial_unpriced(t: &pb::Trial) -> bool {
    (t.epochs_run > 0 || t.wall_seconds > 0.0) && t.instance_type.is_empty()
}

/// A trial's cost, `None` when it is $0 because its agent had no price.
fn trial_cost(t: &pb::Trial) -> Option<f64> {
    numbers::cost_known(t.cost_dollars, trial_unpriced(t)).then_some(t.cost_dollars)
}

/// The columns every trial has; `epochs_run` is not called `epochs`, the usual name of the
/// parameter.
const HEADER: [&str; 8] = [
    "number",
    "id",
    "state",
    "value",
    "attempts",
    "epochs_run",
    "wall_seconds",
    "cost_dollars",
];

/// The parameters' column names: a parameter named like a fixed column is `param.NAME`.
fn header(names: &[String]) -> Vec<String> {
    let params = names.iter().map(|name| {
        if HEADER.contains(&name.as_str()) {
            format!("param.{name}")
        } else {
            name.clone()
        }
    });
    HEADER
        .iter()
        .map(|h| (*h).to_string())
        .chain(params)
        .collect()
}

/// A trial's cells: in shortest round-trip form when `exact` (CSV), else with significant digits.
fn trial_cells(t: &pb::Trial, names: &[String], exact: bool) -> Vec<String> {
    let number = |v: f64| {
        if exact {
            numbers::exact(v)
        } else {
            numbers::significant(v, numbers::DIGITS)
        }
    };
    let cost = match trial_cost(t) {
        Some(cost) => number(cost),
        None if exact => String::new(),
        None => "unknown".to_string(),
    };
    let mut cells = vec![
        t.number.to_string(),
        t.id.clone(),
        trial_state(t),
        t.value
            .map(number)
            .unwrap_or_else(|| if exact { String::new() } else { "-".into() }),
        t.attempts.to_string(),
        t.epochs_run.to_string(),
        number(t.wall_seconds),
        cost,
    ];
    let param = |value: &pb::ParameterValue| {
        if exact {
            value_exact(value)
        } else {
            value_text(value)
        }
    };
    cells.extend(
        names
            .iter()
            .map(|n| t.params.get(n).map(param).unwrap_or_default()),
    );
    cells
}

fn trials_table(trials: &[pb::Trial]) -> String {
    let names = param_names(trials);
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|t| trial_cells(t, &names, false))
        .collect();
    let mut out = aligned(&header(&names), &rows);
    if trials.iter().any(|t| trial_cost(t).is_none()) {
        let _ = writeln!(out, "cost unknown: {}", numbers::PRICE_HINT);
    }
    for t in trials
        .iter()
        .filter(|t| t.state() == pb::TrialState::Failed)
    {
        let _ = writeln!(
            out,
            "trial {} failed: {}",
            t.number,
            reason_line(&t.failure_reason)
        );
    }
    out
}

/// Characters of a trial's failure reason a table shows.
pub const REASON_CHARS: usize = 240;

/// A trial's failure reason on one line, cut to [`REASON_CHARS`] (with `…`); "no reason given"
/// when empty.
pub fn reason_line(reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        return "no reason given".to_string();
    }
    let mut line: String = reason
        .chars()
        .take(REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.chars().count() > REASON_CHARS {
        line.push('…');
    }
    line
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

fn csv_line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// CSV with a header; an unknown value or cost is an empty cell.
fn trials_csv(trials: &[pb::Trial]) -> String {
    let names = param_names(trials);
    let mut out = String::new();
    let _ = writeln!(out, "{}", csv_line(&header(&names)));
    for t in trials {
        let _ = writeln!(out, "{}", csv_line(&trial_cells(t, &names, true)));
    }
    out
}

fn trials_json(trials: &[pb::Trial]) -> String {
    let rows: Vec<serde_json::Value> = trials
        .iter()
        .map(|t| {
            let params: serde_json::Map<String, serde_json::Value> =
                t.params.iter().map(|(k, v)| (k.clone(), value_json(v))).collect();
            let epochs: Vec<serde_json::Value> = t
                .epochs
                .iter()
                .map(|e| json!({"epoch": e.epoch, "value": e.value, "train_loss": e.train_loss,
                                "train_accuracy": e.train_accuracy, "epoch_seconds": e.epoch_seconds}))
                .collect();
            json!({
                "id": t.id, "number": t.number, "state": trial_state(t), "value": t.value,
                "attempts": t.attempts, "agent_id": t.agent_id, "params": params, "epochs_run": t.epochs_run,
                "best_epoch": t.best_epoch, "wall_seconds": t.wall_seconds, "device_seconds": t.device_seconds,
                "cost_dollars": trial_cost(t), "failure_reason": t.failure_reason,
                "instance_type": t.instance_type, "epochs": epochs,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).expect("json values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
