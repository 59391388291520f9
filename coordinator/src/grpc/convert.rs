//! Conversions between `proto::v1` messages and domain types: `TryFrom` for what clients send
//! (errors are `InvalidArgument`), `From` for what the coordinator answers.

use std::collections::{BTreeMap, HashMap};

use proto::v1 as pb;
use tuner::space::{ParamKind, ParamSpec, Value};

use crate::service::early_stop::{AshaRule, MedianRule, Rule};
use crate::service::limits::{self, short};
use crate::service::model::{
    AgentCapabilities, BatchStrategy, Direction, EpochRecord, ExperimentSpec, ExperimentState,
    Strategy, TrialState, Workload,
};
use crate::service::warm_start::ImportedTrial;
use crate::service::{
    Completion, EpochInput, ExperimentView, Lease, LeaseAction, LeaseStatus, Outcome, TrialView,
};
use crate::{Error, Result};

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// A parameter value to the wire.
pub fn value_to_pb(value: &Value) -> pb::ParameterValue {
    use pb::parameter_value::Kind;
    let kind = match value {
        Value::Int(v) => Kind::IntValue(*v),
        Value::Float(v) => Kind::FloatValue(*v),
        Value::Categorical(v) => Kind::CategoricalValue(v.clone()),
    };
    pb::ParameterValue { kind: Some(kind) }
}

/// A parameter value from the wire.
///
/// # Errors
/// When the value is empty.
pub fn value_from_pb(name: &str, value: &pb::ParameterValue) -> Result<Value> {
    use pb::parameter_value::Kind;
    match &value.kind {
        Some(Kind::IntValue(v)) => Ok(Value::Int(*v)),
        Some(Kind::FloatValue(v)) => Ok(Value::Float(*v)),
        Some(Kind::CategoricalValue(v)) => Ok(Value::Categorical(v.clone())),
        None => Err(invalid(format!("parameter '{}' has no value", short(name)))),
    }
}

/// An assignment to the wire.
pub fn params_to_pb(params: &BTreeMap<String, Value>) -> HashMap<String, pb::ParameterValue> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), value_to_pb(v)))
        .collect()
}

/// An assignment from the wire.
///
/// # Errors
/// When a value is empty.
pub fn params_from_pb(
    params: &HashMap<String, pb::ParameterValue>,
) -> Result<BTreeMap<String, Value>> {
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_from_pb(k, v)?)))
        .collect()
}

/// A tuner parameter spec to the wire.
pub fn param_spec_to_pb(spec: &ParamSpec) -> pb::ParameterSpec {
    use pb::parameter_spec::Kind;
    let int_default = || match spec.default {
        Some(Value::Int(v)) => Some(v),
        _ => None,
    };
    let kind = match &spec.kind {
        ParamKind::Int { low, high, log } => Kind::Int(pb::IntParam {
            low: *low,
            high: *high,
            log: *log,
            default_value: int_default(),
            step: None,
        }),
        ParamKind::Float { low, high, log } => Kind::Float(pb::FloatParam {
            low: *low,
            high: *high,
            log: *log,
            default_value: spec.default.as_ref().and_then(Value::as_f64),
            step: None,
        }),
        ParamKind::Stepped(steps) if steps.integer => Kind::Int(pb::IntParam {
            low: steps.low as i64,
            high: steps.high() as i64,
            log: false,
            default_value: int_default(),
            step: Some(steps.step as i64),
        }),
        ParamKind::Stepped(steps) => Kind::Float(pb::FloatParam {
            low: steps.low,
            high: steps.high(),
            log: false,
            default_value: spec.default.as_ref().and_then(Value::as_f64),
            step: Some(steps.step),
        }),
        ParamKind::Categorical { choices } => Kind::Categorical(pb::CategoricalParam {
            choices: choices.clone(),
            default_value: spec.default.as_ref().and_then(|d| match d {
                Value::Categorical(v) => Some(v.clone()),
                _ => None,
            }),
        }),
    };
    pb::ParameterSpec {
        name: spec.name.clone(),
        kind: Some(kind),
    }
}

