//! The workload kinds agents train and the metrics each one reports, in one table, so that
//! `CreateExperiment` fills a spec's default metric from its workload and refuses a metric its
//! workload never reports (otherwise every trial would fail on the agent with "unknown metric").
//!
//! The table mirrors the agent's `textcnn.rs` (`objective`) and `functions.rs` (which reports
//! its one value whatever the metric is called). The coordinator never links the agent
//! (STYLE.md §1), so `tests/tests/workload_metrics_e2e.rs` checks the two against each other:
//! it reads the list from this module's refusal message and trains one trial for every metric
//! listed on a real agent.
//!
//! The `command` kind runs a program the agents declare in their config; the program defines
//! what it reports, so any metric name is accepted for it (an agent whose command lists its
//! metrics fails a trial whose metric is not listed).
//!
//! The `external` kind is run by no agent: its trials are leased only by workers that name the
//! experiment in `LeaseTrial` (the Python SDK's), so an agent that trains every kind, or the
//! `function` kind, never takes a trial of a user's own training loop.

use super::model::Workload;
use crate::{Error, Result};

/// One workload kind and the metrics its trials report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadKind {
    /// The `kind` of a spec's `[workload]`.
    pub kind: &'static str,
    /// The metrics it reports; the first is the default.
    pub metrics: &'static [&'static str],
    /// Other names the agent accepts for one of `metrics` (not listed in messages).
    pub aliases: &'static [&'static str],
    /// Whether any metric name is accepted (the workload defines its own, as a command does).
    pub free_form_metric: bool,
    /// The `dataset` names it takes, when it takes only some (the `function` workload's
    /// functions); empty: any.
    pub datasets: &'static [&'static str],
}

/// The kind of the study's text CNN workload.
pub const TEXTCNN_KIND: &str = "textcnn";

/// The kind of a workload that runs a command declared in the agents' config.
pub const COMMAND_KIND: &str = "command";

/// The kind of a workload whose trials only workers naming the experiment take (the SDK's).
pub const EXTERNAL_KIND: &str = "external";

/// The functions of the `function` workload (its `dataset`), as the agent's `functions.rs`
/// evaluates them.
pub const FUNCTIONS: &[&str] = &["branin", "hartmann6", "quadratic"];

/// Every workload kind agents train.
pub const WORKLOADS: &[WorkloadKind] = &[
    WorkloadKind {
        kind: TEXTCNN_KIND,
        metrics: &["dev_accuracy", "train_accuracy", "train_loss"],
        aliases: &["accuracy", "validation_accuracy"],
        free_form_metric: false,
        datasets: &[],
    },
    WorkloadKind {
        kind: "function",
        metrics: &["value"],
        aliases: &[],
        free_form_metric: false,
        datasets: FUNCTIONS,
    },
    WorkloadKind {
        kind: COMMAND_KIND,
        metrics: &["value"],
        aliases: &[],
        free_form_metric: true,
        datasets: &[],
    },
    WorkloadKind {
        kind: EXTERNAL_KIND,
        metrics: &["value"],
        aliases: &[],
        free_form_metric: true,
        datasets: &[],
    },
];

/// Whether trials of `workload` go only to workers that name their experiment.
pub fn leased_only_by_name(workload: Option<&Workload>) -> bool {
    workload.is_some_and(|w| w.kind == EXTERNAL_KIND)
}

/// The metric of a spec without a workload kind (the name of a plain objective value).
pub const GENERIC_METRIC: &str = "value";

impl WorkloadKind {
    /// The metric a spec of this kind gets when it names none.
    pub fn default_metric(&self) -> &'static str {
        self.metrics[0]
    }

    /// Whether trials of this kind report `metric`.
    pub fn reports(&self, metric: &str) -> bool {
        self.free_form_metric || self.metrics.contains(&metric) || self.aliases.contains(&metric)
    }
}

/// The workload kind called `kind`, if agents train it.
pub fn find(kind: &str) -> Option<&'static WorkloadKind> {
    WORKLOADS.iter().find(|known| known.kind == kind)
}

/// The names of every workload kind, for messages.
pub fn kind_names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|known| known.kind).collect()
}

fn kind_of(workload: Option<&Workload>) -> Option<&'static WorkloadKind> {
    workload.and_then(|w| find(&w.kind))
}

