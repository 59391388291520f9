//! The tunefleet coordinator: a tokio + tonic gRPC daemon that runs hyperparameter-tuning
//! experiments (batch Bayesian optimization, random and grid search via `tuner`), hands trials to
//! agents under leases, and keeps everything in SQLite.
//!
//! Place in the workspace (STYLE.md §1): depends on `tuner` and `proto`, never on `agent`,
//! `cnn`, `kernels` or the `tunectl` client (which lives in `coordinator/tunectl/` and depends on
//! this crate only for the wire conversions in [`grpc::convert`], [`READY_PREFIX`] and
//! [`telemetry`]). Modules: [`config`], [`telemetry`], [`metrics`], [`store`] (durable and
//! in-memory), [`service`] (the domain: experiments and the trial state machine), [`suggest`]
//! (the bridge to `tuner`), [`grpc`] (thin tonic adapters) and [`parent`] (the opt-in exit with
//! a parent process, for `tunectl local`).
//!
//! ```no_run
//! # async fn demo() -> coordinator::Result<()> {
//! use std::collections::HashMap;
//! let config = coordinator::config::Config::load(None, &HashMap::new(), &Default::default())?;
//! coordinator::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod files;
pub mod grpc;
pub mod metrics;
pub mod parent;
pub mod service;
pub mod store;
pub mod suggest;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use error::{Error, Result};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::Coordinator;
use crate::store::{ExperimentStore, SqliteStore};

/// The readiness line's prefix (COMMON.md).
pub const READY_PREFIX: &str = "TUNEFLEET_READY";

/// The readiness line printed once both listeners are bound.
pub fn readiness_line(grpc: SocketAddr, metrics: SocketAddr) -> String {
    let body = serde_json::json!({"service": "coordinator", "grpc": grpc.to_string(), "metrics": metrics.to_string()});
    format!("{READY_PREFIX} {body}")
}

/// Formats an error with its chain of causes: `a: b: c`.
pub fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("bind {what} listener on {addr}"), e))
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| Error::io("read a listener's address", e))
}

/// Runs the coordinator: reads the TLS files, opens the store, binds both listeners, prints
/// the readiness line on stdout, and serves until `shutdown` completes, then drains and returns.
///
/// # Errors
/// When a TLS file is missing or invalid, the store cannot be opened, a listener cannot be
/// bound, or the server fails.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    tracing::info!(config = ?config, "starting coordinator");
    let tls = match &config.tls {
        Some(files) => {
            let server_tls = files.load()?;
            tracing::info!(mutual = files.mutual(), "grpc listener uses tls");
            Some(server_tls)
        }
        None => None,
    };
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
        .await
        .map_err(|e| Error::Internal(format!("store open task failed: {e}")))??;
    tracing::info!(path = %store.path().display(), "store opened");
    let store: Arc<dyn ExperimentStore> = Arc::new(store);
    let metrics = Arc::new(Metrics::new());
    let coordinator = Coordinator::start(store, config.settings(), Arc::clone(&metrics)).await?;
    let grpc_listener = bind(config.listen_addr, "grpc").await?;
    let metrics_listener = bind(config.metrics_listen_addr, "metrics").await?;
    let grpc_addr = local_addr(&grpc_listener)?;
    let metrics_addr = local_addr(&metrics_listener)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    };
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        Arc::clone(&metrics),
        wait_stop(),
    ));
    let sweeper = coordinator.spawn_lease_sweeper();
    println!("{}", readiness_line(grpc_addr, metrics_addr));
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, "coordinator ready");

    // A failed store write stops the daemon as a shutdown does, then `run` fails: memory is
    // ahead of the store, and only a restart (systemd's Restart=on-failure, Kubernetes') reloads
    // it. Staying up would refuse every write for good while /healthz said "ok".
    let store_failure = coordinator.store_failure();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let signal = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested"),
            message = store_failure => {
                tracing::error!(error = %message, "a store write failed; stopping so that a restart reloads the store");
                let _ = failed_tx.send(message);
            }
        }
        let _ = stop_tx.send(true);
    };
    let flusher = coordinator.clone();
    grpc::listener::warn_if_files_limit_too_low(&config.connections);
    let served = grpc::serve_with_limits(
        coordinator,
        metrics,
        grpc_listener,
        config.auth_token.clone(),
        config.connections,
        tls,
        signal,
    )
    .await;
    sweeper.abort();
    if let Err(error) = flusher.flush().await {
        tracing::error!(error = %display_chain(&error), "could not write the last changes");
    }
    match metrics_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics server failed"),
        Err(e) => tracing::warn!(error = %e, "metrics server task failed"),
        Ok(Ok(())) => {}
    }
    if let Ok(message) = failed_rx.await {
        tracing::error!("coordinator stopped after a store failure");
        return Err(Error::store(
            "write, so the coordinator stopped (restart it to reload the store)",
            store::writer::StoreFailure(message),
        ));
    }
    tracing::info!("coordinator stopped");
    served
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The SIGTERM handler is installed when this is
/// called, not when the future is first polled, so a SIGTERM that arrives right after the
/// readiness line drains the daemon instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the coordinator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
