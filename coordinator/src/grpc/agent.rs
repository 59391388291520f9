//! `AgentService` over gRPC: decode, authorize (every call but a first registration carries the
//! agent's secret), call the domain, encode, map the error.

use std::sync::Arc;
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::agent_service_server::AgentService as PbAgentService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::convert::action_to_pb;
use super::status::answer;
use crate::metrics::Metrics;
use crate::service::limits;
use crate::service::model::{AgentId, ExperimentId, LeaseId};
use crate::service::{AgentService, Completion, EpochInput, LeaseOutcome};

/// The tonic adapter over any [`AgentService`].
pub struct AgentGrpc<S> {
    service: S,
    metrics: Arc<Metrics>,
}

impl<S> AgentGrpc<S> {
    /// Wraps a domain service.
    pub fn new(service: S, metrics: Arc<Metrics>) -> Self {
        Self { service, metrics }
    }
}

fn non_empty(what: &str, raw: String) -> crate::Result<String> {
    limits::check_id(what, &raw)?;
    Ok(raw)
}

#[tonic::async_trait]
impl<S: AgentService> PbAgentService for AgentGrpc<S> {
    #[instrument(skip(self, request))]
    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            limits::check_len("agent_id", &inner.agent_id, limits::MAX_ID_BYTES)?;
            limits::check_len("agent_secret", &inner.agent_secret, limits::MAX_ID_BYTES)?;
            let agent_id = Some(inner.agent_id)
                .filter(|id| !id.is_empty())
                .map(AgentId);
            let secret = Some(inner.agent_secret).filter(|s| !s.is_empty());
            let capabilities = inner.capabilities.unwrap_or_default().into();
            let r = self
                .service
                .register_agent(capabilities, agent_id, secret)
                .await?;
            Ok(pb::RegisterAgentResponse {
                agent_id: r.agent_id.0,
                heartbeat_interval_seconds: r.heartbeat_interval.as_secs_f64(),
                lease_timeout_seconds: r.lease_timeout.as_secs_f64(),
                agent_secret: r.secret,
            })
        };
        answer(&self.metrics, "RegisterAgent", result).await
    }

    #[instrument(skip(self, request))]
    async fn lease_trial(
        &self,
        request: Request<pb::LeaseTrialRequest>,
    ) -> Result<Response<pb::LeaseTrialResponse>, Status> {
        use pb::lease_trial_response::Outcome;
        let result = async {
            let inner = request.into_inner();
            let agent_id = AgentId(non_empty("agent_id", inner.agent_id)?);
            self.service
                .authorize_agent(&agent_id, &inner.agent_secret)?;
            let wait = if inner.wait_seconds.is_finite() && inner.wait_seconds > 0.0 {
                Duration::from_secs_f64(inner.wait_seconds.min(3600.0))
            } else {
                Duration::ZERO
            };
            limits::check_len("experiment_id", &inner.experiment_id, limits::MAX_ID_BYTES)?;
            let only = Some(inner.experiment_id)
                .filter(|id| !id.is_empty())
                .map(ExperimentId);
            let outcome = match self.service.lease_trial(agent_id, wait, only).await? {
                LeaseOutcome::Lease(lease) => Outcome::Lease(pb::Lease::from(lease.as_ref())),
                LeaseOutcome::RetryAfter(after) => Outcome::RetryAfterSeconds(after.as_secs_f64()),
            };
            Ok(pb::LeaseTrialResponse {
                outcome: Some(outcome),
            })
        };
        answer(&self.metrics, "LeaseTrial", result).await
    }

    #[instrument(skip(self, request))]
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            limits::check_len("agent_id", &inner.agent_id, limits::MAX_ID_BYTES)?;
            for lease_id in &inner.lease_ids {
                limits::check_len("lease_id", lease_id, limits::MAX_ID_BYTES)?;
            }
            let agent_id = AgentId(inner.agent_id);
            self.service
                .authorize_agent(&agent_id, &inner.agent_secret)?;
            let leases = inner.lease_ids.into_iter().map(LeaseId).collect();
            let statuses = self.service.heartbeat(agent_id, leases).await?;
            Ok(pb::HeartbeatResponse {
                leases: statuses.iter().map(pb::LeaseStatus::from).collect(),
            })
        };
        answer(&self.metrics, "Heartbeat", result).await
    }

    #[instrument(skip(self, request))]
    async fn report_epoch(
        &self,
        request: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let lease_id = LeaseId(non_empty("lease_id", inner.lease_id)?);
            self.service
                .authorize_lease(&lease_id, &inner.agent_secret)?;
            let action = self
                .service
                .report_epoch(lease_id, EpochInput::try_from(inner.report)?)
                .await?;
            Ok(pb::ReportEpochResponse {
                action: action_to_pb(action) as i32,
            })
        };
        answer(&self.metrics, "ReportEpoch", result).await
    }

    #[instrument(skip(self, request))]
    async fn complete_trial(
        &self,
        request: Request<pb::CompleteTrialRequest>,
    ) -> Result<Response<pb::CompleteTrialResponse>, Status> {
        let result = async {
            let mut inner = request.into_inner();
            let lease_id = LeaseId(non_empty("lease_id", std::mem::take(&mut inner.lease_id))?);
            self.service
                .authorize_lease(&lease_id, &inner.agent_secret)?;
            self.service
                .complete_trial(lease_id, Completion::try_from(inner)?)
                .await?;
            Ok(pb::CompleteTrialResponse {})
        };
        answer(&self.metrics, "CompleteTrial", result).await
    }

    #[instrument(skip(self, request))]
    async fn unregister_agent(
        &self,
        request: Request<pb::UnregisterAgentRequest>,
    ) -> Result<Response<pb::UnregisterAgentResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let agent_id = AgentId(non_empty("agent_id", inner.agent_id)?);
            self.service
                .authorize_agent(&agent_id, &inner.agent_secret)?;
            let leases_released = self.service.unregister_agent(agent_id).await?;
            Ok(pb::UnregisterAgentResponse { leases_released })
        };
        answer(&self.metrics, "UnregisterAgent", result).await
    }
}
