//! One parameter of a search space: its kind and range, its validation (including the raw
//! serde form that `TryFrom` checks), and how one value maps to and from its coordinate of the
//! unit cube (see the parent module for the encoding).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Value;
use super::choice_text::{RawChoice, numeric_choice};
use super::stepped::Steps;
use crate::error::{Error, Result};

/// The type and range of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// An integer in `[low, high]` (both inclusive).
    Int {
        /// Smallest value.
        low: i64,
        /// Largest value.
        high: i64,
        /// Search in `ln v` (requires `low >= 1`).
        log: bool,
    },
    /// A float in `[low, high]`.
    Float {
        /// Smallest value.
        low: f64,
        /// Largest value.
        high: f64,
        /// Search in `ln v` (requires `low > 0`).
        log: bool,
    },
    /// An `int` or a `float` searched only on its steps (`low, low + step, …`; a spec's `step`).
    Stepped(Steps),
    /// One of a list of strings.
    Categorical {
        /// The choices, in order.
        choices: Vec<String>,
    },
}

/// A named parameter with an optional default value.
///
/// (De)serializes as `{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,
/// "default":0.0005}`, `{"name":"n","type":"int","low":1,"high":8}` or
/// `{"name":"opt","type":"categorical","choices":["a","b"]}`; a `"step"` makes an int or a
/// float [`ParamKind::Stepped`] (`{"name":"units","type":"int","low":32,"high":256,"step":32}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawParamSpec", into = "RawParamSpec")]
pub struct ParamSpec {
    /// The parameter's name (unique in its space).
    pub name: String,
    /// Its type and range.
    pub kind: ParamKind,
    /// The value to try first (the study's default configuration).
    pub default: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    Int,
    Float,
    Categorical,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
enum RawNumber {
    Int(i64),
    Float(f64),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamSpec {
    name: String,
    #[serde(rename = "type")]
    kind: RawKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    low: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    choices: Option<Vec<RawChoice>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<Value>,
}

pub(super) fn param_error(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParam {
        name: name.to_string(),
        reason: reason.into(),
    }
}

impl TryFrom<RawParamSpec> for ParamSpec {
    type Error = Error;

    fn try_from(raw: RawParamSpec) -> Result<Self> {
        let name = raw.name;
        let numeric_bounds = |what: &str| -> Result<(RawNumber, RawNumber)> {
            if raw.choices.is_some() {
                return Err(param_error(
                    &name,
                    format!("a {what} parameter takes no 'choices'"),
                ));
            }
            match (raw.low, raw.high) {
                (Some(low), Some(high)) => Ok((low, high)),
                _ => Err(param_error(
                    &name,
                    format!("a {what} parameter needs 'low' and 'high'"),
                )),
            }
        };
        let kind = match raw.kind {
            RawKind::Int => {
                let (low, high) = numeric_bounds("int")?;
                let (RawNumber::Int(low), RawNumber::Int(high)) = (low, high) else {
                    return Err(param_error(&name, "int bounds must be integers"));
                };
                let step = match raw.step {
                    None => None,
                    Some(RawNumber::Int(step)) => Some(step),
                    Some(RawNumber::Float(_)) => {
                        return Err(param_error(
                            &name,
                            "an int parameter's step must be a whole number",
                        ));
                    }
                };
                ParamKind::int(low, high, raw.log.unwrap_or(false), step)
                    .map_err(|reason| param_error(&name, reason))?
            }
            RawKind::Float => {
                let (low, high) = numeric_bounds("float")?;
                ParamKind::float(
                    low.as_f64(),
                    high.as_f64(),
                    raw.log.unwrap_or(false),
                    raw.step.map(RawNumber::as_f64),
                )
                .map_err(|reason| param_error(&name, reason))?
            }
            RawKind::Categorical => {
                if raw.low.is_some()
                    || raw.high.is_some()
                    || raw.log.is_some()
                    || raw.step.is_some()
                {
                    return Err(param_error(
                        &name,
                        "a categorical parameter takes only 'choices'",
                    ));
                }
                let Some(choices) = raw.choices else {
                    return Err(param_error(
                        &name,
                        "a categorical parameter needs 'choices'",
                    ));
                };
                ParamKind::Categorical {
                    choices: choices.into_iter().map(RawChoice::into_text).collect(),
                }
            }
        };
        Ok(ParamSpec {
            name,
            kind,
            default: raw.default,
        })
    }
}

impl ParamKind {
    /// An `int` parameter: every integer of `[low, high]`, or with a `step` (other than 1) only
    /// `low, low + step, …` up to `high`.
    ///
    /// # Errors
    /// Why a stepped one is invalid, for the caller to name the parameter (see
    /// [`ParamKind::stepped`]).
    pub fn int(
        low: i64,
        high: i64,
        log: bool,
        step: Option<i64>,
    ) -> std::result::Result<ParamKind, String> {
        match step {
            None | Some(1) => Ok(ParamKind::Int { low, high, log }),
            Some(step) => ParamKind::stepped(low as f64, high as f64, step as f64, true, log),
        }
    }

