//! The experiment spec file `tunectl create` reads (TOML), and its conversion to the wire spec.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use coordinator::grpc::convert::{param_spec_to_pb, params_to_pb, rule_to_pb};
use proto::v1 as pb;
use serde::Deserialize;
use tuner::early_stop::Rule;
use tuner::space::{ParamSpec, Value};

/// `direction = "maximize" | "minimize"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirectionArg {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

/// `strategy = "bo" | "random" | "grid"`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StrategyArg {
    /// Bayesian optimization.
    #[default]
    Bo,
    /// Random search.
    Random,
    /// Grid search.
    Grid,
}

/// `batch = "cl-min" | "cl-mean" | "cl-max" | "mc-qei"`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BatchArg {
    /// Constant liar, optimistic.
    ClMin,
    /// Constant liar at the mean.
    ClMean,
    /// Constant liar, pessimistic.
    ClMax,
    /// Monte Carlo q-LogEI (the default).
    #[default]
    McQei,
}

/// The `[workload]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// `textcnn`, `function` or `command`.
    pub kind: String,
    /// command: the name of a command the agents declare (`[[commands]]` in `agent.toml`).
    #[serde(default)]
    pub command: String,
    /// Data set: `mr` (embedded) or, for `textcnn`, the path of a training file on the agents'
    /// machines (`label<TAB>text` or `label text` lines).
    #[serde(default)]
    pub dataset: String,
    /// textcnn: a validation file (left out, a seeded tenth of `dataset` is split off).
    #[serde(default)]
    pub dev_dataset: String,
    /// textcnn: a held-out test file; each trial's final model is scored on it once
    /// (`test_accuracy`), never used for selection.
    #[serde(default)]
    pub test_dataset: String,
    /// Constant parameters.
    #[serde(default)]
    pub fixed_params: BTreeMap<String, Value>,
    /// Training examples kept (0: all).
    #[serde(default)]
    pub max_train_examples: u32,
    /// Validation examples kept (0: all).
    #[serde(default)]
    pub max_dev_examples: u32,
}

/// A spec file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Experiment name.
    pub name: String,
    /// Objective name; left out, the coordinator picks the workload's (`dev_accuracy` for
    /// `textcnn`, `value` for `function`) and refuses one the workload does not report.
    #[serde(default)]
    pub metric: String,
    /// Maximize or minimize.
    pub direction: DirectionArg,
    /// Search strategy.
    #[serde(default)]
    pub strategy: StrategyArg,
    /// BO batch strategy.
    #[serde(default)]
    pub batch: BatchArg,
    /// Trials in total.
    pub budget: u32,
    /// Trials at once.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Seed (0: chosen by the coordinator).
    #[serde(default)]
    pub seed: u64,
    /// Grid levels.
    #[serde(default)]
    pub grid_levels: u32,
    /// Initial space-filling trials of BO (0: the coordinator's default, which grows with the
    /// budget and the number of parameters).
    #[serde(default)]
    pub initial_trials: u32,
    /// Attempts a trial.
    #[serde(default)]
    pub max_attempts: u32,
    /// Dollar budget (0: none).
    #[serde(default)]
    pub budget_dollars: f64,
    /// Study label.
    #[serde(default)]
    pub study: String,
    /// The search space.
    pub parameters: Vec<ParamSpec>,
    /// What agents train.
    #[serde(default)]
    pub workload: Option<WorkloadFile>,
    /// `[early_stopping]`: `rule = "median"` (`min_epochs`, `min_trials`) or `rule = "asha"`
    /// (`min_epochs`, `eta`); left out, every trial runs to the end.
    #[serde(default)]
    pub early_stopping: Rule,
    /// The objective is noise-free: BO pins the GP's noise at its floor (default false).
    #[serde(default)]
    pub deterministic: bool,
    /// The most results BO fits its GP to (0: the tuner's default, 1000; else 8 to 5000).
    #[serde(default)]
    pub max_model_points: u32,
}

fn one() -> u32 {
    1
}

