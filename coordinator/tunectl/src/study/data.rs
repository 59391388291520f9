//! The plain domain form of a study: its experiments and their trials, read once from the
//! coordinator (or from a JSON fixture) so that every table and plot is a pure function of it.

use std::collections::BTreeMap;

use anyhow::Context;
use coordinator::grpc::convert::{param_spec_from_pb, params_from_pb, rule_from_pb};
use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tuner::space::{Assignment, ParamSpec};

use crate::cli::{self, Client};

/// A whole study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyData {
    /// The study label (`ExperimentSpec.study`).
    pub name: String,
    /// Its experiments.
    pub experiments: Vec<ExperimentData>,
}

/// One experiment of a study: one strategy, one scenario, one repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentData {
    /// Experiment id.
    pub id: String,
    /// `bo`, `random` or `grid`, with `+median` or `+asha` when the experiment stopped trials
    /// early.
    pub strategy: String,
    /// The scenario (`basic`, `complex`, `basic-mini`) or, for hand-made specs, the spec name.
    pub scenario: String,
    /// Repeat index (0-based).
    pub repeat: u32,
    /// The seed actually used.
    #[serde(default)]
    pub seed: u64,
    /// Trials the experiment was allowed.
    pub budget_trials: u32,
    /// Whether larger values are better.
    #[serde(default = "yes")]
    pub maximize: bool,
    /// The search space (its defaults give the default configuration).
    #[serde(default)]
    pub parameters: Vec<ParamSpec>,
    /// The trials, in creation order.
    pub trials: Vec<TrialData>,
    /// The workload's data set (`mr` for the embedded MR, also when a textcnn spec left it
    /// empty); `None` in study data saved before it was recorded.
    #[serde(default)]
    pub dataset: Option<String>,
}

/// `tunectl study`'s built-in scenarios, all on MR (for study data without a dataset).
const MR_SCENARIOS: &[&str] = &["basic", "complex", "basic-mini"];

impl ExperimentData {
    /// Whether it trained on the embedded MR corpus (the published study's data).
    pub fn is_mr(&self) -> bool {
        match &self.dataset {
            Some(dataset) => dataset == "mr",
            None => MR_SCENARIOS.contains(&self.scenario.as_str()),
        }
    }
}

fn yes() -> bool {
    true
}

/// One trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialData {
    /// Position in its experiment (0-based).
    pub number: u32,
    /// `succeeded`, `early_stopped`, `failed`, `cancelled`, `running`, …
    pub state: String,
    /// The objective, when the trial produced one.
    #[serde(default)]
    pub value: Option<f64>,
    /// The objective after each epoch, in epoch order.
    #[serde(default)]
    pub epoch_values: Vec<f64>,
    /// Epochs trained (all attempts).
    pub epochs_run: u32,
    /// Device seconds (all attempts).
    pub device_seconds: f64,
    /// Dollars at the agent's instance price (all attempts).
    pub cost_dollars: f64,
    /// The agent's instance type.
    #[serde(default)]
    pub instance_type: String,
    /// The trial's parameters.
    #[serde(default)]
    pub params: Assignment,
    /// Extra metrics (the text CNN's `test_accuracy`), never the objective.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl TrialData {
    /// Whether the trial ended with a value (succeeded or early-stopped).
    pub fn has_result(&self) -> bool {
        self.value.is_some_and(f64::is_finite)
            && matches!(self.state.as_str(), "succeeded" | "early_stopped")
    }
}

impl StudyData {
    /// Reads a study stored as JSON.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn read_json(path: &std::path::Path) -> anyhow::Result<StudyData> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read study data {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("invalid study data {}", path.display()))
    }

    /// The scenarios and, for each, its strategies, both in first-seen order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for experiment in &self.experiments {
            let position = groups.iter().position(|(s, _)| *s == experiment.scenario);
            let index = position.unwrap_or_else(|| {
                groups.push((experiment.scenario.clone(), Vec::new()));
                groups.len() - 1
            });
            if !groups[index].1.contains(&experiment.strategy) {
                groups[index].1.push(experiment.strategy.clone());
            }
        }
        groups
    }

    /// The repeats of one strategy in one scenario, by repeat index.
    pub fn repeats(&self, scenario: &str, strategy: &str) -> Vec<&ExperimentData> {
        let mut repeats: Vec<&ExperimentData> = self
            .experiments
            .iter()
            .filter(|e| e.scenario == scenario && e.strategy == strategy)
            .collect();
        repeats.sort_by_key(|e| e.repeat);
        repeats
    }
}

/// Reads a study's experiments and trials (with epochs) from the coordinator.
///
/// # Errors
/// When a request fails or the study has no experiments.
pub async fn fetch(client: &mut Client, study: &str) -> anyhow::Result<StudyData> {
    let mut experiments = cli::list_experiments(client, study).await?;
    anyhow::ensure!(
        !experiments.is_empty(),
        "study '{study}' has no experiments"
    );
    experiments.sort_by(|a, b| a.created_unix_seconds.total_cmp(&b.created_unix_seconds));
    let mut data = StudyData {
        name: study.to_string(),
        experiments: Vec::new(),
    };
    let mut repeat_counts: BTreeMap<(String, String), u32> = BTreeMap::new();
    for experiment in experiments {
        let trials = cli::list_trials(client, &experiment.id, true).await?;
        let mut converted = experiment_from_pb(&experiment, &trials)?;
        let spec_name = experiment
            .spec
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        let named_repeat = parse_name(spec_name).and_then(|(_, _, repeat)| repeat);
        if named_repeat.is_none() {
            // Not made by `tunectl study`: number the repeats in creation order.

            let count = repeat_counts
                .entry((converted.scenario.clone(), converted.strategy.clone()))
                .or_default();
            converted.repeat = *count;
            *count += 1;
        }
        data.experiments.push(converted);
    }
    Ok(data)
}