    /// A `float` parameter: all of `[low, high]`, or with a `step` only its steps.
    ///
    /// # Errors
    /// As [`ParamKind::int`].
    pub fn float(
        low: f64,
        high: f64,
        log: bool,
        step: Option<f64>,
    ) -> std::result::Result<ParamKind, String> {
        match step {
            None => Ok(ParamKind::Float { low, high, log }),
            Some(step) => ParamKind::stepped(low, high, step, false, log),
        }
    }

    /// An `int` (`integer`) or `float` parameter searched only on `low, low + step, …` up to
    /// `high`, as a spec's `step` asks.
    ///
    /// # Errors
    /// Why not, for the caller to name the parameter: a log scale has no even steps, and
    /// [`Steps::new`]'s reasons.
    pub fn stepped(
        low: f64,
        high: f64,
        step: f64,
        integer: bool,
        log: bool,
    ) -> std::result::Result<ParamKind, String> {
        if log {
            return Err("a parameter with a step cannot be log-scaled".to_string());
        }
        Steps::new(low, high, step, integer).map(ParamKind::Stepped)
    }
}

impl RawNumber {
    fn as_f64(self) -> f64 {
        match self {
            RawNumber::Int(v) => v as f64,
            RawNumber::Float(v) => v,
        }
    }
}

impl From<ParamSpec> for RawParamSpec {
    fn from(spec: ParamSpec) -> Self {
        let mut raw = RawParamSpec {
            name: spec.name,
            kind: RawKind::Categorical,
            low: None,
            high: None,
            log: None,
            step: None,
            choices: None,
            default: spec.default,
        };
        match spec.kind {
            ParamKind::Int { low, high, log } => {
                raw.kind = RawKind::Int;
                (raw.low, raw.high, raw.log) = (
                    Some(RawNumber::Int(low)),
                    Some(RawNumber::Int(high)),
                    Some(log),
                );
            }
            ParamKind::Float { low, high, log } => {
                raw.kind = RawKind::Float;
                (raw.low, raw.high, raw.log) = (
                    Some(RawNumber::Float(low)),
                    Some(RawNumber::Float(high)),
                    Some(log),
                );
            }
            ParamKind::Stepped(steps) if steps.integer => {
                raw.kind = RawKind::Int;
                (raw.low, raw.high, raw.step) = (
                    Some(RawNumber::Int(steps.low as i64)),
                    Some(RawNumber::Int(steps.high() as i64)),
                    Some(RawNumber::Int(steps.step as i64)),
                );
            }
            ParamKind::Stepped(steps) => {
                raw.kind = RawKind::Float;
                (raw.low, raw.high, raw.step) = (
                    Some(RawNumber::Float(steps.low)),
                    Some(RawNumber::Float(steps.high())),
                    Some(RawNumber::Float(steps.step)),
                );
            }
            ParamKind::Categorical { choices } => {
                raw.choices = Some(choices.into_iter().map(RawChoice::Text).collect());
            }
        }
        raw
    }
}

/// The largest magnitude a numeric bound may have. Beyond it `high − low` loses the precision
/// (or, near `f64::MAX`, overflows to infinity) that encoding to the unit interval needs, and the
/// space collapses.
pub const MAX_ABS_BOUND: f64 = 1e15;

impl ParamSpec {
    /// Checks the bounds, choices and default; the error names the parameter.
    pub fn check(&self) -> Result<()> {
        let name = &self.name;
        if name.is_empty() {
            return Err(param_error(name, "the name is empty"));
        }
        match &self.kind {
            ParamKind::Int { low, high, log } => {
                if low.unsigned_abs() > MAX_ABS_BOUND as u64
                    || high.unsigned_abs() > MAX_ABS_BOUND as u64
                {
                    return Err(param_error(
                        name,
                        format!("bounds must be within ±{MAX_ABS_BOUND:e} (got {low}, {high})"),
                    ));
                }
                if low >= high {
                    return Err(param_error(
                        name,
                        format!("low ({low}) must be less than high ({high})"),
                    ));
                }
                if *log && *low <= 0 {
                    return Err(param_error(
                        name,
                        format!("a log-scaled parameter needs low > 0 (got {low})"),
                    ));
                }
            }
            ParamKind::Float { low, high, log } => {
                if !low.is_finite() || !high.is_finite() {
                    return Err(param_error(
                        name,
                        format!("bounds must be finite (got {low}, {high})"),
                    ));
                }
                if low.abs() > MAX_ABS_BOUND || high.abs() > MAX_ABS_BOUND {
                    return Err(param_error(
                        name,
                        format!("bounds must be within ±{MAX_ABS_BOUND:e} (got {low:e}, {high:e})"),
                    ));
                }
                if low >= high {
                    return Err(param_error(
                        name,
                        format!("low ({low}) must be less than high ({high})"),
                    ));
                }
                if *log && *low <= 0.0 {
                    return Err(param_error(
                        name,
                        format!("a log-scaled parameter needs low > 0 (got {low})"),
                    ));
                }
            }
            ParamKind::Stepped(steps) => {
                // Built directly (not parsed), the fields must still be a valid lattice.
                let valid = Steps::new(steps.low, steps.high(), steps.step, steps.integer)
                    .map_err(|reason| param_error(name, reason))?;
                if valid.count != steps.count {
                    return Err(param_error(
                        name,
                        format!("{} steps do not fit its bounds", steps.count),
                    ));
                }
            }
            ParamKind::Categorical { choices } => {
                if choices.is_empty() {
                    return Err(param_error(name, "choices are empty"));
                }
                let mut seen = BTreeSet::new();
                for choice in choices {
                    if !seen.insert(choice) {
                        return Err(param_error(
                            name,
                            format!("choice '{choice}' appears twice"),
                        ));
                    }
                }
            }
        }
        if let Some(default) = &self.default {
            self.normalize(default)
                .map_err(|reason| param_error(name, format!("default {reason}")))?;
        }
        Ok(())
    }

