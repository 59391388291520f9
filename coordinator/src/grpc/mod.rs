//! The gRPC layer: thin tonic adapters over the domain services, the bearer-token and draining
//! gate, error mapping, and the server with health checks, graceful shutdown, connection
//! limits ([`listener`]) and optional TLS ([`tls`]).

pub mod agent;
pub mod convert;
pub mod experiment;
pub mod listener;
pub mod paging;
pub mod status;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proto::v1::agent_service_server::AgentServiceServer;
use proto::v1::experiment_service_server::ExperimentServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, InterceptorLayer};
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Status};
use tonic_health::ServingStatus;

use crate::Result;
use crate::metrics::Metrics;
use crate::service::{AgentService, ExperimentService, limits};

pub use agent::AgentGrpc;
pub use experiment::ExperimentGrpc;
pub use listener::ConnectionLimits;

/// The full gRPC names of the two services, as health checks know them.
pub const SERVICE_NAMES: [&str; 2] = [
    "tunefleet.v1.ExperimentService",
    "tunefleet.v1.AgentService",
];

/// Checks every request: `Unavailable` while draining, `Unauthenticated` without the bearer
/// token when one is configured.
#[derive(Clone)]
pub struct Gate {
    token: Option<Arc<str>>,
    draining: Arc<AtomicBool>,
}

impl Gate {
    /// A gate requiring `token` when given.
    pub fn new(token: Option<String>, draining: Arc<AtomicBool>) -> Self {
        Self {
            token: token.map(Arc::from),
            draining,
        }
    }
}

impl Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.draining.load(Ordering::Acquire) {
            return Err(Status::unavailable("coordinator is shutting down"));
        }
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing bearer token (authorization: Bearer ...)",
            )),
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// [`serve_with_limits`] with the default [`ConnectionLimits`], without TLS.
///
/// # Errors
/// When the transport fails.
pub async fn serve<S>(
    service: S,
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    S: ExperimentService + AgentService + Clone,
{
    let limits = ConnectionLimits::default();
    serve_with_limits(service, metrics, listener, token, limits, None, shutdown).await
}

/// Serves both services and health on `listener` within `limits`, over TLS when `tls` is given
/// ([`tls::TlsFiles::load`] makes it), until `shutdown` completes, then drains: health turns
/// NOT_SERVING, new requests get `Unavailable`, in-flight ones finish.
///
/// # Errors
/// When the TLS config is refused or the transport fails.
pub async fn serve_with_limits<S>(
    service: S,
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    limits: ConnectionLimits,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    S: ExperimentService + AgentService + Clone,
{
    let draining = Arc::new(AtomicBool::new(false));
    let gate = Gate::new(token, Arc::clone(&draining));
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let experiments = ExperimentGrpc::new(service.clone(), Arc::clone(&metrics));
    let incoming = listener::LimitedIncoming::new(listener, limits, Arc::clone(&metrics));
    let agents = AgentGrpc::new(service, metrics);
    let drained = async move {
        shutdown.await;
        draining.store(true, Ordering::Release);
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in SERVICE_NAMES {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tracing::info!("draining grpc server");
    };
    let mark_requested: listener::MarkRequested = listener::mark_requested;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .layer(InterceptorLayer::new(mark_requested))
        .add_service(health)
        .add_service(InterceptedService::new(
            ExperimentServiceServer::new(experiments)
                .max_decoding_message_size(limits::MAX_CLIENT_MESSAGE_BYTES),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            AgentServiceServer::new(agents).max_decoding_message_size(limits::MAX_MESSAGE_BYTES),
            gate,
        ))
        .serve_with_incoming_shutdown(incoming, drained)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii header"));
        }
        request
    }

    #[test]
    fn gate_checks_token_and_draining() {
        let draining = Arc::new(AtomicBool::new(false));
        let mut gate = Gate::new(Some("s3cret".into()), Arc::clone(&draining));
        assert!(gate.call(request_with(Some("Bearer s3cret"))).is_ok());
        assert_eq!(
            gate.call(request_with(Some("Bearer nope")))
                .expect_err("wrong")
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            gate.call(request_with(None)).expect_err("missing").code(),
            tonic::Code::Unauthenticated
        );
        draining.store(true, Ordering::Release);
        assert_eq!(
            gate.call(request_with(Some("Bearer s3cret")))
                .expect_err("draining")
                .code(),
            tonic::Code::Unavailable
        );
        let mut open = Gate::new(None, Arc::new(AtomicBool::new(false)));
        assert!(open.call(request_with(None)).is_ok());
    }
}
