//! Scratch coordinators: the real domain service and its tonic adapters in-process, over the
//! in-memory store or a real SQLite file in a temporary directory, with settings that keep every
//! call short. [`Recycled`] rebuilds one every so often so memory stays bounded.

use std::sync::Arc;
use std::time::Duration;

use coordinator::grpc::{AgentGrpc, ExperimentGrpc};
use coordinator::metrics::Metrics;
use coordinator::service::{Coordinator, Settings};
use coordinator::store::{ExperimentStore, MemoryStore, SqliteStore};
use proto::v1 as pb;
use proto::v1::agent_service_server::AgentService as _;
use proto::v1::experiment_service_server::ExperimentService as _;
use tonic::{Request, Status};

use crate::harness::{call_timeout, runtime, within, within_for};

/// A coordinator and the gRPC adapters over it. Cloning shares it.
#[derive(Clone)]
pub struct Scratch {
    /// The domain service.
    pub coordinator: Coordinator,
    /// The experiment service, as tonic calls it.
    pub experiments: Arc<ExperimentGrpc<Coordinator>>,
    /// The agent service, as tonic calls it.
    pub agents: Arc<AgentGrpc<Coordinator>>,
    /// The secret of every agent registered here, by agent id, and of the agent each lease
    /// leased here went to, by lease id.
    secrets: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    // Kept for the life of the store (the SQLite file lives in it).
    _dir: Option<Arc<tempfile::TempDir>>,
}

/// The service settings of a scratch coordinator: long polls of at most 50 ms, one GP fit at a
/// time, otherwise the defaults.
pub fn fuzz_settings() -> Settings {
    Settings {
        max_lease_wait: Duration::from_millis(50),
        retry_after: Duration::from_millis(10),
        suggest_concurrency: 1,
        ..Settings::default()
    }
}

impl Scratch {
    /// A coordinator over a fresh in-memory store.
    pub fn memory(settings: Settings) -> Self {
        Self::over(Arc::new(MemoryStore::new()), settings, None)
    }

