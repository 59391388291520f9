//! Categorical choices as a spec writes them and as clients send them: a TOML or JSON spec may
//! give a choice as a number or a boolean, which stands for its text (`choices = [16, 32]` are
//! "16" and "32"), and a result or configuration may give a number for the choice whose text
//! reads as it. Inside the tuner a choice is always its text.

use serde::{Deserialize, Serialize};

use super::Value;

/// A categorical choice as written: text, or a number or boolean that stands for its text
/// (`choices = [16, 32]` in TOML means the choices "16" and "32").
#[derive(Clone, Serialize)]
#[serde(untagged)]
pub(super) enum RawChoice {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl RawChoice {
    /// The choice's text: an integer in decimal, a float as Rust's `Debug` writes it (the
    /// shortest text that reads back as the same number; `1e-5`, not `0.00001`), a boolean as
    /// `true` or `false`.
    pub(super) fn into_text(self) -> String {
        match self {
            RawChoice::Text(text) => text,
            RawChoice::Int(v) => v.to_string(),
            RawChoice::Float(v) => format!("{v:?}"),
            RawChoice::Bool(v) => v.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for RawChoice {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl serde::de::Visitor<'_> for ChoiceVisitor {
            type Value = RawChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a choice: a string, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RawChoice, E> {
                Ok(RawChoice::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                v: String,
            ) -> std::result::Result<RawChoice, E> {
                Ok(RawChoice::Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<RawChoice, E> {
                Ok(RawChoice::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<RawChoice, E> {
                i64::try_from(v)
                    .map(RawChoice::Int)
                    .map_err(|_| E::custom(format!("choice {v} is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<RawChoice, E> {
                Ok(RawChoice::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<RawChoice, E> {
                Ok(RawChoice::Bool(v))
            }
        }
        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// The choice a number stands for: the one whose text reads as the same number (`32` is "32",
/// `1e-5` is "1e-05" or "0.00001"), so clients that send a numeric choice as a number are
/// understood. Refused when no choice, or more than one ("1.5" and "1.50"), reads as it.
pub(super) fn numeric_choice(
    choices: &[String],
    value: &Value,
) -> std::result::Result<Value, String> {
    let number = value.as_f64().unwrap_or(f64::NAN);
    let mut matching = choices
        .iter()
        .filter(|choice| choice.trim().parse::<f64>().ok() == Some(number));
    match (matching.next(), matching.next()) {
        (Some(choice), None) => Ok(Value::Categorical(choice.clone())),
        (Some(first), Some(second)) => Err(format!(
            "{value} reads as more than one choice ('{first}' and '{second}'): send the choice's text"
        )),
        (None, _) => Err(format!("'{value}' is not one of {choices:?}")),
    }
}
