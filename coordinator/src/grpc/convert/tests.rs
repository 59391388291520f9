//! Conversions between the wire types and the service's: round trips, and refusals (unknown
//! enum values, oversized specs, unnamed kinds) that name the field with a short echo.

use super::*;

#[test]
fn param_specs_round_trip() {
    let specs: Vec<ParamSpec> = serde_json::from_str(
        r#"[{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,"default":0.0005},
            {"name":"n","type":"int","low":1,"high":8},
            {"name":"opt","type":"categorical","choices":["a","b"],"default":"b"},
            {"name":"units","type":"int","low":32,"high":256,"step":32,"default":64},
            {"name":"dropout","type":"float","low":0.0,"high":0.5,"step":0.1,"default":0.2}]"#,
    )
    .expect("specs parse");
    for spec in &specs {
        assert_eq!(
            &param_spec_from_pb(&param_spec_to_pb(spec)).expect("converts back"),
            spec
        );
    }
}

#[test]
fn a_bad_step_on_the_wire_is_refused_naming_the_parameter() {
    let stepped = |log: bool, step: i64| pb::ParameterSpec {
        name: "units".into(),
        kind: Some(pb::parameter_spec::Kind::Int(pb::IntParam {
            low: 32,
            high: 256,
            log,
            default_value: None,
            step: Some(step),
        })),
    };
    for (spec, needle) in [
        (stepped(true, 32), "cannot be log-scaled"),
        (stepped(false, 0), "above 0"),
        (stepped(false, 500), "wider than the range"),
    ] {
        let error = param_spec_from_pb(&spec).expect_err(needle).to_string();
        assert!(
            error.contains("parameter 'units'") && error.contains(needle),
            "{error}"
        );
    }
    // A step of 1 is a plain int, log scale and all.
    let plain = param_spec_from_pb(&stepped(true, 1)).expect("every integer");
    assert!(
        matches!(plain.kind, ParamKind::Int { log: true, .. }),
        "{plain:?}"
    );
}

#[test]
fn unspecified_direction_is_refused() {
    let err = ExperimentSpec::try_from(pb::ExperimentSpec::default()).expect_err("refused");
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[test]
fn a_spec_naming_no_batch_strategy_gets_q_log_ei_and_a_named_one_keeps_it() {
    let spec = pb::ExperimentSpec {
        direction: pb::Direction::Maximize as i32,
        ..Default::default()
    };
    let unnamed = ExperimentSpec::try_from(spec.clone()).expect("valid");
    assert_eq!(unnamed.batch, BatchStrategy::McQei);
    let named = ExperimentSpec::try_from(pb::ExperimentSpec {
        batch_strategy: pb::BatchStrategy::ClMin as i32,
        ..spec
    })
    .expect("valid");
    assert_eq!(named.batch, BatchStrategy::ClMin);
}

#[test]
fn unknown_enum_values_are_refused_by_name() {
    let valid = pb::ExperimentSpec {
        direction: pb::Direction::Minimize as i32,
        ..Default::default()
    };
    assert!(ExperimentSpec::try_from(valid.clone()).is_ok());
    for (field, spec) in [
        (
            "strategy 99",
            pb::ExperimentSpec {
                strategy: 99,
                ..valid.clone()
            },
        ),
        (
            "batch_strategy 99",
            pb::ExperimentSpec {
                batch_strategy: 99,
                ..valid.clone()
            },
        ),
        (
            "direction 99",
            pb::ExperimentSpec {
                direction: 99,
                ..valid.clone()
            },
        ),
    ] {
        let err = ExperimentSpec::try_from(spec).expect_err("refused");
        assert!(err.to_string().contains(field), "{err}");
    }
    let complete = pb::CompleteTrialRequest {
        outcome: 42,
        ..Default::default()
    };
    let err = Completion::try_from(complete).expect_err("refused");
    assert!(err.to_string().contains("outcome 42"), "{err}");
}

#[test]
fn an_oversized_spec_and_long_names_are_refused_with_a_short_echo() {
    let spec = pb::ExperimentSpec {
        direction: pb::Direction::Minimize as i32,
        name: "n".repeat(100_000),
        ..Default::default()
    };
    let err = ExperimentSpec::try_from(spec).expect_err("refused");
    assert!(err.to_string().contains("65536"), "{err}");
    let param = pb::ParameterSpec {
        name: "p".repeat(1_000_000),
        kind: None,
    };
    let err = param_spec_from_pb(&param).expect_err("refused");
    assert!(err.to_string().len() < 300, "{}", err.to_string().len());
}

#[test]
fn a_long_failure_reason_is_cut() {
    let complete = pb::CompleteTrialRequest {
        outcome: pb::TrialOutcome::Failed as i32,
        failure_reason: "x".repeat(1_000_000),
        ..Default::default()
    };
    let completion = Completion::try_from(complete).expect("accepted");
    assert_eq!(
        completion.failure_reason.len(),
        limits::MAX_FAILURE_REASON_BYTES
    );
}

#[test]
fn empty_parameter_kind_names_the_parameter() {
    let spec = pb::ParameterSpec {
        name: "lr".into(),
        kind: None,
    };
    let err = param_spec_from_pb(&spec).expect_err("refused");
    assert!(err.to_string().contains("'lr'"));
}
