//! Early-stopping rules as pure functions: the median stopping rule and asynchronous successive
//! halving (ASHA). The coordinator's service feeds them every trial's epoch reports and gets back,
//! for each running trial, whether it should stop (the coordinator's `service::agents` makes the
//! call after each epoch report and on heartbeats, through its `service::early_stop` re-export;
//! `docs/design/early-stopping.md` explains the choices). Like the rest of this crate they do no
//! I/O and read no clock.
//!
//! Both rules decide at a trial's **latest** epoch only, so calling them after each epoch report
//! (and again on heartbeats) gives one decision per epoch, and an earlier "continue" is never
//! revisited with later data (ASHA's promotions are final, as in the paper).
//!
//! - Median stopping rule (Golovin et al., "Google Vizier: A Service for Black-Box
//!   Optimization", KDD 2017, §3.2.2): at epoch `e >= min_epochs`, stop a trial whose value at
//!   `e` is worse than the median of the other trials' values at `e`, once at least
//!   `min_trials` other trials reported epoch `e`.
//! - ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020):
//!   rungs at `min_epochs·ηᵏ` epochs; a trial reaching a rung goes on only when its value there
//!   ranks in the top `⌊n/η⌋` of the `n` values recorded at that rung (itself included; the top
//!   1 while `n < η`, so the first trials to arrive are compared with each other, like Optuna's
//!   asynchronous pruner does).
//!
//! ```
//! use tuner::early_stop::{decide, Decision, MedianRule, Rule, TrialCurve};
//! let done = |id: &str, v: f64| TrialCurve { id: id.into(), epochs: vec![(1, v), (2, v)], running: false };
//! let curves = vec![
//!     done("a", 0.8),
//!     done("b", 0.7),
//!     TrialCurve { id: "c".into(), epochs: vec![(1, 0.6), (2, 0.6)], running: true },
//! ];
//! let rule = Rule::Median(MedianRule { min_epochs: 2, min_trials: 2 });
//! let decisions = decide(&rule, tuner::Direction::Maximize, &curves);
//! assert_eq!(decisions, vec![("c".to_string(), Decision::Stop)]);
//! ```

use serde::{Deserialize, Serialize};

use crate::Direction;

/// One trial's learning curve: its `(epoch, value)` reports, in the user's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialCurve {
    /// The trial id.
    pub id: String,
    /// `(epoch, value)` pairs, any order; a repeated epoch keeps its last value.
    pub epochs: Vec<(u32, f64)>,
    /// Whether the trial is still running (only running trials get a decision).
    pub running: bool,
}

impl TrialCurve {
    fn value_at(&self, epoch: u32) -> Option<f64> {
        self.epochs
            .iter()
            .rev()
            .find(|(e, v)| *e == epoch && v.is_finite())
            .map(|(_, v)| *v)
    }

    fn latest(&self) -> Option<(u32, f64)> {
        let epoch = self.epochs.iter().map(|(e, _)| *e).max()?;
        Some((epoch, self.value_at(epoch)?))
    }
}

/// The median stopping rule's settings (a spec may leave any of them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MedianRule {
    /// No decision before this epoch (epochs count from 1).
    pub min_epochs: u32,
    /// No decision until this many other trials reported the same epoch.
    pub min_trials: usize,
}

/// Asynchronous successive halving's settings (a spec may leave any of them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AshaRule {
    /// The first rung (epochs, at least 1).
    pub min_epochs: u32,
    /// The reduction factor η (at least 2): rungs grow by η and the top 1/η is promoted.
    pub eta: u32,
}

impl Default for MedianRule {
    /// Decide from the first epoch on, once three other trials reached it.
    fn default() -> Self {
        Self {
            min_epochs: 1,
            min_trials: 3,
        }
    }
}

impl Default for AshaRule {
    /// Rungs at 1, 3, 9, … epochs, keeping the top third.
    fn default() -> Self {
        Self {
            min_epochs: 1,
            eta: 3,
        }
    }
}

impl AshaRule {
    /// The rung epochs up to `max_epoch`: `min_epochs·ηᵏ`.
    pub fn rungs(&self, max_epoch: u32) -> Vec<u32> {
        let eta = self.eta.max(2);
        let mut rungs = Vec::new();
        let mut rung = self.min_epochs.max(1);
        while rung <= max_epoch {
            rungs.push(rung);
            match rung.checked_mul(eta) {
                Some(next) => rung = next,
                None => break,
            }
        }
        rungs
    }
}

