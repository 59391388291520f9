//! The study's tables, computed purely from [`StudyData`]: per scenario and strategy, the best
//! validation accuracy (median and interquartile range over repeats), trials, epochs, device
//! time, dollars (at the agents' prices and at the study's instance prices), the accuracy gained
//! over the default configuration, and what early stopping saved.
//!
//! Quantiles use linear interpolation between order statistics (Hyndman and Fan's type 7, the
//! default of numpy and R), so the median of `[1, 2, 3, 4]` is 2.5 and its IQR is 3.25 − 1.75.

use serde::{Deserialize, Serialize};

use super::data::{ExperimentData, StudyData, TrialData};

/// The study's GPU instance: AWS p2.xlarge (one K80), $0.90 an hour.
pub const P2_XLARGE_DOLLARS_PER_HOUR: f64 = 0.90;
/// The study's CPU instance: AWS m4.4xlarge, $0.862 an hour.
pub const M4_4XLARGE_DOLLARS_PER_HOUR: f64 = 0.862;
/// The study's seconds per epoch on the p2.xlarge's K80 (full MR, study model).
pub const P2_SECONDS_PER_EPOCH: f64 = 3.0;
/// The study's seconds per epoch on the m4.4xlarge CPU.
pub const M4_SECONDS_PER_EPOCH: f64 = 146.0;
/// The study's validation accuracy of the default configuration (75.7%).
pub const STUDY_DEFAULT_ACCURACY: f64 = 0.757;

/// Median and quartiles of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quartiles {
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
}

impl Quartiles {
    /// The quartiles of `values` (type 7); `None` when it is empty.
    pub fn of(values: &[f64]) -> Option<Quartiles> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Quartiles {
            q1: quantile(&sorted, 0.25)?,
            median: quantile(&sorted, 0.5)?,
            q3: quantile(&sorted, 0.75)?,
        })
    }

    /// The interquartile range `q3 − q1`.
    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }
}

/// The `p` quantile of sorted values, interpolating linearly at position `p·(n−1)`.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = p.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    Some(sorted[below] + fraction * (sorted[above] - sorted[below]))
}

/// Where the default configuration's accuracy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultSource {
    /// Measured: trials whose parameters equal the space's defaults (median over them).
    DefaultTrial,
    /// Given with `--default-accuracy`.
    CommandLine,
    /// The published study's 75.7%.
    StudyFigure,
}

impl DefaultSource {
    /// How the report labels it.
    pub fn label(self) -> &'static str {
        match self {
            DefaultSource::DefaultTrial => "measured (trials at the default configuration)",
            DefaultSource::CommandLine => "given with --default-accuracy",
            DefaultSource::StudyFigure => "study's figure",
        }
    }
}

/// The default configuration's accuracy for one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DefaultAccuracy {
    /// The accuracy (fraction).
    pub value: f64,
    /// Its source.
    pub source: DefaultSource,
}

/// Resources one repeat used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Trials with a result.
    pub trials: f64,
    /// Epochs trained.
    pub epochs: f64,
    /// Device hours.
    pub device_hours: f64,
    /// Dollars at the agents' prices.
    pub dollars: f64,
    /// The same device hours at the p2.xlarge price.
    pub dollars_p2_same_time: f64,
    /// The same device hours at the m4.4xlarge price.
    pub dollars_m4_same_time: f64,
    /// The same epochs at the study's p2.xlarge speed and price.
    pub dollars_p2_study_speed: f64,
    /// The same epochs at the study's m4.4xlarge speed and price.
    pub dollars_m4_study_speed: f64,
    /// Trials stopped early.
    pub early_stopped: f64,
    /// Epochs early stopping saved (planned minus run, for trials with an `epochs` parameter).
    pub epochs_saved: f64,
    /// Dollars those epochs would have cost at the trial's own cost per epoch.
    pub dollars_saved: f64,
}

