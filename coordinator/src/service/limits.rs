//! Limits on what clients and agents may send, and the pure checks that enforce them, so that no
//! request can make the coordinator allocate without bound, spin for seconds, or store numbers
//! that break its sums (a negative cost, an epoch of 4294967295). Every refusal is
//! `InvalidArgument`, names the field and the limit, and echoes at most a [`short`] prefix of
//! what it refuses (a long echo would overflow the gRPC status header). `docs/RELIABILITY.md`
//! lists the findings these checks answer.

use tuner::space::{Assignment, ParamKind, Space, Value};

use super::experiments::DEFAULT_GRID_LEVELS;
use super::model::{ExperimentSpec, Strategy, Workload};
use super::{Completion, EpochInput};
use crate::{Error, Result};

/// The largest magnitude of a numeric parameter bound (checked by `tuner`'s `Space::new`).
pub use tuner::space::MAX_ABS_BOUND;

/// The most points a grid experiment may have (the product of its levels over parameters).
pub const MAX_GRID_POINTS: usize = 1_000_000;
/// The most levels a parameter a grid may ask for.
pub const MAX_GRID_LEVELS: u32 = 10_000;
/// The most trials an experiment may run.
pub const MAX_BUDGET_TRIALS: u32 = 100_000;
/// The most trials an experiment may have in flight.
pub const MAX_PARALLELISM: u32 = 10_000;
/// The most space-filling trials before BO.
pub const MAX_INITIAL_TRIALS: u32 = 10_000;
/// The largest `max_model_points` a spec may ask for: the GP's matrices at this size take
/// 200 MB each, and a cold fit of 3,000 results took 130 s on 2 cores (docs/BENCHMARKS.md §2).
pub const MAX_MODEL_POINTS: u32 = 5_000;
/// The smallest nonzero `max_model_points` (the tuner's own minimum).
pub const MIN_MODEL_POINTS: u32 = tuner::MIN_MODEL_POINTS as u32;
/// The most leases a trial may get.
pub const MAX_ATTEMPTS: u32 = 100;
/// The most parameters a search space may have.
pub const MAX_PARAMETERS: usize = 64;
/// The most choices a categorical parameter may have.
pub const MAX_CHOICES: usize = 1_000;
/// The most fixed parameters a workload may have.
pub const MAX_FIXED_PARAMS: usize = 64;
/// The longest name (experiment, metric, study, parameter, choice, workload kind), in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest data set name or path, in bytes.
pub const MAX_DATASET_BYTES: usize = 4096;
/// The longest id (experiment, trial, lease, agent), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// The largest encoded experiment spec, in bytes.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// The largest agent gRPC message the server decodes, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The largest client (experiment service) gRPC message the server decodes, in bytes: room for
/// a spec far over [`MAX_SPEC_BYTES`] to be refused by validation, with a message naming the
/// field and the limit, rather than by the transport.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The most dollars a spec's `budget_dollars` may be.
pub const MAX_BUDGET_DOLLARS: f64 = 1e12;
/// The highest epoch number, and the most distinct epochs an attempt may report, when the
/// workload does not say how many epochs it plans.
pub const MAX_EPOCHS: u32 = 100_000;
/// The most dollars one completion may report.
pub const MAX_COST_DOLLARS: f64 = 1e6;
/// The most seconds an epoch, or an attempt's wall or device time, may last (about 116 days).
pub const MAX_SECONDS: f64 = 1e7;
/// The longest failure reason kept, in bytes (longer ones are cut, not refused).
pub const MAX_FAILURE_REASON_BYTES: usize = 4096;
/// The characters of a refused value an error message echoes.
pub const ECHO_CHARS: usize = 64;

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// The echo-safe form of a value: at most [`ECHO_CHARS`] characters, with the full length when
/// it was cut.
pub fn short(raw: &str) -> String {
    match raw.char_indices().nth(ECHO_CHARS) {
        None => raw.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes)", &raw[..cut], raw.len()),
    }
}