/// An experiment's early-stopping rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Rule {
    /// Never stop early.
    #[default]
    None,
    /// The median stopping rule.
    Median(MedianRule),
    /// Asynchronous successive halving.
    Asha(AshaRule),
}

impl Rule {
    /// Checks the settings a user gave.
    ///
    /// # Errors
    /// A message naming the setting when ASHA's `eta` is below 2 or the median rule's
    /// `min_trials` is 0.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Rule::None => Ok(()),
            Rule::Median(median) if median.min_trials == 0 => Err(
                "early_stopping.min_trials must be at least 1 (the median needs other trials)"
                    .into(),
            ),
            Rule::Asha(asha) if asha.eta < 2 => Err(format!(
                "early_stopping.eta must be at least 2, got {}",
                asha.eta
            )),
            _ => Ok(()),
        }
    }

    /// A short label for names and reports: `none`, `median` or `asha`.
    pub fn label(&self) -> &'static str {
        match self {
            Rule::None => "none",
            Rule::Median(_) => "median",
            Rule::Asha(_) => "asha",
        }
    }
}

/// What a running trial should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Keep training.
    Continue,
    /// Stop at this epoch boundary (the trial becomes EARLY_STOPPED at the value it reached).
    Stop,
}

/// Decides for every running trial in `curves` (all of the experiment's trials, finished ones
/// included, since they are the comparison population). Returns `(trial id, decision)` for the
/// running trials, in input order.
pub fn decide(rule: &Rule, direction: Direction, curves: &[TrialCurve]) -> Vec<(String, Decision)> {
    curves
        .iter()
        .enumerate()
        .filter(|(_, curve)| curve.running)
        .map(|(index, curve)| (curve.id.clone(), decide_one(rule, direction, curves, index)))
        .collect()
}

/// Decides for the trial `curves[index]` (see [`decide`]).
pub fn decide_one(
    rule: &Rule,
    direction: Direction,
    curves: &[TrialCurve],
    index: usize,
) -> Decision {
    let Some(curve) = curves.get(index) else {
        return Decision::Continue;
    };
    let Some((epoch, value)) = curve.latest() else {
        return Decision::Continue;
    };
    let others = || {
        curves
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != index)
            .map(|(_, c)| c)
    };
    let stop = match rule {
        Rule::None => false,
        Rule::Median(median) => {
            let values: Vec<f64> = others().filter_map(|c| c.value_at(epoch)).collect();
            epoch >= median.min_epochs.max(1)
                && values.len() >= median.min_trials.max(1)
                && is_worse(direction, value, median_of(values))
        }
        Rule::Asha(asha) => {
            if !asha.rungs(epoch).contains(&epoch) {
                return Decision::Continue;
            }
            let values: Vec<f64> = others().filter_map(|c| c.value_at(epoch)).collect();
            let population = values.len() + 1;
            let promoted = (population / asha.eta.max(2) as usize).max(1);
            let better = values
                .iter()
                .filter(|other| is_worse(direction, value, **other))
                .count();
            better >= promoted
        }
    };
    if stop {
        Decision::Stop
    } else {
        Decision::Continue
    }
}

/// Whether `a` is strictly worse than `b` in `direction`.
fn is_worse(direction: Direction, a: f64, b: f64) -> bool {
    match direction {
        Direction::Maximize => a < b,
        Direction::Minimize => a > b,
    }
}

/// The median of a non-empty list (the mean of the two middle values for an even count).
fn median_of(mut values: Vec<f64>) -> f64 {
    debug_assert!(!values.is_empty(), "callers check the count");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        midpoint(values[mid - 1], values[mid])
    }
}

