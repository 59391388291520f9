//! Hyperparameters of the text CNN and their validation.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One configuration of the model and its training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperParams {
    /// Embedding width.
    pub embed_dim: usize,
    /// RMSProp learning rate (halved after epochs 50 and 100).
    pub learning_rate: f64,
    /// Sentences a step.
    pub batch_size: usize,
    /// Global-norm clipping threshold (0 disables clipping).
    pub max_grad_norm: f64,
    /// Passes over the training set.
    pub epochs: usize,
    /// Dropout probability before the classifier.
    pub dropout: f64,
    /// Widths of the three convolution branches, in tokens.
    pub filter_sizes: [usize; 3],
    /// Feature maps of each branch.
    pub num_feature_maps: usize,
    /// Use centered RMSProp instead of the plain form.
    pub centered_rmsprop: bool,
}

/// Upper bounds that keep a bad trial from exhausting memory.
const MAX_EMBED_DIM: f64 = 4096.0;
const MAX_BATCH: f64 = 4096.0;
const MAX_EPOCHS: f64 = 100_000.0;
const MAX_FILTER: f64 = 64.0;
const MAX_MAPS: f64 = 4096.0;

impl HyperParams {
    /// The study's defaults: 300, 0.0005, 50, 5, 50 epochs, dropout 0.5, [3, 4, 5], 100 maps.
    pub fn study_default() -> Self {
        Self {
            embed_dim: 300,
            learning_rate: 0.0005,
            batch_size: 50,
            max_grad_norm: 5.0,
            epochs: 50,
            dropout: 0.5,
            filter_sizes: [3, 4, 5],
            num_feature_maps: 100,
            centered_rmsprop: false,
        }
    }

    /// Parses `name=value` pairs over `self`. Names: embed_dim, learning_rate, batch_size,
    /// max_grad_norm, epochs, dropout, filter_size_1, filter_size_2, filter_size_3,
    /// num_feature_maps, centered_rmsprop (0 or 1).
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming an unknown parameter, a non-integer value for an integer
    /// parameter, or a value out of range.
    pub fn with_overrides<'a>(
        mut self,
        pairs: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<Self> {
        for (name, value) in pairs {
            match name {
                "embed_dim" => self.embed_dim = integer(name, value, 1.0, MAX_EMBED_DIM)?,
                "learning_rate" => self.learning_rate = real(name, value, f64::MIN_POSITIVE, 10.0)?,
                "batch_size" => self.batch_size = integer(name, value, 1.0, MAX_BATCH)?,
                "max_grad_norm" => self.max_grad_norm = real(name, value, 0.0, 1e6)?,
                "epochs" => self.epochs = integer(name, value, 1.0, MAX_EPOCHS)?,
                "dropout" => {
                    self.dropout = real(name, value, 0.0, 0.99)?;
                }
                "filter_size_1" => self.filter_sizes[0] = integer(name, value, 1.0, MAX_FILTER)?,
                "filter_size_2" => self.filter_sizes[1] = integer(name, value, 1.0, MAX_FILTER)?,
                "filter_size_3" => self.filter_sizes[2] = integer(name, value, 1.0, MAX_FILTER)?,
                "num_feature_maps" => self.num_feature_maps = integer(name, value, 1.0, MAX_MAPS)?,
                "centered_rmsprop" => self.centered_rmsprop = integer(name, value, 0.0, 1.0)? == 1,
                _ => {
                    return Err(Error::InvalidParam {
                        name: name.to_owned(),
                        reason: "unknown parameter (known: embed_dim, learning_rate, batch_size, \
                                 max_grad_norm, epochs, dropout, filter_size_1, filter_size_2, \
                                 filter_size_3, num_feature_maps, centered_rmsprop)"
                            .to_owned(),
                    });
                }
            }
        }
        Ok(self)
    }

    /// Parses `name=value,name=value` (the `--params` syntax) over `self`.
    ///
    /// # Errors
    /// As [`HyperParams::with_overrides`], plus a pair without `=` or a value that is not a
    /// number.
    pub fn with_override_str(self, text: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| Error::InvalidParam {
                name: item.to_owned(),
                reason: "expected name=value".to_owned(),
            })?;
            let value: f64 = value.trim().parse().map_err(|_| Error::InvalidParam {
                name: name.trim().to_owned(),
                reason: format!("'{}' is not a number", value.trim()),
            })?;
            pairs.push((name.trim(), value));
        }
        self.with_overrides(pairs)
    }

    /// The widest filter, which the padded sentence length must reach.
    pub fn max_filter_size(&self) -> usize {
        self.filter_sizes.iter().copied().max().unwrap_or(1)
    }
}

