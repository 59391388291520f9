//! Checks on what the coordinator answers, beyond "it did not panic": the sums an experiment
//! reports agree with each other and with its spec.

use proto::v1 as pb;

/// Checks an experiment's summary: trials by state add up to at most the trials created, which
/// are at most the budget; no more trials run than the parallelism; sums are finite and not
/// negative.
pub fn experiment(what: &dyn Fn() -> String, experiment: &pb::Experiment) {
    let counted = [
        experiment.trials_succeeded,
        experiment.trials_failed,
        experiment.trials_early_stopped,
        experiment.trials_running,
    ]
    .iter()
    .map(|n| u64::from(*n))
    .sum::<u64>();
    let fail = |problem: String| panic!("{}: experiment {}: {problem}", what(), experiment.id);
    if counted > u64::from(experiment.trials_created) {
        fail(format!(
            "{counted} trials by state but {} created",
            experiment.trials_created
        ));
    }
    if let Some(spec) = &experiment.spec {
        if experiment.trials_created > spec.budget_trials {
            fail(format!(
                "{} trials created over a budget of {}",
                experiment.trials_created, spec.budget_trials
            ));
        }
        if experiment.trials_running > spec.parallelism.max(1) {
            fail(format!(
                "{} trials running over a parallelism of {}",
                experiment.trials_running, spec.parallelism
            ));
        }
    }
    for (name, value) in [
        ("cost_dollars", experiment.cost_dollars),
        ("device_seconds", experiment.device_seconds),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            fail(format!("{name} is {value}"));
        }
    }
    if let Some(best) = experiment.best_value
        && !best.is_finite()
    {
        fail(format!("best_value is {best}"));
    }
}
