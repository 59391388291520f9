//! The agent's view of the coordinator: the [`CoordinatorApi`] trait and its gRPC implementation.
//!
//! The slot loop, the outbox and the session are generic over [`CoordinatorApi`], so unit tests
//! drive them with a fake coordinator instead of a network.

use std::future::Future;
use std::time::Duration;

use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::{
    CompleteTrialRequest, CompleteTrialResponse, HeartbeatRequest, HeartbeatResponse,
    LeaseTrialRequest, LeaseTrialResponse, RegisterAgentRequest, RegisterAgentResponse,
    ReportEpochRequest, ReportEpochResponse, UnregisterAgentRequest, UnregisterAgentResponse,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::error::{Error, Result};

/// The six calls an agent makes, as plain async functions returning the gRPC status on error.
pub trait CoordinatorApi: Clone + Send + Sync + 'static {
    /// `RegisterAgent`.
    fn register(
        &self,
        req: RegisterAgentRequest,
    ) -> impl Future<Output = Result<RegisterAgentResponse, Status>> + Send;
    /// `LeaseTrial`.
    fn lease(
        &self,
        req: LeaseTrialRequest,
    ) -> impl Future<Output = Result<LeaseTrialResponse, Status>> + Send;
    /// `Heartbeat`.
    fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> impl Future<Output = Result<HeartbeatResponse, Status>> + Send;
    /// `ReportEpoch`.
    fn report_epoch(
        &self,
        req: ReportEpochRequest,
    ) -> impl Future<Output = Result<ReportEpochResponse, Status>> + Send;
    /// `CompleteTrial`.
    fn complete(
        &self,
        req: CompleteTrialRequest,
    ) -> impl Future<Output = Result<CompleteTrialResponse, Status>> + Send;
    /// `UnregisterAgent` (an older coordinator answers `UNIMPLEMENTED`).
    fn unregister(
        &self,
        req: UnregisterAgentRequest,
    ) -> impl Future<Output = Result<UnregisterAgentResponse, Status>> + Send;
}

/// The deadline of one `LeaseTrial` call: the long poll's `wait_seconds` plus the ordinary
/// request timeout, so the client never cuts a long poll short.
pub fn lease_timeout(request_timeout: Duration, wait_seconds: f64) -> Duration {
    let wait = if wait_seconds.is_finite() && wait_seconds > 0.0 {
        Duration::try_from_secs_f64(wait_seconds).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    };
    request_timeout.saturating_add(wait)
}

/// The real coordinator over gRPC, with a lazily (re)connecting channel.
///
/// Each request carries its own deadline (`grpc-timeout`, which the client enforces too):
/// `request_timeout`, and for `LeaseTrial` [`lease_timeout`]. The channel has no timeout of its
/// own, because tonic would apply the shorter of the two and cut long polls off.
#[derive(Clone)]
pub struct GrpcCoordinator {
    client: AgentServiceClient<Channel>,
    bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    request_timeout: Duration,
}

impl GrpcCoordinator {
    /// Creates a client for `url`, over TLS with `tls` (for an `https://` URL); it connects on
    /// first use and reconnects after failures.
    ///
    /// # Errors
    /// [`Error::CoordinatorUrl`] when the URL is malformed, the TLS config does not fit it, or
    /// the token is not valid ASCII.
    pub fn new(
        url: &str,
        tls: Option<ClientTlsConfig>,
        auth_token: Option<&str>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self> {
        let url_error = |reason: String| Error::CoordinatorUrl {
            url: url.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|error| url_error(error.to_string()))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| url_error(format!("tls: {}", crate::tls::error_chain(&error))))?;
        }
        let bearer = match auth_token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| url_error("auth token is not valid ASCII".to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            client: AgentServiceClient::new(endpoint.connect_lazy()),
            bearer,
            request_timeout,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        self.request_with_timeout(message, self.request_timeout)
    }

    fn request_with_timeout<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }
}

impl CoordinatorApi for GrpcCoordinator {
    async fn register(&self, req: RegisterAgentRequest) -> Result<RegisterAgentResponse, Status> {
        Ok(self
            .client
            .clone()
            .register_agent(self.request(req))
            .await?
            .into_inner())
    }

    async fn lease(&self, req: LeaseTrialRequest) -> Result<LeaseTrialResponse, Status> {
        let timeout = lease_timeout(self.request_timeout, req.wait_seconds);
        Ok(self
            .client
            .clone()
            .lease_trial(self.request_with_timeout(req, timeout))
            .await?
            .into_inner())
    }