/// The error of a parameter the wire describes wrongly, naming it.
fn bad_param(spec: &pb::ParameterSpec, reason: &str) -> Error {
    invalid(format!(
        "invalid parameter '{}': {reason}",
        short(&spec.name)
    ))
}

/// A tuner parameter spec from the wire (checked later, with the whole space, by `Space::new`).
///
/// # Errors
/// When the parameter has no kind.
pub fn param_spec_from_pb(spec: &pb::ParameterSpec) -> Result<ParamSpec> {
    use pb::parameter_spec::Kind;
    let (kind, default) = match &spec.kind {
        Some(Kind::Int(p)) => (
            ParamKind::int(p.low, p.high, p.log, p.step).map_err(|r| bad_param(spec, &r))?,
            p.default_value.map(Value::Int),
        ),
        Some(Kind::Float(p)) => (
            ParamKind::float(p.low, p.high, p.log, p.step).map_err(|r| bad_param(spec, &r))?,
            p.default_value.map(Value::Float),
        ),
        Some(Kind::Categorical(p)) => (
            ParamKind::Categorical {
                choices: p.choices.clone(),
            },
            p.default_value.clone().map(Value::Categorical),
        ),
        None => {
            return Err(invalid(format!(
                "invalid parameter '{}': no type (int, float or categorical)",
                short(&spec.name)
            )));
        }
    };
    Ok(ParamSpec {
        name: spec.name.clone(),
        kind,
        default,
    })
}

impl TryFrom<pb::Workload> for Workload {
    type Error = Error;
    fn try_from(w: pb::Workload) -> Result<Self> {
        let workload = Workload {
            fixed_params: params_from_pb(&w.fixed_params)?,
            kind: w.kind,
            dataset: w.dataset,
            max_train_examples: w.max_train_examples,
            max_dev_examples: w.max_dev_examples,
            dev_dataset: w.dev_dataset,
            test_dataset: w.test_dataset,
            command: w.command,
        };
        workload.check_data_files().map_err(invalid)?;
        Ok(workload)
    }
}

impl From<&Workload> for pb::Workload {
    fn from(w: &Workload) -> Self {
        pb::Workload {
            kind: w.kind.clone(),
            dataset: w.dataset.clone(),
            fixed_params: params_to_pb(&w.fixed_params),
            max_train_examples: w.max_train_examples,
            max_dev_examples: w.max_dev_examples,
            dev_dataset: w.dev_dataset.clone(),
            test_dataset: w.test_dataset.clone(),
            command: w.command.clone(),
        }
    }
}

/// A known value of a proto enum field, or an error naming the field and the value (prost
/// otherwise turns an unknown value into the default).
fn known_enum<E: TryFrom<i32>>(field: &str, raw: i32) -> Result<E> {
    E::try_from(raw).map_err(|_| invalid(format!("{field} {raw} is not a known value")))
}