fn out_of_range(name: &str, value: f64, low: f64, high: f64) -> Error {
    Error::InvalidParam {
        name: name.to_owned(),
        reason: format!("{value} is outside [{low}, {high}]"),
    }
}

fn real(name: &str, value: f64, low: f64, high: f64) -> Result<f64> {
    if value.is_finite() && (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range(name, value, low, high))
    }
}

fn integer(name: &str, value: f64, low: f64, high: f64) -> Result<usize> {
    let rounded = value.round();
    if (value - rounded).abs() > 1e-9 {
        return Err(Error::InvalidParam {
            name: name.to_owned(),
            reason: format!("{value} is not an integer"),
        });
    }
    Ok(real(name, rounded, low, high)? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_name_the_parameter() {
        let hp = HyperParams::study_default()
            .with_override_str("embed_dim=100, learning_rate=0.001,filter_size_3=7")
            .unwrap();
        assert_eq!(
            (hp.embed_dim, hp.learning_rate, hp.filter_sizes),
            (100, 0.001, [3, 4, 7])
        );
        for (text, name) in [
            ("embed_dim=0", "embed_dim"),
            ("batch_size=2.5", "batch_size"),
            ("dropout=1", "dropout"),
            ("learning_rate=-1", "learning_rate"),
            ("colour=3", "colour"),
            ("epochs=x", "epochs"),
        ] {
            let err = HyperParams::study_default()
                .with_override_str(text)
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidParam { name: n, .. } if n == name),
                "{text}: {err}"
            );
        }
    }
}

#[cfg(test)]
mod reference_tests {
    //! `docs/reference.md`'s textcnn table against the code: the same parameters, each with the
    //! default of [`HyperParams::study_default`] and the upper bound the parser enforces.
    use super::*;

    const PAGE: &str = include_str!("../../../docs/reference.md");

    /// The parameters the parser knows, from its own refusal of an unknown one.
    fn known() -> Vec<String> {
        let error = HyperParams::study_default()
            .with_overrides([("no_such_parameter", 1.0)])
            .expect_err("an unknown parameter is refused");
        let message = error.to_string();
        let list = message
            .split("known: ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("the refusal lists the parameters: {message}"));
        list.split(',').map(|n| n.trim().to_owned()).collect()
    }

    /// The default of one parameter as `study_default` has it.
    fn default_of(name: &str) -> f64 {
        let hp = HyperParams::study_default();
        match name {
            "embed_dim" => hp.embed_dim as f64,
            "learning_rate" => hp.learning_rate,
            "batch_size" => hp.batch_size as f64,
            "max_grad_norm" => hp.max_grad_norm,
            "epochs" => hp.epochs as f64,
            "dropout" => hp.dropout,
            "filter_size_1" => hp.filter_sizes[0] as f64,
            "filter_size_2" => hp.filter_sizes[1] as f64,
            "filter_size_3" => hp.filter_sizes[2] as f64,
            "num_feature_maps" => hp.num_feature_maps as f64,
            "centered_rmsprop" => f64::from(u8::from(hp.centered_rmsprop)),
            other => panic!("a parameter this test does not know: {other}"),
        }
    }

    /// The largest value the parser accepts, from its refusal of a huge one.
    fn upper_bound(name: &str) -> f64 {
        let error = HyperParams::study_default()
            .with_overrides([(name, 1e300)])
            .expect_err("a huge value is refused");
        let message = error.to_string();
        let high = message
            .rsplit(", ")
            .next()
            .and_then(|tail| tail.split(']').next())
            .unwrap_or_else(|| panic!("the refusal names the range: {message}"));
        high.parse()
            .unwrap_or_else(|_| panic!("'{high}' in: {message}"))
    }

    fn page_rows() -> Vec<(String, String, String)> {
        let section = PAGE
            .split("\n## textcnn parameters")
            .nth(1)
            .expect("the page has a textcnn section");
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[2].to_owned(),
                    cells[3].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_reference_page_has_every_parameter_its_default_and_its_bound() {
        let rows = page_rows();
        let documented: Vec<&String> = rows.iter().map(|(name, _, _)| name).collect();
        let known = known();
        assert_eq!(
            documented,
            known.iter().collect::<Vec<_>>(),
            "same parameters, same order"
        );
        for (name, default, range) in &rows {
            let page_default: f64 = default
                .parse()
                .unwrap_or_else(|_| panic!("{name}: default '{default}' is not a number"));
            assert_eq!(page_default, default_of(name), "{name}: default");
            let high = upper_bound(name);
            let high_text = high.to_string();
            assert!(
                range.contains(&high_text),
                "{name}: the range '{range}' does not name the bound {high_text}"
            );
        }
    }
}
