//! Stepped parameters: the values `low, low + step, …, high` of an `int` or a `float` with a
//! `step` (Optuna's `step`, hyperopt's `quniform`). Each of the `count` values owns an equal
//! cell of the unit interval, as an integer's values do, so the optimizer's lattice search and
//! the grid treat the parameter as discrete and every suggestion is one of its values. A float's
//! values are rounded to the decimals of `low` and `step`, so `0.1 × 3` is `0.3`, not
//! `0.30000000000000004`.

use super::Value;
use super::param::MAX_ABS_BOUND;

/// The most values a stepped parameter may have: beyond it a cell of the unit interval is too
/// small for a coordinate to tell its neighbours apart.
pub const MAX_STEPS: u64 = 1_000_000_000_000;

/// How far off the lattice (in steps) a value may be and still count as on it.
const ON_LATTICE: f64 = 1e-6;

/// The lattice of a stepped parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// The smallest value.
    pub low: f64,
    /// The distance between neighbouring values (above 0; whole for an integer parameter).
    pub step: f64,
    /// The number of values (at least 2).
    pub count: u64,
    /// Whether the values are integers (`Value::Int`) rather than floats.
    pub integer: bool,
}

impl Steps {
    /// The steps from `low` up to at most `high` (`high` need not be on them, as in Optuna:
    /// the last value is the largest step at or below it).
    ///
    /// # Errors
    /// Why the steps are invalid, for the caller to name the parameter.
    pub fn new(low: f64, high: f64, step: f64, integer: bool) -> Result<Steps, String> {
        if !low.is_finite()
            || !high.is_finite()
            || low.abs() > MAX_ABS_BOUND
            || high.abs() > MAX_ABS_BOUND
        {
            return Err(format!(
                "bounds must be finite and within ±{MAX_ABS_BOUND:e} (got {low}, {high})"
            ));
        }
        if low >= high {
            return Err(format!("low ({low}) must be less than high ({high})"));
        }
        if !(step.is_finite() && step > 0.0) {
            return Err(format!("step must be a number above 0 (got {step})"));
        }
        if integer && (low.fract() != 0.0 || step.fract() != 0.0) {
            return Err(format!(
                "an int parameter's low and step must be whole numbers (got {low}, {step})"
            ));
        }
        let intervals = ((high - low) / step + ON_LATTICE).floor();
        if intervals < 1.0 {
            return Err(format!(
                "step {step} is wider than the range [{low}, {high}]: it leaves one value"
            ));
        }
        if intervals >= MAX_STEPS as f64 {
            return Err(format!(
                "step {step} makes more than {MAX_STEPS} values of [{low}, {high}]"
            ));
        }
        Ok(Steps {
            low,
            step,
            count: intervals as u64 + 1,
            integer,
        })
    }

    /// The largest value.
    pub fn high(&self) -> f64 {
        self.number(self.count - 1)
    }

    /// The `index`-th value as a number.
    fn number(&self, index: u64) -> f64 {
        let raw = self.low + index as f64 * self.step;
        if self.integer {
            return raw;
        }
        let decimals = decimals(self.low).max(decimals(self.step));
        let scale = 10f64.powi(decimals);
        let scaled = raw * scale;
        // Rounding is exact only while the scaled value is an integer an f64 holds exactly.
        if scaled.abs() < 9.0e15 {
            scaled.round() / scale
        } else {
            raw
        }
    }

    /// The `index`-th value.
    pub fn value(&self, index: u64) -> Value {
        let number = self.number(index.min(self.count - 1));
        if self.integer {
            Value::Int(number as i64)
        } else {
            Value::Float(number)
        }
    }

    /// The index of the value `number` is (within a millionth of a step), if it is one.
    fn index_of(&self, number: f64) -> Option<u64> {
        let at = (number - self.low) / self.step;
        let index = at.round();
        ((at - index).abs() <= ON_LATTICE && index >= 0.0 && index < self.count as f64)
            .then_some(index as u64)
    }

    /// The value `value` stands for, or why it is not one of the steps.
    pub(super) fn normalize(&self, value: &Value) -> Result<Value, String> {
        let Some(number) = value.as_f64() else {
            return Err(format!("'{value}' is not a number"));
        };
        if self.integer && number.fract() != 0.0 {
            return Err(format!("'{value}' is not an integer"));
        }
        match self.index_of(number) {
            Some(index) => Ok(self.value(index)),
            None if number < self.low || number > self.high() => Err(format!(
                "{number} is outside [{}, {}]",
                self.low,
                self.high()
            )),
            None => Err(format!(
                "{number} is not one of the steps of {} from {}",
                self.step, self.low
            )),
        }
    }

    /// The coordinate of a valid value: the middle of its cell.
    pub(super) fn encode(&self, value: &Value) -> f64 {
        let index = value.as_f64().and_then(|v| self.index_of(v)).unwrap_or(0);
        (index as f64 + 0.5) / self.count as f64
    }

    /// The value whose cell holds `x` (in `[0, 1]`).
    pub(super) fn decode(&self, x: f64) -> Value {
        let index = (x * self.count as f64).floor().max(0.0) as u64;
        self.value(index.min(self.count - 1))
    }
}

/// The digits after the decimal point in the shortest text of `number` (at most 15).
fn decimals(number: f64) -> i32 {
    let text = format!("{number}");
    let digits = text.split_once('.').map_or(0, |(_, after)| after.len());
    digits.min(15) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_land_on_their_decimals_and_the_last_step_fits_under_high() {
        let steps = Steps::new(0.0, 0.55, 0.1, false).expect("valid");
        assert_eq!(steps.count, 6);
        let values: Vec<Value> = (0..6).map(|k| steps.value(k)).collect();
        assert_eq!(values[3], Value::Float(0.3));
        assert_eq!(steps.high(), 0.5);
        for (k, value) in values.iter().enumerate() {
            let x = steps.encode(value);
            assert_eq!(&steps.decode(x), value, "step {k} round-trips");
            assert_eq!(steps.normalize(value).as_ref(), Ok(value));
        }
        assert_eq!(steps.decode(0.0), Value::Float(0.0));
        assert_eq!(steps.decode(1.0), Value::Float(0.5));
    }

    #[test]
    fn integers_step_exactly_and_off_lattice_values_are_named() {
        let steps = Steps::new(32.0, 256.0, 32.0, true).expect("valid");
        assert_eq!((steps.count, steps.high()), (8, 256.0));
        assert_eq!(steps.normalize(&Value::Float(64.0)), Ok(Value::Int(64)));
        let off = steps
            .normalize(&Value::Int(48))
            .expect_err("off the lattice");
        assert!(off.contains("not one of the steps of 32 from 32"), "{off}");
        let out = steps.normalize(&Value::Int(288)).expect_err("past high");
        assert!(out.contains("outside [32, 256]"), "{out}");
        assert!(steps.normalize(&Value::Float(64.5)).is_err());
    }

    #[test]
    fn invalid_steps_say_why() {
        for (low, high, step, integer, needle) in [
            (0.0, 1.0, 0.0, false, "above 0"),
            (0.0, 1.0, f64::NAN, false, "above 0"),
            (0.0, 1.0, 2.0, false, "wider than the range"),
            (1.0, 0.0, 0.1, false, "less than high"),
            (0.0, 10.0, 2.5, true, "whole numbers"),
            (0.0, 1.0, 1e-13, false, "more than"),
        ] {
            let error = Steps::new(low, high, step, integer).expect_err(needle);
            assert!(error.contains(needle), "{error}");
        }
    }
}
