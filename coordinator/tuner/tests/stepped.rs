//! Stepped parameters (`step` in a spec, as Optuna's `suggest_int(..., step=32)` and
//! `suggest_float(..., step=0.1)`): every strategy suggests only values on the steps, BO
//! converges on a stepped objective, and the grid enumerates the steps (whatever its levels),
//! up to its cap.

use tuner::space::{Assignment, ParamSpec, Space, Value};
use tuner::{Direction, Observation, Strategy, SuggestConfig, suggest};

fn space() -> Space {
    let params: Vec<ParamSpec> = serde_json::from_str(
        r#"[{"name":"units","type":"int","low":32,"high":256,"step":32},
            {"name":"dropout","type":"float","low":0.0,"high":0.5,"step":0.1},
            {"name":"lr","type":"float","low":1e-4,"high":1e-1,"log":true}]"#,
    )
    .expect("parses");
    Space::new(params).expect("valid")
}

fn units(a: &Assignment) -> i64 {
    match a["units"] {
        Value::Int(v) => v,
        ref other => panic!("units is {other:?}"),
    }
}

fn dropout(a: &Assignment) -> f64 {
    match a["dropout"] {
        Value::Float(v) => v,
        ref other => panic!("dropout is {other:?}"),
    }
}

/// Whether `a`'s stepped values are on their steps, exactly as written (0.3, not
/// 0.30000000000000004).
fn on_steps(a: &Assignment) -> bool {
    let tenths = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5];
    units(a) % 32 == 0 && (32..=256).contains(&units(a)) && tenths.contains(&dropout(a))
}

/// Best near 128 units and a dropout of 0.3.
fn objective(a: &Assignment) -> f64 {
    let lr = a["lr"].as_f64().expect("lr");
    ((units(a) - 128) as f64 / 64.0).powi(2)
        + ((dropout(a) - 0.3) * 5.0).powi(2)
        + (lr.log10() + 2.5).powi(2) * 0.1
}

#[test]
fn every_strategy_suggests_only_values_on_the_steps() {
    let space = space();
    for strategy in [Strategy::Random, Strategy::Bo] {
        let cfg = SuggestConfig {
            strategy,
            direction: Direction::Minimize,
            initial_trials: 6,
            ..SuggestConfig::default()
        };
        let mut observations: Vec<Observation> = Vec::new();
        for round in 0..6 {
            let batch = suggest(&space, &observations, &[], 4, &cfg, 11 + round)
                .unwrap_or_else(|e| panic!("{strategy:?} round {round}: {e}"));
            assert_eq!(batch.len(), 4);
            for candidate in batch {
                assert!(
                    on_steps(&candidate.params),
                    "{strategy:?}: {:?}",
                    candidate.params
                );
                observations.push(Observation {
                    value: objective(&candidate.params),
                    params: candidate.params,
                });
            }
        }
        if strategy == Strategy::Bo {
            let best = observations
                .iter()
                .map(|o| o.value)
                .fold(f64::INFINITY, f64::min);
            assert!(best < 0.3, "BO's best after 24 evaluations is {best}");
        }
    }
}

#[test]
fn the_grid_enumerates_the_steps() {
    let params: Vec<ParamSpec> = serde_json::from_str(
        r#"[{"name":"units","type":"int","low":32,"high":256,"step":32},
            {"name":"dropout","type":"float","low":0.0,"high":0.5,"step":0.1}]"#,
    )
    .expect("parses");
    let space = Space::new(params).expect("valid");
    assert_eq!(space.cardinality(), Some(48));
    // A step is its parameter's grid: three levels a numeric parameter still enumerate each
    // of the 8 and 6 steps.
    assert_eq!(tuner::grid_size(&space, 3), 48);
    let cfg = SuggestConfig {
        strategy: Strategy::Grid { levels: 3 },
        ..SuggestConfig::default()
    };
    let mut seen: Vec<Assignment> = Vec::new();
    let observations: Vec<Observation> = Vec::new();
    let batch = suggest(&space, &observations, &seen, 100, &cfg, 3).expect("grid");
    seen.extend(batch.into_iter().map(|c| c.params));
    assert_eq!(seen.len(), 48, "every step of both parameters, once");
    let mut distinct = seen.clone();
    distinct.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    distinct.dedup();
    assert_eq!(distinct.len(), 48);
    assert!(
        seen.iter()
            .all(|a| units(a) % 32 == 0 && [0.0, 0.1, 0.2, 0.3, 0.4, 0.5].contains(&dropout(a)))
    );
}

#[test]
fn a_stepped_parameter_past_the_cap_is_levelled_like_an_integer() {
    let params: Vec<ParamSpec> =
        serde_json::from_str(r#"[{"name":"x","type":"float","low":0.0,"high":1.0,"step":1e-9}]"#)
            .expect("parses");
    let space = Space::new(params).expect("valid");
    assert_eq!(space.cardinality(), Some(1_000_000_001));
    assert_eq!(tuner::grid_size(&space, 5), 5);
    let cfg = SuggestConfig {
        strategy: Strategy::Grid { levels: 5 },
        ..SuggestConfig::default()
    };
    let points = suggest(&space, &[], &[], 10, &cfg, 1).expect("grid");
    let xs: Vec<f64> = points
        .iter()
        .filter_map(|c| c.params["x"].as_f64())
        .collect();
    assert_eq!(xs, [0.0, 0.25, 0.5, 0.75, 1.0]);
}
