//! Reads a few series from the coordinator's Prometheus `/metrics` endpoint (plain HTTP/1.0 on
//! loopback, no client library): GP fits, suggestions and expired leases, to say where the
//! coordinator's time went during the measured phase, and the histograms of its RPC and group
//! commit times ([`Buckets`]), its own view of the latencies the agents measure.

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

/// A histogram's cumulative bucket counts, summed over the label sets that match.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Buckets {
    /// Upper bounds (`le`), ascending; the last is `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound.
    pub cumulative: Vec<f64>,
}

impl Buckets {
    /// The buckets of histogram `name` (without `_bucket`) whose labels include `label`
    /// (`key="value"`, or every series when `None`); `None` when there are none.
    pub fn read(exposition: &str, name: &str, label: Option<&str>) -> Option<Self> {
        let prefix = format!("{name}_bucket{{");
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            if label.is_some_and(|l| !labels.split(',').any(|part| part == l)) {
                continue;
            }
            let Some(le) = labels
                .split(',')
                .find_map(|part| part.strip_prefix("le=\""))
                .and_then(|v| v.strip_suffix('"'))
            else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                let Ok(bound) = le.parse::<f64>() else {
                    continue;
                };
                bound
            };
            let Ok(count) = value.trim().parse::<f64>() else {
                continue;
            };
            match pairs.iter_mut().find(|(b, _)| *b == bound) {
                Some(pair) => pair.1 += count,
                None => pairs.push((bound, count)),
            }
        }
        if pairs.is_empty() {
            return None;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Self {
            bounds: pairs.iter().map(|p| p.0).collect(),
            cumulative: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// Observations made after `earlier` (same bounds; different bounds give `self`).
    pub fn since(&self, earlier: &Self) -> Self {
        if self.bounds != earlier.bounds {
            return self.clone();
        }
        Self {
            bounds: self.bounds.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Observations in all.
    pub fn count(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The smallest bucket bound at or below which a fraction `q` of the observations lie (an
    /// upper bound of the `q` quantile); `None` without observations.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        self.bounds
            .iter()
            .zip(&self.cumulative)
            .find(|(_, c)| **c >= q * total)
            .map(|(b, _)| *b)
    }
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
    /// `ReportEpoch` handling times as the coordinator measured them.
    pub report_seconds: Option<Buckets>,
    /// `Heartbeat` handling times as the coordinator measured them.
    pub heartbeat_seconds: Option<Buckets>,
    /// `CompleteTrial` handling times as the coordinator measured them.
    pub complete_seconds: Option<Buckets>,
    /// Group commit times of the store.
    pub commit_seconds: Option<Buckets>,
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
            report_seconds: rpc(exposition, "ReportEpoch"),
            heartbeat_seconds: rpc(exposition, "Heartbeat"),
            complete_seconds: rpc(exposition, "CompleteTrial"),
            commit_seconds: Buckets::read(
                exposition,
                &format!("{PREFIX}store_commit_duration_seconds"),
                None,
            ),
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
            report_seconds: buckets_since(&self.report_seconds, &earlier.report_seconds),
            heartbeat_seconds: buckets_since(&self.heartbeat_seconds, &earlier.heartbeat_seconds),
            complete_seconds: buckets_since(&self.complete_seconds, &earlier.complete_seconds),
            commit_seconds: buckets_since(&self.commit_seconds, &earlier.commit_seconds),
        }
    }
}

fn rpc(exposition: &str, method: &str) -> Option<Buckets> {
    Buckets::read(
        exposition,
        &format!("{PREFIX}grpc_request_duration_seconds"),
        Some(&format!("method=\"{method}\"")),
    )
}

fn buckets_since(now: &Option<Buckets>, earlier: &Option<Buckets>) -> Option<Buckets> {
    match (now, earlier) {
        (Some(now), Some(earlier)) => Some(now.since(earlier)),
        (now, _) => now.clone(),
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
    fn histogram_buckets_give_quantile_bounds_over_a_phase() {
        let name = "tunefleet_coordinator_grpc_request_duration_seconds";
        let at = |a: u32, b: u32, c: u32| {
            format!(
                "{name}_bucket{{method=\"ReportEpoch\",le=\"0.001\"}} {a}\n\
                 {name}_bucket{{method=\"ReportEpoch\",le=\"0.01\"}} {b}\n\
                 {name}_bucket{{method=\"ReportEpoch\",le=\"+Inf\"}} {c}\n\
                 {name}_bucket{{method=\"Heartbeat\",le=\"0.001\"}} 7\n\
                 {name}_bucket{{method=\"Heartbeat\",le=\"0.01\"}} 7\n\
                 {name}_bucket{{method=\"Heartbeat\",le=\"+Inf\"}} 7\n"
            )
        };
        let start =
            Buckets::read(&at(10, 10, 10), name, Some("method=\"ReportEpoch\"")).expect("found");
        let end =
            Buckets::read(&at(100, 109, 110), name, Some("method=\"ReportEpoch\"")).expect("found");
        let phase = end.since(&start);
        assert_eq!(phase.count(), 100.0);
        assert_eq!(phase.quantile_bound(0.5), Some(0.001));
        assert_eq!(phase.quantile_bound(0.99), Some(0.01));
        assert_eq!(phase.quantile_bound(1.0), Some(f64::INFINITY));
        let all = Buckets::read(&at(100, 109, 110), name, None).expect("found");
        assert_eq!(all.count(), 117.0);
        assert!(Buckets::read(&at(1, 1, 1), name, Some("method=\"LeaseTrial\"")).is_none());
    }

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
