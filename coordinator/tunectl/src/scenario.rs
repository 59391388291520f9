//! The study's search spaces, built in so users don't type them: `basic`, `complex` and the
//! demo-sized `basic-mini`.
//!
//! `basic` and `complex` are the two spaces of "Fast CNN tuning with GPU instances and Bayesian
//! optimization", with the study's defaults (embed_dim 300, learning rate 0.0005, batch 50, max
//! gradient norm 5, 50 epochs, dropout 0.5, filters 3/4/5, 100 maps). `basic-mini` keeps the
//! shape of `basic` but scales the model and the epochs down so that a 30-trial BO study on the
//! full MR data finishes within about 10 minutes on a 2-core CPU with two agents; its size was
//! chosen from the CNN's measured CPU speed (see `docs/BENCHMARKS.md`).
//!
//! ```
//! let spec = tunectl::scenario::scenario("basic").expect("built in");
//! assert_eq!(spec.parameters.len(), 6);
//! assert_eq!(spec.workload.unwrap().kind, "textcnn");
//! ```

use std::collections::HashMap;

use proto::v1::{
    Direction, ExperimentSpec, FloatParam, IntParam, ParameterSpec, ParameterValue, Strategy,
    Workload, parameter_spec::Kind, parameter_value,
};

/// Names of the built-in scenarios.
pub const NAMES: &[&str] = &["basic", "complex", "basic-mini"];

/// The objective every scenario maximizes.
pub const METRIC: &str = "dev_accuracy";

/// The scenario called `name`, or `None` for an unknown name (see [`NAMES`]).
pub fn scenario(name: &str) -> Option<ExperimentSpec> {
    match name {
        "basic" => Some(basic()),
        "complex" => Some(complex()),
        "basic-mini" => Some(basic_mini()),
        _ => None,
    }
}

/// The study's Basic space: six hyperparameters, BO budget 240.
pub fn basic() -> ExperimentSpec {
    spec("basic", basic_params(), 240, 4, Workload::default())
}

/// The study's Complex space: Basic plus the three filter widths and the feature maps, BO budget 400.
pub fn complex() -> ExperimentSpec {
    let mut params = basic_params();
    for (index, default) in [3, 4, 5].into_iter().enumerate() {
        params.push(int(
            &format!("filter_size_{}", index + 1),
            1,
            7,
            false,
            default,
        ));
    }
    params.push(int("num_feature_maps", 10, 200, false, 100));
    spec("complex", params, 400, 4, Workload::default())
}

/// Basic's shape at demo size: 30 trials, 2 at a time, embed_dim 16–64, 30 maps, 1–8 epochs.
///
/// Sized from the CPU CNN's speed on full MR with one thread a agent (`agent train --cpu
/// --threads 1`): embed_dim 48 with 30 maps took 7 s an epoch on a 2-core machine loaded about
/// 5× by other builds (its CPU time suggests 1.5–2 s on an idle core) and reached 77% validation
/// accuracy in 3 epochs at learning rate 0.002; the slowest corner (embed_dim 64, batch 10, 50
/// maps) took 15 s loaded. So a trial takes seconds to well under a minute, and 15 trials an
/// agent fit within 10 minutes.
pub fn basic_mini() -> ExperimentSpec {
    let params = vec![
        int("embed_dim", 16, 64, false, 32),
        float("learning_rate", 1e-8, 1.0, true, 0.0005),
        int("batch_size", 10, 100, false, 50),
        float("max_grad_norm", 1.0, 10.0, false, 5.0),
        int("epochs", 1, 8, false, 4),
        float("dropout", 0.1, 0.9, false, 0.5),
    ];
    let fixed = HashMap::from([("num_feature_maps".to_string(), int_value(30))]);
    spec(
        "basic-mini",
        params,
        30,
        2,
        Workload {
            fixed_params: fixed,
            ..Workload::default()
        },
    )
}

fn basic_params() -> Vec<ParameterSpec> {
    vec![
        int("embed_dim", 100, 500, false, 300),
        float("learning_rate", 1e-8, 1.0, true, 0.0005),
        int("batch_size", 10, 100, false, 50),
        float("max_grad_norm", 1.0, 10.0, false, 5.0),
        int("epochs", 5, 100, false, 50),
        float("dropout", 0.1, 0.9, false, 0.5),
    ]
}

