//! `tunectl import EXPERIMENT FILE`: warm start from results obtained elsewhere.
//!
//! The file is CSV with a header (what `tunectl trials --format csv` writes), a JSON array (what
//! `tunectl trials --format json` writes) or JSON lines (one object a trial). A row's parameters
//! are the columns (or keys, or the keys of its `params` object) named like the experiment's
//! parameters (`param.NAME` too, as `tunectl trials` writes a parameter named like one of its
//! fixed columns); other columns are ignored. A row with a `state` other than succeeded or
//! early_stopped, or without a `value`, is not a result and is skipped (counted in the summary).
//!
//! With `--enqueue` the rows' configurations are queued to run first instead (their values, if
//! any, are ignored). Either way the coordinator checks every trial against the experiment's
//! space, all or nothing, and its error names the trial; this module adds the file's line.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use proto::v1 as pb;
use serde_json::Value as Json;

use super::{Client, get_experiment, status_error};

/// Trials sent in one request.
const CHUNK: usize = 1000;

/// One row of the file, parsed against the experiment's space.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Line of the file it came from (1-based), for messages.
    pub line: usize,
    /// The parameters.
    pub params: HashMap<String, pb::ParameterValue>,
    /// The objective, when the row is a result.
    pub value: Option<f64>,
    /// Its epochs (JSON only).
    pub epochs: Vec<pb::EpochReport>,
}

/// What a file held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// Rows with their parameters.
    pub rows: Vec<Row>,
    /// Rows skipped because their state says they are not results.
    pub skipped_state: usize,
}

/// The experiment's parameters: name and kind.
type Params<'a> = &'a [pb::ParameterSpec];

fn kind_of(spec: &pb::ParameterSpec) -> &'static str {
    use pb::parameter_spec::Kind;
    match spec.kind {
        Some(Kind::Int(_)) => "int",
        Some(Kind::Float(_)) => "float",
        Some(Kind::Categorical(_)) => "categorical",
        None => "unknown",
    }
}

/// A CSV cell or JSON scalar as the parameter's kind.
fn typed(spec: &pb::ParameterSpec, text: &str) -> anyhow::Result<pb::ParameterValue> {
    use pb::parameter_value::Kind;
    let kind = match kind_of(spec) {
        "int" => {
            let number: f64 = text
                .trim()
                .parse()
                .with_context(|| format!("'{}' is not a number", text.trim()))?;
            if number.fract() != 0.0 || !number.is_finite() {
                bail!("'{}' is not an integer", text.trim());
            }
            // An integral float within i64 converts exactly.
            Kind::IntValue(number as i64)
        }
        "float" => Kind::FloatValue(
            text.trim()
                .parse()
                .with_context(|| format!("'{}' is not a number", text.trim()))?,
        ),
        _ => Kind::CategoricalValue(text.to_owned()),
    };
    Ok(pb::ParameterValue { kind: Some(kind) })
}

fn json_scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a row's `state` makes it a result.
fn is_result_state(state: &str) -> bool {
    matches!(
        state.trim().to_ascii_lowercase().as_str(),
        "" | "succeeded" | "early_stopped" | "early-stopped" | "completed"
    )
}

/// Parses a file's text (CSV, a JSON array or JSON lines) against the experiment's parameters.
///
/// # Errors
/// A line that cannot be read, or a parameter missing or of the wrong kind, naming the line.
pub fn parse(text: &str, params: Params<'_>) -> anyhow::Result<Parsed> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let rows: Vec<Json> =
            serde_json::from_str(text).context("the file is not a valid JSON array")?;
        let mut parsed = Parsed::default();
        for (index, row) in rows.iter().enumerate() {
            push_json(&mut parsed, index + 1, row, params)
                .with_context(|| format!("element {} of the JSON array", index + 1))?;
        }
        Ok(parsed)
    } else if trimmed.starts_with('{') {
        let mut parsed = Parsed::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Json = serde_json::from_str(line)
                .with_context(|| format!("line {}: not a JSON object", index + 1))?;
            push_json(&mut parsed, index + 1, &row, params)
                .with_context(|| format!("line {}", index + 1))?;
        }
        Ok(parsed)
    } else {
        parse_csv(text, params)
    }
}

