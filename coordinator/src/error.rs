//! The coordinator's error type: one enum for the domain, the store, configuration and startup.
//! `grpc::status::to_status` maps it to `tonic::Code` in one place (STYLE.md §5).

use std::path::PathBuf;

/// Everything that can go wrong inside the coordinator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid (a bad search space, a NaN metric, a missing field).
    #[error("{0}")]
    InvalidArgument(String),
    /// An experiment, trial or agent id that does not exist.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// Kind of object looked up.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is valid but refers to state that moved on (a stale or expired lease).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller is not who the request needs (another agent's lease, a wrong agent secret).
    #[error("{0}")]
    PermissionDenied(String),
    /// A bounded resource is full for now (the registry of agents); the caller may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The coordinator is shutting down.
    #[error("coordinator is shutting down")]
    Unavailable,
    /// The durable store failed.
    #[error("store: failed to {what}")]
    Store {
        /// The operation that failed.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A config file could not be read or parsed.
    #[error("config file '{}': {message}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The layered configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// An I/O operation at startup failed (bind, create a directory, read a token file).
    #[error("failed to {what}")]
    Io {
        /// The operation that failed.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock (another coordinator on the same dir).
    #[error(
        "data dir '{}' is in use by another coordinator ({}): stop it or use another data dir",
        data_dir.display(),
        holder_pid.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"))
    )]
    DataDirLocked {
        /// The data directory.
        data_dir: PathBuf,
        /// The holder's pid, as its lock file says.
        holder_pid: Option<u32>,
    },
    /// The gRPC server failed.
    #[error("grpc server failed")]
    Transport(#[from] tonic::transport::Error),
    /// A broken internal invariant or a failed background task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Wraps a store-level error with the operation that failed.
    pub fn store(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Store {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// Wraps an I/O error with the operation that failed.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// A `NotFound` for an id of the given kind.
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

/// The coordinator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
