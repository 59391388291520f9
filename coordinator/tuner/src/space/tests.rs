//! Tests of the search space: validation, encoding and decoding, serde.

use super::*;

fn spec(json: &str) -> ParamSpec {
    serde_json::from_str(json).expect("test spec parses")
}

fn sample_space() -> Space {
    Space::new(vec![
        spec(r#"{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,"default":0.0005}"#),
        spec(r#"{"name":"n","type":"int","low":1,"high":8,"default":3}"#),
        spec(r#"{"name":"m","type":"int","low":1,"high":1000,"log":true,"default":10}"#),
        spec(r#"{"name":"p","type":"float","low":-1,"high":1,"default":0}"#),
        spec(r#"{"name":"opt","type":"categorical","choices":["adam","sgd"],"default":"sgd"}"#),
    ])
    .expect("sample space is valid")
}

#[test]
fn parses_and_serializes_specs() {
    let s =
        spec(r#"{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,"default":0.0005}"#);
    assert_eq!(
        s.kind,
        ParamKind::Float {
            low: 1e-8,
            high: 1.0,
            log: true
        }
    );
    assert_eq!(s.default, Some(Value::Float(0.0005)));
    let back: ParamSpec =
        serde_json::from_str(&serde_json::to_string(&s).expect("serializes")).expect("parses");
    assert_eq!(back, s);
    let n = spec(r#"{"name":"n","type":"int","low":1,"high":8}"#);
    assert_eq!(
        n.kind,
        ParamKind::Int {
            low: 1,
            high: 8,
            log: false
        }
    );
    assert!(
        serde_json::from_str::<ParamSpec>(r#"{"name":"n","type":"int","low":1.5,"high":8}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<ParamSpec>(r#"{"name":"n","type":"int","low":1}"#).is_err());
    assert!(
        serde_json::from_str::<ParamSpec>(
            r#"{"name":"n","type":"int","low":1,"high":2,"bogus":1}"#
        )
        .is_err()
    );
}

#[test]
fn invalid_spaces_name_the_parameter() {
    let cases = [
        r#"{"name":"a","type":"int","low":3,"high":3}"#,
        r#"{"name":"a","type":"float","low":1,"high":0.5}"#,
        r#"{"name":"a","type":"float","low":0,"high":1,"log":true}"#,
        r#"{"name":"a","type":"int","low":0,"high":4,"log":true}"#,
        r#"{"name":"a","type":"categorical","choices":[]}"#,
        r#"{"name":"a","type":"categorical","choices":["x","x"]}"#,
        r#"{"name":"a","type":"int","low":1,"high":4,"default":5}"#,
        r#"{"name":"a","type":"float","low":1,"high":4,"default":"x"}"#,
        r#"{"name":"a","type":"categorical","choices":["x"],"default":"y"}"#,
    ];
    for case in cases {
        let err = Space::new(vec![spec(case)]).expect_err(case);
        assert!(err.to_string().contains("'a'"), "{case}: {err}");
    }
    let nan = ParamSpec {
        name: "a".into(),
        kind: ParamKind::Float {
            low: f64::NAN,
            high: 1.0,
            log: false,
        },
        default: None,
    };
    assert!(
        Space::new(vec![nan])
            .expect_err("nan")
            .to_string()
            .contains("'a'")
    );
    let inf = ParamSpec {
        name: "a".into(),
        kind: ParamKind::Float {
            low: 0.0,
            high: f64::INFINITY,
            log: false,
        },
        default: None,
    };
    assert!(Space::new(vec![inf]).is_err());
    let dup = vec![
        spec(r#"{"name":"a","type":"int","low":1,"high":4}"#),
        spec(r#"{"name":"a","type":"int","low":1,"high":4}"#),
    ];
    assert!(
        Space::new(dup)
            .expect_err("dup")
            .to_string()
            .contains("'a'")
    );
    assert!(Space::new(vec![]).is_err());
}

#[test]
fn defaults_encode_and_round_trip() {
    let space = sample_space();
    let default = space
        .default_assignment()
        .expect("all params have defaults");
    assert_eq!(default["p"], Value::Float(0.0));
    let x = space.encode(&default).expect("default encodes");
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    let back = space.decode(&x);
    assert_eq!(back["n"], Value::Int(3));
    assert_eq!(back["m"], Value::Int(10));
    assert_eq!(back["opt"], Value::Categorical("sgd".into()));
    let lr = back["lr"].as_f64().expect("float");
    assert!((lr - 0.0005).abs() < 1e-12);
}

#[test]
fn every_integer_value_round_trips() {
    let space = sample_space();
    let mut a = space.default_assignment().expect("defaults");
    for m in 1..=1000 {
        a.insert("m".into(), Value::Int(m));
        let x = space.encode(&a).expect("encodes");
        assert_eq!(space.decode(&x)["m"], Value::Int(m));
    }
}

#[test]
fn validate_rejects_bad_assignments() {
    let space = sample_space();
    let mut a = space.default_assignment().expect("defaults");
    a.insert("n".into(), Value::Int(9));
    assert!(space.validate(&a).is_err());
    a.insert("n".into(), Value::Float(2.0));
    assert_eq!(
        space.normalize(&a).expect("integral float is an int")["n"],
        Value::Int(2)
    );
    a.insert("zzz".into(), Value::Int(1));
    assert!(
        space
            .validate(&a)
            .expect_err("unknown")
            .to_string()
            .contains("zzz")
    );
}

#[test]
fn decode_clamps_out_of_range_points() {
    let space = sample_space();
    let a = space.decode(&[-3.0, 7.0, f64::NAN, 2.0, 1.0]);
    space.validate(&a).expect("decoded points are valid");
    assert_eq!(a["n"], Value::Int(8));
    assert_eq!(a["opt"], Value::Categorical("sgd".into()));
}

#[test]
fn bounds_beyond_the_sane_magnitude_are_refused() {
    for json in [
        r#"{"name":"x","type":"float","low":-1.797e308,"high":1.797e308}"#,
        r#"{"name":"x","type":"float","low":0,"high":1e16}"#,
        r#"{"name":"x","type":"int","low":-9223372036854775808,"high":9223372036854775807}"#,
    ] {
        let err = Space::new(vec![spec(json)]).expect_err("refused");
        assert!(err.to_string().contains("1e15"), "{err}");
    }
    assert!(
        Space::new(vec![spec(
            r#"{"name":"x","type":"float","low":-1e15,"high":1e15}"#
        )])
        .is_ok()
    );
}

#[test]
fn the_unit_cube_encodes_each_coordinate_as_itself() {
    let space = Space::unit_cube(3).expect("valid");
    assert_eq!(space.dim(), 3);
    let point = [0.0, 0.25, 1.0];
    let assignment = space.decode(&point);
    assert_eq!(assignment.len(), 3);
    assert_eq!(assignment["x1"], Value::Float(0.25));
    assert_eq!(space.encode(&assignment).expect("encodes"), point);
    assert!(Space::unit_cube(0).is_err());
}

#[test]
fn numbers_and_booleans_as_choices_stand_for_their_text() {
    let param = spec(
        r#"{"name":"b","type":"categorical","choices":[16, 0.5, 1e-5, true, "relu"],"default":16}"#,
    );
    let ParamKind::Categorical { choices } = &param.kind else {
        panic!("categorical: {param:?}");
    };
    assert_eq!(choices, &["16", "0.5", "1e-5", "true", "relu"]);
    let space = Space::new(vec![param.clone()]).expect("valid");
    assert_eq!(
        space.params()[0].default,
        Some(Value::Categorical("16".into()))
    );
    // Serialized, the choices are their texts, and read back the same.
    let json = serde_json::to_string(&param).expect("serializes");
    assert!(
        json.contains(r#""choices":["16","0.5","1e-5","true","relu"]"#),
        "{json}"
    );
    assert_eq!(spec(&json).kind, param.kind);
    let nested = serde_json::from_str::<ParamSpec>(
        r#"{"name":"b","type":"categorical","choices":[16, [32]]}"#,
    )
    .expect_err("a list is no choice")
    .to_string();
    assert!(
        nested.contains("a string, a number or a boolean"),
        "{nested}"
    );
}

#[test]
fn a_number_sent_for_a_categorical_is_the_choice_that_reads_as_it() {
    let space = Space::new(vec![spec(
        r#"{"name":"b","type":"categorical","choices":["16","32","1e-05","relu"]}"#,
    )])
    .expect("valid");
    let with = |value: Value| Assignment::from([("b".to_string(), value)]);
    let normalized = |value: Value| space.normalize(&with(value)).map(|a| a["b"].clone());
    assert_eq!(
        normalized(Value::Int(32)).ok(),
        Some(Value::Categorical("32".into()))
    );
    assert_eq!(
        normalized(Value::Float(16.0)).ok(),
        Some(Value::Categorical("16".into()))
    );
    assert_eq!(
        normalized(Value::Float(1e-5)).ok(),
        Some(Value::Categorical("1e-05".into()))
    );
    let missing = normalized(Value::Int(7))
        .expect_err("not a choice")
        .to_string();
    assert!(
        missing.contains("'b'") && missing.contains("'7' is not one of"),
        "{missing}"
    );
    let twice = Space::new(vec![spec(
        r#"{"name":"r","type":"categorical","choices":["1.5","1.50"]}"#,
    )])
    .expect("distinct texts are valid");
    let ambiguous = twice
        .normalize(&Assignment::from([("r".to_string(), Value::Float(1.5))]))
        .expect_err("two choices read as 1.5")
        .to_string();
    assert!(ambiguous.contains("more than one choice"), "{ambiguous}");
}

#[test]
fn a_step_makes_a_stepped_parameter_that_serializes_back() {
    let units = spec(r#"{"name":"u","type":"int","low":32,"high":250,"step":32,"default":64}"#);
    let ParamKind::Stepped(steps) = units.kind else {
        panic!("stepped: {units:?}");
    };
    assert_eq!((steps.count, steps.high(), steps.integer), (7, 224.0, true));
    let json = serde_json::to_string(&units).expect("serializes");
    assert!(json.contains(r#""low":32,"high":224,"step":32"#), "{json}");
    assert_eq!(spec(&json), units);
    let rate = spec(r#"{"name":"d","type":"float","low":0.0,"high":0.5,"step":0.1}"#);
    assert_eq!(
        spec(&serde_json::to_string(&rate).expect("serializes")),
        rate
    );
    // A step of 1 is every integer: the plain kind.
    let plain = spec(r#"{"name":"n","type":"int","low":1,"high":8,"step":1}"#);
    assert!(matches!(plain.kind, ParamKind::Int { .. }), "{plain:?}");
    let space = Space::new(vec![units]).expect("valid");
    assert_eq!(space.params()[0].default, Some(Value::Int(64)));
    for (json, needle) in [
        (
            r#"{"name":"u","type":"int","low":1,"high":64,"step":2,"log":true}"#,
            "cannot be log-scaled",
        ),
        (
            r#"{"name":"u","type":"int","low":1,"high":64,"step":2.5}"#,
            "step must be a whole number",
        ),
        (
            r#"{"name":"d","type":"float","low":0,"high":1,"step":-0.1}"#,
            "above 0",
        ),
        (
            r#"{"name":"c","type":"categorical","choices":["a"],"step":1}"#,
            "takes only 'choices'",
        ),
        (
            r#"{"name":"u","type":"int","low":32,"high":250,"step":32,"default":48}"#,
            "not one of the steps",
        ),
    ] {
        let error = serde_json::from_str::<ParamSpec>(json)
            .map_err(|e| e.to_string())
            .and_then(|p| Space::new(vec![p]).map_err(|e| e.to_string()))
            .expect_err(needle);
        assert!(error.contains(needle), "{json}: {error}");
    }
}
