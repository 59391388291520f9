//! Search spaces: integer, float (linear or log scale) and categorical parameters, their
//! validation, and the map between assignments and the unit cube `[0,1]^d` the GP works in.
//!
//! One coordinate per parameter. With `n` the number of values of an integer or categorical
//! parameter, value `i` (0-based) owns the bin `[i/n, (i+1)/n)` and encodes to its centre
//! `(i + 1/2)/n`, so uniform points in the cube pick every value equally often. A log-scaled
//! integer uses the bins of `[ln(low − ½), ln(high + ½)]` and rounds on decode. Floats map
//! linearly, or linearly in `ln v` when `log` is set. Decoding clamps to the cube first, so any
//! point decodes to a valid assignment.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The value of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// An integer parameter's value.
    Int(i64),
    /// A float parameter's value.
    Float(f64),
    /// A categorical parameter's value: one of its choices.
    Categorical(String),
}

impl Value {
    /// The value as a number (`None` for a categorical).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            Value::Categorical(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Categorical(v) => write!(f, "{v}"),
        }
    }
}

/// One point of a search space: a value for every parameter, by name.
pub type Assignment = BTreeMap<String, Value>;

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
/// `{"name":"opt","type":"categorical","choices":["a","b"]}`.
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
    choices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<Value>,
}

fn param_error(name: &str, reason: impl Into<String>) -> Error {
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
                ParamKind::Int {
                    low,
                    high,
                    log: raw.log.unwrap_or(false),
                }
            }
            RawKind::Float => {
                let (low, high) = numeric_bounds("float")?;
                ParamKind::Float {
                    low: low.as_f64(),
                    high: high.as_f64(),
                    log: raw.log.unwrap_or(false),
                }
            }
            RawKind::Categorical => {
                if raw.low.is_some() || raw.high.is_some() || raw.log.is_some() {
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
                ParamKind::Categorical { choices }
            }
        };
        Ok(ParamSpec {
            name,
            kind,
            default: raw.default,
        })
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
            ParamKind::Categorical { choices } => raw.choices = Some(choices),
        }
        raw
    }
}

impl ParamSpec {
    /// Checks the bounds, choices and default; the error names the parameter.
    pub fn check(&self) -> Result<()> {
        let name = &self.name;
        if name.is_empty() {
            return Err(param_error(name, "the name is empty"));
        }
        match &self.kind {
            ParamKind::Int { low, high, log } => {
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
    fn normalize(&self, value: &Value) -> std::result::Result<Value, String> {
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
            (ParamKind::Categorical { choices }, Value::Categorical(c)) if choices.contains(c) => {
                Ok(value.clone())
            }
            (ParamKind::Categorical { choices }, _) => {
                Err(format!("'{value}' is not one of {choices:?}"))
            }
        }
    }

    /// Maps a valid value to `[0, 1]` (see the module docs).
    fn encode_value(&self, value: &Value) -> f64 {
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
            (ParamKind::Categorical { choices }, Value::Categorical(c)) => {
                let index = choices.iter().position(|x| x == c).unwrap_or(0);
                (index as f64 + 0.5) / choices.len() as f64
            }
            _ => 0.5,
        }
    }

    /// Maps a coordinate (clamped to `[0, 1]`) to a valid value.
    fn decode_value(&self, x: f64) -> Value {
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
            ParamKind::Categorical { choices } => Some(choices.len() as u64),
        }
    }
}

/// A validated search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ParamSpec>", into = "Vec<ParamSpec>")]
pub struct Space {
    params: Vec<ParamSpec>,
}

impl TryFrom<Vec<ParamSpec>> for Space {
    type Error = Error;

    fn try_from(params: Vec<ParamSpec>) -> Result<Self> {
        Space::new(params)
    }
}

impl From<Space> for Vec<ParamSpec> {
    fn from(space: Space) -> Self {
        space.params
    }
}