fn push_json(
    parsed: &mut Parsed,
    line: usize,
    row: &Json,
    params: Params<'_>,
) -> anyhow::Result<()> {
    let object = row.as_object().context("not a JSON object")?;
    if let Some(state) = object.get("state").and_then(Json::as_str)
        && !is_result_state(state)
    {
        parsed.skipped_state += 1;
        return Ok(());
    }
    let source = object
        .get("params")
        .and_then(Json::as_object)
        .unwrap_or(object);
    let mut values = HashMap::new();
    for spec in params {
        let raw = source
            .get(&spec.name)
            .or_else(|| source.get(&format!("param.{}", spec.name)))
            .with_context(|| format!("no value for parameter '{}'", spec.name))?;
        let text = json_scalar_text(raw)
            .with_context(|| format!("parameter '{}' is not a number or a string", spec.name))?;
        let value = typed(spec, &text).with_context(|| format!("parameter '{}'", spec.name))?;
        values.insert(spec.name.clone(), value);
    }
    let value = match object.get("value") {
        None | Some(Json::Null) => None,
        Some(v) => Some(v.as_f64().context("'value' is not a number")?),
    };
    let epochs = match object.get("epochs").and_then(Json::as_array) {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(|e| {
                let number = |key: &str| e.get(key).and_then(Json::as_f64).unwrap_or(0.0);
                Ok(pb::EpochReport {
                    epoch: e
                        .get("epoch")
                        .and_then(Json::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .context("an epoch without a whole 'epoch' number")?,
                    value: e
                        .get("value")
                        .and_then(Json::as_f64)
                        .context("an epoch without a numeric 'value'")?,
                    train_loss: number("train_loss"),
                    train_accuracy: number("train_accuracy"),
                    epoch_seconds: number("epoch_seconds"),
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    parsed.rows.push(Row {
        line,
        params: values,
        value,
        epochs,
    });
    Ok(())
}

/// Splits one CSV line (quotes as `tunectl trials` writes them: `"a,b"`, `""` inside).
fn csv_cells(line: &str) -> anyhow::Result<Vec<String>> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    if quoted {
        bail!("an unterminated quoted cell");
    }
    cells.push(cell);
    Ok(cells)
}

fn parse_csv(text: &str, params: Params<'_>) -> anyhow::Result<Parsed> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().context("the file is empty")?;
    let header = csv_cells(header).context("line 1")?;
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let mut columns = Vec::new();
    for spec in params {
        let index = column(&spec.name)
            .or_else(|| column(&format!("param.{}", spec.name)))
            .with_context(|| {
                format!(
                    "the header has no column for parameter '{}' (columns: {})",
                    spec.name,
                    header.join(", ")
                )
            })?;
        columns.push((spec, index));
    }
    let value_column = column("value");
    let state_column = column("state");
    let mut parsed = Parsed::default();
    for (index, line) in lines {
        let number = index + 1;
        let cells = csv_cells(line).with_context(|| format!("line {number}"))?;
        if cells.len() != header.len() {
            bail!(
                "line {number}: {} cells, the header has {}",
                cells.len(),
                header.len()
            );
        }
        if state_column.is_some_and(|i| !is_result_state(&cells[i])) {
            parsed.skipped_state += 1;
            continue;
        }
        let mut values = HashMap::new();
        for (spec, i) in &columns {
            let value = typed(spec, &cells[*i])
                .with_context(|| format!("line {number}: parameter '{}'", spec.name))?;
            values.insert(spec.name.clone(), value);
        }
        let value = match value_column.map(|i| cells[i].trim()) {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<f64>()
                    .with_context(|| format!("line {number}: value '{text}' is not a number"))?,
            ),
        };
        parsed.rows.push(Row {
            line: number,
            params: values,
            value,
            epochs: Vec::new(),
        });
    }
    Ok(parsed)
}

/// Reads `file` and adds its results to experiment `id` (or, with `enqueue`, queues its
/// configurations). Returns the line to print.
///
/// # Errors
/// When the file cannot be read or parsed, or the coordinator refuses a trial (the message
/// names the file's line).
pub async fn run(
    client: &mut Client,
    id: &str,
    file: &Path,
    enqueue: bool,
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("failed to read '{}'", file.display()))?;
    let experiment = get_experiment(client, id).await?;
    let spec = experiment.spec.unwrap_or_default();
    let parsed = parse(&text, &spec.parameters)
        .with_context(|| format!("failed to read '{}'", file.display()))?;
    let (rows, without_value): (Vec<Row>, Vec<Row>) = if enqueue {
        (parsed.rows, Vec::new())
    } else {
        parsed.rows.into_iter().partition(|r| r.value.is_some())
    };
    if rows.is_empty() {
        bail!(
            "'{}' holds no {} ({} rows skipped for their state, {} without a value)",
            file.display(),
            if enqueue { "configuration" } else { "result" },
            parsed.skipped_state,
            without_value.len()
        );
    }
    for chunk in rows.chunks(CHUNK) {
        let refused = |status: tonic::Status| {
            let error = status_error(status);
            // The coordinator names the trial by its index in the request; name the line too.
            let line = first_index(&error.to_string())
                .and_then(|i| chunk.get(i))
                .map(|r| r.line);
            match line {
                Some(line) => error.context(format!("'{}' line {line}", file.display())),
                None => error,
            }
        };
        if enqueue {
            let request = pb::EnqueueTrialsRequest {
                experiment_id: id.to_owned(),
                configurations: chunk
                    .iter()
                    .map(|r| pb::Configuration {
                        params: r.params.clone(),
                    })
                    .collect(),
            };
            client.enqueue_trials(request).await.map_err(refused)?;
        } else {
            let request = pb::AddTrialsRequest {
                experiment_id: id.to_owned(),
                trials: chunk
                    .iter()
                    .map(|r| pb::ImportedTrial {
                        params: r.params.clone(),
                        value: r.value,
                        epochs: r.epochs.clone(),
                        metrics: HashMap::new(),
                    })
                    .collect(),
            };
            client.add_trials(request).await.map_err(refused)?;
        }
    }
    let skipped = parsed.skipped_state + without_value.len();
    Ok(if enqueue {
        format!("queued {} configurations in {id}", rows.len())
    } else {
        format!(
            "imported {} results into {id}{}",
            rows.len(),
            if skipped > 0 {
                format!(" ({skipped} rows without a result skipped)")
            } else {
                String::new()
            }
        )
    })
}

/// The number after "trial " or "configuration " in a coordinator's message.
fn first_index(message: &str) -> Option<usize> {
    ["trial ", "configuration "].iter().find_map(|word| {
        let rest = &message[message.find(word)? + word.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: pb::parameter_spec::Kind) -> pb::ParameterSpec {
        pb::ParameterSpec {
            name: name.into(),
            kind: Some(kind),
        }
    }

    fn space() -> Vec<pb::ParameterSpec> {
        use pb::parameter_spec::Kind;
        vec![
            spec(
                "lr",
                Kind::Float(pb::FloatParam {
                    low: 1e-8,
                    high: 1.0,
                    log: true,
                    default_value: None,
                    step: None,
                }),
            ),
            spec(
                "epochs",
                Kind::Int(pb::IntParam {
                    step: None,
                    low: 1,
                    high: 50,
                    log: false,
                    default_value: None,
                }),
            ),
            spec(
                "act",
                Kind::Categorical(pb::CategoricalParam {
                    choices: vec!["relu".into(), "a,b".into()],
                    default_value: None,
                }),
            ),
        ]
    }

    fn float(row: &Row, name: &str) -> f64 {
        match row.params[name].kind {
            Some(pb::parameter_value::Kind::FloatValue(v)) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn csv_of_tunectl_trials_reads_back_with_param_prefix_and_quotes() {
        let text = "number,id,state,value,attempts,epochs_run,wall_seconds,cost_dollars,lr,param.epochs,act\n\
                    0,t0,succeeded,0.81,1,3,1.5,,1e-8,3,\"a,b\"\n\
                    1,t1,failed,,1,0,0,,0.5,4,relu\n\
                    2,t2,early_stopped,0.7,1,2,1,,0.25,2,relu\n";
        let parsed = parse(text, &space()).expect("parses");
        assert_eq!(parsed.skipped_state, 1);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(float(&parsed.rows[0], "lr"), 1e-8);
        assert_eq!(parsed.rows[0].value, Some(0.81));
        assert_eq!(parsed.rows[0].line, 2);
        assert_eq!(
            parsed.rows[0].params["act"].kind,
            Some(pb::parameter_value::Kind::CategoricalValue("a,b".into()))
        );
        assert_eq!(
            parsed.rows[1].params["epochs"].kind,
            Some(pb::parameter_value::Kind::IntValue(2))
        );
        assert_eq!(parsed.rows[1].line, 4);
    }

    #[test]
    fn json_array_and_json_lines_read_params_values_and_epochs() {
        let array = r#"[{"state": "succeeded", "value": 0.5, "params": {"lr": 0.1, "epochs": 3, "act": "relu"},
                         "epochs": [{"epoch": 1, "value": 0.4}, {"epoch": 2, "value": 0.5}]},
                        {"state": "cancelled", "value": null, "params": {"lr": 0.1, "epochs": 3, "act": "relu"}}]"#;
        let parsed = parse(array, &space()).expect("array parses");
        assert_eq!((parsed.rows.len(), parsed.skipped_state), (1, 1));
        assert_eq!(parsed.rows[0].epochs.len(), 2);
        assert_eq!(parsed.rows[0].epochs[1].value, 0.5);
        let lines = "{\"lr\": 0.2, \"epochs\": 5.0, \"act\": \"relu\", \"value\": 1.5}\n\n\
                     {\"lr\": 0.3, \"epochs\": 6, \"act\": \"relu\"}\n";
        let parsed = parse(lines, &space()).expect("lines parse");
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].value, Some(1.5));
        assert_eq!(parsed.rows[1].value, None);
        assert_eq!(parsed.rows[1].line, 3);
    }

    #[test]
    fn bad_rows_name_their_line_and_parameter() {
        let missing = "lr,act,value\n0.1,relu,1\n";
        let error = format!("{:#}", parse(missing, &space()).unwrap_err());
        assert!(error.contains("parameter 'epochs'"), "{error}");
        let not_int = "lr,epochs,act,value\n0.1,2.5,relu,1\n";
        let error = format!("{:#}", parse(not_int, &space()).unwrap_err());
        assert!(
            error.contains("line 2") && error.contains("not an integer"),
            "{error}"
        );
        let ragged = "lr,epochs,act,value\n0.1,2,relu\n";
        let error = format!("{:#}", parse(ragged, &space()).unwrap_err());
        assert!(error.contains("line 2: 3 cells"), "{error}");
        let bad_json = "{\"lr\": 0.1}\n{oops\n";
        let error = format!("{:#}", parse(bad_json, &space()).unwrap_err());
        assert!(error.contains("line 1"), "{error}");
        assert_eq!(
            first_index("trial 17: parameter 'lr': out of range"),
            Some(17)
        );
        assert_eq!(first_index("configuration 3: missing"), Some(3));
        assert_eq!(first_index("no index here"), None);
    }
}
