//! The agent library's error type.

/// Result of an agent operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be loaded or is invalid.
    #[error("invalid agent config: {reason}")]
    Config {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The configuration sources could not be read or merged.
    #[error("failed to load agent config")]
    ConfigLoad(#[from] config::ConfigError),
    /// The requested device cannot be used.
    #[error(transparent)]
    Device(#[from] kernels::Error),
    /// The coordinator URL is not a valid endpoint.
    #[error("invalid coordinator url '{url}': {reason}")]
    CoordinatorUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The coordinator refused a call in a way retrying cannot fix.
    #[error("coordinator refused {call}: {status}")]
    Refused {
        /// The RPC.
        call: &'static str,
        /// The coordinator's answer.
        status: Box<tonic::Status>,
    },
    /// A listener or other I/O resource failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A training thread could not be started or died.
    #[error("training worker for slot {slot} failed: {reason}")]
    Worker {
        /// The slot.
        slot: usize,
        /// What happened.
        reason: String,
    },
    /// A metric could not be registered.
    #[error("failed to register metric: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The agent was asked to shut down before it finished starting.
    #[error("shutdown requested before the agent registered")]
    ShutdownBeforeReady,
}
