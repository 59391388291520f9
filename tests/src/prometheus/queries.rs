//! Reads the PromQL that `deploy/` ships: every Grafana dashboard target and every alert rule,
//! with the metric names they use and Grafana's template variables substituted.
//!
//! The observability tests check these expressions statically (each metric name exists in a
//! daemon's `metrics.rs`) and against a live Prometheus (each evaluates without error, and each
//! dashboard panel has data).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The repository's root folder (the tests crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The `deploy/` folder.
pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// Reads a file of the repository as text, naming it on failure.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// One query of one dashboard panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    /// The dashboard's file name, e.g. `cluster-overview.json`.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The target's `refId` (`A`, `B`, ...).
    pub ref_id: String,
    /// The PromQL as written, template variables included.
    pub expr: String,
}

/// A dashboard template variable backed by a query (`label_values(metric, label)`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryVariable {
    /// The variable's name, without `$`.
    pub name: String,
    /// Its query, e.g. `label_values(tunefleet_coordinator_best_objective, experiment)`.
    pub query: String,
}

/// A dashboard's queries and variables.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    /// File name.
    pub file: String,
    /// The `uid`.
    pub uid: String,
    /// Every panel query, rows flattened.
    pub queries: Vec<PanelQuery>,
    /// Names of every template variable (any type).
    pub variables: BTreeSet<String>,
    /// The variables backed by a Prometheus query.
    pub query_variables: Vec<QueryVariable>,
    /// Panel ids in order, rows included (to check they are unique).
    pub panel_ids: Vec<u64>,
}

/// One alerting or recording rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleQuery {
    /// The rule's `alert` (or `record`) name.
    pub name: String,
    /// Its PromQL.
    pub expr: String,
}

/// Every `deploy/grafana/dashboards/*.json`, sorted by name.
pub fn dashboard_files() -> Result<Vec<PathBuf>> {
    files_with_extension(&deploy_dir().join("grafana/dashboards"), "json")
}

/// The files in `dir` ending in `.ext`, sorted.
pub fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("failed to list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|found| found == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses a Grafana dashboard JSON file into its queries and variables.
pub fn load_dashboard(path: &Path) -> Result<Dashboard> {
    let text = read_text(path)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let file = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dashboard = Dashboard {
        file: file.clone(),
        uid: json["uid"].as_str().unwrap_or_default().to_string(),
        ..Dashboard::default()
    };
    for variable in json["templating"]["list"].as_array().into_iter().flatten() {
        let name = variable["name"]
            .as_str()
            .context("a template variable has no name")?
            .to_string();
        if variable["type"] == "query" {
            let query = match &variable["query"] {
                serde_json::Value::String(text) => text.clone(),
                object => object["query"].as_str().unwrap_or_default().to_string(),
            };
            dashboard.query_variables.push(QueryVariable {
                name: name.clone(),
                query,
            });
        }
        dashboard.variables.insert(name);
    }
    collect_panels(&json["panels"], &file, &mut dashboard)?;
    Ok(dashboard)
}

fn collect_panels(panels: &serde_json::Value, file: &str, dashboard: &mut Dashboard) -> Result<()> {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        let id = panel["id"]
            .as_u64()
            .with_context(|| format!("{file}: panel '{title}' has no numeric id"))?;
        dashboard.panel_ids.push(id);
        // A collapsed row keeps its panels inside it.
        collect_panels(&panel["panels"], file, dashboard)?;
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .filter(|targets| !targets.is_empty());
        let targets = targets.with_context(|| format!("{file}: panel '{title}' has no query"))?;
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string();
            if expr.is_empty() {
                bail!("{file}: panel '{title}' has a target without a PromQL expression");
            }
            let ref_id = target["refId"].as_str().unwrap_or_default().to_string();
            dashboard.queries.push(PanelQuery {
                dashboard: file.to_string(),
                panel: title.clone(),
                ref_id,
                expr,
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

/// Parses a Prometheus rule file (`groups: [{rules: [...]}]`).
pub fn load_rules(path: &Path) -> Result<Vec<RuleQuery>> {
    let text = read_text(path)?;
    let file: RuleFile = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a Prometheus rule file", path.display()))?;
    let mut rules = Vec::new();
    for group in file.groups {
        for rule in group.rules {
            let name = rule
                .alert
                .or(rule.record)
                .context("a rule has neither `alert` nor `record`")?;
            rules.push(RuleQuery {
                name,
                expr: rule.expr.trim().to_string(),
            });
        }
    }
    Ok(rules)
}

/// Replaces Grafana's template variables (`$name`, `${name}`, `${name:format}`, `[[name]]`) in
/// `expr` with the given values; a variable without a value is an error naming it.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(start) = rest.find(['$', '[']) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some((name, consumed)) = variable_at(tail) else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        };
        let value = values
            .get(name)
            .with_context(|| format!("no value for the variable ${name} in `{expr}`"))?;
        out.push_str(value);
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable name at the start of `text` and the bytes its reference takes, if any.
fn variable_at(text: &str) -> Option<(&str, usize)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(inner) = text.strip_prefix("${") {
        let end = inner.find('}')?;
        let name = inner[..end].split(':').next()?;
        return (!name.is_empty() && name.chars().all(is_name)).then_some((name, end + 3));
    }
    if let Some(inner) = text.strip_prefix("[[") {
        let end = inner.find("]]")?;
        let name = inner[..end].split(':').next()?;
        return (!name.is_empty() && name.chars().all(is_name)).then_some((name, end + 4));
    }
    let inner = text.strip_prefix('$')?;
    let end = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
    (end > 0).then_some((&inner[..end], end + 1))
}

/// The `tunefleet_*` metric names an expression uses, as written (histogram series keep their
/// `_bucket`/`_sum`/`_count` suffix; see [`base_metric_name`]). Quoted strings are skipped.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            // Skip the string, escapes included.
            let mut escaped = false;
            for (_, inner) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if inner == '\\' {
                    escaped = true;
                } else if inner == c {
                    break;
                }
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(index, next)) = chars.peek() {
            if !(next.is_ascii_alphanumeric() || next == '_' || next == ':') {
                break;
            }
            end = index + next.len_utf8();
            chars.next();
        }
        let word = &expr[start..end];
        if word.starts_with("tunefleet_") {
            names.insert(word.to_string());
        }
    }
    names
}