impl TryFrom<pb::ExperimentSpec> for ExperimentSpec {
    type Error = Error;
    fn try_from(spec: pb::ExperimentSpec) -> Result<Self> {
        let encoded = prost::Message::encoded_len(&spec);
        if encoded > limits::MAX_SPEC_BYTES {
            return Err(invalid(format!(
                "spec must be at most {} bytes encoded, got {encoded}",
                limits::MAX_SPEC_BYTES
            )));
        }
        let direction = match known_enum("direction", spec.direction)? {
            pb::Direction::Maximize => Direction::Maximize,
            pb::Direction::Minimize => Direction::Minimize,
            pb::Direction::Unspecified => {
                return Err(invalid("direction must be maximize or minimize"));
            }
        };
        let strategy = match known_enum("strategy", spec.strategy)? {
            pb::Strategy::Bo | pb::Strategy::Unspecified => Strategy::Bo,
            pb::Strategy::Random => Strategy::Random,
            pb::Strategy::Grid => Strategy::Grid,
        };
        let batch = match known_enum("batch_strategy", spec.batch_strategy)? {
            pb::BatchStrategy::ClMin => BatchStrategy::ClMin,
            pb::BatchStrategy::ClMean => BatchStrategy::ClMean,
            pb::BatchStrategy::ClMax => BatchStrategy::ClMax,
            pb::BatchStrategy::McQei | pb::BatchStrategy::Unspecified => BatchStrategy::McQei,
        };
        let parameters = spec
            .parameters
            .iter()
            .map(param_spec_from_pb)
            .collect::<Result<Vec<_>>>()?;
        Ok(ExperimentSpec {
            name: spec.name,
            metric: spec.metric,
            direction,
            strategy,
            batch,
            budget_trials: spec.budget_trials,
            parallelism: spec.parallelism,
            parameters,
            seed: spec.seed,
            grid_levels: spec.grid_levels,
            initial_trials: spec.initial_trials,
            max_attempts: spec.max_attempts,
            workload: spec.workload.map(Workload::try_from).transpose()?,
            budget_dollars: spec.budget_dollars,
            study: spec.study,
            deterministic: spec.deterministic,
            max_model_points: spec.max_model_points,
            early_stopping: rule_from_pb(spec.early_stopping.as_ref()),
        })
    }
}

/// A direction to the wire.
pub fn direction_to_pb(direction: Direction) -> pb::Direction {
    match direction {
        Direction::Maximize => pb::Direction::Maximize,
        Direction::Minimize => pb::Direction::Minimize,
    }
}

impl From<&ExperimentSpec> for pb::ExperimentSpec {
    fn from(spec: &ExperimentSpec) -> Self {
        pb::ExperimentSpec {
            name: spec.name.clone(),
            metric: spec.metric.clone(),
            direction: direction_to_pb(spec.direction) as i32,
            strategy: match spec.strategy {
                Strategy::Bo => pb::Strategy::Bo,
                Strategy::Random => pb::Strategy::Random,
                Strategy::Grid => pb::Strategy::Grid,
            } as i32,
            batch_strategy: match spec.batch {
                BatchStrategy::ClMin => pb::BatchStrategy::ClMin,
                BatchStrategy::ClMean => pb::BatchStrategy::ClMean,
                BatchStrategy::ClMax => pb::BatchStrategy::ClMax,
                BatchStrategy::McQei => pb::BatchStrategy::McQei,
            } as i32,
            budget_trials: spec.budget_trials,
            parallelism: spec.parallelism,
            parameters: spec.parameters.iter().map(param_spec_to_pb).collect(),
            seed: spec.seed,
            grid_levels: spec.grid_levels,
            initial_trials: spec.initial_trials,
            max_attempts: spec.max_attempts,
            workload: spec.workload.as_ref().map(pb::Workload::from),
            budget_dollars: spec.budget_dollars,
            study: spec.study.clone(),
            deterministic: spec.deterministic,
            max_model_points: spec.max_model_points,
            early_stopping: rule_to_pb(&spec.early_stopping),
        }
    }
}

/// An early-stopping rule from the wire; zeros take the rule's defaults.
pub fn rule_from_pb(rule: Option<&pb::EarlyStopping>) -> Rule {
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    match rule.and_then(|r| r.rule.as_ref()) {
        None => Rule::None,
        Some(pb::early_stopping::Rule::Median(m)) => {
            let default = MedianRule::default();
            Rule::Median(MedianRule {
                min_epochs: or(m.min_epochs, default.min_epochs),
                min_trials: or(m.min_trials, default.min_trials as u32) as usize,
            })
        }
        Some(pb::early_stopping::Rule::Asha(a)) => {
            let default = AshaRule::default();
            Rule::Asha(AshaRule {
                min_epochs: or(a.min_epochs, default.min_epochs),
                eta: or(a.eta, default.eta),
            })
        }
    }
}