    /// Returns the value in this parameter's canonical variant, or why it does not fit.
    pub(super) fn normalize(&self, value: &Value) -> std::result::Result<Value, String> {
        match (&self.kind, value) {
            (ParamKind::Int { low, high, .. }, _) => {
                let v = match value {
                    Value::Int(v) => *v,
                    Value::Float(f) if f.fract() == 0.0 && f.is_finite() => *f as i64,
                    _ => return Err(format!("'{value}' is not an integer")),
                };
                if v < *low || v > *high {
                    return Err(format!("{v} is outside [{low}, {high}]"));
                }
                Ok(Value::Int(v))
            }
            (ParamKind::Float { low, high, .. }, _) => {
                let Some(v) = value.as_f64() else {
                    return Err(format!("'{value}' is not a number"));
                };
                if !(v >= *low && v <= *high) {
                    return Err(format!("{v} is outside [{low}, {high}]"));
                }
                Ok(Value::Float(v))
            }
            (ParamKind::Stepped(steps), _) => steps.normalize(value),
            (ParamKind::Categorical { choices }, Value::Categorical(c)) if choices.contains(c) => {
                Ok(value.clone())
            }
            (ParamKind::Categorical { choices }, Value::Int(_) | Value::Float(_)) => {
                numeric_choice(choices, value)
            }
            (ParamKind::Categorical { choices }, _) => {
                Err(format!("'{value}' is not one of {choices:?}"))
            }
        }
    }

