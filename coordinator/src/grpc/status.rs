//! The one place domain errors become gRPC statuses (STYLE.md §5), and the request counter.

use tonic::{Code, Response, Status};

use crate::Error;
use crate::metrics::Metrics;

/// The gRPC code of a domain error.
pub fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Unavailable => Code::Unavailable,
        Error::Store { .. }
        | Error::ConfigFile { .. }
        | Error::Config(_)
        | Error::Io { .. }
        | Error::DataDirLocked { .. }
        | Error::Transport(_)
        | Error::Internal(_) => Code::Internal,
    }
}

/// Turns a domain error into a status; internal details are logged, not sent.
pub fn to_status(error: &Error) -> Status {
    let code = code_of(error);
    if code == Code::Internal {
        tracing::error!(error = %crate::display_chain(error), "request failed");
        Status::internal("internal error (see the coordinator log)")
    } else {
        tracing::debug!(%error, ?code, "request refused");
        Status::new(code, error.to_string())
    }
}

/// Awaits a handler's `result`, records how long it took under `method`, then [`respond`]s.
pub async fn answer<T>(
    metrics: &Metrics,
    method: &str,
    result: impl std::future::Future<Output = crate::Result<T>>,
) -> Result<Response<T>, Status> {
    let started = std::time::Instant::now();
    let result = result.await;
    metrics
        .grpc_request_duration_seconds
        .with_label_values(&[method])
        .observe(started.elapsed().as_secs_f64());
    respond(metrics, method, result)
}

/// Counts the request by method and code and converts the result.
pub fn respond<T>(
    metrics: &Metrics,
    method: &str,
    result: crate::Result<T>,
) -> Result<Response<T>, Status> {
    let outcome = result.map(Response::new).map_err(|e| to_status(&e));
    let code = match &outcome {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    metrics
        .grpc_requests_total
        .with_label_values(&[method, &format!("{code:?}")])
        .inc();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(
            code_of(&Error::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(&Error::not_found("experiment", "e")),
            Code::NotFound
        );
        assert_eq!(
            code_of(&Error::FailedPrecondition("stale".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code_of(&Error::Unavailable), Code::Unavailable);
        assert_eq!(code_of(&Error::Internal("boom".into())), Code::Internal);
    }

    #[test]
    fn internal_details_stay_private() {
        let status = to_status(&Error::Internal("path /secret failed".into()));
        assert!(!status.message().contains("/secret"));
    }
}
