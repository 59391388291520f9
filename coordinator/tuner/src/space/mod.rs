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

mod choice_text;
mod param;
mod stepped;

use param::param_error;
pub use param::{MAX_ABS_BOUND, ParamKind, ParamSpec};
pub use stepped::{MAX_STEPS, Steps};

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
    /// `dim` float parameters `x0`, `x1`, … on `[0, 1]`, linear: the unit cube the GP works in,
    /// for benchmarks and tests of the optimizer itself.
    ///
    /// # Errors
    /// `Error::InvalidSpace` when `dim` is 0.
    pub fn unit_cube(dim: usize) -> Result<Space> {
        let params = (0..dim)
            .map(|i| ParamSpec {
                name: format!("x{i}"),
                kind: ParamKind::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
                default: None,
            })
            .collect();
        Space::new(params)
    }

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
    /// parameter becomes `Value::Float`, a number for a categorical becomes the choice whose
    /// text reads as it).
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

    /// The number of choices of each parameter that is categorical, 0 for a numeric one (the
    /// kernel's overlap dimensions, [`crate::kernel::Matern52::with_categories`]).
    pub fn categories(&self) -> Vec<usize> {
        self.params
            .iter()
            .map(|p| match &p.kind {
                ParamKind::Categorical { choices } => choices.len(),
                _ => 0,
            })
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
mod tests;