/// The experiment name `tunectl study` gives: `SCENARIO/STRATEGY/rREPEAT`.
pub fn experiment_name(scenario: &str, strategy: &str, repeat: u32) -> String {
    format!("{scenario}/{strategy}/r{repeat}")
}

/// Splits a name made by [`experiment_name`] into (scenario, strategy, repeat).
fn parse_name(name: &str) -> Option<(String, String, Option<u32>)> {
    let mut parts = name.split('/');
    let (scenario, strategy, repeat) = (parts.next()?, parts.next()?, parts.next()?);
    let repeat = repeat.strip_prefix('r').and_then(|r| r.parse().ok());
    Some((scenario.to_string(), strategy.to_string(), repeat))
}

/// `STRATEGY_BO` -> `bo`.
fn strategy_name(strategy: pb::Strategy) -> String {
    strategy
        .as_str_name()
        .trim_start_matches("STRATEGY_")
        .to_lowercase()
}

/// `TRIAL_STATE_EARLY_STOPPED` -> `early_stopped`.
fn state_name(state: pb::TrialState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TRIAL_STATE_")
        .to_lowercase()
}

/// Converts one experiment and its trials.
///
/// # Errors
/// When a parameter has no kind or a value is empty.
pub fn experiment_from_pb(
    experiment: &pb::Experiment,
    trials: &[pb::Trial],
) -> anyhow::Result<ExperimentData> {
    let spec = experiment.spec.clone().unwrap_or_default();
    let parameters = spec
        .parameters
        .iter()
        .map(param_spec_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let (scenario, repeat) = match parse_name(&spec.name) {
        Some((scenario, _, repeat)) => (scenario, repeat.unwrap_or(0)),
        None => (spec.name.clone(), 0),
    };
    let mut converted = Vec::with_capacity(trials.len());
    for trial in trials {
        let mut epochs = trial.epochs.clone();
        epochs.sort_by_key(|e| e.epoch);
        converted.push(TrialData {
            number: trial.number,
            state: state_name(trial.state()),
            value: trial.value,
            epoch_values: epochs.iter().map(|e| e.value).collect(),
            epochs_run: trial.epochs_run,
            device_seconds: trial.device_seconds,
            cost_dollars: trial.cost_dollars,
            instance_type: trial.instance_type.clone(),
            params: params_from_pb(&trial.params)
                .with_context(|| format!("trial {} has a bad parameter", trial.id))?,
            metrics: trial.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        });
    }
    converted.sort_by_key(|t| t.number);
    let strategy = super::run::arm_label(
        &strategy_name(spec.strategy()),
        rule_from_pb(spec.early_stopping.as_ref()),
    );
    Ok(ExperimentData {
        id: experiment.id.clone(),
        strategy,
        scenario,
        repeat,
        seed: experiment.seed,
        budget_trials: spec.budget_trials,
        maximize: spec.direction() != pb::Direction::Minimize,
        parameters,
        trials: converted,
        dataset: Some(match spec.workload.as_ref() {
            Some(w) if w.kind == "textcnn" && w.dataset.is_empty() => "mr".to_string(),
            Some(w) => w.dataset.clone(),
            None => String::new(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_floats_read_back_exactly() {
        // Without serde_json's float_roundtrip feature this parses one ulp off.
        let value = 27.779_781_650_632_962_f64;
        let text = serde_json::to_string(&value).expect("prints");
        assert_eq!(serde_json::from_str::<f64>(&text).expect("parses"), value);
    }

    #[test]
    fn names_round_trip() {
        let name = experiment_name("basic-mini", "bo", 3);
        assert_eq!(name, "basic-mini/bo/r3");
        assert_eq!(
            parse_name(&name),
            Some(("basic-mini".into(), "bo".into(), Some(3)))
        );
        assert_eq!(parse_name("plain"), None);
    }

    #[test]
    fn converts_an_experiment_from_the_wire() {
        let mut spec = crate::scenario::basic_mini();
        spec.name = experiment_name("basic-mini", "random", 2);
        spec.set_strategy(pb::Strategy::Random);
        let experiment = pb::Experiment {
            id: "e".into(),
            spec: Some(spec),
            seed: 9,
            ..Default::default()
        };
        let trial = pb::Trial {
            id: "t".into(),
            number: 0,
            state: pb::TrialState::EarlyStopped as i32,
            value: Some(0.6),
            epochs: vec![
                pb::EpochReport {
                    epoch: 2,
                    value: 0.6,
                    ..Default::default()
                },
                pb::EpochReport {
                    epoch: 1,
                    value: 0.5,
                    ..Default::default()
                },
            ],
            epochs_run: 2,
            ..Default::default()
        };
        let data = experiment_from_pb(&experiment, &[trial]).expect("converts");
        assert_eq!(
            (data.scenario.as_str(), data.strategy.as_str(), data.repeat),
            ("basic-mini", "random", 2)
        );
        assert_eq!(data.parameters.len(), 6);
        assert_eq!(data.trials[0].state, "early_stopped");
        assert_eq!(data.trials[0].epoch_values, vec![0.5, 0.6]);
        assert!(data.trials[0].has_result());
    }
}
