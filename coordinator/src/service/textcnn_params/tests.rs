//! The textcnn parameter check: what it refuses names the parameter and its range; what the
//! agent trains with passes; other workloads are not checked.

use super::*;

fn workload(kind: &str, fixed: &[(&str, Value)]) -> Workload {
    Workload {
        kind: kind.into(),
        dataset: "mr".into(),
        fixed_params: fixed
            .iter()
            .map(|(name, value)| ((*name).to_string(), value.clone()))
            .collect(),
        ..Workload::default()
    }
}

fn float(name: &str, low: f64, high: f64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Float {
            low,
            high,
            log: false,
        },
        default: None,
    }
}

fn integer(name: &str, low: i64, high: i64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Int {
            low,
            high,
            log: false,
        },
        default: None,
    }
}

fn refusal(workload: &Workload, params: &[ParamSpec]) -> String {
    match check_textcnn_params(Some(workload), params) {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn the_study_spaces_pass() {
    let textcnn = workload(
        "textcnn",
        &[("epochs", Value::Int(2)), ("embed_dim", Value::Float(16.0))],
    );
    let params = [
        float("learning_rate", 1e-8, 1.0),
        float("dropout", 0.1, 0.9),
        integer("batch_size", 10, 100),
        integer("num_feature_maps", 10, 300),
        integer("filter_size_1", 1, 10),
        integer("centered_rmsprop", 0, 1),
        integer("seed", 0, 1_000_000),
    ];
    check_textcnn_params(Some(&textcnn), &params).unwrap();
}

#[test]
fn an_unknown_name_is_refused_with_the_known_ones() {
    let textcnn = workload("textcnn", &[]);
    let message = refusal(&textcnn, &[float("dropuot", 0.1, 0.9)]);
    assert!(
        message.contains("'dropuot' is not a textcnn parameter"),
        "{message}"
    );
    assert!(
        message.contains("dropout") && message.contains("batch_size"),
        "{message}"
    );
    let message = refusal(&workload("textcnn", &[("lr", Value::Float(0.1))]), &[]);
    assert!(message.contains("fixed_params 'lr'"), "{message}");
}

#[test]
fn ranges_past_the_models_bounds_are_refused() {
    let textcnn = workload("textcnn", &[]);
    for (param, needle) in [
        (integer("batch_size", 0, 100), "from 1 to 4096"),
        (integer("batch_size", 10, 100_000), "from 1 to 4096"),
        (float("dropout", 0.1, 1.0), "from 0 to 0.99"),
        (float("learning_rate", 0.0, 0.1), "above 0 and at most 10"),
        (integer("centered_rmsprop", 0, 2), "from 0 to 1"),
        (integer("seed", -1, 5), "from 0 to"),
    ] {
        let message = refusal(&textcnn, std::slice::from_ref(&param));
        assert!(
            message.contains(&format!("'{}' is searched from", param.name))
                && message.contains(needle),
            "{message}"
        );
    }
}

#[test]
fn whole_number_parameters_refuse_float_searches_and_choices_that_are_not_their_numbers() {
    let textcnn = workload("textcnn", &[]);
    let message = refusal(&textcnn, &[float("batch_size", 10.0, 100.0)]);
    assert!(message.contains("search it as type \"int\""), "{message}");
    let categorical = |name: &str, choices: &[&str]| ParamSpec {
        name: name.into(),
        kind: ParamKind::Categorical {
            choices: choices.iter().map(|c| (*c).to_string()).collect(),
        },
        default: None,
    };
    let message = refusal(&textcnn, &[categorical("dropout", &["0.1", "adam"])]);
    assert!(
        message.contains("the choice 'adam'") && message.contains("type \"float\""),
        "{message}"
    );
    let message = refusal(&textcnn, &[categorical("batch_size", &["32", "2.5"])]);
    assert!(
        message.contains("the choice '2.5'") && message.contains("a whole number"),
        "{message}"
    );
    let message = refusal(&textcnn, &[categorical("batch_size", &["32", "5000"])]);
    assert!(message.contains("the choice '5000'"), "{message}");
    // A categorical of numbers the model takes trains with each number.
    check_textcnn_params(
        Some(&textcnn),
        &[
            categorical("batch_size", &["25", "50", "100"]),
            categorical("dropout", &["0.1", "0.5"]),
        ],
    )
    .expect("numeric choices are accepted");
}

#[test]
fn stepped_searches_are_checked_like_their_kind() {
    let textcnn = workload("textcnn", &[]);
    let stepped = |name: &str, json: &str| -> ParamSpec {
        serde_json::from_str(&format!(r#"{{"name":"{name}",{json}}}"#)).expect("parses")
    };
    check_textcnn_params(
        Some(&textcnn),
        &[
            stepped(
                "batch_size",
                r#""type":"int","low":25,"high":100,"step":25"#,
            ),
            stepped(
                "dropout",
                r#""type":"float","low":0.1,"high":0.5,"step":0.1"#,
            ),
        ],
    )
    .expect("steps the model takes");
    for (name, json, needle) in [
        (
            "batch_size",
            r#""type":"float","low":10,"high":100,"step":2.5"#,
            "search it as type \"int\"",
        ),
        (
            "dropout",
            r#""type":"float","low":0.5,"high":2.0,"step":0.5"#,
            "searched from 0.5 to 2",
        ),
    ] {
        let message = refusal(&textcnn, &[stepped(name, json)]);
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn fixed_values_are_checked_like_searched_ones() {
    for (value, needle) in [
        (Value::Int(0), "is 0"),
        (Value::Float(2.5), "is 2.5"),
        (Value::Categorical("fifty".into()), "is 'fifty'"),
    ] {
        let message = refusal(&workload("textcnn", &[("batch_size", value)]), &[]);
        assert!(
            message.contains("fixed_params 'batch_size'") && message.contains(needle),
            "{message}"
        );
    }
}

#[test]
fn other_workloads_and_none_are_not_checked() {
    let odd = [float("anything", -5.0, 5.0)];
    for kind in ["function", "command", "external"] {
        check_textcnn_params(Some(&workload(kind, &[("x", Value::Int(-3))])), &odd).unwrap();
    }
    check_textcnn_params(None, &odd).unwrap();
}
