//! The seed corpus: real spec files and configs, valid encoded requests in the layout of
//! [`crate::pick`], and the minimized inputs of past findings. A seed whose name contains
//! `-refused` must be refused; every other one must be served (`tests/seeds.rs`).
//! `examples/write_seeds.rs` writes them to `corpus/<target>/seed-*`; the
//! scratch worlds of the RPC targets create their experiments from the same specs.

use prost::Message;
use proto::v1 as pb;

/// The README's example spec.
pub const MR_BASIC: &str = r#"name = "mr-basic"
metric = "dev_accuracy"
direction = "maximize"
strategy = "bo"
batch = "cl-min"
budget = 240
parallelism = 8

[[parameters]]
name = "learning_rate"
type = "float"
low = 1e-8
high = 1.0
log = true
default = 0.0005

[[parameters]]
name = "dropout"
type = "float"
low = 0.1
high = 0.9

[workload]
kind = "textcnn"
dataset = "mr"
"#;

/// Random search on Branin (tunectl's spec test), three epochs a trial.
pub const BRANIN_RANDOM: &str = r#"name = "branin"
direction = "minimize"
strategy = "random"
budget = 10000
parallelism = 4
seed = 7
[[parameters]]
name = "x1"
type = "float"
low = -5.0
high = 10.0
[[parameters]]
name = "x2"
type = "float"
low = 0.0
high = 15.0
[workload]
kind = "function"
dataset = "branin"
[workload.fixed_params]
epochs = 3
"#;

/// BO on Branin with median early stopping (the end-to-end test's spec, with a rule).
pub const BRANIN_BO_MEDIAN: &str = r#"name = "branin-e2e"
metric = "value"
direction = "minimize"
strategy = "bo"
batch = "cl-mean"
budget = 1000
parallelism = 2
seed = 42
initial_trials = 4
[[parameters]]
name = "x1"
type = "float"
low = -5.0
high = 10.0
[[parameters]]
name = "x2"
type = "float"
low = 0.0
high = 15.0
[workload]
kind = "function"
dataset = "branin"
[workload.fixed_params]
epochs = 3
[early_stopping]
rule = "median"
min_epochs = 1
min_trials = 2
"#;

/// A grid over every parameter type, with successive halving, on the `function` workload (a
/// `textcnn` one takes numbers only, so its spec would be refused).
pub const GRID_MIXED: &str = r#"name = "grid-mixed"
direction = "maximize"
strategy = "grid"
budget = 500
parallelism = 3
grid_levels = 4
max_attempts = 2
budget_dollars = 12.5
study = "fuzz"
[[parameters]]
name = "filters"
type = "int"
low = 1
high = 512
log = true
[[parameters]]
name = "optimizer"
type = "categorical"
choices = ["sgd", "adam", "adadelta"]
default = "adam"
[[parameters]]
name = "dropout"
type = "float"
low = 0.0
high = 0.9
[workload]
kind = "function"
dataset = "quadratic"
[workload.fixed_params]
epochs = 4
embed_dim = 16
[early_stopping]
rule = "asha"
min_epochs = 1
eta = 3
"#;

/// A text-CNN grid over stepped parameters (`step`) and a categorical given as numbers.
pub const STEPS_AND_NUMERIC_CHOICES: &str = r#"name = "steps"
metric = "dev_accuracy"
direction = "maximize"
strategy = "grid"
budget = 50
grid_levels = 8
[[parameters]]
name = "batch_size"
type = "int"
low = 25
high = 100
step = 25
default = 50
[[parameters]]
name = "dropout"
type = "float"
low = 0.1
high = 0.5
step = 0.1
[[parameters]]
name = "num_feature_maps"
type = "categorical"
choices = [50, 100, 150]
default = 100
[workload]
kind = "textcnn"
dataset = "mr"
"#;

/// Every spec file seed, by name.
pub const SPECS: [(&str, &str); 5] = [
    ("mr-basic", MR_BASIC),
    ("branin-random", BRANIN_RANDOM),
    ("branin-bo-median", BRANIN_BO_MEDIAN),
    ("grid-mixed", GRID_MIXED),
    ("steps-and-numeric-choices", STEPS_AND_NUMERIC_CHOICES),
];

/// A seed spec on the wire, as `tunectl create` sends it.
pub fn spec_pb(toml_text: &str) -> pb::ExperimentSpec {
    tunectl::cli::spec::SpecFile::parse(toml_text)
        .expect("a seed spec parses")
        .to_pb()
}

/// One seed: a file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// Seeds of `spec_toml`: the spec files.
pub fn spec_toml() -> Vec<Seed> {
    SPECS
        .iter()
        .map(|(name, text)| (format!("seed-{name}.toml"), text.as_bytes().to_vec()))
        .collect()
}

/// Seeds of `config_toml`: the example and deployment configs of both daemons.
pub fn config_toml() -> Vec<Seed> {
    let files = [
        (
            "coordinator-example",
            include_str!("../../examples/coordinator.toml"),
        ),
        (
            "coordinator-deploy",
            include_str!("../../../deploy/config/coordinator.toml"),
        ),
        (
            "agent-example",
            include_str!("../../../agent/examples/agent.toml"),
        ),
        (
            "agent-deploy",
            include_str!("../../../deploy/config/agent.toml"),
        ),
        ("minimal", "version = 1\n"),
        // Finding 1 of the fuzzing (docs/RELIABILITY.md), minimized: panicked the agent.
        ("finding-1-refused", "retry_max_backoff_secs=1e30\n"),
        // Finding 2: panicked both parsers (a key read as an array index).
        ("finding-2-refused", "['g[167440737095516150 ]']\n"),
    ];
    files
        .iter()
        .map(|(name, text)| (format!("seed-{name}.toml"), text.as_bytes().to_vec()))
        .collect()
}

