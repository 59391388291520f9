//! One epoch line of a command: a JSON object such as
//! `{"epoch": 3, "dev_accuracy": 0.81, "train_loss": 0.4}`, printed once an epoch.
//!
//! Lines that are not JSON objects, and JSON objects without an `epoch` key, are the command's
//! own output and are ignored. A line that means to be an epoch but is broken (no number for the
//! objective, an epoch that is not a positive integer, JSON cut short) is an error that names
//! what is wrong, so the trial fails with a reason instead of waiting for epochs that never come.

use serde_json::{Map, Value};

/// The longest line read; the rest of a longer line is read as another line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What one epoch line says.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLine {
    /// Epoch number, from 1.
    pub epoch: u32,
    /// The objective's value.
    pub value: f64,
    /// `train_loss` when given (0 otherwise).
    pub train_loss: f64,
    /// `train_accuracy` when given (0 otherwise).
    pub train_accuracy: f64,
}

fn shown(line: &str) -> String {
    const SHOWN_CHARS: usize = 200;
    match line.char_indices().nth(SHOWN_CHARS) {
        None => line.to_string(),
        Some((cut, _)) => format!("{}...", &line[..cut]),
    }
}

fn optional_number(object: &Map<String, Value>, key: &str, line: &str) -> Result<f64, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(value) => value
            .as_f64()
            .filter(|number| number.is_finite())
            .ok_or_else(|| format!("epoch line has a non-numeric '{key}': {}", shown(line))),
    }
}

/// Reads a line of the command's output: `Ok(None)` for a line that is not an epoch.
///
/// # Errors
/// A message naming what is wrong with a line that looks like an epoch but is not one.
pub fn parse(line: &str, metric: &str) -> Result<Option<EpochLine>, String> {
    let text = line.trim();
    if !text.starts_with('{') {
        return Ok(None);
    }
    let object: Map<String, Value> = match serde_json::from_str(text) {
        Ok(object) => object,
        Err(error) if text.contains("\"epoch\"") => {
            return Err(format!(
                "epoch line is not valid JSON ({error}): {}",
                shown(text)
            ));
        }
        Err(_) => return Ok(None),
    };
    let Some(epoch) = object.get("epoch") else {
        return Ok(None);
    };
    let epoch = epoch
        .as_u64()
        .and_then(|epoch| u32::try_from(epoch).ok())
        .filter(|epoch| *epoch >= 1)
        .ok_or_else(|| {
            format!(
                "epoch line has an 'epoch' that is not a positive integer: {}",
                shown(text)
            )
        })?;
    let value = object
        .get(metric)
        .and_then(Value::as_f64)
        .filter(|value| value.is_finite())
        .ok_or_else(|| {
            format!(
                "epoch line has no finite number for the metric '{metric}': {}",
                shown(text)
            )
        })?;
    Ok(Some(EpochLine {
        epoch,
        value,
        train_loss: optional_number(&object, "train_loss", text)?,
        train_accuracy: optional_number(&object, "train_accuracy", text)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_lines_are_read_and_other_output_is_not() {
        let line = r#"{"epoch": 3, "dev_accuracy": 0.81, "train_loss": 0.4}"#;
        let epoch = parse(line, "dev_accuracy")
            .expect("valid")
            .expect("an epoch");
        assert_eq!(
            epoch,
            EpochLine {
                epoch: 3,
                value: 0.81,
                train_loss: 0.4,
                train_accuracy: 0.0
            }
        );
        for other in [
            "loading data",
            "",
            "{not json",
            r#"{"step": 5, "loss": 1}"#,
            "[1, 2]",
        ] {
            assert_eq!(parse(other, "dev_accuracy"), Ok(None), "{other}");
        }
    }

    #[test]
    fn broken_epoch_lines_say_what_is_wrong() {
        let cases = [
            (
                r#"{"epoch": 1, "loss": 0.3}"#,
                "no finite number for the metric 'dev_accuracy'",
            ),
            (
                r#"{"epoch": 0, "dev_accuracy": 0.3}"#,
                "not a positive integer",
            ),
            (
                r#"{"epoch": "two", "dev_accuracy": 0.3}"#,
                "not a positive integer",
            ),
            (
                r#"{"epoch": 2, "dev_accuracy": "high"}"#,
                "no finite number",
            ),
            (
                r#"{"epoch": 2, "dev_accuracy": 0.5, "train_loss": "x"}"#,
                "'train_loss'",
            ),
            (r#"{"epoch": 2, "dev_accura"#, "not valid JSON"),
        ];
        for (line, words) in cases {
            let error = parse(line, "dev_accuracy").expect_err(line);
            assert!(error.contains(words), "{line}: {error}");
        }
    }
}
