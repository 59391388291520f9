//! Domain types of the coordinator: ids, experiment specs, and the records the store keeps.
//! They are plain data with serde, independent of `proto` (conversions live in `grpc::convert`).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tuner::space::{Assignment, ParamSpec, Value};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "-{:016x}"), random_u64()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

id_type!(
    /// Identifies an experiment.
    ExperimentId, "exp");
id_type!(
    /// Identifies a trial (stable across attempts).
    TrialId, "trial");
id_type!(
    /// Identifies one attempt of a trial held by one agent.
    LeaseId, "lease");
id_type!(
    /// Identifies a registered agent.
    AgentId, "agent");

/// A random 64-bit number from the standard library's randomly keyed hasher, mixed with the time
/// and a counter, so ids are unique without a random-number dependency.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// Seconds since the Unix epoch, as the API carries times.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether larger or smaller objective values are better: the tuner's type, one for the whole
/// domain.
pub use tuner::Direction;

/// How new trials are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Batch Bayesian optimization.
    Bo,
    /// Uniform random search.
    Random,
    /// Grid search with `grid_levels` levels a parameter.
    Grid,
}

/// How BO picks a batch of q points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchStrategy {
    /// Constant liar at the best value.
    ClMin,
    /// Constant liar at the mean.
    ClMean,
    /// Constant liar at the worst value.
    ClMax,
    /// Monte Carlo q-LogEI (the default when a spec names none).
    McQei,
}

/// What the agents train.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// `textcnn` or `function`.
    pub kind: String,
    /// Data set name or path.
    pub dataset: String,
    /// Parameters held constant, merged under each trial's parameters.
    pub fixed_params: BTreeMap<String, Value>,
    /// Training examples to keep (0: all).
    pub max_train_examples: u32,
    /// Validation examples to keep (0: all).
    pub max_dev_examples: u32,
    /// textcnn: a validation file on the agents' machines (empty: a seeded split of `dataset`).
    #[serde(default)]
    pub dev_dataset: String,
    /// textcnn: a held-out test file, scored once a trial and never used for selection.
    #[serde(default)]
    pub test_dataset: String,
    /// command: the name of a command the agents declare in their config.
    #[serde(default)]
    pub command: String,
}

impl Workload {
    /// Checks the dev and test files: only the textcnn workload reads them, only beside a
    /// training file path (not the embedded `mr`), each a different file.
    ///
    /// # Errors
    /// A message naming the field and what is wrong with it.
    pub fn check_data_files(&self) -> Result<(), String> {
        let max = super::limits::MAX_DATASET_BYTES;
        for (field, path) in [
            ("dev_dataset", &self.dev_dataset),
            ("test_dataset", &self.test_dataset),
        ] {
            if path.is_empty() {
                continue;
            }
            if path.len() > max {
                return Err(format!(
                    "workload {field} must be at most {max} bytes, got {}",
                    path.len()
                ));
            }
            if self.kind != "textcnn" {
                return Err(format!(
                    "workload {field} is read only by the textcnn workload, not '{}'",
                    super::limits::short(&self.kind)
                ));
            }
            if self.dataset.is_empty() || self.dataset == "mr" {
                return Err(format!(
                    "workload {field} needs dataset to be the path of a training file; dataset is \
                     '{}', the embedded MR corpus with its own split",
                    self.dataset
                ));
            }
            if *path == self.dataset {
                return Err(format!(
                    "workload {field} '{}' is the training file itself",
                    super::limits::short(path)
                ));
            }
        }
        if !self.test_dataset.is_empty() && self.test_dataset == self.dev_dataset {
            return Err(format!(
                "workload test_dataset '{}' is also dev_dataset: the test file must be held out \
                 from selection",
                super::limits::short(&self.test_dataset)
            ));
        }
        Ok(())
    }
}

/// A validated experiment specification, with every default resolved (so it is stored as run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// Display name.
    pub name: String,
    /// Name of the objective.
    pub metric: String,
    /// Whether to maximize or minimize the objective.
    pub direction: Direction,
    /// Search strategy.
    pub strategy: Strategy,
    /// Batch strategy for BO.
    pub batch: BatchStrategy,
    /// Trials to run in total.
    pub budget_trials: u32,
    /// Trials in flight at once.
    pub parallelism: u32,
    /// The search space.
    pub parameters: Vec<ParamSpec>,
    /// Seed of the experiment's suggestions (never 0 once stored).
    pub seed: u64,
    /// Levels a parameter for grid search.
    pub grid_levels: u32,
    /// Space-filling trials before BO uses its model.
    pub initial_trials: u32,
    /// Leases a trial gets before it is failed.
    pub max_attempts: u32,
    /// What agents train, if anything specific.
    pub workload: Option<Workload>,
    /// Stop creating trials once this many dollars were reported (0: no limit).
    pub budget_dollars: f64,
    /// Study label.
    pub study: String,
    /// Early-stopping rule (specs stored before it existed have none).
    #[serde(default)]
    pub early_stopping: super::early_stop::Rule,
    /// The objective is noise-free: BO pins the GP's noise at its floor instead of fitting it
    /// (specs stored before it existed are not).
    #[serde(default)]
    pub deterministic: bool,
    /// The most results BO fits its GP to ([`tuner::SuggestConfig::max_model_points`]); 0 in
    /// specs stored before it existed, read as the tuner's default.
    #[serde(default)]
    pub max_model_points: u32,
}

