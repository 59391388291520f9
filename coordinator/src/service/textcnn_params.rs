//! The parameters a `textcnn` workload trains with and the values each takes, so that
//! `CreateExperiment` refuses a spec whose every trial would fail on the agent: an unknown
//! parameter name (a typo), a range outside what the model accepts, a float search over a
//! whole-number parameter, or a categorical with a choice that is not such a number (the text
//! CNN takes numbers; `choices = [32, 64]` is a categorical of numbers).
//!
//! The table mirrors the agent's `HyperParams::with_overrides` (`agent/cnn/src/params.rs`) and
//! its `seed`. The coordinator never links the agent (STYLE.md §1), so
//! `tests/tests/workload_tables_mirror.rs` checks the two against each other: every name here is
//! one the agent knows and the other way round, each bound is accepted by the agent and a value
//! just past it refused.

use std::collections::BTreeMap;

use tuner::space::{ParamKind, ParamSpec, Value};

use super::model::Workload;
use super::workloads::TEXTCNN_KIND;
use crate::{Error, Result};

/// One parameter of the text CNN and the values it takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextCnnParam {
    /// Its name in a spec.
    pub name: &'static str,
    /// Whether it takes whole numbers only.
    pub integer: bool,
    /// The smallest value ([`f64::MIN_POSITIVE`]: any value above 0).
    pub low: f64,
    /// The largest value.
    pub high: f64,
}

const fn int(name: &'static str, low: f64, high: f64) -> TextCnnParam {
    TextCnnParam {
        name,
        integer: true,
        low,
        high,
    }
}

const fn real(name: &'static str, low: f64, high: f64) -> TextCnnParam {
    TextCnnParam {
        name,
        integer: false,
        low,
        high,
    }
}

/// Every parameter the `textcnn` workload takes, searched or fixed.
pub const TEXTCNN_PARAMS: &[TextCnnParam] = &[
    int("embed_dim", 1.0, 4096.0),
    real("learning_rate", f64::MIN_POSITIVE, 10.0),
    int("batch_size", 1.0, 4096.0),
    real("max_grad_norm", 0.0, 1e6),
    int("epochs", 1.0, 100_000.0),
    real("dropout", 0.0, 0.99),
    int("filter_size_1", 1.0, 64.0),
    int("filter_size_2", 1.0, 64.0),
    int("filter_size_3", 1.0, 64.0),
    int("num_feature_maps", 1.0, 4096.0),
    int("centered_rmsprop", 0.0, 1.0),
    // The trial's training seed (a whole number; the agent derives one when it is left out).
    int("seed", 0.0, i64::MAX as f64),
];

impl TextCnnParam {
    /// The range in words, for messages.
    pub fn range(&self) -> String {
        let kind = if self.integer {
            "a whole number"
        } else {
            "a number"
        };
        if self.low == f64::MIN_POSITIVE {
            format!("{kind} above 0 and at most {}", self.high)
        } else {
            format!("{kind} from {} to {}", self.low, self.high)
        }
    }

    fn contains(&self, value: f64) -> bool {
        value.is_finite()
            && (self.low..=self.high).contains(&value)
            && (!self.integer || value.fract() == 0.0)
    }
}

/// The text CNN's parameter called `name`.
pub fn find(name: &str) -> Option<&'static TextCnnParam> {
    TEXTCNN_PARAMS.iter().find(|param| param.name == name)
}

fn names() -> String {
    TEXTCNN_PARAMS
        .iter()
        .map(|param| param.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn known(name: &str, role: &str) -> Result<&'static TextCnnParam> {
    find(name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{role} '{}' is not a textcnn parameter (known: {})",
            super::limits::short(name),
            names()
        ))
    })
}

/// Refuses searched or fixed parameters a `textcnn` workload cannot train with. Other workloads
/// pass: a command or an external worker defines its own parameters.
///
/// # Errors
/// `InvalidArgument` naming the parameter, what is wrong and the values it takes.
pub fn check_textcnn_params(workload: Option<&Workload>, parameters: &[ParamSpec]) -> Result<()> {
    let Some(workload) = workload.filter(|w| w.kind == TEXTCNN_KIND) else {
        return Ok(());
    };
    for spec in parameters {
        check_searched(spec)?;
    }
    check_fixed(&workload.fixed_params)
}

fn check_searched(spec: &ParamSpec) -> Result<()> {
    let param = known(&spec.name, "parameter")?;
    let (low, high) = match &spec.kind {
        ParamKind::Categorical { choices } => return check_choices(param, choices),
        ParamKind::Float { .. } if param.integer => {
            return Err(Error::InvalidArgument(format!(
                "parameter '{}' takes whole numbers: search it as type \"int\" ({})",
                param.name,
                param.range()
            )));
        }
        ParamKind::Stepped(steps) if param.integer && !steps.integer => {
            return Err(Error::InvalidArgument(format!(
                "parameter '{}' takes whole numbers: search it as type \"int\" ({})",
                param.name,
                param.range()
            )));
        }
        ParamKind::Stepped(steps) => (steps.low, steps.high()),
        ParamKind::Float { low, high, .. } => (*low, *high),
        ParamKind::Int { low, high, .. } => (*low as f64, *high as f64),
    };
    if param.contains(low) && param.contains(high) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "parameter '{}' is searched from {low} to {high}, but textcnn takes {}",
        param.name,
        param.range()
    )))
}

/// A categorical of numbers (`choices = [32, 64]`) trains with each number, so each must be one
/// the model takes.
fn check_choices(param: &TextCnnParam, choices: &[String]) -> Result<()> {
    let Some(wrong) = choices.iter().find(|choice| {
        !choice
            .trim()
            .parse::<f64>()
            .is_ok_and(|value| param.contains(value))
    }) else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "parameter '{}' has the choice '{}', but textcnn takes {}: give numbers as choices \
         (choices = [32, 64]) or search it as type \"{}\"",
        param.name,
        super::limits::short(wrong),
        param.range(),
        if param.integer { "int" } else { "float" },
    )))
}

fn check_fixed(fixed: &BTreeMap<String, Value>) -> Result<()> {
    for (name, value) in fixed {
        let param = known(name, "fixed_params")?;
        if !value.as_f64().is_some_and(|v| param.contains(v)) {
            return Err(Error::InvalidArgument(format!(
                "fixed_params '{}' is {}, but textcnn takes {}",
                param.name,
                shown(value),
                param.range()
            )));
        }
    }
    Ok(())
}

fn shown(value: &Value) -> String {
    match value {
        Value::Categorical(text) => format!("'{}'", super::limits::short(text)),
        number => number.to_string(),
    }
}

#[cfg(test)]
mod tests;