impl Space {
    /// Validates the parameters and builds the space.
    ///
    /// # Errors
    /// `Error::InvalidParam` naming the first bad parameter (bounds, log scale, choices,
    /// default, duplicate name), or `Error::InvalidSpace` when there are no parameters.
    pub fn new(params: Vec<ParamSpec>) -> Result<Space> {
        if params.is_empty() {
            return Err(Error::InvalidSpace("the space has no parameters".into()));
        }
        let mut names = BTreeSet::new();
        let mut normalized = Vec::with_capacity(params.len());
        for mut spec in params {
            spec.check()?;
            if !names.insert(spec.name.clone()) {
                return Err(param_error(&spec.name, "the name appears twice"));
            }
            if let Some(default) = &spec.default {
                spec.default = Some(
                    spec.normalize(default)
                        .map_err(|r| param_error(&spec.name, r))?,
                );
            }
            normalized.push(spec);
        }
        Ok(Space { params: normalized })
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// The number of parameters (the dimension of the unit cube).
    pub fn dim(&self) -> usize {
        self.params.len()
    }

    /// Checks that `a` has exactly this space's parameters, each with a valid value.
    ///
    /// # Errors
    /// `Error::InvalidAssignment` naming the missing, unknown or invalid parameter.
    pub fn validate(&self, a: &Assignment) -> Result<()> {
        self.normalize(a).map(|_| ())
    }

    /// Validates `a` and returns it with each value in its parameter's canonical variant
    /// (an integral float for an int parameter becomes `Value::Int`, an int for a float
    /// parameter becomes `Value::Float`).
    ///
    /// # Errors
    /// As [`Space::validate`].
    pub fn normalize(&self, a: &Assignment) -> Result<Assignment> {
        if let Some(unknown) = a
            .keys()
            .find(|k| !self.params.iter().any(|p| &p.name == *k))
        {
            return Err(Error::InvalidAssignment(format!(
                "unknown parameter '{unknown}'"
            )));
        }
        let mut out = Assignment::new();
        for spec in &self.params {
            let Some(value) = a.get(&spec.name) else {
                return Err(Error::InvalidAssignment(format!(
                    "missing parameter '{}'",
                    spec.name
                )));
            };
            let value = spec
                .normalize(value)
                .map_err(|r| Error::InvalidAssignment(format!("parameter '{}': {r}", spec.name)))?;
            out.insert(spec.name.clone(), value);
        }
        Ok(out)
    }

    /// Maps an assignment to `[0,1]^d`.
    ///
    /// # Errors
    /// As [`Space::validate`].
    pub fn encode(&self, a: &Assignment) -> Result<Vec<f64>> {
        let a = self.normalize(a)?;
        Ok(self
            .params
            .iter()
            .map(|p| p.encode_value(&a[&p.name]))
            .collect())
    }

    /// Maps a point (clamped to the cube; NaN counts as ½) to a valid assignment.
    pub fn decode(&self, x: &[f64]) -> Assignment {
        debug_assert_eq!(
            x.len(),
            self.dim(),
            "decode takes a point of the space's dimension"
        );
        self.params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.name.clone(),
                    p.decode_value(x.get(i).copied().unwrap_or(0.5)),
                )
            })
            .collect()
    }

    /// Moves a point to the encoding of what it decodes to (bin centres for integers and
    /// categoricals), so the GP sees the point that is really evaluated.
    pub fn snap(&self, x: &[f64]) -> Vec<f64> {
        let a = self.decode(x);
        self.params
            .iter()
            .map(|p| p.encode_value(&a[&p.name]))
            .collect()
    }

    /// The default assignment, when every parameter has a default.
    pub fn default_assignment(&self) -> Option<Assignment> {
        self.params
            .iter()
            .map(|p| p.default.clone().map(|d| (p.name.clone(), d)))
            .collect()
    }

    /// The number of distinct assignments, `None` when a parameter is a float (or it overflows).
    pub fn cardinality(&self) -> Option<u64> {
        self.params
            .iter()
            .try_fold(1u64, |acc, p| acc.checked_mul(p.cardinality()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ParamSpec {
        serde_json::from_str(json).expect("test spec parses")
    }

    fn sample_space() -> Space {
        Space::new(vec![
            spec(
                r#"{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,"default":0.0005}"#,
            ),
            spec(r#"{"name":"n","type":"int","low":1,"high":8,"default":3}"#),
            spec(r#"{"name":"m","type":"int","low":1,"high":1000,"log":true,"default":10}"#),
            spec(r#"{"name":"p","type":"float","low":-1,"high":1,"default":0}"#),
            spec(r#"{"name":"opt","type":"categorical","choices":["adam","sgd"],"default":"sgd"}"#),
        ])
        .expect("sample space is valid")
    }

    #[test]
    fn parses_and_serializes_specs() {
        let s = spec(
            r#"{"name":"lr","type":"float","low":1e-8,"high":1.0,"log":true,"default":0.0005}"#,
        );
        assert_eq!(
            s.kind,
            ParamKind::Float {
                low: 1e-8,
                high: 1.0,
                log: true
            }
        );
        assert_eq!(s.default, Some(Value::Float(0.0005)));
        let back: ParamSpec =
            serde_json::from_str(&serde_json::to_string(&s).expect("serializes")).expect("parses");
        assert_eq!(back, s);
        let n = spec(r#"{"name":"n","type":"int","low":1,"high":8}"#);
        assert_eq!(
            n.kind,
            ParamKind::Int {
                low: 1,
                high: 8,
                log: false
            }
        );
        assert!(
            serde_json::from_str::<ParamSpec>(r#"{"name":"n","type":"int","low":1.5,"high":8}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<ParamSpec>(r#"{"name":"n","type":"int","low":1}"#).is_err());
        assert!(
            serde_json::from_str::<ParamSpec>(
                r#"{"name":"n","type":"int","low":1,"high":2,"bogus":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn invalid_spaces_name_the_parameter() {
        let cases = [
            r#"{"name":"a","type":"int","low":3,"high":3}"#,
            r#"{"name":"a","type":"float","low":1,"high":0.5}"#,
            r#"{"name":"a","type":"float","low":0,"high":1,"log":true}"#,
            r#"{"name":"a","type":"int","low":0,"high":4,"log":true}"#,
            r#"{"name":"a","type":"categorical","choices":[]}"#,
            r#"{"name":"a","type":"categorical","choices":["x","x"]}"#,
            r#"{"name":"a","type":"int","low":1,"high":4,"default":5}"#,
            r#"{"name":"a","type":"float","low":1,"high":4,"default":"x"}"#,
            r#"{"name":"a","type":"categorical","choices":["x"],"default":"y"}"#,
        ];
        for case in cases {
            let err = Space::new(vec![spec(case)]).expect_err(case);
            assert!(err.to_string().contains("'a'"), "{case}: {err}");
        }
        let nan = ParamSpec {
            name: "a".into(),
            kind: ParamKind::Float {
                low: f64::NAN,
                high: 1.0,
                log: false,
            },
            default: None,
        };
        assert!(
            Space::new(vec![nan])
                .expect_err("nan")
                .to_string()
                .contains("'a'")
        );
        let inf = ParamSpec {
            name: "a".into(),
            kind: ParamKind::Float {
                low: 0.0,
                high: f64::INFINITY,
                log: false,
            },
            default: None,
        };
        assert!(Space::new(vec![inf]).is_err());
        let dup = vec![
            spec(r#"{"name":"a","type":"int","low":1,"high":4}"#),
            spec(r#"{"name":"a","type":"int","low":1,"high":4}"#),
        ];
        assert!(
            Space::new(dup)
                .expect_err("dup")
                .to_string()
                .contains("'a'")
        );
        assert!(Space::new(vec![]).is_err());
    }

    #[test]
    fn defaults_encode_and_round_trip() {
        let space = sample_space();
        let default = space
            .default_assignment()
            .expect("all params have defaults");
        assert_eq!(default["p"], Value::Float(0.0));
        let x = space.encode(&default).expect("default encodes");
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        let back = space.decode(&x);
        assert_eq!(back["n"], Value::Int(3));
        assert_eq!(back["m"], Value::Int(10));
        assert_eq!(back["opt"], Value::Categorical("sgd".into()));
        let lr = back["lr"].as_f64().expect("float");
        assert!((lr - 0.0005).abs() < 1e-12);
    }

    #[test]
    fn every_integer_value_round_trips() {
        let space = sample_space();
        let mut a = space.default_assignment().expect("defaults");
        for m in 1..=1000 {
            a.insert("m".into(), Value::Int(m));
            let x = space.encode(&a).expect("encodes");
            assert_eq!(space.decode(&x)["m"], Value::Int(m));
        }
    }

    #[test]
    fn validate_rejects_bad_assignments() {
        let space = sample_space();
        let mut a = space.default_assignment().expect("defaults");
        a.insert("n".into(), Value::Int(9));
        assert!(space.validate(&a).is_err());
        a.insert("n".into(), Value::Float(2.0));
        assert_eq!(
            space.normalize(&a).expect("integral float is an int")["n"],
            Value::Int(2)
        );
        a.insert("zzz".into(), Value::Int(1));
        assert!(
            space
                .validate(&a)
                .expect_err("unknown")
                .to_string()
                .contains("zzz")
        );
    }

    #[test]
    fn decode_clamps_out_of_range_points() {
        let space = sample_space();
        let a = space.decode(&[-3.0, 7.0, f64::NAN, 2.0, 1.0]);
        space.validate(&a).expect("decoded points are valid");
        assert_eq!(a["n"], Value::Int(8));
        assert_eq!(a["opt"], Value::Categorical("sgd".into()));
    }
}
