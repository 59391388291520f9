//! Micro-benchmark of the durable store's commit path: what one group commit of report-shaped
//! changes costs (a trial upsert plus an epoch row each, as `ReportEpoch` writes), on a real
//! SQLite file in a temporary directory (WAL, `synchronous = FULL`, as the daemon opens it).
//!
//! `cargo run --release -p coordinator --example store_commit -- [BATCH] [BATCHES] [TRIALS]`
//! prints the median and 99th percentile of a batch's commit and the median cost per change.

use std::time::Instant;

use coordinator::service::early_stop::{MedianRule, Rule};
use coordinator::service::model::{
    BatchStrategy, Direction, EpochRecord, ExperimentRecord, ExperimentSpec, ExperimentState,
    LeaseRecord, Strategy, TrialRecord, TrialState, Workload,
};
use coordinator::store::{Change, ExperimentStore, SqliteStore};

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .map(|a| a.parse().expect("arguments are whole numbers"))
        .unwrap_or(default)
}

fn experiment() -> ExperimentRecord {
    let parameters = serde_json::from_str(
        r#"[{"name":"x","type":"float","low":-5.0,"high":10.0},{"name":"y","type":"float","low":0.0,"high":15.0}]"#,
    )
    .expect("the space parses");
    ExperimentRecord {
        id: "exp-bench".into(),
        spec: ExperimentSpec {
            name: "store-bench".into(),
            metric: "value".into(),
            direction: Direction::Minimize,
            strategy: Strategy::Random,
            batch: BatchStrategy::ClMin,
            budget_trials: 100_000,
            parallelism: 1000,
            parameters,
            seed: 1,
            grid_levels: 3,
            initial_trials: 10,
            max_attempts: 3,
            workload: Some(Workload {
                kind: "function".into(),
                dataset: "branin".into(),
                ..Workload::default()
            }),
            budget_dollars: 0.0,
            study: String::new(),
            deterministic: false,
            max_model_points: 0,
            early_stopping: Rule::Median(MedianRule {
                min_epochs: 1,
                min_trials: 3,
            }),
        },
        state: ExperimentState::Running,
        created_unix: 0.0,
        exhausted: false,
        failure_reason: String::new(),
        paused_reason: String::new(),
        resumed_unix: 0.0,
        queued: Vec::new(),
    }
}

fn trial(number: u32) -> TrialRecord {
    let mut params = tuner::space::Assignment::new();
    params.insert(
        "x".into(),
        tuner::space::Value::Float(f64::from(number) * 1e-3),
    );
    params.insert("y".into(), tuner::space::Value::Float(3.0));
    TrialRecord {
        id: format!("trial-{number}").as_str().into(),
        experiment_id: "exp-bench".into(),
        number,
        params,
        state: TrialState::Running,
        value: None,
        attempts: 1,
        agent_id: Some(format!("agent-{number}").as_str().into()),
        lease: Some(LeaseRecord {
            lease_id: format!("lease-{number}").as_str().into(),
            agent_id: format!("agent-{number}").as_str().into(),
            deadline_unix: 1e9,
        }),
        epochs_run: 0,
        best_epoch: 0,
        wall_seconds: 0.0,
        device_seconds: 0.0,
        cost_dollars: 0.0,
        failure_reason: String::new(),
        instance_type: "cpu".into(),
        created_unix: 0.0,
        finished_unix: None,
        stop_requested: false,
        imported: false,
        interruptions: 0,
        last_lease_id: Some(format!("lease-{number}").as_str().into()),
        metrics: Default::default(),
    }
}

fn main() {
    let batch = arg(1, 500);
    let batches = arg(2, 200);
    let trials = u32::try_from(arg(3, 1000)).expect("trials fit in u32");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path()).expect("the store opens");
    let mut setup = vec![Change::PutExperiment(experiment())];
    setup.extend((0..trials).map(|n| Change::PutTrial(trial(n))));
    store.commit(&setup).expect("the setup commits");

    let mut records: Vec<TrialRecord> = (0..trials).map(trial).collect();
    let mut next = 0usize;
    let mut millis = Vec::with_capacity(batches);
    for _ in 0..batches {
        let mut changes = Vec::with_capacity(2 * batch);
        for _ in 0..batch {
            let count = records.len();
            let record = &mut records[next % count];
            next += 1;
            record.epochs_run += 1;
            changes.push(Change::PutTrial(record.clone()));
            changes.push(Change::AddEpoch(EpochRecord {
                trial_id: record.id.clone(),
                attempt: 1,
                epoch: record.epochs_run,
                value: 0.5,
                train_loss: 0.7,
                train_accuracy: 0.6,
                epoch_seconds: 1.0,
            }));
        }
        let started = Instant::now();
        store.commit(&changes).expect("a batch commits");
        millis.push(started.elapsed().as_secs_f64() * 1e3);
    }
    millis.sort_by(f64::total_cmp);
    let median = millis[millis.len() / 2];
    let p99 = millis[(millis.len() * 99 / 100).min(millis.len() - 1)];
    println!(
        "{batches} commits of {batch} reports ({} changes each): median {median:.2} ms, p99 {p99:.2} ms, {:.1} us a report at the median",
        2 * batch,
        median * 1e3 / batch as f64
    );
}