/// `raw` cut to at most `max_bytes`, on a character boundary.
pub fn truncate(mut raw: String, max_bytes: usize) -> String {
    if raw.len() > max_bytes {
        let mut cut = max_bytes;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw.truncate(cut);
    }
    raw
}

/// Refuses a string longer than `max_bytes`.
///
/// # Errors
/// `InvalidArgument` naming the field, the limit and a short echo.
pub fn check_len(field: &str, raw: &str, max_bytes: usize) -> Result<()> {
    if raw.len() > max_bytes {
        return Err(invalid(format!(
            "{field} must be at most {max_bytes} bytes, got {} ('{}')",
            raw.len(),
            short(raw)
        )));
    }
    Ok(())
}

/// Refuses an id that is empty or longer than [`MAX_ID_BYTES`].
///
/// # Errors
/// `InvalidArgument` naming the field.
pub fn check_id(field: &str, raw: &str) -> Result<()> {
    if raw.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    check_len(field, raw, MAX_ID_BYTES)
}

fn check_at_most(field: &str, value: u32, max: u32) -> Result<()> {
    if value > max {
        return Err(invalid(format!(
            "{field} must be at most {max}, got {value}"
        )));
    }
    Ok(())
}

/// Refuses a number that is not finite or not in `0..=max`.
pub(crate) fn check_amount(field: &str, value: f64, max: f64) -> Result<()> {
    if !value.is_finite() || !(0.0..=max).contains(&value) {
        return Err(invalid(format!(
            "{field} must be a finite number in 0..={max:e}, got {value}"
        )));
    }
    Ok(())
}

fn check_finite(field: &str, value: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(invalid(format!("{field} must be finite, got {value}")));
    }
    Ok(())
}

/// Checks a spec against every limit: the scalar caps, the lengths, the search space (bounds
/// within ±[`MAX_ABS_BOUND`]) and, for grid search, the number of grid points. Zeros that mean
/// "default" pass. Cheap whatever the spec asks for: the grid is counted, never built, and the
/// count stops once it passes [`MAX_GRID_POINTS`].
///
/// # Errors
/// `InvalidArgument` naming the first field over its limit.
pub fn check_spec(spec: &ExperimentSpec) -> Result<()> {
    check_len("name", &spec.name, MAX_NAME_BYTES)?;
    check_len("metric", &spec.metric, MAX_NAME_BYTES)?;
    check_len("study", &spec.study, MAX_NAME_BYTES)?;
    check_at_most("budget_trials", spec.budget_trials, MAX_BUDGET_TRIALS)?;
    check_at_most("parallelism", spec.parallelism, MAX_PARALLELISM)?;
    check_at_most("grid_levels", spec.grid_levels, MAX_GRID_LEVELS)?;
    check_at_most("initial_trials", spec.initial_trials, MAX_INITIAL_TRIALS)?;
    check_at_most("max_attempts", spec.max_attempts, MAX_ATTEMPTS)?;
    check_at_most("max_model_points", spec.max_model_points, MAX_MODEL_POINTS)?;
    if (1..MIN_MODEL_POINTS).contains(&spec.max_model_points) {
        return Err(invalid(format!(
            "max_model_points must be 0 (the default) or at least {MIN_MODEL_POINTS}, got {}",
            spec.max_model_points
        )));
    }
    check_amount("budget_dollars", spec.budget_dollars, MAX_BUDGET_DOLLARS)?;
    check_parameters(spec)?;
    if let Some(workload) = &spec.workload {
        check_workload(workload)?;
    }
    if spec.strategy == Strategy::Grid {
        check_grid(spec)?;
    }
    Ok(())
}

