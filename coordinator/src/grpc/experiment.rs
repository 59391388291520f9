//! `ExperimentService` over gRPC: decode, call the domain, encode, map the error.

use std::sync::Arc;

use proto::v1 as pb;
use proto::v1::experiment_service_server::ExperimentService as PbExperimentService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::convert::params_from_pb;
use super::paging::{Window, page_of};
use super::status::answer;
use crate::Error;
use crate::metrics::Metrics;
use crate::service::ExperimentService;
use crate::service::limits;
use crate::service::model::{ExperimentId, ExperimentSpec};
use crate::service::warm_start::{ImportedTrial, MAX_QUEUED};

/// The tonic adapter over any [`ExperimentService`].
pub struct ExperimentGrpc<S> {
    service: S,
    metrics: Arc<Metrics>,
}

impl<S> ExperimentGrpc<S> {
    /// Wraps a domain service.
    pub fn new(service: S, metrics: Arc<Metrics>) -> Self {
        Self { service, metrics }
    }
}

fn experiment_id(raw: String) -> crate::Result<ExperimentId> {
    limits::check_id("experiment_id", &raw)?;
    Ok(ExperimentId(raw))
}

#[tonic::async_trait]
impl<S: ExperimentService> PbExperimentService for ExperimentGrpc<S> {
    #[instrument(skip(self, request))]
    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Result<Response<pb::CreateExperimentResponse>, Status> {
        let result = async {
            let raw = request
                .into_inner()
                .spec
                .ok_or_else(|| Error::InvalidArgument("spec is missing".into()))?;
            let view = self
                .service
                .create_experiment(ExperimentSpec::try_from(raw)?)
                .await?;
            let warnings = self
                .service
                .placement_warnings(view.record.spec.workload.as_ref());
            Ok(pb::CreateExperimentResponse {
                experiment: Some((&view).into()),
                warnings,
            })
        };
        answer(&self.metrics, "CreateExperiment", result).await
    }

    #[instrument(skip(self, request))]
    async fn get_experiment(
        &self,
        request: Request<pb::GetExperimentRequest>,
    ) -> Result<Response<pb::GetExperimentResponse>, Status> {
        let result = async {
            let view = self
                .service
                .get_experiment(experiment_id(request.into_inner().experiment_id)?)
                .await?;
            Ok(pb::GetExperimentResponse {
                experiment: Some((&view).into()),
            })
        };
        answer(&self.metrics, "GetExperiment", result).await
    }

    #[instrument(skip(self, request))]
    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Result<Response<pb::ListExperimentsResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let window = Window::parse(&inner.page_token, inner.page_size)?;
            let study = Some(inner.study).filter(|s| !s.is_empty());
            let views = self.service.list_experiments(study, window.page()).await?;
            let encoded = views.iter().map(pb::Experiment::from).collect();
            let (experiments, next_page_token) =
                page_of(&window, encoded, prost::Message::encoded_len);
            Ok(pb::ListExperimentsResponse {
                experiments,
                next_page_token,
            })
        };
        answer(&self.metrics, "ListExperiments", result).await
    }

    #[instrument(skip(self, request))]
    async fn stop_experiment(
        &self,
        request: Request<pb::StopExperimentRequest>,
    ) -> Result<Response<pb::StopExperimentResponse>, Status> {
        let result = async {
            let view = self
                .service
                .stop_experiment(experiment_id(request.into_inner().experiment_id)?)
                .await?;
            Ok(pb::StopExperimentResponse {
                experiment: Some((&view).into()),
            })
        };
        answer(&self.metrics, "StopExperiment", result).await
    }

    #[instrument(skip(self, request))]
    async fn resume_experiment(
        &self,
        request: Request<pb::ResumeExperimentRequest>,
    ) -> Result<Response<pb::ResumeExperimentResponse>, Status> {
        let result = async {
            let view = self
                .service
                .resume_experiment(experiment_id(request.into_inner().experiment_id)?)
                .await?;
            Ok(pb::ResumeExperimentResponse {
                experiment: Some((&view).into()),
            })
        };
        answer(&self.metrics, "ResumeExperiment", result).await
    }

    #[instrument(skip(self, request))]
    async fn list_trials(
        &self,
        request: Request<pb::ListTrialsRequest>,
    ) -> Result<Response<pb::ListTrialsResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let window = Window::parse(&inner.page_token, inner.page_size)?;
            let trials = self
                .service
                .list_trials(
                    experiment_id(inner.experiment_id)?,
                    inner.include_epochs,
                    window.page(),
                )
                .await?;
            let encoded = trials.iter().map(pb::Trial::from).collect();
            let (trials, next_page_token) = page_of(&window, encoded, prost::Message::encoded_len);
            Ok(pb::ListTrialsResponse {
                trials,
                next_page_token,
            })
        };
        answer(&self.metrics, "ListTrials", result).await
    }

    #[instrument(skip(self, request))]
    async fn get_best_trial(
        &self,
        request: Request<pb::GetBestTrialRequest>,
    ) -> Result<Response<pb::GetBestTrialResponse>, Status> {
        let result = async {
            let best = self
                .service
                .best_trial(experiment_id(request.into_inner().experiment_id)?)
                .await?;
            Ok(pb::GetBestTrialResponse {
                trial: best.as_ref().map(pb::Trial::from),
            })
        };
        answer(&self.metrics, "GetBestTrial", result).await
    }

    #[instrument(skip(self, request))]
    async fn add_trials(
        &self,
        request: Request<pb::AddTrialsRequest>,
    ) -> Result<Response<pb::AddTrialsResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let id = experiment_id(inner.experiment_id)?;
            let trials = inner
                .trials
                .into_iter()
                .enumerate()
                .map(|(index, trial)| {
                    ImportedTrial::try_from(trial)
                        .map_err(|e| Error::InvalidArgument(format!("trial {index}: {e}")))
                })
                .collect::<crate::Result<Vec<_>>>()?;
            let (ids, view) = self.service.add_trials(id, trials).await?;
            Ok(pb::AddTrialsResponse {
                trial_ids: ids.into_iter().map(|id| id.0).collect(),
                experiment: Some((&view).into()),
            })
        };
        answer(&self.metrics, "AddTrials", result).await
    }

    #[instrument(skip(self, request))]
    async fn enqueue_trials(
        &self,
        request: Request<pb::EnqueueTrialsRequest>,
    ) -> Result<Response<pb::EnqueueTrialsResponse>, Status> {
        let result = async {
            let inner = request.into_inner();
            let id = experiment_id(inner.experiment_id)?;
            if inner.configurations.len() > MAX_QUEUED {
                return Err(Error::InvalidArgument(format!(
                    "{} configurations in one request, more than the {MAX_QUEUED} allowed",
                    inner.configurations.len()
                )));
            }
            let configurations = inner
                .configurations
                .iter()
                .enumerate()
                .map(|(index, c)| {
                    params_from_pb(&c.params)
                        .map_err(|e| Error::InvalidArgument(format!("configuration {index}: {e}")))
                })
                .collect::<crate::Result<Vec<_>>>()?;
            let view = self.service.enqueue_trials(id, configurations).await?;
            Ok(pb::EnqueueTrialsResponse {
                experiment: Some((&view).into()),
            })
        };
        answer(&self.metrics, "EnqueueTrials", result).await
    }
}
