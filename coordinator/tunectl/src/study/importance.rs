//! Parameter importance from GP length-scales: a GP with a Matérn-5/2 ARD kernel is fit (by
//! `tuner::fit`) to each BO repeat's results, and parameters are ranked by their median fitted
//! length-scale over repeats, shortest first. A short length-scale means the accuracy changes
//! quickly along that parameter (in unit-cube units), i.e. the parameter matters (automatic
//! relevance determination: Rasmussen and Williams, "Gaussian Processes for Machine Learning",
//! 2006, §5.1). The relative importance shown is `(1/ℓᵢ) / Σⱼ (1/ℓⱼ)`.

use serde::{Deserialize, Serialize};
use tuner::space::Space;
use tuner::{Direction, Observation, Strategy, SuggestConfig};

use super::data::{ExperimentData, StudyData};
use super::tables::quantile;

/// Fewest results a repeat needs to be fit.
pub const MIN_RESULTS: usize = 4;

/// One parameter's importance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamImportance {
    /// Parameter name.
    pub name: String,
    /// Median length-scale over the fitted repeats.
    pub length_scale: f64,
    /// `(1/ℓ) / Σ(1/ℓ)`.
    pub relative: f64,
}

/// A scenario's ranking, most important first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    /// Scenario.
    pub scenario: String,
    /// Which experiments were fit (`bo`, or `all strategies` when the study has no BO).
    pub source: String,
    /// Repeats fitted.
    pub fits: usize,
    /// The ranking.
    pub params: Vec<ParamImportance>,
}

/// The ranking of each scenario that has a repeat with enough results; a repeat whose GP cannot
/// be fitted is skipped with a warning.
pub fn rank(data: &StudyData) -> Vec<Importance> {
    data.groups()
        .into_iter()
        .filter_map(|(scenario, strategies)| rank_scenario(data, &scenario, &strategies))
        .collect()
}

fn rank_scenario(data: &StudyData, scenario: &str, strategies: &[String]) -> Option<Importance> {
    let has_bo = strategies.iter().any(|s| s == "bo");
    let experiments: Vec<&ExperimentData> = data
        .experiments
        .iter()
        .filter(|e| e.scenario == scenario && (!has_bo || e.strategy == "bo"))
        .collect();
    let mut fits: Vec<Vec<(String, f64)>> = Vec::new();
    for experiment in experiments {
        match length_scales(experiment) {
            Ok(Some(scales)) => fits.push(scales),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(experiment = %experiment.id, %error, "cannot fit a gp for importance")
            }
        }
    }
    let names: Vec<String> = fits.first()?.iter().map(|(name, _)| name.clone()).collect();
    let mut params: Vec<ParamImportance> = names
        .iter()
        .map(|name| {
            let mut scales: Vec<f64> = fits
                .iter()
                .filter_map(|fit| fit.iter().find(|(n, _)| n == name).map(|(_, l)| *l))
                .collect();
            scales.sort_by(f64::total_cmp);
            let length_scale = quantile(&scales, 0.5).unwrap_or(f64::INFINITY);
            ParamImportance {
                name: name.clone(),
                length_scale,
                relative: 0.0,
            }
        })
        .collect();
    let total: f64 = params.iter().map(|p| 1.0 / p.length_scale).sum();
    for param in &mut params {
        param.relative = if total > 0.0 {
            (1.0 / param.length_scale) / total
        } else {
            0.0
        };
    }
    params.sort_by(|a, b| a.length_scale.total_cmp(&b.length_scale));
    let source = if has_bo { "bo" } else { "all strategies" };
    Some(Importance {
        scenario: scenario.to_string(),
        source: source.to_string(),
        fits: fits.len(),
        params,
    })
}

/// The fitted length-scales of one experiment's results; `None` with too few results.
fn length_scales(experiment: &ExperimentData) -> anyhow::Result<Option<Vec<(String, f64)>>> {
    let observations: Vec<Observation> = experiment
        .trials
        .iter()
        .filter(|t| t.has_result())
        .filter_map(|t| {
            Some(Observation {
                params: t.params.clone(),
                value: t.value?,
            })
        })
        .collect();
    if observations.len() < MIN_RESULTS || experiment.parameters.is_empty() {
        return Ok(None);
    }
    let space = Space::new(experiment.parameters.clone())?;
    let direction = if experiment.maximize {
        Direction::Maximize
    } else {
        Direction::Minimize
    };
    let config = SuggestConfig {
        initial_trials: 2,
        ..SuggestConfig::new(Strategy::Bo, direction)
    };
    let model = tuner::fit(&space, &observations, &config, experiment.seed)?;
    Ok(tuner::length_scales(&model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::data::TrialData;
    use tuner::space::{ParamSpec, Value};

    fn param(name: &str) -> ParamSpec {
        serde_json::from_value(
            serde_json::json!({"name": name, "type": "float", "low": 0.0, "high": 1.0}),
        )
        .expect("valid spec")
    }

    #[test]
    fn the_parameter_that_drives_the_objective_ranks_first() {
        // value = sin(6·a) + 0.01·b: `a` matters, `b` hardly does.
        let mut trials = Vec::new();
        for i in 0..30u32 {
            let a = f64::from(i % 6) / 5.0;
            let b = f64::from((i * 7) % 10) / 9.0;
            trials.push(TrialData {
                number: i,
                state: "succeeded".into(),
                value: Some((6.0 * a).sin() + 0.01 * b),
                epoch_values: Vec::new(),
                epochs_run: 1,
                device_seconds: 1.0,
                cost_dollars: 0.0,
                instance_type: String::new(),
                params: [
                    ("a".to_string(), Value::Float(a)),
                    ("b".to_string(), Value::Float(b)),
                ]
                .into_iter()
                .collect(),
                metrics: Default::default(),
            });
        }
        let experiment = ExperimentData {
            id: "e".into(),
            strategy: "bo".into(),
            scenario: "s".into(),
            repeat: 0,
            seed: 1,
            budget_trials: 30,
            maximize: true,
            parameters: vec![param("a"), param("b")],
            trials,
            dataset: None,
        };
        let data = StudyData {
            name: "s".into(),
            experiments: vec![experiment],
        };
        let ranking = rank(&data);
        assert_eq!(ranking.len(), 1);
        assert_eq!(ranking[0].fits, 1);
        assert_eq!(ranking[0].params[0].name, "a", "{ranking:?}");
        assert!(ranking[0].params[0].relative > 0.5, "{ranking:?}");
    }
}