    async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
        Ok(self
            .client
            .clone()
            .heartbeat(self.request(req))
            .await?
            .into_inner())
    }

    async fn report_epoch(&self, req: ReportEpochRequest) -> Result<ReportEpochResponse, Status> {
        Ok(self
            .client
            .clone()
            .report_epoch(self.request(req))
            .await?
            .into_inner())
    }

    async fn complete(&self, req: CompleteTrialRequest) -> Result<CompleteTrialResponse, Status> {
        Ok(self
            .client
            .clone()
            .complete_trial(self.request(req))
            .await?
            .into_inner())
    }

    async fn unregister(
        &self,
        req: UnregisterAgentRequest,
    ) -> Result<UnregisterAgentResponse, Status> {
        Ok(self
            .client
            .clone()
            .unregister_agent(self.request(req))
            .await?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proto::v1::agent_service_server::{AgentService, AgentServiceServer};
    use proto::v1::lease_trial_response::Outcome;
    use tokio::sync::oneshot;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Code, Response};

    use super::*;

    #[test]
    fn a_lease_deadline_is_the_wait_plus_the_request_timeout() {
        let request_timeout = Duration::from_secs(10);
        assert_eq!(lease_timeout(request_timeout, 5.0), Duration::from_secs(15));
        assert_eq!(
            lease_timeout(request_timeout, 0.25),
            Duration::from_millis(10_250)
        );
        for no_wait in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(lease_timeout(request_timeout, no_wait), request_timeout);
        }
        assert_eq!(lease_timeout(request_timeout, 1e300), Duration::MAX);
    }

    /// A coordinator whose `LeaseTrial` and `Heartbeat` answer after `delay`.
    struct Slow {
        delay: Duration,
    }

    #[tonic::async_trait]
    impl AgentService for Slow {
        async fn register_agent(
            &self,
            _: Request<RegisterAgentRequest>,
        ) -> Result<Response<RegisterAgentResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn lease_trial(
            &self,
            _: Request<LeaseTrialRequest>,
        ) -> Result<Response<LeaseTrialResponse>, Status> {
            tokio::time::sleep(self.delay).await;
            Ok(Response::new(LeaseTrialResponse {
                outcome: Some(Outcome::RetryAfterSeconds(0.5)),
            }))
        }
        async fn heartbeat(
            &self,
            _: Request<HeartbeatRequest>,
        ) -> Result<Response<HeartbeatResponse>, Status> {
            tokio::time::sleep(self.delay).await;
            Ok(Response::new(HeartbeatResponse { leases: Vec::new() }))
        }
        async fn report_epoch(
            &self,
            _: Request<ReportEpochRequest>,
        ) -> Result<Response<ReportEpochResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn complete_trial(
            &self,
            _: Request<CompleteTrialRequest>,
        ) -> Result<Response<CompleteTrialResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn unregister_agent(
            &self,
            _: Request<UnregisterAgentRequest>,
        ) -> Result<Response<UnregisterAgentResponse>, Status> {
            Ok(Response::new(UnregisterAgentResponse {
                leases_released: 2,
            }))
        }
    }

    /// Serves `router` on a free loopback port until the returned sender is dropped.
    async fn serve(router: tonic::service::Routes) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(router)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                }),
        );
        (addr, stop_tx)
    }

    /// tonic reports a deadline the client enforced as `CANCELLED`, "Timeout expired".
    fn timed_out(status: &Status) -> bool {
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded)
            && status.message().contains("Timeout")
    }

    fn client(addr: SocketAddr, request_timeout: Duration) -> GrpcCoordinator {
        GrpcCoordinator::new(
            &format!("http://{addr}"),
            None,
            None,
            Duration::from_secs(2),
            request_timeout,
        )
        .expect("valid url")
    }

    #[tokio::test]
    async fn a_long_poll_outlives_the_request_timeout_and_other_calls_do_not() {
        let slow = Slow {
            delay: Duration::from_millis(600),
        };
        let (addr, _stop) = serve(tonic::service::Routes::new(AgentServiceServer::new(slow))).await;
        let api = client(addr, Duration::from_millis(300));
        let long_poll = LeaseTrialRequest {
            agent_id: "agent-1".into(),
            agent_secret: "s".into(),
            wait_seconds: 1.0,
            experiment_id: String::new(),
        };
        let answer = api
            .lease(long_poll)
            .await
            .expect("the long poll is not cut off");
        assert_eq!(answer.outcome, Some(Outcome::RetryAfterSeconds(0.5)));
        let no_wait = LeaseTrialRequest {
            agent_id: "agent-1".into(),
            agent_secret: "s".into(),
            wait_seconds: 0.0,
            experiment_id: String::new(),
        };
        let status = api.lease(no_wait).await.expect_err("300 ms < 600 ms");
        assert!(timed_out(&status), "{status:?}");
        let status = api
            .heartbeat(HeartbeatRequest::default())
            .await
            .expect_err("other calls keep the request timeout");
        assert!(timed_out(&status), "{status:?}");
        let released = api
            .unregister(UnregisterAgentRequest {
                agent_id: "agent-1".into(),
                agent_secret: "s".into(),
            })
            .await
            .expect("unregistered");
        assert_eq!(released.leases_released, 2);
    }

    #[tokio::test]
    async fn a_coordinator_without_unregister_answers_unimplemented() {
        // A server without the agent service, like a coordinator older than UnregisterAgent.
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (addr, _stop) = serve(tonic::service::Routes::new(health)).await;
        let api = client(addr, Duration::from_secs(2));
        let status = api
            .unregister(UnregisterAgentRequest {
                agent_id: "agent-1".into(),
                agent_secret: "s".into(),
            })
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }
}
