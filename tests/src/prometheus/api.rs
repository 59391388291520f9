//! The JSON shapes of Prometheus's HTTP API (`/api/v1/...`) that the tests read.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct ApiResponse<T> {
    pub(super) status: String,
    pub(super) data: Option<T>,
    #[serde(rename = "errorType")]
    pub(super) error_type: Option<String>,
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub(super) enum QueryData {
    Vector(Vec<RawSample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
pub(super) struct RawSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// One sample of an instant query's result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series' labels (`__name__` included when kept).
    pub labels: BTreeMap<String, String>,
    /// The value; `NaN` when Prometheus answered `NaN`.
    pub value: f64,
}

impl QueryData {
    pub(super) fn into_samples(self) -> Result<Vec<Sample>> {
        let parse = |text: &str| {
            text.parse::<f64>()
                .with_context(|| format!("bad sample value '{text}'"))
        };
        match self {
            QueryData::Vector(raw) => raw
                .into_iter()
                .map(|sample| {
                    Ok(Sample {
                        labels: sample.metric,
                        value: parse(&sample.value.1)?,
                    })
                })
                .collect(),
            QueryData::Scalar((_, value)) => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse(&value)?,
            }]),
            QueryData::Matrix(_) | QueryData::String(_) => {
                bail!("an instant query returned a matrix or a string")
            }
        }
    }
}

/// A scrape target as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    /// Target labels (`job`, `instance`, ...).
    pub labels: BTreeMap<String, String>,
    /// `up`, `down` or `unknown`.
    pub health: String,
    /// The last scrape's error, if any.
    #[serde(rename = "lastError", default)]
    pub last_error: String,
    /// The URL scraped.
    #[serde(rename = "scrapeUrl", default)]
    pub scrape_url: String,
}

impl Target {
    /// The target's `job` label.
    pub fn job(&self) -> &str {
        self.labels.get("job").map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
pub(super) struct TargetsData {
    #[serde(rename = "activeTargets")]
    pub(super) active_targets: Vec<Target>,
}

/// A rule's state as `/api/v1/rules` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleStatus {
    /// The alert or record name.
    pub name: String,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: String,
    /// The last evaluation's error.
    #[serde(rename = "lastError", default)]
    pub last_error: String,
}

#[derive(Deserialize)]
pub(super) struct RulesGroup {
    pub(super) rules: Vec<RuleStatus>,
}

#[derive(Deserialize)]
pub(super) struct RulesData {
    pub(super) groups: Vec<RulesGroup>,
}

/// An alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    /// Its labels (`alertname`, ...).
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

#[derive(Deserialize)]
pub(super) struct AlertsData {
    pub(super) alerts: Vec<Alert>,
}