/// Lifecycle of an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentState {
    /// Creating and running trials.
    Running,
    /// Budget used up or space exhausted, every trial terminal.
    Completed,
    /// Stopped by a user.
    Stopped,
    /// Given up on: its suggestions kept failing or ran past their time budget (the reason is
    /// in [`ExperimentRecord::failure_reason`]).
    Failed,
    /// Its trials kept failing for the same reason ([`super::pause`]): nothing is leased or
    /// created until it is resumed (the reason is in [`ExperimentRecord::paused_reason`]).
    Paused,
}

/// An experiment as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// Its id.
    pub id: ExperimentId,
    /// Its resolved spec.
    pub spec: ExperimentSpec,
    /// Lifecycle state.
    pub state: ExperimentState,
    /// Creation time, Unix seconds.
    pub created_unix: f64,
    /// The strategy returned fewer points than asked (grid exhausted): create no more.
    pub exhausted: bool,
    /// Why it failed (empty unless [`ExperimentState::Failed`]).
    #[serde(default)]
    pub failure_reason: String,
    /// Why it was paused (empty unless [`ExperimentState::Paused`]).
    #[serde(default)]
    pub paused_reason: String,
    /// When it was last resumed, Unix seconds (0: never): only trials that finished since count
    /// towards the next pause.
    #[serde(default)]
    pub resumed_unix: f64,
    /// Configurations queued to run before any suggestion (`EnqueueTrials`), first first: each
    /// becomes a trial when a slot frees.
    #[serde(default)]
    pub queued: Vec<Assignment>,
}

/// Lifecycle of a trial (`proto` `TrialState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Waiting for an agent.
    Pending,
    /// Handed to an agent, not yet reported on.
    Leased,
    /// The agent heartbeated or reported an epoch.
    Running,
    /// Ran to the end with a value.
    Succeeded,
    /// Failed (not retried) or ran out of attempts.
    Failed,
    /// The experiment was stopped first.
    Cancelled,
    /// Stopped early; its value is the last one reported.
    EarlyStopped,
}

impl TrialState {
    /// Whether the trial will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::EarlyStopped
        )
    }

    /// Whether an agent holds it.
    pub fn is_leased(self) -> bool {
        matches!(self, Self::Leased | Self::Running)
    }

    /// The label used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Leased => "leased",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::EarlyStopped => "early_stopped",
        }
    }
}

/// The current lease of a trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The attempt's lease id.
    pub lease_id: LeaseId,
    /// The agent holding it.
    pub agent_id: AgentId,
    /// When it expires unless renewed, Unix seconds.
    pub deadline_unix: f64,
}

/// A trial as stored (its epoch reports are kept separately).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Its id.
    pub id: TrialId,
    /// Its experiment.
    pub experiment_id: ExperimentId,
    /// Position in the experiment, from 0.
    pub number: u32,
    /// The parameters to evaluate.
    pub params: Assignment,
    /// Lifecycle state.
    pub state: TrialState,
    /// The objective, once known.
    pub value: Option<f64>,
    /// Leases handed out so far, the current one included: never decreases, and numbers the
    /// attempt each epoch report belongs to.
    pub attempts: u32,
    /// Attempts that ended interrupted (agent shutting down): they do not count towards
    /// `max_attempts`.
    #[serde(default)]
    pub interruptions: u32,
    /// The agent currently or last holding it.
    pub agent_id: Option<AgentId>,
    /// The current lease, while leased or running.
    pub lease: Option<LeaseRecord>,
    /// The lease of the latest attempt, kept after it ends: a completion delivered late for an
    /// expired lease is accepted while the trial has not been leased again.
    #[serde(default)]
    pub last_lease_id: Option<LeaseId>,
    /// Epochs the last attempt ran.
    pub epochs_run: u32,
    /// Best epoch of the last attempt.
    pub best_epoch: u32,
    /// Wall seconds over all attempts.
    pub wall_seconds: f64,
    /// Device seconds over all attempts.
    pub device_seconds: f64,
    /// Dollars over all attempts.
    pub cost_dollars: f64,
    /// Why it failed.
    pub failure_reason: String,
    /// Extra metrics the last completion reported (e.g. `test_accuracy`), never the objective.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Instance type of the last agent.
    pub instance_type: String,
    /// Creation time, Unix seconds.
    pub created_unix: f64,
    /// When it became terminal, Unix seconds.
    pub finished_unix: Option<f64>,
    /// The experiment was stopped while it ran: tell the agent to stop.
    pub stop_requested: bool,
    /// Added with `AddTrials` (a result obtained elsewhere): never leased, and not counted
    /// towards the budget.
    #[serde(default)]
    pub imported: bool,
}