/// An early-stopping rule to the wire (`None` when the experiment has none).
pub fn rule_to_pb(rule: &Rule) -> Option<pb::EarlyStopping> {
    let rule = match rule {
        Rule::None => return None,
        Rule::Median(m) => pb::early_stopping::Rule::Median(pb::MedianStopping {
            min_epochs: m.min_epochs,
            min_trials: u32::try_from(m.min_trials).unwrap_or(u32::MAX),
        }),
        Rule::Asha(a) => pb::early_stopping::Rule::Asha(pb::SuccessiveHalving {
            min_epochs: a.min_epochs,
            eta: a.eta,
        }),
    };
    Some(pb::EarlyStopping { rule: Some(rule) })
}

impl From<&ExperimentView> for pb::Experiment {
    fn from(view: &ExperimentView) -> Self {
        let record = &view.record;
        pb::Experiment {
            id: record.id.0.clone(),
            spec: Some(pb::ExperimentSpec::from(&record.spec)),
            state: match record.state {
                ExperimentState::Running => pb::ExperimentState::Running,
                ExperimentState::Completed => pb::ExperimentState::Completed,
                ExperimentState::Stopped => pb::ExperimentState::Stopped,
                ExperimentState::Failed => pb::ExperimentState::Failed,
                ExperimentState::Paused => pb::ExperimentState::Paused,
            } as i32,
            failure_reason: record.failure_reason.clone(),
            paused_reason: record.paused_reason.clone(),
            trials_created: view.counts.created,
            trials_succeeded: view.counts.succeeded,
            trials_failed: view.counts.failed,
            trials_early_stopped: view.counts.early_stopped,
            trials_running: view.counts.leased,
            best_value: view.best.as_ref().map(|(_, v)| *v),
            best_trial_id: view.best.as_ref().map(|(t, _)| t.0.clone()),
            cost_dollars: view.counts.cost_dollars,
            epochs_reported: view.epochs_reported,
            created_unix_seconds: record.created_unix,
            seed: record.spec.seed,
            device_seconds: view.counts.device_seconds,
            trials_imported: view.counts.imported,
            trials_queued: u32::try_from(record.queued.len()).unwrap_or(u32::MAX),
        }
    }
}

fn trial_state_to_pb(state: TrialState) -> pb::TrialState {
    match state {
        TrialState::Pending => pb::TrialState::Pending,
        TrialState::Leased => pb::TrialState::Leased,
        TrialState::Running => pb::TrialState::Running,
        TrialState::Succeeded => pb::TrialState::Succeeded,
        TrialState::Failed => pb::TrialState::Failed,
        TrialState::Cancelled => pb::TrialState::Cancelled,
        TrialState::EarlyStopped => pb::TrialState::EarlyStopped,
    }
}

fn epoch_to_pb(e: &EpochRecord) -> pb::EpochReport {
    pb::EpochReport {
        epoch: e.epoch,
        value: e.value,
        train_loss: e.train_loss,
        train_accuracy: e.train_accuracy,
        epoch_seconds: e.epoch_seconds,
    }
}

impl From<&TrialView> for pb::Trial {
    fn from(view: &TrialView) -> Self {
        let t = &view.record;
        pb::Trial {
            id: t.id.0.clone(),
            experiment_id: t.experiment_id.0.clone(),
            number: t.number,
            params: params_to_pb(&t.params),
            state: trial_state_to_pb(t.state) as i32,
            value: t.value,
            attempts: t.attempts,
            agent_id: t.agent_id.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
            epochs: view.epochs.iter().map(epoch_to_pb).collect(),
            epochs_run: t.epochs_run,
            best_epoch: t.best_epoch,
            wall_seconds: t.wall_seconds,
            device_seconds: t.device_seconds,
            cost_dollars: t.cost_dollars,
            failure_reason: t.failure_reason.clone(),
            instance_type: t.instance_type.clone(),
            created_unix_seconds: t.created_unix,
            finished_unix_seconds: t.finished_unix.unwrap_or(0.0),
            metrics: t
                .metrics
                .iter()
                .map(|(name, value)| (name.clone(), *value))
                .collect(),
            imported: t.imported,
        }
    }
}

impl TryFrom<pb::ImportedTrial> for ImportedTrial {
    type Error = Error;