/// The metric a spec with `workload` and no metric of its own optimizes: the kind's first
/// metric, or [`GENERIC_METRIC`] without a (known) kind.
pub fn default_metric(workload: Option<&Workload>) -> &'static str {
    kind_of(workload).map_or(GENERIC_METRIC, WorkloadKind::default_metric)
}

/// Refuses a metric the spec's workload does not report. A spec without a known workload kind
/// passes: nothing says what will train it (`limits::check_spec` refuses unknown kinds).
///
/// # Errors
/// `InvalidArgument` naming the metric, the workload and the metrics it reports.
pub fn check_metric(workload: Option<&Workload>, metric: &str) -> Result<()> {
    let Some(known) = kind_of(workload) else {
        return Ok(());
    };
    if known.reports(metric) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "metric '{}' is not reported by the {} workload (it reports: {})",
        super::limits::short(metric),
        known.kind,
        known.metrics.join(", ")
    )))
}

/// Refuses a `dataset` the spec's workload does not take (an unknown function); other kinds, and
/// a spec without a known kind, pass.
///
/// # Errors
/// `InvalidArgument` naming the dataset, the workload and the names it takes.
pub fn check_dataset(workload: Option<&Workload>) -> Result<()> {
    let (Some(workload), Some(known)) = (workload, kind_of(workload)) else {
        return Ok(());
    };
    if known.datasets.is_empty() || known.datasets.contains(&workload.dataset.as_str()) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "dataset '{}' is not one the {} workload takes (it takes: {})",
        super::limits::short(&workload.dataset),
        known.kind,
        known.datasets.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: &str) -> Workload {
        Workload {
            kind: kind.into(),
            ..Workload::default()
        }
    }

    #[test]
    fn defaults_follow_the_workload() {
        assert_eq!(default_metric(Some(&workload("textcnn"))), "dev_accuracy");
        assert_eq!(default_metric(Some(&workload("function"))), "value");
        assert_eq!(default_metric(Some(&workload(""))), "value");
        assert_eq!(default_metric(None), "value");
    }

    #[test]
    fn a_metric_the_workload_does_not_report_is_refused_with_the_list() {
        let textcnn = workload("textcnn");
        let refused = check_metric(Some(&textcnn), "value").expect_err("textcnn has no 'value'");
        assert!(matches!(refused, Error::InvalidArgument(_)), "{refused:?}");
        assert_eq!(
            refused.to_string(),
            "metric 'value' is not reported by the textcnn workload \
             (it reports: dev_accuracy, train_accuracy, train_loss)"
        );
        let function = workload("function");
        let refused = check_metric(Some(&function), "dev_accuracy").expect_err("refused");
        assert!(
            refused.to_string().contains("(it reports: value)"),
            "{refused}"
        );
    }

    #[test]
    fn listed_metrics_and_aliases_pass_and_unknown_kinds_are_not_judged() {
        for known in WORKLOADS {
            let spec_workload = workload(known.kind);
            for metric in known.metrics.iter().chain(known.aliases) {
                check_metric(Some(&spec_workload), metric).expect("reported");
            }
            assert!(known.reports(known.default_metric()));
        }
        check_metric(None, "anything").expect("no workload, nothing to check");
        check_metric(Some(&workload("")), "anything").expect("no kind, nothing to check");
    }

    #[test]
    fn a_function_workload_takes_only_the_functions_agents_evaluate() {
        let with = |kind: &str, dataset: &str| Workload {
            dataset: dataset.into(),
            ..workload(kind)
        };
        for name in FUNCTIONS {
            check_dataset(Some(&with("function", name))).expect("a known function");
        }
        for bad in ["nosuch", "", "Branin"] {
            let refused = check_dataset(Some(&with("function", bad))).expect_err("unknown");
            assert_eq!(
                refused.to_string(),
                format!(
                    "dataset '{bad}' is not one the function workload takes \
                     (it takes: branin, hartmann6, quadratic)"
                )
            );
        }
        for kind in ["textcnn", COMMAND_KIND, EXTERNAL_KIND, ""] {
            check_dataset(Some(&with(kind, "anything"))).expect("any dataset");
        }
        check_dataset(None).expect("no workload, nothing to check");
    }

    #[test]
    fn a_command_workload_takes_any_metric_and_defaults_to_value() {
        let command = workload(COMMAND_KIND);
        check_metric(Some(&command), "dev_auc").expect("a command defines its metrics");
        assert_eq!(default_metric(Some(&command)), "value");
    }

    #[test]
    fn kinds_are_unique() {
        let names = kind_names();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