impl SpecFile {
    /// Reads and checks a spec file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML, or has an invalid search space.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read spec '{}'", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid spec '{}'", path.display()))
    }

    /// Parses and checks spec text.
    ///
    /// # Errors
    /// When it is not valid TOML or the search space is invalid.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut spec: SpecFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        if spec.budget == 0 {
            bail!("budget must be at least 1");
        }
        let space = tuner::space::Space::new(spec.parameters.clone())
            .map_err(|e| anyhow::anyhow!("invalid search space: {e}"))?;
        // Defaults in their parameter's own kind (`default = 32` of a categorical is its
        // choice "32"; `default = 3.0` of an int is 3), as the wire carries them.
        spec.parameters = space.params().to_vec();
        spec.early_stopping
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(spec)
    }

    /// The wire spec.
    pub fn to_pb(&self) -> pb::ExperimentSpec {
        pb::ExperimentSpec {
            name: self.name.clone(),
            metric: self.metric.clone(),
            direction: match self.direction {
                DirectionArg::Maximize => pb::Direction::Maximize,
                DirectionArg::Minimize => pb::Direction::Minimize,
            } as i32,
            strategy: match self.strategy {
                StrategyArg::Bo => pb::Strategy::Bo,
                StrategyArg::Random => pb::Strategy::Random,
                StrategyArg::Grid => pb::Strategy::Grid,
            } as i32,
            batch_strategy: match self.batch {
                BatchArg::ClMin => pb::BatchStrategy::ClMin,
                BatchArg::ClMean => pb::BatchStrategy::ClMean,
                BatchArg::ClMax => pb::BatchStrategy::ClMax,
                BatchArg::McQei => pb::BatchStrategy::McQei,
            } as i32,
            budget_trials: self.budget,
            parallelism: self.parallelism,
            parameters: self.parameters.iter().map(param_spec_to_pb).collect(),
            seed: self.seed,
            grid_levels: self.grid_levels,
            initial_trials: self.initial_trials,
            max_attempts: self.max_attempts,
            workload: self.workload.as_ref().map(|w| pb::Workload {
                kind: w.kind.clone(),
                dataset: w.dataset.clone(),
                fixed_params: params_to_pb(&w.fixed_params),
                max_train_examples: w.max_train_examples,
                max_dev_examples: w.max_dev_examples,
                dev_dataset: w.dev_dataset.clone(),
                test_dataset: w.test_dataset.clone(),
                command: w.command.clone(),
            }),
            budget_dollars: self.budget_dollars,
            study: self.study.clone(),
            deterministic: self.deterministic,
            max_model_points: self.max_model_points,
            early_stopping: rule_to_pb(&self.early_stopping),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANIN: &str = r#"
name = "branin"
direction = "minimize"
strategy = "random"
budget = 10
parallelism = 2
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
epochs = 1
"#;

    #[test]
    fn parses_a_full_spec() {
        let spec = SpecFile::parse(BRANIN).expect("parses");
        let wire = spec.to_pb();
        assert_eq!(wire.parameters.len(), 2);
        assert_eq!(wire.direction(), pb::Direction::Minimize);
        assert_eq!(wire.strategy(), pb::Strategy::Random);
        assert_eq!(wire.workload.expect("workload").fixed_params.len(), 1);
        assert!(!wire.deterministic, "noisy unless the spec says otherwise");
        assert_eq!(
            spec.to_pb().batch_strategy(),
            pb::BatchStrategy::McQei,
            "q-LogEI unless the spec names a batch strategy"
        );
        let liar = BRANIN.replace("budget = 10", "budget = 10\nbatch = \"cl-min\"");
        let spec = SpecFile::parse(&liar).expect("parses");
        assert_eq!(spec.to_pb().batch_strategy(), pb::BatchStrategy::ClMin);
        let deterministic = BRANIN.replace("budget = 10", "budget = 10\ndeterministic = true");
        let spec = SpecFile::parse(&deterministic).expect("parses");
        assert!(spec.to_pb().deterministic);
        assert_eq!(wire.max_model_points, 0, "the tuner's default unless named");
        let capped = BRANIN.replace("budget = 10", "budget = 10\nmax_model_points = 2000");
        let spec = SpecFile::parse(&capped).expect("parses");
        assert_eq!(spec.to_pb().max_model_points, 2000);
    }

    #[test]
    fn numbers_and_booleans_as_choices_reach_the_wire_as_their_text() {
        let text = BRANIN.replace(
            "[workload]",
            "[[parameters]]\nname = \"batch\"\ntype = \"categorical\"\n\
             choices = [16, 32, 1e-5, true]\ndefault = 32\n[workload]",
        );
        let wire = SpecFile::parse(&text).expect("parses").to_pb();
        let Some(pb::parameter_spec::Kind::Categorical(batch)) = &wire.parameters[2].kind else {
            panic!("a categorical: {:?}", wire.parameters[2]);
        };
        assert_eq!(batch.choices, ["16", "32", "1e-5", "true"]);
        assert_eq!(batch.default_value.as_deref(), Some("32"));
    }

    #[test]
    fn early_stopping_tables_take_defaults_and_are_checked() {
        let median = format!("{BRANIN}[early_stopping]\nrule = \"median\"\nmin_trials = 5\n");
        let spec = SpecFile::parse(&median).expect("parses");
        assert_eq!(
            spec.early_stopping,
            Rule::Median(tuner::early_stop::MedianRule {
                min_epochs: 1,
                min_trials: 5
            })
        );
        let wire = spec.to_pb().early_stopping.expect("sent");
        assert!(matches!(
            wire.rule,
            Some(pb::early_stopping::Rule::Median(pb::MedianStopping {
                min_epochs: 1,
                min_trials: 5
            }))
        ));
        assert_eq!(
            SpecFile::parse(BRANIN)
                .expect("parses")
                .to_pb()
                .early_stopping,
            None
        );
        let bad_eta = format!("{BRANIN}[early_stopping]\nrule = \"asha\"\neta = 1\n");
        let refused = SpecFile::parse(&bad_eta).expect_err("refused");
        assert!(format!("{refused:#}").contains("eta"), "{refused:#}");
        let typo = format!("{BRANIN}[early_stopping]\nrule = \"median\"\nmin_trails = 5\n");
        let refused = SpecFile::parse(&typo).expect_err("refused");
        assert!(format!("{refused:#}").contains("min_trails"), "{refused:#}");
    }

    #[test]
    fn errors_name_the_problem() {
        let unknown =
            SpecFile::parse(&BRANIN.replace("budget = 10", "budgett = 10")).expect_err("refused");
        assert!(format!("{unknown:#}").contains("budgett"), "{unknown:#}");
        let bad_space =
            SpecFile::parse(&BRANIN.replace("high = 10.0", "high = -6.0")).expect_err("refused");
        assert!(format!("{bad_space:#}").contains("x1"), "{bad_space:#}");
        let bad_direction =
            SpecFile::parse(&BRANIN.replace("\"minimize\"", "\"down\"")).expect_err("refused");
        assert!(
            format!("{bad_direction:#}").contains("down"),
            "{bad_direction:#}"
        );
    }

    #[test]
    fn dev_and_test_files_reach_the_wire() {
        let own = BRANIN.replace(
            "kind = \"function\"\ndataset = \"branin\"",
            "kind = \"textcnn\"\ndataset = \"/d/train.txt\"\ndev_dataset = \"/d/dev.txt\"\n\
             test_dataset = \"/d/test.txt\"",
        );
        let workload = SpecFile::parse(&own)
            .expect("parses")
            .to_pb()
            .workload
            .expect("sent");
        assert_eq!(
            (
                workload.dataset.as_str(),
                workload.dev_dataset.as_str(),
                workload.test_dataset.as_str()
            ),
            ("/d/train.txt", "/d/dev.txt", "/d/test.txt")
        );
    }

    #[test]
    fn a_spec_without_a_metric_leaves_it_to_the_coordinator() {
        let textcnn = BRANIN.replace(
            "kind = \"function\"\ndataset = \"branin\"",
            "kind = \"textcnn\"\ndataset = \"mr\"",
        );
        assert!(textcnn.contains("textcnn"), "{textcnn}");
        let wire = SpecFile::parse(&textcnn).expect("parses").to_pb();
        assert_eq!(
            wire.metric, "",
            "not 'value', which textcnn does not report"
        );
        let named = format!("metric = \"train_loss\"\n{BRANIN}");
        assert_eq!(
            SpecFile::parse(&named).expect("parses").to_pb().metric,
            "train_loss"
        );
    }
}

#[cfg(test)]
mod reference_tests {
    //! `docs/reference.md` against the spec's structs: every key serde reads is a row of its
    //! table, and every row is a key serde reads.
    use std::collections::BTreeSet;

    use super::{SpecFile, WorkloadFile};

    const PAGE: &str = include_str!("../../../../docs/reference.md");

    /// The fields a struct accepts, from serde's own "unknown field" message.
    fn fields<T: serde::de::DeserializeOwned + std::fmt::Debug>(
        toml_text: &str,
    ) -> BTreeSet<String> {
        let error = toml::from_str::<T>(toml_text).expect_err("an unknown key is refused");
        let message = error.to_string();
        let listed = message
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("serde lists the fields: {message}"));
        listed
            .split(',')
            .filter_map(|item| item.split('`').nth(1))
            .map(str::to_owned)
            .collect()
    }

    /// The backticked first cells of the table under `heading`.
    fn rows(heading: &str) -> BTreeSet<String> {
        let section = PAGE
            .split("\n## ")
            .find(|s| s.starts_with(heading))
            .unwrap_or_else(|| panic!("the page has a section '{heading}'"));
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .filter_map(|line| line.split('`').nth(1))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_spec_key_is_documented_and_nothing_else() {
        let spec = fields::<SpecFile>("no_such_key = 1");
        assert!(spec.contains("initial_trials"), "{spec:?}");
        assert_eq!(rows("Spec file: top level"), spec);
        let workload = fields::<WorkloadFile>("no_such_key = 1");
        assert!(workload.contains("dataset"), "{workload:?}");
        assert_eq!(rows("`[workload]`"), workload);
    }

    #[test]
    fn every_parameter_key_is_documented() {
        let documented = rows("`[[parameters]]`");
        for key in ["name", "type", "low", "high", "log", "choices", "default"] {
            assert!(documented.contains(key), "{key} missing from the page");
        }
        // The space parser refuses keys it does not know, so the page names no key it lacks.
        for key in &documented {
            let spec = format!(
                "name = \"r\"\ndirection = \"minimize\"\nbudget = 1\n[[parameters]]\nname = \"x\"\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n{}",
                if ["name", "type", "low", "high"].contains(&key.as_str()) {
                    String::new()
                } else if key == "choices" {
                    "choices = [\"a\"]".to_owned()
                } else if key == "log" {
                    "log = false".to_owned()
                } else {
                    format!("{key} = 0.5")
                }
            );
            let parsed = toml::from_str::<SpecFile>(&spec);
            assert!(
                !parsed
                    .as_ref()
                    .err()
                    .is_some_and(|e| e.to_string().contains("unknown field")),
                "{key}: {parsed:?}"
            );
        }
    }
}