/// The name a metric is defined under: a histogram's `_bucket`, `_sum` and `_count` series
/// belong to the histogram's name.
pub fn base_metric_name(series: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix) {
            return base;
        }
    }
    series
}

/// Splits `label_values(metric, label)` into its metric selector and label.
pub fn parse_label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (metric, label) = inner.rsplit_once(',')?;
    Some((metric.trim().to_string(), label.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_every_variable_form() {
        let vars = values(&[("experiment", "exp-1"), ("__rate_interval", "1m")]);
        let expr = r#"rate(x{e=~"$experiment"}[$__rate_interval]) + y{e="${experiment}"} + z{e="[[experiment]]"}"#;
        let out = substitute(expr, &vars).expect("all known");
        assert_eq!(
            out,
            r#"rate(x{e=~"exp-1"}[1m]) + y{e="exp-1"} + z{e="exp-1"}"#
        );
        assert_eq!(
            substitute("a[5m] + b", &vars).expect("no variables"),
            "a[5m] + b"
        );
    }

    #[test]
    fn an_unknown_variable_is_an_error_naming_it() {
        let err = substitute("x[$__range]", &values(&[])).expect_err("unknown");
        assert!(err.to_string().contains("$__range"), "{err}");
    }

    #[test]
    fn finds_metric_names_outside_strings() {
        let expr = r#"sum by (le) (rate(tunefleet_agent_epoch_duration_seconds_bucket{job="tunefleet_agent_x"}[1m])) / tunefleet_coordinator_agents_connected and up"#;
        let names: Vec<_> = metric_names(expr).into_iter().collect();
        assert_eq!(
            names,
            [
                "tunefleet_agent_epoch_duration_seconds_bucket",
                "tunefleet_coordinator_agents_connected"
            ]
        );
        assert_eq!(
            base_metric_name("tunefleet_agent_epoch_duration_seconds_bucket"),
            "tunefleet_agent_epoch_duration_seconds"
        );
        assert_eq!(
            base_metric_name("tunefleet_agent_epochs_total"),
            "tunefleet_agent_epochs_total"
        );
    }

    #[test]
    fn parses_label_values_queries() {
        let parsed =
            parse_label_values("label_values(tunefleet_coordinator_best_objective, experiment)");
        assert_eq!(
            parsed,
            Some((
                "tunefleet_coordinator_best_objective".into(),
                "experiment".into()
            ))
        );
        assert_eq!(parse_label_values("query_result(up)"), None);
    }
}