/// One row: a strategy in a scenario, over its repeats (resource columns are medians).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRow {
    /// Scenario.
    pub scenario: String,
    /// Strategy.
    pub strategy: String,
    /// Repeats with at least one result.
    pub repeats: usize,
    /// Best value of each repeat, by repeat index.
    pub best_per_repeat: Vec<f64>,
    /// Quartiles of the best value over repeats.
    pub best: Quartiles,
    /// Median over repeats of each usage figure.
    pub median_usage: Usage,
    /// Sum over repeats of each usage figure.
    pub total_usage: Usage,
    /// Median best minus the default accuracy (fraction; ×100 for points).
    pub gain_over_default: f64,
    /// The agents' instance types seen in the repeats' trials (sorted, without blanks).
    pub instance_types: Vec<String>,
}

/// The best value of an experiment's trials with a result.
pub fn best_value(experiment: &ExperimentData) -> Option<f64> {
    let values = experiment
        .trials
        .iter()
        .filter(|t| t.has_result())
        .filter_map(|t| t.value);
    if experiment.maximize {
        values.reduce(f64::max)
    } else {
        values.reduce(f64::min)
    }
}

/// What one repeat used.
pub fn usage(experiment: &ExperimentData) -> Usage {
    let mut usage = Usage::default();
    for trial in &experiment.trials {
        add_trial(&mut usage, trial);
    }
    let hours = usage.device_hours;
    usage.dollars_p2_same_time = hours * P2_XLARGE_DOLLARS_PER_HOUR;
    usage.dollars_m4_same_time = hours * M4_4XLARGE_DOLLARS_PER_HOUR;
    usage.dollars_p2_study_speed =
        usage.epochs * P2_SECONDS_PER_EPOCH / 3600.0 * P2_XLARGE_DOLLARS_PER_HOUR;
    usage.dollars_m4_study_speed =
        usage.epochs * M4_SECONDS_PER_EPOCH / 3600.0 * M4_4XLARGE_DOLLARS_PER_HOUR;
    usage
}

fn add_trial(usage: &mut Usage, trial: &TrialData) {
    if trial.has_result() {
        usage.trials += 1.0;
    }
    usage.epochs += f64::from(trial.epochs_run);
    usage.device_hours += trial.device_seconds / 3600.0;
    usage.dollars += trial.cost_dollars;
    if trial.state == "early_stopped" {
        usage.early_stopped += 1.0;
        let planned = trial
            .params
            .get("epochs")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::from(trial.epochs_run));
        let saved = (planned - f64::from(trial.epochs_run)).max(0.0);
        usage.epochs_saved += saved;
        if trial.epochs_run > 0 {
            usage.dollars_saved += saved * trial.cost_dollars / f64::from(trial.epochs_run);
        }
    }
}

/// Applies `f` to each field of a list of usages (median or sum).
fn combine(usages: &[Usage], f: impl Fn(&[f64]) -> f64) -> Usage {
    let column = |get: fn(&Usage) -> f64| f(&usages.iter().map(get).collect::<Vec<_>>());
    Usage {
        trials: column(|u| u.trials),
        epochs: column(|u| u.epochs),
        device_hours: column(|u| u.device_hours),
        dollars: column(|u| u.dollars),
        dollars_p2_same_time: column(|u| u.dollars_p2_same_time),
        dollars_m4_same_time: column(|u| u.dollars_m4_same_time),
        dollars_p2_study_speed: column(|u| u.dollars_p2_study_speed),
        dollars_m4_study_speed: column(|u| u.dollars_m4_study_speed),
        early_stopped: column(|u| u.early_stopped),
        epochs_saved: column(|u| u.epochs_saved),
        dollars_saved: column(|u| u.dollars_saved),
    }
}

fn median(values: &[f64]) -> f64 {
    Quartiles::of(values).map_or(0.0, |q| q.median)
}

/// The default accuracy of `scenario`: measured at the default configuration when some trial ran
/// it, else `given`, else the study's 75.7%.
pub fn default_accuracy(data: &StudyData, scenario: &str, given: Option<f64>) -> DefaultAccuracy {
    let mut measured = Vec::new();
    for experiment in data.experiments.iter().filter(|e| e.scenario == scenario) {
        let Some(defaults) = default_params(experiment) else {
            continue;
        };
        let at_default = experiment
            .trials
            .iter()
            .filter(|t| t.has_result() && same_params(&t.params, &defaults));
        measured.extend(at_default.filter_map(|t| t.value));
    }
    if let Some(quartiles) = Quartiles::of(&measured) {
        return DefaultAccuracy {
            value: quartiles.median,
            source: DefaultSource::DefaultTrial,
        };
    }
    match given {
        Some(value) => DefaultAccuracy {
            value,
            source: DefaultSource::CommandLine,
        },
        None => DefaultAccuracy {
            value: STUDY_DEFAULT_ACCURACY,
            source: DefaultSource::StudyFigure,
        },
    }
}

