//! The bridge to `tuner`: turns an experiment's spec and trials into a `tuner::suggest` call.
//!
//! Calls here are CPU-bound and blocking; the service runs them on `spawn_blocking`. The seed of
//! each call is derived from the experiment's seed and the number of trials created so far, so a
//! restarted coordinator draws the same seeds. The GP fit's warm start (the experiment's last
//! hyperparameters, [`HyperparameterMemory`]) lives in memory only: the first BO round after a
//! restart fits cold and may choose other points than the old process would have.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tuner::space::{Assignment, Space};
use tuner::{Observation, SuggestConfig};

use crate::metrics::Metrics;
use crate::service::model::{BatchStrategy, Direction, ExperimentSpec, Strategy};
use crate::{Error, Result};

/// Builds and validates the search space of a spec.
///
/// # Errors
/// `InvalidArgument` naming the parameter when the space is invalid.
pub fn space_of(spec: &ExperimentSpec) -> Result<Space> {
    Space::new(spec.parameters.clone())
        .map_err(|e| Error::InvalidArgument(format!("invalid search space: {e}")))
}

/// The tuner's batch strategy for a spec's. The domain names the constant liar by the quality
/// of its lie (CL-min: the best value seen, CL-max: the worst), the tuner by the number in user
/// units (`ClMin`: the smallest value), so for a maximization the two are swapped.
pub fn tuner_batch(batch: BatchStrategy, direction: Direction) -> tuner::BatchStrategy {
    let best = tuner::BatchStrategy::best_value_lie(direction);
    let worst = match best {
        tuner::BatchStrategy::ClMin => tuner::BatchStrategy::ClMax,
        _ => tuner::BatchStrategy::ClMin,
    };
    match batch {
        BatchStrategy::ClMin => best,
        BatchStrategy::ClMax => worst,
        BatchStrategy::ClMean => tuner::BatchStrategy::ClMean,
        BatchStrategy::McQei => tuner::BatchStrategy::McQei,
    }
}

/// The tuner configuration of a spec.
pub fn suggest_config(spec: &ExperimentSpec, strategy: Strategy) -> SuggestConfig {
    SuggestConfig {
        strategy: match strategy {
            Strategy::Bo => tuner::Strategy::Bo,
            Strategy::Random => tuner::Strategy::Random,
            Strategy::Grid => tuner::Strategy::Grid {
                levels: spec.grid_levels as usize,
            },
        },
        direction: spec.direction,
        batch: tuner_batch(spec.batch, spec.direction),
        initial_trials: spec.initial_trials as usize,
        deterministic: spec.deterministic,
        budget: spec.budget_trials as usize,
        max_model_points: match spec.max_model_points {
            0 => tuner::DEFAULT_MAX_MODEL_POINTS,
            cap => cap as usize,
        },
        ..SuggestConfig::default()
    }
}

/// The tuner's default [`tuner::SuggestConfig::max_model_points`], as a spec stores it.
pub fn default_max_model_points() -> u32 {
    u32::try_from(tuner::DEFAULT_MAX_MODEL_POINTS).expect("the default fits in u32")
}

/// Mixes 64 bits (SplitMix64's finalizer).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the suggest call made when `trials_created` trials exist.
pub fn derive_seed(experiment_seed: u64, trials_created: u32) -> u64 {
    mix64(experiment_seed ^ mix64(u64::from(trials_created)))
}

/// An experiment's last fitted GP hyperparameters ([`tuner::Model::hyperparameters`]), kept in
/// memory (never stored) so that the next BO round's fit starts from them
/// ([`tuner::fit_warm`]): with hundreds of results that makes the fit several times faster. A
/// restarted coordinator starts cold once. Clones share one slot.
#[derive(Debug, Clone, Default)]
pub struct HyperparameterMemory(Arc<Mutex<Option<Vec<f64>>>>);

impl HyperparameterMemory {
    /// The hyperparameters last recorded, if any.
    pub fn get(&self) -> Option<Vec<f64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a fit's hyperparameters (`None` leaves the slot as it is).
    pub fn set(&self, theta: Option<Vec<f64>>) {
        if theta.is_some() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = theta;
        }
    }
}

/// Everything one suggest call needs, owned so it can move to a blocking thread.
pub struct SuggestInput {
    /// The experiment's spec.
    pub spec: ExperimentSpec,
    /// Results so far.
    pub observations: Vec<Observation>,
    /// Points created and not yet finished.
    pub pending: Vec<Assignment>,
    /// Points wanted.
    pub q: usize,
    /// The call's seed.
    pub seed: u64,
    /// The experiment's last hyperparameters: read as the warm start of this call's fit (an
    /// input, like the seed) and overwritten with the fit's own.
    pub hyperparameters: HyperparameterMemory,
    /// When the caller gives up on the call ([`tuner::SuggestConfig::deadline`]): past it the
    /// tuner stops and the call fails, with no fallback to random search. `None`: never.
    pub deadline: Option<Instant>,
}

/// The tuner configuration of `input`'s spec for `strategy`, with its deadline.
fn config_of(input: &SuggestInput, strategy: Strategy) -> SuggestConfig {
    SuggestConfig {
        deadline: input.deadline,
        ..suggest_config(&input.spec, strategy)
    }
}

