//! The coordinator's Prometheus metrics (`tunefleet_coordinator_*`), registered in one
//! [`prometheus::Registry`] per daemon, and the `/metrics` HTTP server on its own listener.
//!
//! ```
//! let metrics = coordinator::metrics::Metrics::new();
//! metrics.leases_active.set(2);
//! assert!(metrics.render().contains("tunefleet_coordinator_leases_active 2"));
//! ```

use std::future::Future;
use std::sync::Arc;

use prometheus::{
    Counter, CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

const NAMESPACE: &str = "tunefleet";
const SUBSYSTEM: &str = "coordinator";

/// Every coordinator metric.
pub struct Metrics {
    registry: Registry,
    /// gRPC requests by method and status code.
    pub grpc_requests_total: IntCounterVec,
    /// Time from a request's handler starting to its answer, by method (`LeaseTrial` includes
    /// its long poll).
    pub grpc_request_duration_seconds: HistogramVec,
    /// Time of one group commit (the statements of every change in the batch and the sync).
    pub store_commit_duration_seconds: Histogram,
    /// Trial transitions into each status.
    pub trials_total: IntCounterVec,
    /// Trials in each status now, over every experiment.
    pub trials: IntGaugeVec,
    /// Trials held under a lease now.
    pub leases_active: IntGauge,
    /// Leases that expired.
    pub leases_expired_total: IntCounter,
    /// Agents seen within one lease timeout.
    pub agents_connected: IntGauge,
    /// Experiments marked failed (their suggestions kept failing or ran past their budget).
    pub experiments_failed_total: IntCounter,
    /// Experiments paused now because their trials kept failing for the same reason.
    pub experiments_paused: IntGauge,
    /// Times an experiment was paused because its trials kept failing for the same reason.
    pub experiments_paused_total: IntCounter,
    /// Time to suggest a batch, including the GP fit.
    pub suggest_duration_seconds: Histogram,
    /// Time to fit the GP hyperparameters.
    pub gp_fit_duration_seconds: Histogram,
    /// Best objective so far, per experiment.
    pub best_objective: GaugeVec,
    /// Trials that became terminal, per experiment.
    pub experiment_trials_completed_total: IntCounterVec,
    /// Epoch reports received, per experiment.
    pub experiment_epochs_total: IntCounterVec,
    /// Dollars reported, per experiment.
    pub experiment_cost_dollars_total: CounterVec,
    /// 1 per experiment, labelled with its name, strategy and study (for dashboards to join on
    /// `experiment`).
    pub experiment_info: IntGaugeVec,
    /// gRPC connections open now.
    pub grpc_connections_open: IntGauge,
    /// gRPC connections closed at accept because `max_connections` were open.
    pub grpc_connections_rejected_total: IntCounter,
    /// gRPC connections closed because they sent no request within the idle timeout.
    pub grpc_connections_idle_closed_total: IntCounter,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
        .namespace(NAMESPACE)
        .subsystem(SUBSYSTEM)
}

/// Buckets for request and commit times: fine below 10 ms, where the latency goals are.
const FAST_BUCKETS: [f64; 16] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

fn fast_histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .subsystem(SUBSYSTEM)
        .buckets(FAST_BUCKETS.to_vec())
}

