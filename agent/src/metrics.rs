//! The agent's Prometheus metrics (`tunefleet_agent_*`) and its `/metrics` listener.
//!
//! Every metric lives in the agent's own [`prometheus::Registry`] (never the global one), so
//! tests can build several agents in one process (STYLE.md §8).

use std::net::SocketAddr;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::error::{Error, Result};

const NAMESPACE: &str = "tunefleet";
const SUBSYSTEM: &str = "agent";

/// The agent's metrics, registered in [`AgentMetrics::registry`].
#[derive(Clone)]
pub struct AgentMetrics {
    /// The registry every metric below is registered in.
    pub registry: Registry,
    /// Epochs trained.
    pub epochs_total: IntCounter,
    /// Seconds an epoch took.
    pub epoch_duration_seconds: Histogram,
    /// Wall seconds a trial took, from lease to result.
    pub trial_duration_seconds: Histogram,
    /// Training examples processed.
    pub examples_total: IntCounter,
    /// Dollars charged to trials (a float counter: cents would lose precision).
    pub cost_dollars_total: prometheus::Counter,
    /// Trials finished, by outcome (`succeeded`, `failed`, `stopped`, `interrupted`, `abandoned`).
    pub trials_total: IntCounterVec,
    /// Device memory in use, by GPU ordinal.
    pub gpu_memory_used_bytes: IntGaugeVec,
    /// Slots (trials at once) this agent has.
    pub slots: IntGauge,
    /// Slots training a trial now.
    pub slots_busy: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
        .namespace(NAMESPACE)
        .subsystem(SUBSYSTEM)
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Result<Histogram> {
    let opts = HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .subsystem(SUBSYSTEM)
        .buckets(buckets);
    Ok(Histogram::with_opts(opts)?)
}

impl AgentMetrics {
    /// Creates and registers every agent metric in a fresh registry.
    ///
    /// # Errors
    /// [`Error::Metrics`] if a metric is invalid (a bug).
    pub fn new() -> Result<Self> {
        let seconds_buckets = prometheus::exponential_buckets(0.01, 2.5, 14)?;
        let metrics = Self {
            registry: Registry::new(),
            epochs_total: IntCounter::with_opts(opts(
                "epochs_total",
                "Epochs trained by this agent.",
            ))?,
            epoch_duration_seconds: histogram(
                "epoch_duration_seconds",
                "Seconds one training epoch took, evaluation included.",
                seconds_buckets.clone(),
            )?,
            trial_duration_seconds: histogram(
                "trial_duration_seconds",
                "Wall seconds one trial took on this agent, from lease to result.",
                seconds_buckets,
            )?,
            examples_total: IntCounter::with_opts(opts(
                "examples_total",
                "Training examples processed.",
            ))?,
            cost_dollars_total: prometheus::Counter::with_opts(opts(
                "cost_dollars_total",
                "Dollars charged to the trials this agent ran (its share of the instance price).",
            ))?,
            trials_total: IntCounterVec::new(
                opts("trials_total", "Trials this agent finished, by outcome."),
                &["outcome"],
            )?,
            gpu_memory_used_bytes: IntGaugeVec::new(
                opts(
                    "gpu_memory_used_bytes",
                    "Device memory this agent's process uses, by GPU ordinal.",
                ),
                &["gpu"],
            )?,
            slots: IntGauge::with_opts(opts("slots", "Trials this agent trains at once."))?,
            slots_busy: IntGauge::with_opts(opts("slots_busy", "Slots training a trial now."))?,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<()> {
        let registry = &self.registry;
        registry.register(Box::new(self.epochs_total.clone()))?;
        registry.register(Box::new(self.epoch_duration_seconds.clone()))?;
        registry.register(Box::new(self.trial_duration_seconds.clone()))?;
        registry.register(Box::new(self.examples_total.clone()))?;
        registry.register(Box::new(self.cost_dollars_total.clone()))?;
        registry.register(Box::new(self.trials_total.clone()))?;
        registry.register(Box::new(self.gpu_memory_used_bytes.clone()))?;
        registry.register(Box::new(self.slots.clone()))?;
        registry.register(Box::new(self.slots_busy.clone()))?;
        Ok(())
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "failed to encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Binds the `/metrics` listener; returns the bound address and the server future.
///
/// # Errors
/// [`Error::Io`] when the address cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    metrics: AgentMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Io {
            what: format!("failed to bind metrics listener on {addr}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        what: "failed to read the metrics listener address".to_string(),
        source,
    })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    let server = async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "metrics server stopped");
        }
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_is_exposed() {
        let metrics = AgentMetrics::new().expect("metrics register");
        metrics.epochs_total.inc();
        metrics.trials_total.with_label_values(&["succeeded"]).inc();
        metrics
            .gpu_memory_used_bytes
            .with_label_values(&["0"])
            .set(1);
        metrics.epoch_duration_seconds.observe(0.5);
        metrics.trial_duration_seconds.observe(2.0);
        let text = metrics.render();
        for name in [
            "tunefleet_agent_epochs_total",
            "tunefleet_agent_epoch_duration_seconds_bucket",
            "tunefleet_agent_trial_duration_seconds_bucket",
            "tunefleet_agent_examples_total",
            "tunefleet_agent_cost_dollars_total",
            "tunefleet_agent_trials_total{outcome=\"succeeded\"}",
            "tunefleet_agent_gpu_memory_used_bytes{gpu=\"0\"}",
            "tunefleet_agent_slots",
            "tunefleet_agent_slots_busy",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
    }

    #[test]
    fn two_agents_in_one_process_do_not_collide() {
        let first = AgentMetrics::new().expect("first");
        let second = AgentMetrics::new().expect("second");
        first.epochs_total.inc();
        assert!(second.render().contains("tunefleet_agent_epochs_total 0"));
    }
}
