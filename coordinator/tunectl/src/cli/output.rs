//! How `tunectl` prints experiments and trials: aligned text, CSV or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use proto::v1 as pb;
use serde_json::json;

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

/// A parameter value as text.
pub fn value_text(value: &pb::ParameterValue) -> String {
    use pb::parameter_value::Kind;
    match &value.kind {
        Some(Kind::IntValue(v)) => v.to_string(),
        Some(Kind::FloatValue(v)) => format!("{v:.6}"),
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
        .map(|v| format!("{v:.6}"))
        .unwrap_or_else(|| "-".into())
}

/// One line per experiment for `tunectl list`.
pub fn experiment_line(e: &pb::Experiment) -> String {
    let spec = e.spec.clone().unwrap_or_default();
    format!(
        "{}  {:<9}  {}/{} trials  best {}  {}",
        e.id,
        experiment_state(e),
        e.trials_created,
        spec.budget_trials,
        optional(e.best_value),
        spec.name
    )
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
        (
            "strategy",
            spec.strategy()
                .as_str_name()
                .trim_start_matches("STRATEGY_")
                .to_ascii_lowercase(),
        ),
        (
            "trials",
            format!(
                "{} created of {} budget, {} running",
                e.trials_created, spec.budget_trials, e.trials_running
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
        ("cost", format!("${:.4}", e.cost_dollars)),
        ("device seconds", format!("{:.1}", e.device_seconds)),
        ("seed", e.seed.to_string()),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "{key:>15}: {value}");
    }
    if !e.failure_reason.is_empty() {
        let _ = writeln!(out, "{:>15}: {}", "failed because", e.failure_reason);
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

fn trial_cells(t: &pb::Trial, names: &[String]) -> Vec<String> {
    let mut cells = vec![
        t.number.to_string(),
        t.id.clone(),
        trial_state(t),
        optional(t.value),
        t.attempts.to_string(),
        t.epochs_run.to_string(),
        format!("{:.2}", t.wall_seconds),
        format!("{:.4}", t.cost_dollars),
    ];
    cells.extend(
        names
            .iter()
            .map(|n| t.params.get(n).map(value_text).unwrap_or_default()),
    );
    cells
}

const HEADER: [&str; 8] = [
    "number",
    "id",
    "state",
    "value",
    "attempts",
    "epochs",
    "wall_seconds",
    "cost_dollars",
];

fn trials_table(trials: &[pb::Trial]) -> String {
    let names = param_names(trials);
    let header: Vec<String> = HEADER
        .iter()
        .map(|h| (*h).to_string())
        .chain(names.iter().cloned())
        .collect();
    let rows: Vec<Vec<String>> = trials.iter().map(|t| trial_cells(t, &names)).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

fn trials_csv(trials: &[pb::Trial]) -> String {
    let names = param_names(trials);
    let mut out = String::new();
    let header: Vec<String> = HEADER
        .iter()
        .map(|h| (*h).to_string())
        .chain(names.iter().cloned())
        .collect();
    let _ = writeln!(
        out,
        "{}",
        header
            .iter()
            .map(|c| csv_cell(c))
            .collect::<Vec<_>>()
            .join(",")
    );
    for t in trials {
        let cells = trial_cells(t, &names);
        let _ = writeln!(
            out,
            "{}",
            cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",")
        );
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
                "cost_dollars": t.cost_dollars, "failure_reason": t.failure_reason,
                "instance_type": t.instance_type, "epochs": epochs,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).expect("json values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<pb::Trial> {
        let mut params = std::collections::HashMap::new();
        params.insert(
            "x".to_string(),
            pb::ParameterValue {
                kind: Some(pb::parameter_value::Kind::FloatValue(0.5)),
            },
        );
        params.insert(
            "opt".to_string(),
            pb::ParameterValue {
                kind: Some(pb::parameter_value::Kind::CategoricalValue("a,b".into())),
            },
        );
        vec![pb::Trial {
            id: "trial-1".into(),
            number: 0,
            params,
            state: pb::TrialState::Succeeded as i32,
            value: Some(1.5),
            ..pb::Trial::default()
        }]
    }

    #[test]
    fn formats_agree() {
        let trials = sample();
        let table = super::trials(&trials, Format::Table);
        assert!(table.lines().nth(1).expect("a row").contains("succeeded"));
        let csv = super::trials(&trials, Format::Csv);
        assert!(csv.starts_with("number,id,state,value"));
        assert!(csv.contains("\"a,b\""));
        let parsed: serde_json::Value =
            serde_json::from_str(&super::trials(&trials, Format::Json)).expect("valid json");
        assert_eq!(parsed[0]["params"]["x"], json!(0.5));
        assert_eq!(parsed[0]["state"], json!("succeeded"));
    }

    #[test]
    fn a_failed_experiment_says_why() {
        let failed = pb::Experiment {
            state: pb::ExperimentState::Failed as i32,
            failure_reason: "suggestions failed 3 times in a row: boom".into(),
            ..pb::Experiment::default()
        };
        let status = super::experiment_status(&failed);
        assert!(status.contains("failed because: suggestions failed 3 times in a row: boom"));
        assert!(
            super::experiment_state(&failed).contains("failed"),
            "{status}"
        );
        let running = super::experiment_status(&pb::Experiment::default());
        assert!(!running.contains("failed because"));
    }
}