    /// A coordinator over a fresh SQLite file in a temporary directory (under `/dev/shm` when
    /// there is one, so durable commits cost no disk flush).
    pub fn sqlite(settings: Settings) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let store = SqliteStore::open(dir.path()).expect("a fresh SQLite store opens");
        Self::over(Arc::new(store), settings, Some(Arc::new(dir)))
    }

    fn over(
        store: Arc<dyn ExperimentStore>,
        settings: Settings,
        dir: Option<Arc<tempfile::TempDir>>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let started = runtime().block_on(Coordinator::start(store, settings, Arc::clone(&metrics)));
        let coordinator = started.expect("a scratch coordinator starts");
        Self {
            experiments: Arc::new(ExperimentGrpc::new(
                coordinator.clone(),
                Arc::clone(&metrics),
            )),
            agents: Arc::new(AgentGrpc::new(coordinator.clone(), metrics)),
            coordinator,
            secrets: Arc::default(),
            _dir: dir,
        }
    }

    /// The secret of an agent id or a lease id seen here (empty for any other).
    pub fn secret_of(&self, id: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        secrets.get(id).cloned().unwrap_or_default()
    }

    /// Remembers the secret of an agent id or lease id (bounded: the world is rebuilt long
    /// before this grows large).
    pub fn remember(&self, id: String, secret: String) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        secrets.insert(id, secret);
    }

    /// Registers an agent that trains `workloads` (empty: any) and returns its id.
    pub fn register(&self, workloads: &[&str]) -> String {
        let agents = Arc::clone(&self.agents);
        let request = pb::RegisterAgentRequest {
            capabilities: Some(pb::AgentCapabilities {
                backend: pb::Backend::Cpu as i32,
                hostname: "fuzz".into(),
                slots: 1,
                workloads: workloads.iter().map(|w| (*w).to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = within(&|| "setup: RegisterAgent".into(), async move {
            agents.register_agent(Request::new(request)).await
        });
        let registration = response.expect("a scratch agent registers").into_inner();
        self.remember(registration.agent_id.clone(), registration.agent_secret);
        registration.agent_id
    }

    /// Creates an experiment and returns its id.
    pub fn create(&self, spec: pb::ExperimentSpec) -> Result<String, Status> {
        let experiments = Arc::clone(&self.experiments);
        let request = pb::CreateExperimentRequest { spec: Some(spec) };
        let response = within(&|| "setup: CreateExperiment".into(), async move {
            experiments.create_experiment(Request::new(request)).await
        })?;
        Ok(response
            .into_inner()
            .experiment
            .expect("a created experiment is returned")
            .id)
    }

    /// Leases `count` trials for `agent_id`, polling until each is ready, within `calls` call
    /// timeouts; `what` names the caller for a hang report.
    pub fn lease(
        &self,
        agent_id: &str,
        count: usize,
        calls: u32,
        what: &dyn Fn() -> String,
    ) -> Vec<pb::Lease> {
        let agents = Arc::clone(&self.agents);
        let agent_id = agent_id.to_owned();
        let secret = self.secret_of(&agent_id);
        let leases = within_for(call_timeout() * calls, what, async move {
            let mut leases = Vec::new();
            while leases.len() < count {
                let request = pb::LeaseTrialRequest {
                    agent_id: agent_id.clone(),
                    agent_secret: secret.clone(),
                    wait_seconds: 0.05,
                    ..Default::default()
                };
                let response = agents.lease_trial(Request::new(request)).await;
                let outcome = response
                    .expect("a scratch lease answers")
                    .into_inner()
                    .outcome;
                if let Some(pb::lease_trial_response::Outcome::Lease(lease)) = outcome {
                    leases.push(lease);
                }
            }
            (leases, secret)
        });
        let (leases, secret) = leases;
        for lease in &leases {
            self.remember(lease.lease_id.clone(), secret.clone());
        }
        leases
    }
}

impl Scratch {
    /// Reports epoch `epoch` of a lease at `value`.
    pub fn report_epoch(&self, lease_id: &str, epoch: u32, value: f64) {
        let request = pb::ReportEpochRequest {
            lease_id: lease_id.to_owned(),
            agent_secret: self.secret_of(lease_id),
            report: Some(pb::EpochReport {
                epoch,
                value,
                train_loss: 1.0 - value / 2.0,
                train_accuracy: 0.5,
                epoch_seconds: 1.0,
            }),
            ..Default::default()
        };
        let what = || format!("setup: ReportEpoch {lease_id} {epoch}");
        crate::rpc!(&what, self.agents, report_epoch, request).expect("a setup report is taken");
    }

    /// Completes a lease as succeeded at `value` after `epochs` epochs.
    pub fn complete(&self, lease_id: &str, epochs: u32, value: f64) {
        let request = pb::CompleteTrialRequest {
            lease_id: lease_id.to_owned(),
            agent_secret: self.secret_of(lease_id),
            outcome: pb::TrialOutcome::Succeeded as i32,
            value: Some(value),
            epochs_run: epochs,
            best_epoch: epochs,
            wall_seconds: 1.0,
            device_seconds: 1.0,
            cost_dollars: 0.01,
            ..Default::default()
        };
        let what = || format!("setup: CompleteTrial {lease_id}");
        crate::rpc!(&what, self.agents, complete_trial, request)
            .expect("a setup completion is taken");
    }
}

/// A value rebuilt after `max_uses` uses or once its weight (what it has accumulated, in the
/// caller's units) passes `max_weight`.
pub struct Recycled<T> {
    value: Option<T>,
    uses: u64,
    weight: u64,
}

impl<T> Recycled<T> {
    /// Nothing built yet.
    pub const fn new() -> Self {
        Self {
            value: None,
            uses: 0,
            weight: 0,
        }
    }

    /// The current value, first rebuilt with `build` when it is missing or spent.
    pub fn get(&mut self, max_uses: u64, max_weight: u64, build: impl FnOnce() -> T) -> &mut T {
        if self.uses >= max_uses || self.weight >= max_weight {
            self.value = None;
        }
        if self.value.is_none() {
            self.uses = 0;
            self.weight = 0;
        }
        self.value.get_or_insert_with(build)
    }

    /// Counts a use (the targets count only inputs that reached the service, so a world is not
    /// spent on inputs that failed to decode).
    pub fn add_use(&mut self) {
        self.uses += 1;
    }

    /// Adds to the weight.
    pub fn add_weight(&mut self, weight: u64) {
        self.weight = self.weight.saturating_add(weight);
    }
}

impl<T> Default for Recycled<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Bounds a pool of ids: keeps the first `fixed` and the newest of the rest, at most `max` in all.
pub fn push_bounded(pool: &mut Vec<String>, id: String, fixed: usize, max: usize) {
    if pool.contains(&id) {
        return;
    }
    if pool.len() >= max && pool.len() > fixed {
        pool.remove(fixed);
    }
    pool.push(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_rebuilds_when_spent() {
        let mut recycled = Recycled::new();
        let mut builds = 0;
        for _ in 0..5 {
            recycled.get(2, 100, || {
                builds += 1;
                builds
            });
            recycled.add_use();
        }
        assert_eq!(builds, 3);
        assert_eq!(*recycled.get(2, 100, || 0), 3, "not rebuilt without a use");
        assert_eq!(*recycled.get(2, 100, || 0), 3, "not rebuilt without a use");
        recycled.add_weight(100);
        assert_eq!(*recycled.get(2, 100, || 99), 99);
    }

    #[test]
    fn pools_keep_the_fixed_ids() {
        let mut pool = vec!["a".to_string()];
        for id in ["b", "c", "d", "c"] {
            push_bounded(&mut pool, id.into(), 1, 3);
        }
        assert_eq!(pool, ["a", "c", "d"]);
    }
}
