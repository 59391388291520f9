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
    ReportEpochRequest, ReportEpochResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::error::{Error, Result};

/// The five calls an agent makes, as plain async functions returning the gRPC status on error.
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
}

/// The real coordinator over gRPC, with a lazily (re)connecting channel.
#[derive(Clone)]
pub struct GrpcCoordinator {
    client: AgentServiceClient<Channel>,
    bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl GrpcCoordinator {
    /// Creates a client for `url`; it connects on first use and reconnects after failures.
    ///
    /// # Errors
    /// [`Error::CoordinatorUrl`] when the URL is malformed or the token is not valid ASCII.
    pub fn new(
        url: &str,
        auth_token: Option<&str>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self> {
        let url_error = |reason: String| Error::CoordinatorUrl {
            url: url.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|error| url_error(error.to_string()))?
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .tcp_nodelay(true);
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
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
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
        Ok(self
            .client
            .clone()
            .lease_trial(self.request(req))
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
}