fn check_parameters(spec: &ExperimentSpec) -> Result<()> {
    if spec.parameters.len() > MAX_PARAMETERS {
        return Err(invalid(format!(
            "parameters must number at most {MAX_PARAMETERS}, got {}",
            spec.parameters.len()
        )));
    }
    for param in &spec.parameters {
        check_len("parameter name", &param.name, MAX_NAME_BYTES)?;
        if let ParamKind::Categorical { choices } = &param.kind {
            if choices.len() > MAX_CHOICES {
                return Err(invalid(format!(
                    "parameter '{}' must have at most {MAX_CHOICES} choices, got {}",
                    param.name,
                    choices.len()
                )));
            }
            for choice in choices {
                check_len("choice", choice, MAX_NAME_BYTES)?;
            }
        }
        if let Some(Value::Categorical(default)) = &param.default {
            check_len("default_value", default, MAX_NAME_BYTES)?;
        }
    }
    Ok(())
}

fn check_workload(workload: &Workload) -> Result<()> {
    check_len("workload kind", &workload.kind, MAX_NAME_BYTES)?;
    if !workload.kind.is_empty() && super::workloads::find(&workload.kind).is_none() {
        return Err(invalid(format!(
            "workload kind '{}' is unknown (known: {})",
            short(&workload.kind),
            super::workloads::kind_names().join(", ")
        )));
    }
    check_len("workload dataset", &workload.dataset, MAX_DATASET_BYTES)?;
    check_command(workload)?;
    if workload.fixed_params.len() > MAX_FIXED_PARAMS {
        return Err(invalid(format!(
            "fixed_params must number at most {MAX_FIXED_PARAMS}, got {}",
            workload.fixed_params.len()
        )));
    }
    for (name, value) in &workload.fixed_params {
        check_len("fixed_params name", name, MAX_NAME_BYTES)?;
        match value {
            Value::Float(v) if !v.is_finite() => {
                return Err(invalid(format!(
                    "fixed_params '{name}' must be finite, got {v}"
                )));
            }
            Value::Categorical(v) => check_len("fixed_params value", v, MAX_NAME_BYTES)?,
            _ => {}
        }
    }
    Ok(())
}

/// The longest command name, in bytes.
pub const MAX_COMMAND_NAME_BYTES: usize = 64;

