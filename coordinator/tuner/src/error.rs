//! The tuner's error type: invalid search spaces, invalid configurations, invalid observations
//! and numerical failures. Messages are lowercase and name what failed.

/// Everything that can go wrong in the tuner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A parameter of a search space is invalid (bounds, choices, default, name).
    #[error("invalid parameter '{name}': {reason}")]
    InvalidParam {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The search space as a whole is invalid (for example it has no parameters).
    #[error("invalid search space: {0}")]
    InvalidSpace(String),
    /// An assignment does not fit the space (missing, unknown or out-of-range parameter).
    #[error("invalid assignment: {0}")]
    InvalidAssignment(String),
    /// An observation has a non-finite value.
    #[error("invalid observation {index}: {reason}")]
    InvalidObservation {
        /// Index of the observation in the slice passed in.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A `SuggestConfig` field is out of range.
    #[error("invalid suggest config: {0}")]
    InvalidConfig(String),
    /// The kernel matrix stayed non-positive-definite even with the largest jitter.
    #[error("kernel matrix is not positive definite (n = {n}, jitter up to {max_jitter:e})")]
    NotPositiveDefinite {
        /// Number of training points.
        n: usize,
        /// The largest jitter tried.
        max_jitter: f64,
    },
    /// A numerical computation produced a non-finite result.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// The call ran past [`crate::SuggestConfig::deadline`] and stopped without a result.
    #[error("the suggestion ran past its deadline and was stopped")]
    DeadlinePassed,
}

/// The tuner's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Err(`[`Error::DeadlinePassed`]`)` once `deadline` has passed; `Ok` without one.
pub(crate) fn check_deadline(deadline: Option<std::time::Instant>) -> Result<()> {
    match deadline {
        Some(deadline) if std::time::Instant::now() >= deadline => Err(Error::DeadlinePassed),
        _ => Ok(()),
    }
}