fn spec(
    name: &str,
    parameters: Vec<ParameterSpec>,
    budget: u32,
    parallelism: u32,
    workload: Workload,
) -> ExperimentSpec {
    ExperimentSpec {
        name: name.to_string(),
        metric: METRIC.to_string(),
        direction: Direction::Maximize as i32,
        strategy: Strategy::Bo as i32,
        budget_trials: budget,
        parallelism,
        parameters,
        workload: Some(Workload {
            kind: "textcnn".to_string(),
            dataset: "mr".to_string(),
            ..workload
        }),
        ..ExperimentSpec::default()
    }
}

fn int(name: &str, low: i64, high: i64, log: bool, default: i64) -> ParameterSpec {
    let kind = Kind::Int(IntParam {
        step: None,
        low,
        high,
        log,
        default_value: Some(default),
    });
    ParameterSpec {
        name: name.to_string(),
        kind: Some(kind),
    }
}

fn float(name: &str, low: f64, high: f64, log: bool, default: f64) -> ParameterSpec {
    let kind = Kind::Float(FloatParam {
        step: None,
        low,
        high,
        log,
        default_value: Some(default),
    });
    ParameterSpec {
        name: name.to_string(),
        kind: Some(kind),
    }
}

fn int_value(value: i64) -> ParameterValue {
    ParameterValue {
        kind: Some(parameter_value::Kind::IntValue(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_of(spec: &ExperimentSpec, name: &str) -> f64 {
        let param = spec
            .parameters
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        match &param.kind {
            Some(Kind::Int(int)) => int.default_value.expect("default") as f64,
            Some(Kind::Float(float)) => float.default_value.expect("default"),
            other => panic!("unexpected kind {other:?}"),
        }
    }

    fn bounds_contain_default(param: &ParameterSpec) -> bool {
        match &param.kind {
            Some(Kind::Int(p)) => p
                .default_value
                .is_some_and(|d| (p.low..=p.high).contains(&d)),
            Some(Kind::Float(p)) => p
                .default_value
                .is_some_and(|d| (p.low..=p.high).contains(&d)),
            _ => false,
        }
    }

    #[test]
    fn every_name_resolves_and_unknown_names_do_not() {
        for name in NAMES {
            let spec = scenario(name).expect("built in");
            assert_eq!(spec.name, *name);
            assert_eq!(spec.direction(), Direction::Maximize);
            assert_eq!(spec.metric, METRIC);
            let workload = spec.workload.as_ref().expect("workload");
            assert_eq!(
                (workload.kind.as_str(), workload.dataset.as_str()),
                ("textcnn", "mr")
            );
            assert!(
                spec.parameters.iter().all(bounds_contain_default),
                "{name}: a default is out of bounds"
            );
        }
        assert!(scenario("huge").is_none());
    }

    #[test]
    fn study_defaults() {
        let complex = complex();
        let expected = [
            ("embed_dim", 300.0),
            ("learning_rate", 0.0005),
            ("batch_size", 50.0),
            ("max_grad_norm", 5.0),
            ("epochs", 50.0),
            ("dropout", 0.5),
            ("filter_size_1", 3.0),
            ("filter_size_2", 4.0),
            ("filter_size_3", 5.0),
            ("num_feature_maps", 100.0),
        ];
        for (name, value) in expected {
            assert_eq!(default_of(&complex, name), value, "{name}");
        }
        assert_eq!(basic().parameters.len(), 6);
        assert_eq!(complex.parameters.len(), 10);
    }

    #[test]
    fn learning_rate_is_log_scaled_over_the_study_range() {
        let spec = basic();
        let lr = spec
            .parameters
            .iter()
            .find(|p| p.name == "learning_rate")
            .expect("lr");
        assert_eq!(
            lr.kind,
            Some(Kind::Float(FloatParam {
                low: 1e-8,
                high: 1.0,
                log: true,
                default_value: Some(0.0005),
                step: None,
            }))
        );
    }

    #[test]
    fn basic_mini_is_basic_at_demo_size() {
        let mini = basic_mini();
        let names: Vec<_> = mini.parameters.iter().map(|p| p.name.clone()).collect();
        let basic_names: Vec<_> = basic().parameters.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, basic_names);
        assert_eq!(mini.budget_trials, 30);
        assert!(default_of(&mini, "epochs") <= 4.0);
        assert!(
            mini.workload
                .expect("workload")
                .fixed_params
                .contains_key("num_feature_maps")
        );
    }
}