    /// Maps a valid value to `[0, 1]` (see the module docs).
    pub(crate) fn encode_value(&self, value: &Value) -> f64 {
        match (&self.kind, value) {
            (
                ParamKind::Int {
                    low,
                    high,
                    log: false,
                },
                Value::Int(v),
            ) => {
                let count = (*high - *low) as f64 + 1.0;
                ((*v - *low) as f64 + 0.5) / count
            }
            (
                ParamKind::Int {
                    low,
                    high,
                    log: true,
                },
                Value::Int(v),
            ) => {
                let (lo, hi) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
                ((*v as f64).ln() - lo) / (hi - lo)
            }
            (
                ParamKind::Float {
                    low,
                    high,
                    log: false,
                },
                Value::Float(v),
            ) => (v - low) / (high - low),
            (
                ParamKind::Float {
                    low,
                    high,
                    log: true,
                },
                Value::Float(v),
            ) => (v.ln() - low.ln()) / (high.ln() - low.ln()),
            (ParamKind::Stepped(steps), value) => steps.encode(value),
            (ParamKind::Categorical { choices }, Value::Categorical(c)) => {
                let index = choices.iter().position(|x| x == c).unwrap_or(0);
                (index as f64 + 0.5) / choices.len() as f64
            }
            _ => 0.5,
        }
    }

    /// Maps a coordinate (clamped to `[0, 1]`) to a valid value.
    pub(crate) fn decode_value(&self, x: f64) -> Value {
        let x = if x.is_nan() { 0.5 } else { x.clamp(0.0, 1.0) };
        match &self.kind {
            ParamKind::Int {
                low,
                high,
                log: false,
            } => {
                let count = (*high - *low) as f64 + 1.0;
                let index = ((x * count).floor() as i64).clamp(0, high - low);
                Value::Int(low + index)
            }
            ParamKind::Int {
                low,
                high,
                log: true,
            } => {
                let (lo, hi) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
                Value::Int(((lo + x * (hi - lo)).exp().round() as i64).clamp(*low, *high))
            }
            ParamKind::Float {
                low,
                high,
                log: false,
            } => Value::Float((low + x * (high - low)).clamp(*low, *high)),
            ParamKind::Float {
                low,
                high,
                log: true,
            } => {
                let v = (low.ln() + x * (high.ln() - low.ln())).exp();
                Value::Float(v.clamp(*low, *high))
            }
            ParamKind::Stepped(steps) => steps.decode(x),
            ParamKind::Categorical { choices } => {
                let index = ((x * choices.len() as f64).floor() as usize).min(choices.len() - 1);
                Value::Categorical(choices[index].clone())
            }
        }
    }

    /// The number of distinct values, `None` for a float.
    pub fn cardinality(&self) -> Option<u64> {
        match &self.kind {
            ParamKind::Int { low, high, .. } => Some(high.abs_diff(*low).saturating_add(1)),
            ParamKind::Float { .. } => None,
            ParamKind::Stepped(steps) => Some(steps.count),
            ParamKind::Categorical { choices } => Some(choices.len() as u64),
        }
    }
}
