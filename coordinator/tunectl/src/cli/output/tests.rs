//! What tunectl prints: table, CSV and JSON agree, numbers read back exactly, failed and paused
//! experiments say why, and an unpriced cost is unknown rather than zero.

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

#[test]
fn the_trials_table_says_why_each_failed_trial_failed_on_one_line() {
    let failed = |number: u32, reason: &str| pb::Trial {
        number,
        state: pb::TrialState::Failed as i32,
        failure_reason: reason.to_string(),
        ..pb::Trial::default()
    };
    let long = format!("first line\nsecond {}", "y".repeat(500));
    let trials = [
        tiny_learning_rate(),
        failed(1, "command 'fit' exited with status 3"),
        failed(2, ""),
        failed(3, &long),
    ];
    let table = super::trials(&trials, Format::Table);
    let notes: Vec<&str> = table.lines().filter(|l| l.starts_with("trial ")).collect();
    assert_eq!(notes.len(), 3, "{table}");
    assert_eq!(
        notes[0],
        "trial 1 failed: command 'fit' exited with status 3"
    );
    assert_eq!(notes[1], "trial 2 failed: no reason given");
    assert!(
        notes[2].starts_with("trial 3 failed: first line second y") && notes[2].ends_with('…'),
        "{}",
        notes[2]
    );
    assert_eq!(
        super::reason_line(&long).chars().count(),
        super::REASON_CHARS + 1
    );
    let csv = super::trials(&trials, Format::Csv);
    assert!(!csv.contains("failed:"), "the CSV stays a table: {csv}");
}
