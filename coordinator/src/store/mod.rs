//! Durable state: the `ExperimentStore` trait, a SQLite implementation for the daemon and an
//! in-memory one for tests.
//!
//! The service keeps the live state in memory and writes every change through the store, in one
//! transaction, before it replies. On startup it loads a [`Snapshot`] and resumes from it. Store
//! calls block: callers run them on `spawn_blocking`.

pub mod checkpoint;
pub mod lock;
pub mod memory;
pub mod sqlite;
pub mod writer;

use crate::Result;
use crate::service::model::{AgentId, AgentRecord, EpochRecord, ExperimentRecord, TrialRecord};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// One durable change; a batch of them is committed atomically.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Inserts or replaces an experiment.
    PutExperiment(ExperimentRecord),
    /// Inserts or replaces a trial (not its epochs).
    PutTrial(TrialRecord),
    /// Adds an epoch report; a report for an existing (trial, attempt, epoch) is ignored.
    AddEpoch(EpochRecord),
    /// Inserts or replaces an agent.
    PutAgent(AgentRecord),
    /// Forgets an agent (it unregistered, or was silent past the retention).
    DeleteAgent(AgentId),
}

/// Everything a store holds, as loaded on startup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Experiments, oldest first.
    pub experiments: Vec<ExperimentRecord>,
    /// Trials, by experiment then number.
    pub trials: Vec<TrialRecord>,
    /// Epoch reports, by trial, attempt and epoch.
    pub epochs: Vec<EpochRecord>,
    /// Registered agents.
    pub agents: Vec<AgentRecord>,
}

/// Where experiments, trials, epoch reports and agents are persisted. Calls block.
pub trait ExperimentStore: Send + Sync + 'static {
    /// Loads everything.
    ///
    /// # Errors
    /// When the store cannot be read or holds records it cannot decode.
    fn load(&self) -> Result<Snapshot>;

    /// Applies the changes in one transaction: all of them or none.
    ///
    /// # Errors
    /// When the transaction fails; nothing was written then.
    fn commit(&self, changes: &[Change]) -> Result<()>;
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Sample records shared by the store tests.
    use super::{Change, Snapshot};
    use crate::service::model::*;

    pub fn sample_experiment() -> ExperimentRecord {
        let params: Vec<tuner::space::ParamSpec> = serde_json::from_str(
            r#"[{"name":"x","type":"float","low":0.0,"high":1.0},{"name":"n","type":"int","low":1,"high":4}]"#,
        )
        .expect("sample space parses");
        ExperimentRecord {
            id: "exp-1".into(),
            spec: ExperimentSpec {
                name: "demo".into(),
                metric: "value".into(),
                direction: Direction::Minimize,
                strategy: Strategy::Random,
                batch: BatchStrategy::ClMin,
                budget_trials: 4,
                parallelism: 2,
                parameters: params,
                seed: 7,
                grid_levels: 3,
                initial_trials: 2,
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
                early_stopping: crate::service::early_stop::Rule::Median(
                    crate::service::early_stop::MedianRule {
                        min_epochs: 2,
                        min_trials: 4,
                    },
                ),
            },
            state: ExperimentState::Running,
            created_unix: 1.5,
            exhausted: false,
            // Not empty, so the round trips cover the column.
            failure_reason: "sample reason".into(),
            paused_reason: "sample pause".into(),
            resumed_unix: 3.25,
            queued: vec![
                [
                    ("x".to_string(), tuner::space::Value::Float(0.25)),
                    ("n".to_string(), tuner::space::Value::Int(2)),
                ]
                .into_iter()
                .collect(),
            ],
        }
    }

    pub fn sample_trial() -> TrialRecord {
        let mut params = tuner::space::Assignment::new();
        params.insert("x".into(), tuner::space::Value::Float(0.25));
        params.insert("n".into(), tuner::space::Value::Int(3));
        TrialRecord {
            id: "trial-1".into(),
            experiment_id: "exp-1".into(),
            number: 0,
            params,
            state: TrialState::Running,
            value: None,
            attempts: 1,
            agent_id: Some("agent-1".into()),
            lease: Some(LeaseRecord {
                lease_id: "lease-1".into(),
                agent_id: "agent-1".into(),
                deadline_unix: 99.5,
            }),
            epochs_run: 1,
            best_epoch: 0,
            wall_seconds: 0.0,
            device_seconds: 0.0,
            cost_dollars: 0.0,
            failure_reason: String::new(),
            // Not empty, so the round trips cover the column.
            metrics: [("test_accuracy".to_string(), 0.75)].into(),
            instance_type: "cpu".into(),
            created_unix: 2.0,
            finished_unix: None,
            stop_requested: false,
            imported: false,
            interruptions: 0,
            last_lease_id: Some("lease-1".into()),
        }
    }

    /// Changes to commit, and the snapshot they must load back as.
    pub fn sample_changes() -> (Vec<Change>, Snapshot) {
        let experiment = sample_experiment();
        let trial = sample_trial();
        let epoch = EpochRecord {
            trial_id: trial.id.clone(),
            attempt: 1,
            epoch: 1,
            value: 0.5,
            train_loss: 0.7,
            train_accuracy: 0.6,
            epoch_seconds: 1.25,
        };
        let agent = AgentRecord {
            id: "agent-1".into(),
            capabilities: AgentCapabilities {
                backend: "cpu".into(),
                slots: 1,
                ..AgentCapabilities::default()
            },
            registered_unix: 1.0,
            last_seen_unix: 2.0,
            secret_sha256: "ab".repeat(32),
        };
        let changes = vec![
            Change::PutExperiment(experiment.clone()),
            Change::PutTrial(trial.clone()),
            Change::AddEpoch(epoch.clone()),
            Change::PutAgent(agent.clone()),
        ];
        let snapshot = Snapshot {
            experiments: vec![experiment],
            trials: vec![trial],
            epochs: vec![epoch],
            agents: vec![agent],
        };
        (changes, snapshot)
    }

    #[test]
    fn memory_store_round_trips() {
        use super::ExperimentStore;
        let store = super::MemoryStore::new();
        let (changes, expected) = sample_changes();
        store.commit(&changes).expect("commits");
        let mut duplicate = changes[2].clone();
        if let Change::AddEpoch(e) = &mut duplicate {
            e.value = 123.0;
        }
        store.commit(&[duplicate]).expect("duplicate epoch ignored");
        assert_eq!(store.load().expect("loads"), expected);
    }
}
