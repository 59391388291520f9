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
    out
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

    #[test]
    fn a_paused_experiment_says_why_and_how_to_continue() {
        let paused = pb::Experiment {
            id: "exp-1".into(),
            state: pb::ExperimentState::Paused as i32,
            paused_reason: "3 trials in a row failed with the same reason: no such file".into(),
            ..pb::Experiment::default()
        };
        let status = super::experiment_status(&paused);
        assert!(status.contains("state: paused"), "{status}");
        assert!(
            status.contains(
                "paused because: 3 trials in a row failed with the same reason: no such file"
            ),
            "{status}"
        );
        assert!(status.contains("`tunectl resume exp-1`"), "{status}");
        let running = super::experiment_status(&pb::Experiment::default());
        assert!(!running.contains("paused because"), "{running}");
    }

    fn float(v: f64) -> pb::ParameterValue {
        pb::ParameterValue {
            kind: Some(pb::parameter_value::Kind::FloatValue(v)),
        }
    }

    fn int(v: i64) -> pb::ParameterValue {
        pb::ParameterValue {
            kind: Some(pb::parameter_value::Kind::IntValue(v)),
        }
    }

    /// A finished trial at learning rate 1e-8 and 3 epochs, run by an agent without a price.
    fn tiny_learning_rate() -> pb::Trial {
        pb::Trial {
            id: "trial-2".into(),
            number: 1,
            params: [
                ("learning_rate".to_string(), float(1e-8)),
                ("epochs".to_string(), int(3)),
                ("value".to_string(), float(0.25)),
            ]
            .into(),
            state: pb::TrialState::Succeeded as i32,
            value: Some(0.773_456_789),
            epochs_run: 2,
            wall_seconds: 12.345_678,
            ..pb::Trial::default()
        }
    }

    #[test]
    fn csv_and_json_numbers_read_back_exactly_and_the_table_rounds() {
        let trials = [tiny_learning_rate()];
        let csv = super::trials(&trials, Format::Csv);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let row: Vec<&str> = lines.next().expect("row").split(',').collect();
        let cell = |name: &str| {
            let index = header.iter().position(|h| *h == name);
            row[index.unwrap_or_else(|| panic!("no column {name} in {header:?}"))]
        };
        assert_eq!(cell("learning_rate"), "1e-8");
        assert_eq!(cell("value"), "0.773456789");
        assert_eq!(cell("wall_seconds"), "12.345678");
        let json = super::trials(&trials, Format::Json);
        assert!(json.contains("\"learning_rate\": 1e-8"), "{json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid json");
        assert_eq!(parsed[0]["params"]["learning_rate"], json!(1e-8));
        let table = super::trials(&trials, Format::Table);
        let row = table.lines().nth(1).expect("a row");
        for expected in ["1e-8", "0.7735", "12.35"] {
            assert!(row.contains(expected), "{expected} missing from {row}");
        }
        assert!(!row.contains("0.000000"), "{row}");
    }

    #[test]
    fn epochs_run_and_a_parameter_called_epochs_are_different_columns() {
        let trials = [tiny_learning_rate()];
        for format in [Format::Table, Format::Csv] {
            let text = super::trials(&trials, format);
            let header: Vec<&str> = text
                .lines()
                .next()
                .expect("header")
                .split([' ', ','])
                .filter(|h| !h.is_empty())
                .collect();
            let unique: BTreeSet<&&str> = header.iter().collect();
            assert_eq!(unique.len(), header.len(), "duplicate column in {header:?}");
            for name in ["epochs_run", "epochs", "value", "param.value"] {
                assert!(header.contains(&name), "{name} missing from {header:?}");
            }
        }
    }

    #[test]
    fn a_cost_no_agent_priced_is_unknown_not_zero() {
        let unpriced = tiny_learning_rate();
        let table = super::trials(std::slice::from_ref(&unpriced), Format::Table);
        assert!(
            table.lines().nth(1).expect("row").contains("unknown"),
            "{table}"
        );
        assert!(table.contains("--instance-type"), "{table}");
        let csv = super::trials(std::slice::from_ref(&unpriced), Format::Csv);
        assert!(!csv.contains("0.0000"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&super::trials(
            std::slice::from_ref(&unpriced),
            Format::Json,
        ))
        .expect("valid json");
        assert_eq!(json[0]["cost_dollars"], serde_json::Value::Null);
        let priced = pb::Trial {
            cost_dollars: 0.012_345,
            instance_type: "m4.4xlarge".into(),
            ..unpriced
        };
        let table = super::trials(&[priced], Format::Table);
        assert!(
            table.contains("0.01235") && !table.contains("unknown"),
            "{table}"
        );

        let experiment = pb::Experiment {
            epochs_reported: 4,
            device_seconds: 2.0,
            ..pb::Experiment::default()
        };
        let status = super::experiment_status(&experiment);
        let cost = status
            .lines()
            .find(|l| l.contains("cost:"))
            .expect("cost row");
        assert!(
            cost.contains("unknown (") && cost.contains("--price-per-hour"),
            "{cost}"
        );
        assert!(!status.contains("$0"), "{status}");
    }

    #[test]
    fn list_shows_name_strategy_study_state_and_trials_done_of_the_budget() {
        let experiment = pb::Experiment {
            id: "exp-1".into(),
            spec: Some(pb::ExperimentSpec {
                name: "mr-basic".into(),
                strategy: pb::Strategy::Random as i32,
                study: "study-1".into(),
                budget_trials: 10,
                ..pb::ExperimentSpec::default()
            }),
            state: pb::ExperimentState::Running as i32,
            trials_created: 12,
            trials_succeeded: 3,
            trials_failed: 1,
            trials_early_stopped: 2,
            trials_running: 4,
            best_value: Some(0.771_234),
            ..pb::Experiment::default()
        };
        let table = super::experiments_table(&[experiment]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "id",
                "name",
                "strategy",
                "study",
                "state",
                "done/budget",
                "best"
            ]
        );
        let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(
            row,
            [
                "exp-1", "mr-basic", "random", "study-1", "running", "6/10", "0.7712"
            ]
        );
    }
}