/// Suggests up to `input.q` points. A BO failure (a GP that cannot be fitted) falls back to
/// random search for this call, with a warning, so an experiment never stalls.
///
/// # Errors
/// When the space is invalid or random search fails too.
pub fn suggest(input: &SuggestInput, metrics: &Metrics) -> Result<Vec<Assignment>> {
    let started = Instant::now();
    let space = space_of(&input.spec)?;
    let result = match input.spec.strategy {
        Strategy::Bo => suggest_bo(&space, input, metrics).or_else(|error| {
            if error == tuner::Error::DeadlinePassed {
                return Err(error);
            }
            tracing::warn!(%error, "bo suggestion failed; falling back to random search for this batch");
            let cfg = config_of(input, Strategy::Random);
            tuner::suggest(&space, &input.observations, &input.pending, input.q, &cfg, input.seed)
        }),
        strategy => {
            let cfg = config_of(input, strategy);
            tuner::suggest(&space, &input.observations, &input.pending, input.q, &cfg, input.seed)
        }
    };
    metrics
        .suggest_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    let candidates =
        result.map_err(|e| Error::Internal(format!("failed to suggest trials: {e}")))?;
    Ok(candidates.into_iter().map(|c| c.params).collect())
}

fn suggest_bo(
    space: &Space,
    input: &SuggestInput,
    metrics: &Metrics,
) -> tuner::Result<Vec<tuner::Candidate>> {
    let cfg = config_of(input, Strategy::Bo);
    let fit_started = Instant::now();
    let warm = input.hyperparameters.get();
    let model = tuner::fit_warm(
        space,
        &input.observations,
        &cfg,
        input.seed,
        warm.as_deref(),
    )
    .or_else(|error| {
        if error == tuner::Error::DeadlinePassed {
            return Err(error);
        }
        // A remembered start that no longer fits this space (never expected: an experiment's
        // space is fixed) must not cost the round.
        tracing::warn!(%error, "warm-started GP fit failed; fitting cold");
        tuner::fit(space, &input.observations, &cfg, input.seed)
    })?;
    input.hyperparameters.set(model.hyperparameters());
    metrics
        .gp_fit_duration_seconds
        .observe(fit_started.elapsed().as_secs_f64());
    tuner::propose(&model, &input.pending, input.q, &cfg, input.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::service::model::Workload;
    use tuner::space::{ParamSpec, Value};

    #[test]
    fn the_cl_min_lie_is_the_best_value_in_either_direction() {
        use tuner::BatchStrategy as T;
        assert_eq!(
            tuner_batch(BatchStrategy::ClMin, Direction::Minimize),
            T::ClMin
        );
        assert_eq!(
            tuner_batch(BatchStrategy::ClMin, Direction::Maximize),
            T::ClMax
        );
        assert_eq!(
            tuner_batch(BatchStrategy::ClMax, Direction::Maximize),
            T::ClMin
        );
        assert_eq!(
            tuner_batch(BatchStrategy::ClMax, Direction::Minimize),
            T::ClMax
        );
        assert_eq!(
            tuner_batch(BatchStrategy::ClMean, Direction::Maximize),
            T::ClMean
        );
    }

    fn maximize_input(batch: BatchStrategy) -> SuggestInput {
        let parameters: Vec<ParamSpec> = serde_json::from_str(
            r#"[{"name":"x","type":"float","low":0.0,"high":1.0},{"name":"y","type":"float","low":0.0,"high":1.0}]"#,
        )
        .expect("space parses");
        let point = |x: f64, y: f64| {
            let mut a = Assignment::new();
            a.insert("x".into(), Value::Float(x));
            a.insert("y".into(), Value::Float(y));
            a
        };
        // An accuracy-like objective peaking at (0.7, 0.3).
        let value = |x: f64, y: f64| 0.9 - (x - 0.7).powi(2) - (y - 0.3).powi(2);
        let observations = (0..12)
            .map(|i| {
                let (x, y) = ((f64::from(i) * 0.37) % 1.0, (f64::from(i) * 0.61) % 1.0);
                Observation {
                    params: point(x, y),
                    value: value(x, y),
                }
            })
            .collect();
        SuggestInput {
            spec: ExperimentSpec {
                name: "lie".into(),
                metric: "dev_accuracy".into(),
                direction: Direction::Maximize,
                strategy: Strategy::Bo,
                batch,
                budget_trials: 100,
                parallelism: 4,
                parameters,
                seed: 11,
                grid_levels: 3,
                initial_trials: 5,
                max_attempts: 3,
                workload: Some(Workload::default()),
                budget_dollars: 0.0,
                study: String::new(),
                deterministic: false,
                max_model_points: 0,
                early_stopping: crate::service::early_stop::Rule::None,
            },
            observations,
            pending: vec![point(0.68, 0.31), point(0.72, 0.28)],
            q: 2,
            seed: 5,
            hyperparameters: HyperparameterMemory::default(),
            deadline: None,
        }
    }

    /// A round whose deadline has passed fails naming it, without the random-search fallback
    /// that other BO failures take (the caller has given up on the round); random and grid
    /// rounds stop the same way. Without a deadline the same input suggests.
    #[test]
    fn a_round_past_its_deadline_fails_without_falling_back() {
        let metrics = Metrics::new();
        for strategy in [Strategy::Bo, Strategy::Random, Strategy::Grid] {
            let mut input = maximize_input(BatchStrategy::McQei);
            input.spec.strategy = strategy;
            input.deadline = Some(Instant::now());
            let error = suggest(&input, &metrics).expect_err("past its deadline");
            assert!(
                error.to_string().contains("deadline"),
                "{strategy:?}: {error}"
            );
            input.deadline = None;
            assert_eq!(suggest(&input, &metrics).expect("suggests").len(), 2);
        }
    }

    /// A BO round records its fit's hyperparameters in the experiment's memory, and the next
    /// round's fit starts from them: its points are those of a direct warm-started call with the
    /// remembered values as input.
    #[test]
    fn bo_rounds_remember_their_hyperparameters_and_warm_start_the_next_fit() {
        let input = maximize_input(BatchStrategy::ClMin);
        let metrics = Metrics::new();
        assert_eq!(input.hyperparameters.get(), None);
        suggest(&input, &metrics).expect("suggests");
        let first = input.hyperparameters.get().expect("the fit was recorded");
        // One length-scale a parameter, the signal and the noise variance.
        assert_eq!(first.len(), input.spec.parameters.len() + 2);
        let space = space_of(&input.spec).expect("space");
        let cfg = suggest_config(&input.spec, Strategy::Bo);
        let next = SuggestInput {
            seed: 6,
            ..maximize_input(BatchStrategy::ClMin)
        };
        let next = SuggestInput {
            hyperparameters: input.hyperparameters.clone(),
            ..next
        };
        let got = suggest(&next, &metrics).expect("suggests");
        let model =
            tuner::fit_warm(&space, &next.observations, &cfg, 6, Some(&first)).expect("fits");
        let direct: Vec<_> = tuner::propose(&model, &next.pending, next.q, &cfg, 6)
            .expect("proposes")
            .into_iter()
            .map(|c| c.params)
            .collect();
        assert_eq!(got, direct);
        assert_eq!(input.hyperparameters.get(), model.hyperparameters());
    }

    /// Through the coordinator's bridge: a maximize experiment's default CL-min lies with the best
    /// accuracy (the tuner's `ClMax`), not the worst, as it did before.
    #[test]
    fn a_maximize_experiment_lies_with_its_best_value() {
        let input = maximize_input(BatchStrategy::ClMin);
        let metrics = Metrics::new();
        let got = suggest(&input, &metrics).expect("suggests");
        let space = space_of(&input.spec).expect("space");
        let direct = |batch| {
            let cfg = SuggestConfig {
                batch,
                ..suggest_config(&input.spec, Strategy::Bo)
            };
            let model = tuner::fit(&space, &input.observations, &cfg, input.seed).expect("fits");
            tuner::propose(&model, &input.pending, input.q, &cfg, input.seed)
                .expect("proposes")
                .into_iter()
                .map(|c| c.params)
                .collect::<Vec<_>>()
        };
        assert_eq!(got, direct(tuner::BatchStrategy::ClMax));
        assert_ne!(
            got,
            direct(tuner::BatchStrategy::ClMin),
            "the worst-value lie gives another batch here, so the test tells them apart"
        );
    }

    #[test]
    fn determinism_and_budget_reach_the_tuner_and_the_wire() {
        let mut spec = maximize_input(BatchStrategy::ClMin).spec;
        assert!(!suggest_config(&spec, Strategy::Bo).deterministic);
        spec.deterministic = true;
        let cfg = suggest_config(&spec, Strategy::Bo);
        assert!(cfg.deterministic);
        assert_eq!(cfg.budget, 100);
        let wire = proto::v1::ExperimentSpec::from(&spec);
        assert!(wire.deterministic);
        assert_eq!(ExperimentSpec::try_from(wire).expect("converts back"), spec);
    }

    #[test]
    fn the_model_cap_reaches_the_tuner_and_the_wire() {
        let mut spec = maximize_input(BatchStrategy::ClMin).spec;
        // 0, as in specs stored before the key existed: the tuner's default.
        spec.max_model_points = 0;
        assert_eq!(
            suggest_config(&spec, Strategy::Bo).max_model_points,
            tuner::DEFAULT_MAX_MODEL_POINTS
        );
        spec.max_model_points = 300;
        assert_eq!(suggest_config(&spec, Strategy::Bo).max_model_points, 300);
        let wire = proto::v1::ExperimentSpec::from(&spec);
        assert_eq!(wire.max_model_points, 300);
        assert_eq!(ExperimentSpec::try_from(wire).expect("converts back"), spec);
    }

    #[test]
    fn seeds_differ_per_call_and_repeat() {
        assert_eq!(derive_seed(7, 3), derive_seed(7, 3));
        assert_ne!(derive_seed(7, 3), derive_seed(7, 4));
        assert_ne!(derive_seed(7, 3), derive_seed(8, 3));
    }
}