fn default_params(experiment: &ExperimentData) -> Option<tuner::space::Assignment> {
    if experiment.parameters.is_empty() {
        return None;
    }
    experiment
        .parameters
        .iter()
        .map(|p| p.default.clone().map(|d| (p.name.clone(), d)))
        .collect()
}

/// Equal names and values (numbers equal to a relative 1e-9, so 50 and 50.0 match).
fn same_params(a: &tuner::space::Assignment, b: &tuner::space::Assignment) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((name_a, value_a), (name_b, value_b))| {
                name_a == name_b
                    && match (value_a.as_f64(), value_b.as_f64()) {
                        (Some(x), Some(y)) => {
                            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300)
                        }
                        _ => value_a == value_b,
                    }
            })
}

fn instance_types(repeats: &[&ExperimentData]) -> Vec<String> {
    let trials = repeats.iter().flat_map(|e| e.trials.iter());
    let names: std::collections::BTreeSet<String> = trials
        .map(|t| t.instance_type.clone())
        .filter(|t| !t.is_empty())
        .collect();
    names.into_iter().collect()
}

/// Every row of the study, scenario by scenario, strategies in first-seen order. Repeats without
/// any result are left out; a strategy with none at all has no row.
pub fn rows(data: &StudyData, default_given: Option<f64>) -> Vec<StrategyRow> {
    let mut rows = Vec::new();
    for (scenario, strategies) in data.groups() {
        let default = default_accuracy(data, &scenario, default_given);
        for strategy in strategies {
            let repeats: Vec<&ExperimentData> = data.repeats(&scenario, &strategy);
            let with_best: Vec<(f64, Usage)> = repeats
                .iter()
                .filter_map(|e| Some((best_value(e)?, usage(e))))
                .collect();
            let best_per_repeat: Vec<f64> = with_best.iter().map(|(b, _)| *b).collect();
            let Some(best) = Quartiles::of(&best_per_repeat) else {
                continue;
            };
            let usages: Vec<Usage> = with_best.iter().map(|(_, u)| *u).collect();
            rows.push(StrategyRow {
                scenario: scenario.clone(),
                strategy,
                repeats: best_per_repeat.len(),
                best,
                best_per_repeat,
                median_usage: combine(&usages, median),
                total_usage: combine(&usages, |v| v.iter().sum()),
                gain_over_default: best.median - default.value,
                instance_types: instance_types(&repeats),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_linearly() {
        let q = Quartiles::of(&[4.0, 1.0, 3.0, 2.0]).expect("non-empty");
        assert_eq!((q.q1, q.median, q.q3), (1.75, 2.5, 3.25));
        let single = Quartiles::of(&[0.7]).expect("non-empty");
        assert_eq!(
            (single.q1, single.median, single.q3, single.iqr()),
            (0.7, 0.7, 0.7, 0.0)
        );
        assert_eq!(Quartiles::of(&[]), None);
        assert_eq!(quantile(&[1.0, 2.0, 4.0], 0.75), Some(3.0));
    }

    #[test]
    fn same_params_matches_ints_and_floats() {
        use tuner::space::Value;
        let a = [
            ("n".to_string(), Value::Int(50)),
            ("lr".to_string(), Value::Float(0.0005)),
        ]
        .into_iter()
        .collect();
        let b = [
            ("n".to_string(), Value::Float(50.0)),
            ("lr".to_string(), Value::Float(0.0005)),
        ]
        .into_iter()
        .collect();
        let c = [
            ("n".to_string(), Value::Int(51)),
            ("lr".to_string(), Value::Float(0.0005)),
        ]
        .into_iter()
        .collect();
        assert!(same_params(&a, &b));
        assert!(!same_params(&a, &c));
    }
}
