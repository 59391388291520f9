//! Reads a few counters from the coordinator's Prometheus `/metrics` endpoint (plain HTTP/1.0 on
//! loopback, no client library): GP fits, suggestions and expired leases, to say where the
//! coordinator's time went during the measured phase.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The exposition text of `http://ADDR/metrics`.
///
/// # Errors
/// When the endpoint cannot be reached within `timeout` or does not answer 200.
pub async fn scrape(addr: &str, timeout: Duration) -> Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8(response).context("metrics are not UTF-8")?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
        if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
            bail!(
                "metrics answered {}",
                head.lines().next().unwrap_or_default()
            );
        }
        Ok(body.to_owned())
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .context("scraping metrics timed out")?
}

/// The sum over every series of metric `name` (all label sets), `None` when it is absent.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value {
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    total
}

/// Coordinator counters over the measured phase (end minus start; `None` where the coordinator
/// does not export the metric).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoordinatorCounters {
    /// GP fits.
    pub gp_fits: Option<f64>,
    /// Seconds spent fitting GPs.
    pub gp_fit_seconds: Option<f64>,
    /// Suggestion calls (every strategy).
    pub suggestions: Option<f64>,
    /// Seconds spent suggesting, GP fits included.
    pub suggest_seconds: Option<f64>,
    /// Leases the coordinator expired.
    pub leases_expired: Option<f64>,
}

const PREFIX: &str = "tunefleet_coordinator_";

impl CoordinatorCounters {
    /// The counters in one exposition.
    pub fn read(exposition: &str) -> Self {
        let get = |name: &str| sample(exposition, &format!("{PREFIX}{name}"));
        Self {
            gp_fits: get("gp_fit_duration_seconds_count"),
            gp_fit_seconds: get("gp_fit_duration_seconds_sum"),
            suggestions: get("suggest_duration_seconds_count"),
            suggest_seconds: get("suggest_duration_seconds_sum"),
            leases_expired: get("leases_expired_total"),
        }
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Self) -> Self {
        let minus = |a: Option<f64>, b: Option<f64>| Some(a? - b.unwrap_or(0.0));
        Self {
            gp_fits: minus(self.gp_fits, earlier.gp_fits),
            gp_fit_seconds: minus(self.gp_fit_seconds, earlier.gp_fit_seconds),
            suggestions: minus(self.suggestions, earlier.suggestions),
            suggest_seconds: minus(self.suggest_seconds, earlier.suggest_seconds),
            leases_expired: minus(self.leases_expired, earlier.leases_expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP tunefleet_coordinator_leases_expired_total Leases\n\
        # TYPE tunefleet_coordinator_leases_expired_total counter\n\
        tunefleet_coordinator_leases_expired_total 3\n\
        tunefleet_coordinator_gp_fit_duration_seconds_sum 1.5\n\
        tunefleet_coordinator_gp_fit_duration_seconds_count 4\n\
        tunefleet_coordinator_grpc_requests_total{method=\"Heartbeat\",code=\"OK\"} 10\n\
        tunefleet_coordinator_grpc_requests_total{method=\"LeaseTrial\",code=\"OK\"} 5\n";

    #[test]
    fn samples_sum_label_sets_and_skip_longer_names() {
        assert_eq!(
            sample(TEXT, "tunefleet_coordinator_grpc_requests_total"),
            Some(15.0)
        );
        assert_eq!(
            sample(TEXT, "tunefleet_coordinator_leases_expired_total"),
            Some(3.0)
        );
        assert_eq!(sample(TEXT, "tunefleet_coordinator_gp_fit"), None);
    }

    #[test]
    fn counters_over_a_window() {
        let end = CoordinatorCounters::read(TEXT);
        let start = CoordinatorCounters {
            gp_fits: Some(1.0),
            ..CoordinatorCounters::default()
        };
        let window = end.since(&start);
        assert_eq!(window.gp_fits, Some(3.0));
        assert_eq!(window.gp_fit_seconds, Some(1.5));
        assert_eq!(window.suggestions, None);
    }
}