/// One epoch report of one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The trial.
    pub trial_id: TrialId,
    /// The attempt it belongs to (1-based).
    pub attempt: u32,
    /// The epoch number as reported.
    pub epoch: u32,
    /// The objective after this epoch.
    pub value: f64,
    /// Training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_accuracy: f64,
    /// Seconds the epoch took.
    pub epoch_seconds: f64,
}

/// What an agent says about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCapabilities {
    /// `cpu` or `cuda`.
    pub backend: String,
    /// Device model.
    pub device_name: String,
    /// Device memory.
    pub device_memory_bytes: u64,
    /// GPU ordinal, -1 for CPU.
    pub device_ordinal: i32,
    /// Instance type.
    pub instance_type: String,
    /// Dollars an hour.
    pub price_per_hour_dollars: f64,
    /// Trials at once.
    pub slots: u32,
    /// Host name.
    pub hostname: String,
    /// Workload kinds it can train (empty: any).
    pub workloads: Vec<String>,
    /// Agent version.
    pub version: String,
    /// Commands it declares (workload kind `command`).
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A registered agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its id.
    pub id: AgentId,
    /// What it said at its last registration.
    pub capabilities: AgentCapabilities,
    /// Last registration time.
    pub registered_unix: f64,
    /// Last request seen, Unix seconds.
    pub last_seen_unix: f64,
    /// SHA-256 of its secret in hex ([`super::credentials`]); empty for an agent stored before
    /// agents had secrets, whose id any registration may take.
    #[serde(default)]
    pub secret_sha256: String,
}

impl AgentRecord {
    /// Whether this agent can train experiments with this workload.
    ///
    /// A command workload needs the agent to declare that command: agents run only the
    /// commands of their own config.
    pub fn accepts(&self, workload: Option<&Workload>) -> bool {
        let Some(w) = workload else {
            return true;
        };
        if w.kind == super::workloads::COMMAND_KIND {
            return self.capabilities.commands.iter().any(|c| c == &w.command);
        }
        self.capabilities.workloads.is_empty()
            || self
                .capabilities
                .workloads
                .iter()
                .any(|kind| kind == &w.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = TrialId::generate();
        let b = TrialId::generate();
        assert_ne!(a, b);
        assert!(a.0.starts_with("trial-"));
    }

    #[test]
    fn dev_and_test_files_need_a_textcnn_training_file_and_differ() {
        let own = Workload {
            kind: "textcnn".into(),
            dataset: "/d/train.txt".into(),
            dev_dataset: "/d/dev.txt".into(),
            test_dataset: "/d/test.txt".into(),
            ..Workload::default()
        };
        own.check_data_files().expect("valid");
        let refused = |w: Workload, needle: &str| {
            let err = w.check_data_files().expect_err(needle);
            assert!(err.contains(needle), "{err}");
        };
        refused(
            Workload {
                dataset: "mr".into(),
                ..own.clone()
            },
            "dev_dataset needs dataset to be the path of a training file",
        );
        refused(
            Workload {
                dataset: String::new(),
                dev_dataset: String::new(),
                ..own.clone()
            },
            "test_dataset needs dataset to be the path of a training file",
        );
        refused(
            Workload {
                kind: "function".into(),
                ..own.clone()
            },
            "read only by the textcnn workload",
        );
        refused(
            Workload {
                test_dataset: "/d/dev.txt".into(),
                ..own.clone()
            },
            "test_dataset '/d/dev.txt' is also dev_dataset",
        );
        refused(
            Workload {
                test_dataset: "/d/train.txt".into(),
                ..own.clone()
            },
            "is the training file itself",
        );
    }

    #[test]
    fn direction_compares() {
        assert!(Direction::Maximize.is_better(2.0, 1.0));
        assert!(Direction::Minimize.is_better(1.0, 2.0));
        assert!(!Direction::Minimize.is_better(1.0, 1.0));
    }

    #[test]
    fn workload_filter() {
        let mut agent = AgentRecord {
            id: AgentId::generate(),
            capabilities: AgentCapabilities::default(),
            registered_unix: 0.0,
            last_seen_unix: 0.0,
            secret_sha256: String::new(),
        };
        let w = Workload {
            kind: "function".into(),
            ..Workload::default()
        };
        assert!(agent.accepts(Some(&w)));
        agent.capabilities.workloads = vec!["textcnn".into()];
        assert!(!agent.accepts(Some(&w)));
        assert!(agent.accepts(None));
    }

    #[test]
    fn a_command_goes_only_to_agents_that_declare_it() {
        let mut agent = AgentRecord {
            id: AgentId::generate(),
            capabilities: AgentCapabilities::default(),
            registered_unix: 0.0,
            last_seen_unix: 0.0,
            secret_sha256: String::new(),
        };
        let w = Workload {
            kind: "command".into(),
            command: "train".into(),
            ..Workload::default()
        };
        assert!(
            !agent.accepts(Some(&w)),
            "an agent that takes any kind declares no command"
        );
        agent.capabilities.workloads = vec!["textcnn".into(), "command".into()];
        agent.capabilities.commands = vec!["other".into()];
        assert!(!agent.accepts(Some(&w)));
        agent.capabilities.commands.push("train".into());
        assert!(agent.accepts(Some(&w)));
    }
}