    fn try_from(trial: pb::ImportedTrial) -> Result<Self> {
        Ok(ImportedTrial {
            params: params_from_pb(&trial.params)?,
            value: trial.value,
            epochs: trial
                .epochs
                .iter()
                .map(|e| EpochInput {
                    epoch: e.epoch,
                    value: e.value,
                    train_loss: e.train_loss,
                    train_accuracy: e.train_accuracy,
                    epoch_seconds: e.epoch_seconds,
                })
                .collect(),
            metrics: trial.metrics.into_iter().collect(),
        })
    }
}

impl From<pb::AgentCapabilities> for AgentCapabilities {
    fn from(c: pb::AgentCapabilities) -> Self {
        AgentCapabilities {
            backend: match c.backend() {
                pb::Backend::Cpu => "cpu",
                pb::Backend::Cuda => "cuda",
                pb::Backend::Unspecified => "unspecified",
            }
            .into(),
            device_name: c.device_name,
            device_memory_bytes: c.device_memory_bytes,
            device_ordinal: c.device_ordinal,
            instance_type: c.instance_type,
            price_per_hour_dollars: c.price_per_hour_dollars,
            slots: c.slots,
            hostname: c.hostname,
            workloads: c.workloads,
            version: c.version,
            commands: c.commands,
        }
    }
}

impl From<&Lease> for pb::Lease {
    fn from(lease: &Lease) -> Self {
        pb::Lease {
            lease_id: lease.lease_id.0.clone(),
            trial_id: lease.trial_id.0.clone(),
            experiment_id: lease.experiment_id.0.clone(),
            params: params_to_pb(&lease.params),
            workload: lease.workload.as_ref().map(pb::Workload::from),
            deadline_unix_seconds: lease.deadline_unix,
            attempt: lease.attempt,
            metric: lease.metric.clone(),
            direction: direction_to_pb(lease.direction) as i32,
        }
    }
}

/// A lease action to the wire.
pub fn action_to_pb(action: LeaseAction) -> pb::LeaseAction {
    match action {
        LeaseAction::Continue => pb::LeaseAction::Continue,
        LeaseAction::Stop => pb::LeaseAction::Stop,
        LeaseAction::Abandon => pb::LeaseAction::Abandon,
    }
}

impl From<&LeaseStatus> for pb::LeaseStatus {
    fn from(s: &LeaseStatus) -> Self {
        pb::LeaseStatus {
            lease_id: s.lease_id.0.clone(),
            action: action_to_pb(s.action) as i32,
            deadline_unix_seconds: s.deadline_unix,
        }
    }
}

impl TryFrom<Option<pb::EpochReport>> for EpochInput {
    type Error = Error;
    fn try_from(report: Option<pb::EpochReport>) -> Result<Self> {
        let r = report.ok_or_else(|| invalid("report is missing"))?;
        Ok(EpochInput {
            epoch: r.epoch,
            value: r.value,
            train_loss: r.train_loss,
            train_accuracy: r.train_accuracy,
            epoch_seconds: r.epoch_seconds,
        })
    }
}

impl TryFrom<pb::CompleteTrialRequest> for Completion {
    type Error = Error;
    fn try_from(r: pb::CompleteTrialRequest) -> Result<Self> {
        let outcome = match known_enum("outcome", r.outcome)? {
            pb::TrialOutcome::Succeeded => Outcome::Succeeded,
            pb::TrialOutcome::Failed => Outcome::Failed,
            pb::TrialOutcome::Stopped => Outcome::Stopped,
            pb::TrialOutcome::Interrupted => Outcome::Interrupted,
            pb::TrialOutcome::Unspecified => return Err(invalid("outcome must be set")),
        };
        Ok(Completion {
            outcome,
            value: r.value,
            epochs_run: r.epochs_run,
            best_epoch: r.best_epoch,
            wall_seconds: r.wall_seconds,
            device_seconds: r.device_seconds,
            cost_dollars: r.cost_dollars,
            failure_reason: limits::truncate(r.failure_reason, limits::MAX_FAILURE_REASON_BYTES),
            metrics: r.metrics.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests;
