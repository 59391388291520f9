//! The error type of the `cnn` crate.

use std::path::PathBuf;

/// Result of a `cnn` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while preparing data or training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A backend operation failed.
    #[error(transparent)]
    Kernel(#[from] kernels::Error),
    /// A hyperparameter is unknown or out of range.
    #[error("invalid hyperparameter '{name}': {reason}")]
    InvalidParam {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A data file could not be read.
    #[error("failed to read '{path}'")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a labelled data file is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A data set cannot be used (too few sentences, one class, ...).
    #[error("invalid dataset: {reason}")]
    Data {
        /// What is wrong.
        reason: String,
    },
    /// The training loss became NaN or infinite.
    #[error("training diverged in epoch {epoch}: the loss is not finite")]
    Diverged {
        /// The 1-based epoch.
        epoch: usize,
    },
}
