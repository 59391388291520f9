//! The real tonic server on 127.0.0.1:0 over a chosen store, with its lease sweeper, shared by
//! the service and limits tests. Each test binary uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use coordinator::metrics::Metrics;
use coordinator::service::{Coordinator, Settings, Suggester, WriteMode};
use coordinator::store::{ExperimentStore, MemoryStore};
use proto::v1::agent_service_client::AgentServiceClient;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

/// The secret of each agent these tests registered, and of the agent each lease went to, so the
/// helpers below can present it.
static SECRETS: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The secret of an agent id or lease id (empty when unknown).
pub fn secret_of(id: &str) -> String {
    SECRETS
        .lock()
        .expect("secrets lock")
        .get(id)
        .cloned()
        .unwrap_or_default()
}

/// Remembers the secret of an agent id or lease id.
pub fn remember(id: &str, secret: String) {
    SECRETS
        .lock()
        .expect("secrets lock")
        .insert(id.to_owned(), secret);
}

/// A running server; [`Server::shutdown`] stops it.
pub struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<coordinator::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(store: MemoryStore, settings: Settings, token: Option<&str>) -> Server {
        let suggester: Suggester = Arc::new(coordinator::suggest::suggest);
        Self::start_with_suggester(store, settings, token, suggester).await
    }

    /// [`Server::start`] with suggestions computed by `suggester`.
    pub async fn start_with_suggester(
        store: MemoryStore,
        settings: Settings,
        token: Option<&str>,
        suggester: Suggester,
    ) -> Server {
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn ExperimentStore> = Arc::new(store);
        let coordinator = Coordinator::start_with_suggester(
            store,
            settings,
            Arc::clone(&metrics),
            WriteMode::Thread,
            suggester,
        )
        .await
        .expect("coordinator starts");
        let sweeper = coordinator.spawn_lease_sweeper();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds loopback");
        let addr = listener.local_addr().expect("has an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let token = token.map(str::to_owned);
        let task = tokio::spawn(coordinator::grpc::serve(
            coordinator,
            metrics,
            listener,
            token,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            task,
            sweeper,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid url")
            .connect()
            .await
            .expect("connects")
    }

    pub async fn clients(
        &self,
    ) -> (
        ExperimentServiceClient<Channel>,
        AgentServiceClient<Channel>,
    ) {
        let channel = self.channel().await;
        (
            ExperimentServiceClient::new(channel.clone()),
            AgentServiceClient::new(channel),
        )
    }

    pub async fn shutdown(mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("server task joins")
            .expect("server exits cleanly");
    }

    /// An experiment client on a channel of its own.
    pub async fn experiments(&self) -> ExperimentServiceClient<Channel> {
        ExperimentServiceClient::new(self.channel().await)
    }

    /// An agent client on a channel of its own.
    pub async fn agents(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel().await)
    }
}

/// Creates an experiment and returns its id.
pub async fn create(
    experiments: &mut ExperimentServiceClient<Channel>,
    spec: proto::v1::ExperimentSpec,
) -> String {
    experiments
        .create_experiment(proto::v1::CreateExperimentRequest { spec: Some(spec) })
        .await
        .expect("creates")
        .into_inner()
        .experiment
        .expect("has an experiment")
        .id
}

/// One experiment.
pub async fn get(
    experiments: &mut ExperimentServiceClient<Channel>,
    id: &str,
) -> proto::v1::Experiment {
    experiments
        .get_experiment(proto::v1::GetExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .expect("gets")
        .into_inner()
        .experiment
        .expect("has an experiment")
}