/// A command workload names its command with a bounded name of `[A-Za-z0-9_.-]`; other kinds
/// name none.
fn check_command(workload: &Workload) -> Result<()> {
    let name = &workload.command;
    if workload.kind != super::workloads::COMMAND_KIND {
        if name.is_empty() {
            return Ok(());
        }
        return Err(invalid(format!(
            "workload.command is only for workload kind 'command', got kind '{}'",
            short(&workload.kind)
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > MAX_COMMAND_NAME_BYTES || !name.chars().all(allowed) {
        return Err(invalid(format!(
            "workload.command must name a command the agents declare: 1 to \
             {MAX_COMMAND_NAME_BYTES} characters of A-Z a-z 0-9 _ . -, got '{}'",
            short(name)
        )));
    }
    Ok(())
}

fn check_grid(spec: &ExperimentSpec) -> Result<()> {
    let space = Space::new(spec.parameters.clone())
        .map_err(|e| invalid(format!("invalid search space: {e}")))?;
    let levels = match spec.grid_levels {
        0 => DEFAULT_GRID_LEVELS,
        n => n,
    };
    if tuner::grid_size_at_most(&space, levels as usize, MAX_GRID_POINTS).is_none() {
        return Err(invalid(format!(
            "grid has more than {MAX_GRID_POINTS} points (grid_levels {levels} over {} parameters); \
             use fewer levels or parameters",
            space.dim()
        )));
    }
    Ok(())
}

/// The epochs a trial plans, from its parameters or else its workload's fixed parameters
/// (`epochs`, a whole number >= 1; the trial's value wins, as agents merge them).
pub fn planned_epochs(params: &Assignment, workload: Option<&Workload>) -> Option<u32> {
    let raw = params
        .get("epochs")
        .or_else(|| workload.and_then(|w| w.fixed_params.get("epochs")))?;
    let epochs = raw.as_f64()?;
    (epochs >= 1.0 && epochs.fract() == 0.0).then(|| epochs.min(f64::from(MAX_EPOCHS)) as u32)
}

/// Checks an epoch report: its numbers, an epoch within `1..=planned` (or [`MAX_EPOCHS`] when
/// the plan is unknown), and, with `other_epochs` the distinct epochs this attempt reported
/// besides this one, that the attempt has room for one more. Pass `None, 0` before the trial is
/// known.
///
/// # Errors
/// `InvalidArgument` naming the field and the limit.
pub fn check_epoch_report(
    report: &EpochInput,
    planned_epochs: Option<u32>,
    other_epochs: usize,
) -> Result<()> {
    check_finite("epoch value", report.value)?;
    check_finite("train_loss", report.train_loss)?;
    check_finite("train_accuracy", report.train_accuracy)?;
    if !(0.0..=1.0).contains(&report.train_accuracy) {
        return Err(invalid(format!(
            "train_accuracy must be in 0..=1, got {}",
            report.train_accuracy
        )));
    }
    check_amount("epoch_seconds", report.epoch_seconds, MAX_SECONDS)?;
    let limit = planned_epochs.unwrap_or(MAX_EPOCHS).min(MAX_EPOCHS);
    if report.epoch == 0 || report.epoch > limit {
        let source = if planned_epochs.is_some() {
            "the trial's planned epochs"
        } else {
            "the epoch cap"
        };
        return Err(invalid(format!(
            "epoch must be in 1..={limit} ({source}), got {}",
            report.epoch
        )));
    }
    if other_epochs >= limit as usize {
        return Err(invalid(format!(
            "an attempt may report at most {limit} epochs, and this one reported {other_epochs}"
        )));
    }
    Ok(())
}

/// The most extra metrics one completion may report.
pub const MAX_EXTRA_METRICS: usize = 32;

/// Checks a completion's extra metrics: at most [`MAX_EXTRA_METRICS`], short names, finite.
fn check_metrics(metrics: &std::collections::BTreeMap<String, f64>) -> Result<()> {
    if metrics.len() > MAX_EXTRA_METRICS {
        return Err(invalid(format!(
            "metrics must number at most {MAX_EXTRA_METRICS}, got {}",
            metrics.len()
        )));
    }
    for (name, value) in metrics {
        check_len("metrics name", name, MAX_NAME_BYTES)?;
        if !value.is_finite() {
            return Err(invalid(format!(
                "metrics '{}' must be finite, got {value}",
                short(name)
            )));
        }
    }
    Ok(())
}

/// Checks a completion's numbers: finite, non-negative and capped seconds and dollars, epochs
/// within [`MAX_EPOCHS`] and a best epoch no later than the last.
///
/// # Errors
/// `InvalidArgument` naming the field and the limit.
pub fn check_completion(completion: &Completion) -> Result<()> {
    if let Some(value) = completion.value {
        check_finite("value", value)?;
    }
    check_amount("wall_seconds", completion.wall_seconds, MAX_SECONDS)?;
    check_amount("device_seconds", completion.device_seconds, MAX_SECONDS)?;
    check_amount("cost_dollars", completion.cost_dollars, MAX_COST_DOLLARS)?;
    check_at_most("epochs_run", completion.epochs_run, MAX_EPOCHS)?;
    check_metrics(&completion.metrics)?;
    if completion.best_epoch > completion.epochs_run {
        return Err(invalid(format!(
            "best_epoch ({}) must be at most epochs_run ({})",
            completion.best_epoch, completion.epochs_run
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Outcome;
    use crate::store::tests_support::sample_experiment;

    type SpecEdit = fn(&mut ExperimentSpec);
    type CompletionEdit = fn(&mut Completion);

    fn spec() -> ExperimentSpec {
        sample_experiment().spec
    }

    fn refused(result: Result<()>, words: &[&str]) {
        let message = result.expect_err("refused").to_string();
        for word in words {
            assert!(message.contains(word), "'{message}' lacks '{word}'");
        }
        assert!(message.len() < 400, "message too long: {}", message.len());
    }

    fn report(epoch: u32) -> EpochInput {
        EpochInput {
            epoch,
            value: 0.5,
            train_loss: 1.0,
            train_accuracy: 0.9,
            epoch_seconds: 2.0,
        }
    }

    fn completion() -> Completion {
        Completion {
            outcome: Outcome::Succeeded,
            value: Some(0.5),
            epochs_run: 3,
            best_epoch: 2,
            wall_seconds: 10.0,
            device_seconds: 9.0,
            cost_dollars: 0.01,
            failure_reason: String::new(),
            metrics: Default::default(),
        }
    }

    #[test]
    fn short_cuts_long_values_on_a_char_boundary() {
        assert_eq!(short("abc"), "abc");
        let long = "é".repeat(3_000_000);
        let echo = short(&long);
        assert!(echo.len() < 200 && echo.contains("6000000 bytes"), "{echo}");
        assert_eq!(truncate("éé".into(), 3), "é");
    }

    #[test]
    fn the_sample_spec_passes() {
        check_spec(&spec()).expect("valid");
    }

    #[test]
    fn scalar_caps_name_field_and_limit() {
        let cases: [(SpecEdit, &str, &str); 8] = [
            (|s| s.budget_trials = 100_001, "budget_trials", "100000"),
            (|s| s.parallelism = 10_001, "parallelism", "10000"),
            (|s| s.grid_levels = u32::MAX, "grid_levels", "10000"),
            (|s| s.initial_trials = 10_001, "initial_trials", "10000"),
            (|s| s.max_attempts = 101, "max_attempts", "100"),
            (|s| s.max_model_points = 5_001, "max_model_points", "5000"),
            (|s| s.max_model_points = 7, "max_model_points", "at least 8"),
            (|s| s.budget_dollars = -1.0, "budget_dollars", "1e12"),
        ];
        for (edit, field, limit) in cases {
            let mut s = spec();
            edit(&mut s);
            refused(check_spec(&s), &[field, limit]);
        }
    }

    #[test]
    fn a_grid_above_the_cap_is_refused_quickly() {
        let mut s = spec();
        s.strategy = Strategy::Grid;
        s.parameters = (0..4)
            .map(|i| {
                serde_json::from_str(&format!(
                    r#"{{"name":"x{i}","type":"float","low":0,"high":1}}"#
                ))
                .expect("parses")
            })
            .collect();
        s.grid_levels = 31;
        check_spec(&s).expect("923521 points fit");
        s.grid_levels = 32;
        let started = std::time::Instant::now();
        refused(check_spec(&s), &["grid", "1000000"]);
        s.grid_levels = MAX_GRID_LEVELS;
        refused(check_spec(&s), &["grid", "1000000"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn lengths_counts_and_workloads_are_checked() {
        let mut s = spec();
        s.name = "n".repeat(3_000_000);
        refused(check_spec(&s), &["name", "256"]);
        let mut s = spec();
        let param = s.parameters[0].clone();
        s.parameters = (0..65)
            .map(|i| {
                let mut p = param.clone();
                p.name = format!("p{i}");
                p
            })
            .collect();
        refused(check_spec(&s), &["parameters", "64"]);
        let mut s = spec();
        s.workload = Some(Workload {
            kind: "bitcoin-miner".into(),
            ..Workload::default()
        });
        refused(
            check_spec(&s),
            &["workload kind", "bitcoin-miner", "textcnn"],
        );
        let mut s = spec();
        s.workload = Some(Workload {
            fixed_params: [("lr".to_string(), Value::Float(f64::NAN))].into(),
            ..Workload::default()
        });
        refused(check_spec(&s), &["fixed_params", "lr", "finite"]);
        let mut s = spec();
        s.workload = Some(Workload::default());
        check_spec(&s).expect("an empty workload is allowed");
    }

    #[test]
    fn a_command_workload_needs_a_bounded_command_name() {
        let with = |kind: &str, command: &str| {
            let mut s = spec();
            s.workload = Some(Workload {
                kind: kind.into(),
                command: command.into(),
                ..Workload::default()
            });
            s
        };
        check_spec(&with("command", "train-lr_v1.2")).expect("a plain name");
        refused(check_spec(&with("command", "")), &["workload.command"]);
        refused(
            check_spec(&with("command", "rm -rf /")),
            &["workload.command", "rm -rf /"],
        );
        let long = "x".repeat(65);
        refused(
            check_spec(&with("command", &long)),
            &["workload.command", "64"],
        );
        refused(
            check_spec(&with("textcnn", "train")),
            &["workload.command", "textcnn"],
        );
    }

    #[test]
    fn planned_epochs_come_from_params_then_fixed_params() {
        let workload = Workload {
            fixed_params: [("epochs".to_string(), Value::Int(20))].into(),
            ..Workload::default()
        };
        let mut params = Assignment::new();
        assert_eq!(planned_epochs(&params, Some(&workload)), Some(20));
        params.insert("epochs".into(), Value::Float(5.0));
        assert_eq!(planned_epochs(&params, Some(&workload)), Some(5));
        params.insert("epochs".into(), Value::Float(0.5));
        assert_eq!(planned_epochs(&params, None), None);
        assert_eq!(planned_epochs(&Assignment::new(), None), None);
    }

    #[test]
    fn epoch_reports_are_bounded() {
        check_epoch_report(&report(1), None, 0).expect("valid");
        check_epoch_report(&report(MAX_EPOCHS), None, 0).expect("valid");
        refused(
            check_epoch_report(&report(0), None, 0),
            &["epoch", "100000"],
        );
        refused(
            check_epoch_report(&report(u32::MAX), None, 0),
            &["epoch", "1..=100000"],
        );
        refused(
            check_epoch_report(&report(6), Some(5), 0),
            &["epoch", "1..=5", "planned"],
        );
        refused(
            check_epoch_report(&report(20_000), Some(20_000), 20_000),
            &["at most 20000 epochs"],
        );
        let mut r = report(1);
        r.epoch_seconds = -1.0;
        refused(check_epoch_report(&r, None, 0), &["epoch_seconds"]);
        r.epoch_seconds = f64::INFINITY;
        refused(check_epoch_report(&r, None, 0), &["epoch_seconds"]);
        let mut r = report(1);
        r.train_accuracy = 1.5;
        refused(
            check_epoch_report(&r, None, 0),
            &["train_accuracy", "0..=1"],
        );
        r.train_accuracy = f64::NAN;
        refused(
            check_epoch_report(&r, None, 0),
            &["train_accuracy", "finite"],
        );
    }

    #[test]
    fn completions_are_bounded() {
        check_completion(&completion()).expect("valid");
        let cases: [(CompletionEdit, &str); 7] = [
            (|c| c.cost_dollars = -1e6, "cost_dollars"),
            (|c| c.cost_dollars = 2e6, "cost_dollars"),
            (|c| c.wall_seconds = -1.0, "wall_seconds"),
            (|c| c.device_seconds = f64::NAN, "device_seconds"),
            (|c| c.epochs_run = u32::MAX, "epochs_run"),
            (|c| c.best_epoch = 4, "best_epoch"),
            (|c| c.value = Some(f64::INFINITY), "value"),
        ];
        for (edit, field) in cases {
            let mut c = completion();
            edit(&mut c);
            refused(check_completion(&c), &[field]);
        }
    }

    #[test]
    fn ids_are_bounded() {
        check_id("lease_id", "lease-1").expect("valid");
        refused(check_id("lease_id", ""), &["lease_id", "empty"]);
        refused(
            check_id("lease_id", &"x".repeat(3_000_000)),
            &["lease_id", "128", "3000000 bytes"],
        );
    }
}