/// `(a + b)/2`, halving first where the sum would overflow (two results near `f64::MAX`).
fn midpoint(a: f64, b: f64) -> f64 {
    let sum = a + b;
    if sum.is_finite() {
        sum / 2.0
    } else {
        a / 2.0 + b / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(id: &str, values: &[f64], running: bool) -> TrialCurve {
        let epochs = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32 + 1, *v))
            .collect();
        TrialCurve {
            id: id.into(),
            epochs,
            running,
        }
    }

    fn median(min_epochs: u32, min_trials: usize) -> Rule {
        Rule::Median(MedianRule {
            min_epochs,
            min_trials,
        })
    }

    fn asha(min_epochs: u32, eta: u32) -> Rule {
        Rule::Asha(AshaRule { min_epochs, eta })
    }

    fn last_decision(rule: &Rule, direction: Direction, curves: &[TrialCurve]) -> Decision {
        decide_one(rule, direction, curves, curves.len() - 1)
    }

    #[test]
    fn median_stops_a_trial_below_the_median_of_the_others() {
        let mut curves = vec![
            curve("a", &[0.5, 0.7], false),
            curve("b", &[0.5, 0.6], false),
            curve("c", &[0.5, 0.8], true),
        ];
        curves.push(curve("d", &[0.5, 0.64], true));
        // Others at epoch 2: 0.7, 0.6, 0.8 -> median 0.7.
        assert_eq!(
            last_decision(&median(1, 2), Direction::Maximize, &curves),
            Decision::Stop
        );
        curves[3] = curve("d", &[0.5, 0.7], true);
        assert_eq!(
            last_decision(&median(1, 2), Direction::Maximize, &curves),
            Decision::Continue,
            "equal to the median goes on"
        );
        let all = decide(&median(1, 2), Direction::Maximize, &curves);
        assert_eq!(
            all,
            vec![
                ("c".to_string(), Decision::Continue),
                ("d".to_string(), Decision::Continue)
            ]
        );
    }

    /// The median rule's decision, after epoch 1, for a trial at `running` beside two finished
    /// trials at `finished`.
    fn beside_two(finished: [f64; 2], running: f64, direction: Direction) -> Decision {
        let curves = vec![
            curve("a", &[finished[0]], false),
            curve("b", &[finished[1]], false),
            curve("c", &[running], true),
        ];
        last_decision(&median(1, 2), direction, &curves)
    }

    #[test]
    fn median_of_an_even_count_is_the_midpoint() {
        let maximize = Direction::Maximize;
        assert_eq!(beside_two([0.6, 0.8], 0.69, maximize), Decision::Stop);
        assert_eq!(beside_two([0.6, 0.8], 0.7, maximize), Decision::Continue);
    }

    /// Two values near `f64::MAX` have a finite midpoint: their sum is not an `f64`, and an
    /// infinite median would let a trial worse than both continue.
    #[test]
    fn the_midpoint_of_two_huge_values_is_finite() {
        assert_eq!(midpoint(1.7e308, 1.7e308), 1.7e308);
        assert_eq!(midpoint(-f64::MAX, -f64::MAX), -f64::MAX);
        assert_eq!(midpoint(0.6, 0.8), (0.6 + 0.8) / 2.0);
        let huge = [1.7e308, 1.7e308];
        assert_eq!(
            beside_two(huge, 1.75e308, Direction::Minimize),
            Decision::Stop
        );
    }

    #[test]
    fn median_respects_direction() {
        let curves = vec![
            curve("a", &[1.0], false),
            curve("b", &[2.0], false),
            curve("c", &[3.0], true),
        ];
        assert_eq!(
            last_decision(&median(1, 2), Direction::Minimize, &curves),
            Decision::Stop
        );
        assert_eq!(
            last_decision(&median(1, 2), Direction::Maximize, &curves),
            Decision::Continue
        );
    }

    #[test]
    fn median_waits_for_min_epochs_and_min_trials() {
        let curves = vec![
            curve("a", &[0.9, 0.9], false),
            curve("b", &[0.9, 0.9], false),
            curve("c", &[0.1], true),
        ];
        assert_eq!(
            last_decision(&median(2, 1), Direction::Maximize, &curves),
            Decision::Continue,
            "epoch 1 < min_epochs 2"
        );
        assert_eq!(
            last_decision(&median(1, 3), Direction::Maximize, &curves),
            Decision::Continue,
            "only 2 others"
        );
        assert_eq!(
            last_decision(&median(1, 2), Direction::Maximize, &curves),
            Decision::Stop
        );
    }

    #[test]
    fn median_compares_only_trials_that_reached_the_epoch() {
        // a and b never reached epoch 3; only e did, so min_trials 2 is not met at epoch 3.
        let curves = vec![
            curve("a", &[0.9, 0.9], false),
            curve("b", &[0.9, 0.9], false),
            curve("e", &[0.5, 0.6, 0.9], false),
            curve("c", &[0.1, 0.2, 0.3], true),
        ];
        assert_eq!(
            last_decision(&median(1, 2), Direction::Maximize, &curves),
            Decision::Continue
        );
        assert_eq!(
            last_decision(&median(1, 1), Direction::Maximize, &curves),
            Decision::Stop
        );
    }

    #[test]
    fn finished_trials_get_no_decision_and_curves_without_reports_continue() {
        let curves = vec![curve("a", &[0.9], false), curve("b", &[], true)];
        assert_eq!(
            decide(&median(1, 1), Direction::Maximize, &curves),
            vec![("b".to_string(), Decision::Continue)]
        );
        assert_eq!(
            decide(
                &Rule::None,
                Direction::Maximize,
                &[curve("x", &[0.0], true)]
            )[0]
            .1,
            Decision::Continue
        );
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let curves = vec![curve("a", &[f64::NAN], false), curve("b", &[0.1], true)];
        assert_eq!(
            last_decision(&median(1, 1), Direction::Maximize, &curves),
            Decision::Continue
        );
    }

    #[test]
    fn asha_rungs_grow_by_eta() {
        assert_eq!(
            AshaRule {
                min_epochs: 1,
                eta: 3
            }
            .rungs(30),
            vec![1, 3, 9, 27]
        );
        assert_eq!(
            AshaRule {
                min_epochs: 2,
                eta: 2
            }
            .rungs(16),
            vec![2, 4, 8, 16]
        );
        assert_eq!(
            AshaRule {
                min_epochs: 5,
                eta: 3
            }
            .rungs(4),
            Vec::<u32>::new()
        );
        assert_eq!(
            AshaRule {
                min_epochs: 0,
                eta: 1
            }
            .rungs(4),
            vec![1, 2, 4],
            "min_epochs 0 -> 1 and eta 1 -> 2"
        );
    }

    #[test]
    fn asha_decides_only_at_rungs() {
        let curves = vec![
            curve("a", &[0.9, 0.9], false),
            curve("b", &[0.9, 0.9], false),
            curve("c", &[0.1, 0.1], true),
        ];
        // Rungs 1, 3, 9: epoch 2 is between rungs.
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &curves),
            Decision::Continue
        );
        let at_rung = vec![
            curve("a", &[0.9], false),
            curve("b", &[0.9], false),
            curve("c", &[0.1], true),
        ];
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &at_rung),
            Decision::Stop
        );
    }

    #[test]
    fn asha_promotes_the_top_third() {
        // Six others at rung 1 plus this trial: 7 values, top ⌊7/3⌋ = 2 go on.
        let mut curves: Vec<TrialCurve> = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
            .iter()
            .map(|v| curve("x", &[*v], false))
            .collect();
        curves.push(curve("t", &[0.55], true));
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &curves),
            Decision::Continue,
            "second of 7"
        );
        let last = curves.len() - 1;
        curves[last] = curve("t", &[0.45], true);
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &curves),
            Decision::Stop,
            "third of 7"
        );
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Minimize, &curves),
            Decision::Stop,
            "fifth of 7 when minimizing"
        );
        curves[last] = curve("t", &[0.15], true);
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Minimize, &curves),
            Decision::Continue,
            "second when minimizing"
        );
    }

    #[test]
    fn asha_first_arrivals_must_be_the_best_so_far() {
        let first = vec![curve("t", &[0.3], true)];
        assert_eq!(
            last_decision(&asha(1, 2), Direction::Maximize, &first),
            Decision::Continue,
            "alone at the rung"
        );
        let second = vec![curve("a", &[0.5], false), curve("t", &[0.3], true)];
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &second),
            Decision::Stop
        );
        let tie = vec![curve("a", &[0.5], false), curve("t", &[0.5], true)];
        assert_eq!(
            last_decision(&asha(1, 3), Direction::Maximize, &tie),
            Decision::Continue,
            "ties go on"
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rule = asha(1, 3);
        let text = serde_json::to_string(&rule).expect("serializes");
        assert_eq!(text, r#"{"rule":"asha","min_epochs":1,"eta":3}"#);
        assert_eq!(serde_json::from_str::<Rule>(&text).expect("parses"), rule);
        let median: Rule =
            serde_json::from_str(r#"{"rule":"median","min_epochs":2,"min_trials":3}"#)
                .expect("parses");
        assert_eq!(
            median,
            Rule::Median(MedianRule {
                min_epochs: 2,
                min_trials: 3
            })
        );
    }
}