/// The choice byte that picks the first real id.
pub const REAL: u8 = 0;
/// The choice byte that keeps the id in the message.
pub const RAW: u8 = 0x80;

fn framed(picks: &[u8], message: &impl Message) -> Vec<u8> {
    let mut bytes = picks.to_vec();
    bytes.extend(message.encode_to_vec());
    bytes
}

/// Seeds of `client_rpc`: byte 0 the method (in `targets::client_rpc::METHODS` order), byte 1
/// the experiment id choice, then the request.
pub fn client_rpc() -> Vec<Seed> {
    let id = |raw: &str| raw.to_string();
    let mut seeds: Vec<Seed> = SPECS
        .iter()
        .map(|(name, text)| {
            let request = pb::CreateExperimentRequest {
                spec: Some(spec_pb(text)),
            };
            (format!("seed-create-{name}"), framed(&[0, RAW], &request))
        })
        .collect();
    let get = pb::GetExperimentRequest {
        experiment_id: id("exp-0000000000000000"),
    };
    let list = pb::ListExperimentsRequest {
        study: id("fuzz"),
        ..Default::default()
    };
    let stop = pb::StopExperimentRequest {
        experiment_id: id("exp-1"),
    };
    let trials = pb::ListTrialsRequest {
        experiment_id: id("exp-2"),
        include_epochs: true,
        page_size: 2,
        ..Default::default()
    };
    let best = pb::GetBestTrialRequest {
        experiment_id: id("exp-3"),
    };
    seeds.extend([
        ("seed-get-real".into(), framed(&[1, REAL], &get)),
        ("seed-get-raw-refused".into(), framed(&[1, RAW], &get)),
        ("seed-list".into(), framed(&[2, RAW], &list)),
        ("seed-stop-real".into(), framed(&[3, 2], &stop)),
        ("seed-trials-real".into(), framed(&[4, 1], &trials)),
        ("seed-best-real".into(), framed(&[5, REAL], &best)),
    ]);
    seeds
}

/// Seeds of `agent_rpc`: byte 0 the method (in `targets::agent_rpc::METHODS` order), byte 1 the
/// agent id choice, byte 2 the lease id choice, then the request.
pub fn agent_rpc() -> Vec<Seed> {
    let register = pb::RegisterAgentRequest {
        capabilities: Some(pb::AgentCapabilities {
            backend: pb::Backend::Cuda as i32,
            device_name: "NVIDIA H100".into(),
            device_memory_bytes: 80 << 30,
            instance_type: "p5.48xlarge".into(),
            price_per_hour_dollars: 98.32,
            slots: 2,
            hostname: "gpu-7".into(),
            workloads: vec!["textcnn".into(), "function".into()],
            version: "0.1.0".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let lease = pb::LeaseTrialRequest {
        agent_id: "agent-x".into(),
        wait_seconds: 0.01,
        ..Default::default()
    };
    let heartbeat = pb::HeartbeatRequest {
        agent_id: "agent-x".into(),
        lease_ids: vec!["lease-a".into(), "lease-b".into()],
        ..Default::default()
    };
    let epoch = pb::ReportEpochRequest {
        lease_id: "lease-a".into(),
        report: Some(pb::EpochReport {
            epoch: 1,
            value: 0.75,
            train_loss: 0.4,
            train_accuracy: 0.8,
            epoch_seconds: 2.5,
        }),
        ..Default::default()
    };
    let complete = pb::CompleteTrialRequest {
        lease_id: "lease-a".into(),
        outcome: pb::TrialOutcome::Succeeded as i32,
        value: Some(0.75),
        epochs_run: 3,
        best_epoch: 2,
        wall_seconds: 8.0,
        device_seconds: 7.5,
        cost_dollars: 0.02,
        ..Default::default()
    };
    let failed = pb::CompleteTrialRequest {
        outcome: pb::TrialOutcome::Failed as i32,
        value: None,
        failure_reason: "out of memory".into(),
        ..complete.clone()
    };
    let unregister = pb::UnregisterAgentRequest {
        agent_id: "agent-x".into(),
        ..Default::default()
    };
    vec![
        (
            "seed-register-new".into(),
            framed(&[0, RAW, RAW], &register),
        ),
        (
            "seed-register-again".into(),
            framed(&[0, REAL, RAW], &register),
        ),
        ("seed-lease".into(), framed(&[1, REAL, RAW], &lease)),
        (
            "seed-heartbeat".into(),
            framed(&[2, REAL, REAL], &heartbeat),
        ),
        ("seed-epoch".into(), framed(&[3, RAW, REAL], &epoch)),
        ("seed-complete".into(), framed(&[4, RAW, 1], &complete)),
        ("seed-fail".into(), framed(&[4, RAW, 2], &failed)),
        ("seed-unregister".into(), framed(&[5, 1, RAW], &unregister)),
    ]
}

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("spec_toml", spec_toml()),
        ("client_rpc", client_rpc()),
        ("agent_rpc", agent_rpc()),
        ("config_toml", config_toml()),
    ]
}
