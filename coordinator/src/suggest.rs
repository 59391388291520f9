//! The bridge to `tuner`: turns an experiment's spec and trials into a `tuner::suggest` call.
//!
//! Calls here are CPU-bound and blocking; the service runs them on `spawn_blocking`. The seed of
//! each call is derived from the experiment's seed and the number of trials created so far, so a
//! restarted coordinator reproduces the same suggestions.

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
        direction: match spec.direction {
            Direction::Maximize => tuner::Direction::Maximize,
            Direction::Minimize => tuner::Direction::Minimize,
        },
        batch: match spec.batch {
            BatchStrategy::ClMin => tuner::BatchStrategy::ClMin,
            BatchStrategy::ClMean => tuner::BatchStrategy::ClMean,
            BatchStrategy::ClMax => tuner::BatchStrategy::ClMax,
            BatchStrategy::McQei => tuner::BatchStrategy::McQei,
        },
        initial_trials: spec.initial_trials as usize,
        ..SuggestConfig::default()
    }
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
            tracing::warn!(%error, "bo suggestion failed; falling back to random search for this batch");
            let cfg = suggest_config(&input.spec, Strategy::Random);
            tuner::suggest(&space, &input.observations, &input.pending, input.q, &cfg, input.seed)
        }),
        strategy => {
            let cfg = suggest_config(&input.spec, strategy);
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
    let cfg = suggest_config(&input.spec, Strategy::Bo);
    let fit_started = Instant::now();
    let model = tuner::fit(space, &input.observations, &cfg, input.seed)?;
    metrics
        .gp_fit_duration_seconds
        .observe(fit_started.elapsed().as_secs_f64());
    tuner::propose(&model, &input.pending, input.q, &cfg, input.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_call_and_repeat() {
        assert_eq!(derive_seed(7, 3), derive_seed(7, 3));
        assert_ne!(derive_seed(7, 3), derive_seed(7, 4));
        assert_ne!(derive_seed(7, 3), derive_seed(8, 3));
    }
}