fn histogram(name: &str, help: &str) -> Histogram {
    let buckets = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    Histogram::with_opts(
        HistogramOpts::new(name, help)
            .namespace(NAMESPACE)
            .subsystem(SUBSYSTEM)
            .buckets(buckets),
    )
    .expect("histogram options are valid")
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            grpc_requests_total: IntCounterVec::new(
                opts(
                    "grpc_requests_total",
                    "gRPC requests handled, by method and status code",
                ),
                &["method", "code"],
            )
            .expect("valid metric"),
            grpc_request_duration_seconds: HistogramVec::new(
                fast_histogram_opts(
                    "grpc_request_duration_seconds",
                    "Time from a gRPC handler starting to its answer, by method (LeaseTrial \
                     includes its long poll)",
                ),
                &["method"],
            )
            .expect("valid metric"),
            store_commit_duration_seconds: Histogram::with_opts(fast_histogram_opts(
                "store_commit_duration_seconds",
                "Time of one group commit of the store (every change in the batch and the sync)",
            ))
            .expect("valid metric"),
            trials_total: IntCounterVec::new(
                opts("trials_total", "Trial transitions into each status"),
                &["status"],
            )
            .expect("valid metric"),
            trials: IntGaugeVec::new(
                opts("trials", "Trials in each status now, over every experiment"),
                &["status"],
            )
            .expect("valid metric"),
            leases_active: IntGauge::with_opts(opts(
                "leases_active",
                "Trials currently leased to an agent",
            ))
            .expect("valid metric"),
            leases_expired_total: IntCounter::with_opts(opts(
                "leases_expired_total",
                "Leases that expired without being renewed",
            ))
            .expect("valid metric"),
            agents_connected: IntGauge::with_opts(opts(
                "agents_connected",
                "Agents that made a request within one lease timeout",
            ))
            .expect("valid metric"),
            experiments_failed_total: IntCounter::with_opts(opts(
                "experiments_failed_total",
                "Experiments marked failed because their suggestions kept failing or ran past \
                 their time budget",
            ))
            .expect("valid metric"),
            experiments_paused: IntGauge::with_opts(opts(
                "experiments_paused",
                "Experiments paused now because their trials kept failing for the same reason \
                 (tunectl status shows it; tunectl resume continues)",
            ))
            .expect("valid metric"),
            experiments_paused_total: IntCounter::with_opts(opts(
                "experiments_paused_total",
                "Times an experiment was paused because its trials kept failing for the same \
                 reason",
            ))
            .expect("valid metric"),
            suggest_duration_seconds: histogram(
                "suggest_duration_seconds",
                "Time to suggest a batch of trials, GP fit included",
            ),
            gp_fit_duration_seconds: histogram(
                "gp_fit_duration_seconds",
                "Time to fit the GP surrogate",
            ),
            best_objective: GaugeVec::new(
                opts(
                    "best_objective",
                    "Best objective value so far, per experiment",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            experiment_trials_completed_total: IntCounterVec::new(
                opts(
                    "experiment_trials_completed_total",
                    "Trials that reached a terminal state, per experiment",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            experiment_epochs_total: IntCounterVec::new(
                opts(
                    "experiment_epochs_total",
                    "Epoch reports received, per experiment",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            experiment_cost_dollars_total: CounterVec::new(
                opts(
                    "experiment_cost_dollars_total",
                    "Dollars reported by agents, per experiment",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            experiment_info: IntGaugeVec::new(
                opts(
                    "experiment_info",
                    "1 for each experiment, labelled with its name, strategy and study",
                ),
                &["experiment", "name", "strategy", "study"],
            )
            .expect("valid metric"),
            grpc_connections_open: IntGauge::with_opts(opts(
                "grpc_connections_open",
                "gRPC connections open now",
            ))
            .expect("valid metric"),
            grpc_connections_rejected_total: IntCounter::with_opts(opts(
                "grpc_connections_rejected_total",
                "gRPC connections closed at accept because max_connections were open",
            ))
            .expect("valid metric"),
            grpc_connections_idle_closed_total: IntCounter::with_opts(opts(
                "grpc_connections_idle_closed_total",
                "gRPC connections closed because they sent no request within the idle timeout",
            ))
            .expect("valid metric"),
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.grpc_requests_total.clone()),
            Box::new(self.grpc_request_duration_seconds.clone()),
            Box::new(self.store_commit_duration_seconds.clone()),
            Box::new(self.trials_total.clone()),
            Box::new(self.trials.clone()),
            Box::new(self.leases_active.clone()),
            Box::new(self.leases_expired_total.clone()),
            Box::new(self.agents_connected.clone()),
            Box::new(self.experiments_failed_total.clone()),
            Box::new(self.experiments_paused.clone()),
            Box::new(self.experiments_paused_total.clone()),
            Box::new(self.suggest_duration_seconds.clone()),
            Box::new(self.gp_fit_duration_seconds.clone()),
            Box::new(self.best_objective.clone()),
            Box::new(self.experiment_trials_completed_total.clone()),
            Box::new(self.experiment_epochs_total.clone()),
            Box::new(self.experiment_cost_dollars_total.clone()),
            Box::new(self.experiment_info.clone()),
            Box::new(self.grpc_connections_open.clone()),
            Box::new(self.grpc_connections_rejected_total.clone()),
            Box::new(self.grpc_connections_idle_closed_total.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("metric names are unique");
        }
    }

    /// The registry holding every metric.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The cost counter of one experiment.
    pub fn experiment_cost(&self, experiment: &str) -> Counter {
        self.experiment_cost_dollars_total
            .with_label_values(&[experiment])
    }

    /// Raises a counter to `target` (it never goes down): how a restarted coordinator sets its
    /// per-experiment counters from the store, the same whether or not they already moved.
    pub fn raise_counter(counter: &IntCounter, target: u64) {
        counter.inc_by(target.saturating_sub(counter.get()));
    }

    /// [`Metrics::raise_counter`] for a float counter.
    pub fn raise_float_counter(counter: &Counter, target: f64) {
        let missing = target - counter.get();
        if missing > 0.0 {
            counter.inc_by(missing);
        }
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a vec cannot fail");
        String::from_utf8(buffer).expect("the text format is utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` (and `GET /healthz`) on `listener` until `shutdown` completes.
///
/// # Errors
/// When the HTTP server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_the_prefix_and_help() {
        let metrics = Metrics::new();
        metrics
            .grpc_requests_total
            .with_label_values(&["LeaseTrial", "Ok"])
            .inc();
        metrics.trials_total.with_label_values(&["succeeded"]).inc();
        metrics
            .best_objective
            .with_label_values(&["exp-1"])
            .set(0.5);
        metrics
            .experiment_trials_completed_total
            .with_label_values(&["exp-1"])
            .inc();
        metrics
            .experiment_epochs_total
            .with_label_values(&["exp-1"])
            .inc();
        metrics.experiment_cost("exp-1").inc_by(0.25);
        metrics.trials.with_label_values(&["pending"]).set(2);
        metrics
            .experiment_info
            .with_label_values(&["exp-1", "mr", "bo", ""])
            .set(1);
        metrics.suggest_duration_seconds.observe(0.01);
        let text = metrics.render();
        for name in [
            "grpc_requests_total",
            "trials_total",
            "trials",
            "leases_active",
            "leases_expired_total",
            "agents_connected",
            "experiments_failed_total",
            "experiments_paused",
            "experiments_paused_total",
            "suggest_duration_seconds",
            "gp_fit_duration_seconds",
            "best_objective",
            "experiment_trials_completed_total",
            "experiment_epochs_total",
            "experiment_cost_dollars_total",
            "experiment_info",
        ] {
            let full = format!("tunefleet_coordinator_{name}");
            assert!(
                text.contains(&format!("# HELP {full} ")),
                "missing help for {full}"
            );
        }
        assert!(text.contains(
            r#"tunefleet_coordinator_experiment_cost_dollars_total{experiment="exp-1"} 0.25"#
        ));
    }

    #[test]
    fn counters_are_raised_to_a_target_and_never_lowered() {
        let metrics = Metrics::new();
        let completed = metrics
            .experiment_trials_completed_total
            .with_label_values(&["exp-1"]);
        Metrics::raise_counter(&completed, 7);
        Metrics::raise_counter(&completed, 7);
        assert_eq!(completed.get(), 7);
        Metrics::raise_counter(&completed, 3);
        assert_eq!(completed.get(), 7);
        let cost = metrics.experiment_cost("exp-1");
        Metrics::raise_float_counter(&cost, 1.5);
        Metrics::raise_float_counter(&cost, 1.0);
        assert!((cost.get() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn two_registries_coexist() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.leases_active.set(3);
        assert!(b.render().contains("tunefleet_coordinator_leases_active 0"));
    }
}
