//! Best-so-far curves: for each strategy, the median and interquartile band over repeats of the
//! best value after k trials, and after d dollars.
//!
//! Trials count in creation order (trial number), failed trials included (they used budget);
//! cancelled and unfinished trials are left out. A repeat contributes to a point once it has a
//! result there. On the trial axis it stops at its own last trial (a repeat with fewer counted
//! trials does not pull the median at counts it never reached); on the dollar axis its final best
//! carries forward after it finished (its budget was in trials, so a cheaper repeat is not
//! penalized, and the median stays monotone).

use serde::{Deserialize, Serialize};

use super::data::{ExperimentData, StudyData, TrialData};
use super::tables::Quartiles;

/// Points on the dollar axis.
const DOLLAR_POINTS: usize = 60;

/// One point of a band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandPoint {
    /// Trials, or dollars.
    pub x: f64,
    /// Quartiles over the repeats present at `x`.
    pub best: Quartiles,
    /// Repeats present at `x`.
    pub repeats: usize,
}

/// One strategy's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Strategy.
    pub strategy: String,
    /// Points in increasing `x`.
    pub points: Vec<BandPoint>,
}

fn counts(trial: &TrialData) -> bool {
    trial.has_result() || trial.state == "failed"
}

fn better(maximize: bool, a: f64, b: f64) -> f64 {
    if maximize { a.max(b) } else { a.min(b) }
}

/// `(cumulative dollars, best so far)` after each counted trial, in trial order.
pub fn steps(experiment: &ExperimentData) -> Vec<(f64, Option<f64>)> {
    let mut dollars = 0.0;
    let mut best: Option<f64> = None;
    let mut out = Vec::new();
    for trial in experiment.trials.iter().filter(|t| counts(t)) {
        dollars += trial.cost_dollars;
        if let Some(value) = trial.value.filter(|_| trial.has_result()) {
            best = Some(best.map_or(value, |b| better(experiment.maximize, b, value)));
        }
        out.push((dollars, best));
    }
    out
}

fn point(x: f64, values: &[f64]) -> Option<BandPoint> {
    Some(BandPoint {
        x,
        best: Quartiles::of(values)?,
        repeats: values.len(),
    })
}

/// The best-so-far band over trials of each strategy of `scenario`.
pub fn by_trials(data: &StudyData, scenario: &str) -> Vec<Band> {
    strategies(data, scenario)
        .into_iter()
        .map(|strategy| {
            let runs: Vec<Vec<(f64, Option<f64>)>> = data
                .repeats(scenario, &strategy)
                .into_iter()
                .map(steps)
                .collect();
            let longest = runs.iter().map(Vec::len).max().unwrap_or(0);
            let points = (0..longest)
                .filter_map(|k| {
                    let values: Vec<f64> = runs
                        .iter()
                        .filter_map(|run| run.get(k).and_then(|s| s.1))
                        .collect();
                    point((k + 1) as f64, &values)
                })
                .collect();
            Band { strategy, points }
        })
        .collect()
}

/// The best-so-far band over cumulative dollars of each strategy of `scenario`, on a common grid
/// of `DOLLAR_POINTS` points from 0 to the most any repeat of the scenario spent.
pub fn by_dollars(data: &StudyData, scenario: &str) -> Vec<Band> {
    let all_runs: Vec<Vec<(f64, Option<f64>)>> = data
        .experiments
        .iter()
        .filter(|e| e.scenario == scenario)
        .map(steps)
        .collect();
    let most = all_runs
        .iter()
        .filter_map(|run| run.last().map(|s| s.0))
        .fold(0.0, f64::max);
    strategies(data, scenario)
        .into_iter()
        .map(|strategy| {
            let runs: Vec<Vec<(f64, Option<f64>)>> = data
                .repeats(scenario, &strategy)
                .into_iter()
                .map(steps)
                .collect();
            let points = (1..=DOLLAR_POINTS)
                .filter_map(|i| {
                    let x = most * i as f64 / DOLLAR_POINTS as f64;
                    let values: Vec<f64> = runs
                        .iter()
                        .filter_map(|run| best_at_dollars(run, x))
                        .collect();
                    point(x, &values)
                })
                .collect();
            Band { strategy, points }
        })
        .collect()
}

/// The best value once `x` dollars were spent (the final best past the repeat's spending);
/// `None` before the first result.
fn best_at_dollars(run: &[(f64, Option<f64>)], x: f64) -> Option<f64> {
    run.iter()
        .take_while(|s| s.0 <= x * (1.0 + 1e-12))
        .last()
        .and_then(|s| s.1)
}

fn strategies(data: &StudyData, scenario: &str) -> Vec<String> {
    data.groups()
        .into_iter()
        .find(|(s, _)| s == scenario)
        .map(|(_, strategies)| strategies)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u32, state: &str, value: Option<f64>, cost: f64) -> TrialData {
        TrialData {
            number,
            state: state.into(),
            value,
            epoch_values: Vec::new(),
            epochs_run: 1,
            device_seconds: 1.0,
            cost_dollars: cost,
            instance_type: String::new(),
            params: Default::default(),
            metrics: Default::default(),
        }
    }

    fn experiment(repeat: u32, trials: Vec<TrialData>) -> ExperimentData {
        ExperimentData {
            id: format!("e{repeat}"),
            strategy: "bo".into(),
            scenario: "s".into(),
            repeat,
            seed: 0,
            budget_trials: 3,
            maximize: true,
            parameters: Vec::new(),
            trials,
            dataset: None,
        }
    }

    #[test]
    fn steps_skip_cancelled_and_count_failures() {
        let e = experiment(
            0,
            vec![
                trial(0, "failed", None, 1.0),
                trial(1, "succeeded", Some(0.5), 1.0),
                trial(2, "cancelled", Some(0.9), 1.0),
                trial(3, "early_stopped", Some(0.4), 2.0),
                trial(4, "succeeded", Some(0.7), 1.0),
            ],
        );
        assert_eq!(
            steps(&e),
            vec![
                (1.0, None),
                (2.0, Some(0.5)),
                (4.0, Some(0.5)),
                (5.0, Some(0.7))
            ]
        );
    }

    #[test]
    fn bands_use_only_repeats_present() {
        assert_eq!(
            best_at_dollars(&[(1.0, Some(0.5))], 5.0),
            Some(0.5),
            "the final best carries forward"
        );
        assert_eq!(best_at_dollars(&[(1.0, None), (2.0, Some(0.5))], 1.5), None);
        let data = StudyData {
            name: "s".into(),
            experiments: vec![
                experiment(
                    0,
                    vec![
                        trial(0, "succeeded", Some(0.5), 1.0),
                        trial(1, "succeeded", Some(0.6), 1.0),
                    ],
                ),
                experiment(1, vec![trial(0, "succeeded", Some(0.7), 2.0)]),
            ],
        };
        let bands = by_trials(&data, "s");
        assert_eq!(bands.len(), 1);
        let points = &bands[0].points;
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].repeats, points[0].best.median), (2, 0.6));
        assert_eq!((points[1].repeats, points[1].best.median), (1, 0.6));
        let dollars = by_dollars(&data, "s");
        let last = dollars[0].points.last().expect("points");
        assert_eq!((last.x, last.repeats), (2.0, 2));
        assert!((last.best.median - 0.65).abs() < 1e-12, "{last:?}");
        let first = dollars[0].points[0];
        assert_eq!(
            (first.x, first.repeats, first.best.median),
            (1.0, 1, 0.5),
            "no point before the first result"
        );
    }
}
