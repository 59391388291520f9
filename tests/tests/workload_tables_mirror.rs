//! The coordinator's tables of what agents take, which `CreateExperiment` checks specs against,
//! match the agent's own code:
//! - the textcnn parameters (`coordinator/src/service/textcnn_params.rs`) against the model
//!   (`cnn::HyperParams::with_overrides`): the same names, and at each bound the model accepts
//!   the bound and refuses a value just past it. `seed` is taken by the agent before the model
//!   sees the parameters, so it is in the coordinator's table only;
//! - the `function` workload's functions (`coordinator/src/service/workloads.rs`) against the
//!   agent's `functions::evaluate`: each listed one is known to it, and its refusal of an unknown
//!   one lists the same names.

use cnn::HyperParams;
use coordinator::service::textcnn_params::{TEXTCNN_PARAMS, TextCnnParam};
use coordinator::service::workloads::FUNCTIONS;

fn accepts(name: &str, value: f64) -> bool {
    HyperParams::study_default()
        .with_overrides([(name, value)])
        .is_ok()
}

/// The names the model lists when it refuses an unknown one.
fn model_names() -> Vec<String> {
    let refusal = HyperParams::study_default()
        .with_overrides([("no_such_parameter", 1.0)])
        .expect_err("an unknown name must be refused")
        .to_string();
    let list = refusal
        .split_once("(known: ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no list of names in '{refusal}'"));
    let mut names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
    names.sort();
    names
}

fn model_params() -> impl Iterator<Item = &'static TextCnnParam> {
    TEXTCNN_PARAMS.iter().filter(|param| param.name != "seed")
}

#[test]
fn textcnn_params_mirror_the_same_names() {
    let mut table: Vec<String> = model_params().map(|p| p.name.to_string()).collect();
    table.sort();
    assert_eq!(table, model_names());
}

#[test]
fn textcnn_params_mirror_the_same_bounds() {
    for param in model_params() {
        let name = param.name;
        assert!(
            accepts(name, param.low),
            "{name}: low {} refused",
            param.low
        );
        assert!(
            accepts(name, param.high),
            "{name}: high {} refused",
            param.high
        );
        let (below, above) = if param.integer {
            assert!(
                !accepts(name, param.low + 0.5),
                "{name}: a fraction accepted"
            );
            (param.low - 1.0, param.high + 1.0)
        } else if param.low == f64::MIN_POSITIVE {
            (0.0, param.high * (1.0 + 1e-12))
        } else {
            (param.low - 1e-12, param.high * (1.0 + 1e-12))
        };
        assert!(!accepts(name, below), "{name}: {below} accepted");
        assert!(!accepts(name, above), "{name}: {above} accepted");
    }
}

/// The functions the agent names when it refuses an unknown one.
fn agent_functions() -> Vec<String> {
    let refusal = agent::functions::evaluate("no_such_function", &Default::default())
        .expect_err("an unknown function must be refused")
        .to_string();
    let list = refusal
        .split_once("use ")
        .map(|(_, list)| list)
        .unwrap_or_else(|| panic!("no list of functions in '{refusal}'"));
    let mut names: Vec<String> = list
        .split([',', ' '])
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "or")
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn function_workload_mirrors_the_agents_functions() {
    let mut table: Vec<String> = FUNCTIONS.iter().map(|f| f.to_string()).collect();
    table.sort();
    assert_eq!(table, agent_functions());
    for name in FUNCTIONS {
        // Without parameters a known function fails on a missing one, not as unknown.
        let refusal = agent::functions::evaluate(name, &Default::default())
            .err()
            .map(|failure| failure.to_string())
            .unwrap_or_default();
        assert!(!refusal.contains("unknown function"), "{name}: {refusal}");
    }
}
