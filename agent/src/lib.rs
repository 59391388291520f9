//! The tunefleet agent: one daemon per GPU (or per CPU host) that pulls trials from the
//! coordinator, trains them, and reports every epoch, wall time, device time and dollar cost.
//!
//! Place in the workspace (STYLE.md §1): `agent → cnn → kernels`, and `agent → proto` for the
//! wire API. It never depends on `coordinator` or `tuner`.
//!
//! - [`config`]: defaults → TOML → `AGENT_*` environment → CLI flags.
//! - [`cost`]: the instance catalogue and how a trial's dollar cost is computed.
//! - [`session`], [`client`], [`outbox`], [`retry`]: talking to the coordinator, keeping reports
//!   while it is unreachable and re-registering after it restarts; [`tls`]: its TLS settings.
//! - [`slot`] and [`worker`]: K slots, each with a dedicated training thread (the CUDA context
//!   stays on one OS thread) that talks to the async side through channels.
//! - [`trainer`], [`functions`] and `textcnn`: what a slot trains; [`command`]: trials that run
//!   a command the agent declares in its config.
//! - [`parent`]: the opt-in exit with a parent process (`TUNEFLEET_EXIT_WITH_PARENT`), for
//!   `tunectl local`.
//!
//! ```no_run
//! # async fn example() -> agent::Result<()> {
//! let config = agent::config::from_toml_str("coordinator_url = \"http://127.0.0.1:50051\"")?;
//! agent::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod capabilities;
pub mod client;
pub mod command;
pub mod config;
pub mod cost;
mod error;
pub mod files;
pub mod functions;
pub mod metrics;
pub mod outbox;
pub mod parent;
pub mod retry;
pub mod session;
pub mod slot;
#[cfg(test)]
mod testing;
pub mod textcnn;
pub mod tls;
pub mod train_cmd;
pub mod trainer;
pub mod worker;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use proto::v1::AgentCapabilities;
use tokio::sync::{oneshot, watch};

pub use error::{Error, Result};

use crate::client::{CoordinatorApi, GrpcCoordinator};
use crate::command::CommandRunner;
use crate::command::spec::CommandSpec;
use crate::config::{Config, Device};
use crate::metrics::AgentMetrics;
use crate::session::Session;
use crate::slot::{SlotContext, run_slot};
use crate::trainer::{Trainer, Workloads};
use crate::worker::{SlotWorker, TrainerFactory};

/// Runs the agent until `shutdown` resolves, then interrupts running trials at their next epoch
/// boundary, reports them `INTERRUPTED`, unregisters (best effort) and returns.
///
/// # Errors
/// A TLS file that cannot be read, a device that cannot be used, a metrics address that cannot
/// be bound, or a coordinator that refuses the registration for good.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tls = config.tls.as_ref().map(tls::ClientTls::load).transpose()?;
    let capabilities = capabilities::probe(&config)?;
    let timing = &config.timing;
    let api = GrpcCoordinator::new(
        &config.coordinator_url,
        tls,
        config.auth_token.as_deref(),
        timing.connect_timeout,
        timing.request_timeout,
    )?;
    let commands = Arc::new(config.commands.clone());
    let factories = (0..config.slots.get())
        .map(|_| trainer_factory(config.device, commands.clone()))
        .collect();
    run_with(&config, api, capabilities, factories, shutdown).await
}

/// The trainer of one slot, built on the slot's thread. An agent that declares commands starts
/// on a GPU without CUDA (the commands bring their own framework); only the built-in text CNN
/// is then unavailable.
pub fn trainer_factory(device: Device, commands: Arc<Vec<CommandSpec>>) -> TrainerFactory {
    Box::new(move || {
        let textcnn: Option<Box<dyn Trainer>> = match textcnn_trainer(device) {
            Ok(textcnn) => textcnn,
            Err(reason) if !commands.is_empty() => {
                tracing::warn!(%reason, "built-in GPU workloads are unavailable, running declared commands only");
                None
            }
            Err(reason) => return Err(reason),
        };
        let mut workloads = Workloads::new(textcnn);
        if !commands.is_empty() {
            workloads = workloads.with_commands(CommandRunner::new(commands, device));
        }
        Ok(Box::new(workloads) as Box<dyn Trainer>)
    })
}

fn textcnn_trainer(device: Device) -> Result<Option<Box<dyn Trainer>>, String> {
    match device {
        Device::Cpu => Ok(Some(Box::new(textcnn::TextCnnTrainer::new(
            kernels::cpu::CpuBackend::new(),
        )))),
        Device::Cuda(ordinal) => cuda_trainer(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda_trainer(ordinal: u32) -> Result<Option<Box<dyn Trainer>>, String> {
    let backend =
        kernels::cuda::CudaBackend::new(ordinal as usize).map_err(|error| error.to_string())?;
    Ok(Some(Box::new(textcnn::TextCnnTrainer::new(backend))))
}

#[cfg(not(feature = "cuda"))]
fn cuda_trainer(ordinal: u32) -> Result<Option<Box<dyn Trainer>>, String> {
    Err(kernels::probe_cuda(ordinal as usize)
        .err()
        .map_or_else(|| "cuda unavailable".to_string(), |e| e.to_string()))
}

/// Runs the agent against any coordinator client, with the given trainers (one per slot).
///
/// # Errors
/// As [`run`].
pub async fn run_with<A: CoordinatorApi>(
    config: &Config,
    api: A,
    capabilities: AgentCapabilities,
    factories: Vec<TrainerFactory>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    tracing::info!(config = %config.redacted_summary(), "starting agent");
    let metrics = AgentMetrics::new()?;
    metrics.slots.set(factories.len() as i64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let workers = spawn_workers(factories).await?;
    let (metrics_stop_tx, metrics_stop_rx) = oneshot::channel::<()>();
    let (metrics_addr, server) =
        metrics::bind(config.metrics_listen_addr, metrics.clone(), async {
            let _ = metrics_stop_rx.await;
        })
        .await?;
    let server_task = tokio::spawn(server);
    let gpu_label = match config.device {
        Device::Cuda(ordinal) => Some(ordinal.to_string()),
        Device::Cpu => None,
    };
    let session = Arc::new(Session::new(api, capabilities, config.timing.clone()));
    let agent_id = match session.register(&mut shutdown_rx.clone()).await {
        Ok(agent_id) => agent_id,
        Err(Error::ShutdownBeforeReady) => {
            tracing::info!("shutdown requested before registration");
            join_workers(workers).await;
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    print_ready(&agent_id, metrics_addr);
    let mut slots = Vec::new();
    for (slot, worker) in workers.into_iter().enumerate() {
        let ctx = SlotContext {
            slot,
            session: session.clone(),
            metrics: metrics.clone(),
            pricing: config.pricing.clone(),
            gpu_label: gpu_label.clone(),
            shutdown: shutdown_rx.clone(),
        };
        slots.push(tokio::spawn(run_slot(ctx, worker)));
    }
    let mut finished_workers = Vec::new();
    for slot in slots {
        match slot.await {
            Ok(worker) => finished_workers.push(worker),
            Err(error) => tracing::error!(%error, "slot task failed"),
        }
    }
    // Every slot has reported its trial (interrupted, on shutdown): leave the coordinator.
    session.unregister().await;
    join_workers(finished_workers).await;
    let _ = metrics_stop_tx.send(());
    let _ = server_task.await;
    tracing::info!("agent stopped");
    Ok(())
}

async fn spawn_workers(factories: Vec<TrainerFactory>) -> Result<Vec<SlotWorker>> {
    let mut workers = Vec::new();
    for (slot, factory) in factories.into_iter().enumerate() {
        let worker = tokio::task::spawn_blocking(move || SlotWorker::spawn(slot, factory))
            .await
            .map_err(|error| Error::Worker {
                slot,
                reason: error.to_string(),
            })??;
        workers.push(worker);
    }
    Ok(workers)
}

async fn join_workers(workers: Vec<SlotWorker>) {
    let joined =
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(SlotWorker::join)).await;
    if let Err(error) = joined {
        tracing::error!(%error, "failed to join training threads");
    }
}

/// The readiness line (COMMON.md): printed on stdout once registered and listening.
pub fn readiness_line(agent_id: &str, metrics_addr: SocketAddr) -> String {
    let body = serde_json::json!({ "service": "agent", "agent_id": agent_id, "metrics": metrics_addr.to_string() });
    format!("TUNEFLEET_READY {body}")
}

fn print_ready(agent_id: &str, metrics_addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", readiness_line(agent_id, metrics_addr));
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests;
