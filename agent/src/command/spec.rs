//! The commands an agent declares (`[[commands]]` in its config): the raw TOML form, its
//! validation at startup, and the argv template filled from a trial's parameters.
//!
//! An experiment only names a command; what it runs is the agent's own declaration, so a client
//! of the coordinator can never make a host run a program its operator did not list.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use proto::v1::ParameterValue;
use proto::v1::parameter_value::Kind;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The longest command name, as the coordinator allows it.
pub const MAX_NAME_CHARS: usize = 64;
/// The most commands one agent may declare (the coordinator's bound at registration).
pub const MAX_COMMANDS: usize = 1_000;
/// Default of `epoch_timeout_secs`: an hour without an epoch stops the command.
pub const DEFAULT_EPOCH_TIMEOUT_SECS: f64 = 3600.0;
/// Default of `stop_grace_secs`: time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE_SECS: f64 = 10.0;

/// One `[[commands]]` table as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// The name experiments use (`workload.command`).
    pub name: String,
    /// Program and arguments; `{param}` is replaced by the trial's value of `param`.
    pub argv: Vec<String>,
    /// Working directory (default: the agent's).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The metrics it reports; when given, a trial whose metric is not listed fails.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// `stdout` (default) or `file` (`TUNEFLEET_METRICS_FILE`).
    #[serde(default)]
    pub metrics_source: Option<String>,
    /// No epoch for this long stops the command and fails the trial.
    #[serde(default)]
    pub epoch_timeout_secs: Option<f64>,
    /// Time between SIGTERM and SIGKILL when the command is stopped.
    #[serde(default)]
    pub stop_grace_secs: Option<f64>,
}

/// Where a command's epoch lines come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSource {
    /// One JSON line an epoch on stdout.
    Stdout,
    /// One JSON line an epoch appended to the file named by `TUNEFLEET_METRICS_FILE`.
    File,
}

/// A validated command declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// Its name.
    pub name: String,
    /// The argv template (never empty).
    pub argv: Vec<String>,
    /// Working directory.
    pub workdir: Option<PathBuf>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Metrics it reports (empty: not declared, any is accepted).
    pub metrics: Vec<String>,
    /// Where epochs are read from.
    pub metrics_source: MetricsSource,
    /// Longest time without an epoch.
    pub epoch_timeout: Duration,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
}

fn invalid(name: &str, key: &str, what: impl std::fmt::Display) -> Error {
    Error::Config {
        reason: format!("commands: command '{name}': {key} {what}"),
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_CHARS
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn seconds(name: &str, key: &str, value: Option<f64>, default: f64) -> Result<Duration> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0 && value <= crate::config::MAX_TIMING_SECS) {
        return Err(invalid(
            name,
            key,
            format!(
                "must be a positive number of seconds, at most {}, got {value}",
                crate::config::MAX_TIMING_SECS
            ),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

impl RawCommand {
    /// Checks every key and builds the [`CommandSpec`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the command and the key.
    pub fn validate(self) -> Result<CommandSpec> {
        let name = self.name;
        if !is_name(&name) {
            return Err(Error::Config {
                reason: format!(
                    "commands: name '{}' must be 1 to {MAX_NAME_CHARS} characters of A-Z a-z 0-9 _ . -",
                    name.chars().take(MAX_NAME_CHARS).collect::<String>()
                ),
            });
        }
        if self
            .argv
            .first()
            .is_none_or(|program| program.trim().is_empty())
        {
            return Err(invalid(&name, "argv", "must name a program"));
        }
        for piece in &self.argv {
            check_placeholders(piece).map_err(|what| invalid(&name, "argv", what))?;
        }
        let workdir = match self.workdir.filter(|dir| !dir.is_empty()) {
            None => None,
            Some(dir) if PathBuf::from(&dir).is_dir() => Some(PathBuf::from(dir)),
            Some(dir) => {
                return Err(invalid(
                    &name,
                    "workdir",
                    format!("'{dir}' is not a directory"),
                ));
            }
        };
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(
                    &name,
                    "env",
                    format!("has an invalid variable name '{key}'"),
                ));
            }
        }
        if let Some(metric) = self.metrics.iter().find(|m| m.is_empty()) {
            return Err(invalid(
                &name,
                "metrics",
                format!("has an empty name '{metric}'"),
            ));
        }
        let metrics_source = match self.metrics_source.as_deref() {
            None | Some("stdout") => MetricsSource::Stdout,
            Some("file") => MetricsSource::File,
            Some(other) => {
                return Err(invalid(
                    &name,
                    "metrics_source",
                    format!("must be 'stdout' or 'file', got '{other}'"),
                ));
            }
        };
        Ok(CommandSpec {
            epoch_timeout: seconds(
                &name,
                "epoch_timeout_secs",
                self.epoch_timeout_secs,
                DEFAULT_EPOCH_TIMEOUT_SECS,
            )?,
            stop_grace: seconds(
                &name,
                "stop_grace_secs",
                self.stop_grace_secs,
                DEFAULT_STOP_GRACE_SECS,
            )?,
            name,
            argv: self.argv,
            workdir,
            env: self.env,
            metrics: self.metrics,
            metrics_source,
        })
    }
}

/// Validates every declaration; names must be unique.
///
/// # Errors
/// The first invalid declaration, or a name declared twice.
pub fn validate_all(raw: Vec<RawCommand>) -> Result<Vec<CommandSpec>> {
    if raw.len() > MAX_COMMANDS {
        return Err(Error::Config {
            reason: format!(
                "commands: at most {MAX_COMMANDS} commands may be declared, got {}",
                raw.len()
            ),
        });
    }
    let mut specs: Vec<CommandSpec> = Vec::new();
    for command in raw {
        let spec = command.validate()?;
        if specs.iter().any(|known| known.name == spec.name) {
            return Err(invalid(&spec.name, "name", "is declared twice"));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Takes the `[[commands]]` tables out of a TOML document; the rest goes to the `config`
/// crate, which would lowercase the names of their environment variables and read some keys
/// as paths. Text that is not TOML passes whole, for the `config` crate to report.
///
/// # Errors
/// [`Error::Config`] when a `[[commands]]` table has an unknown or mistyped key.
pub fn split_commands(text: &str) -> Result<(String, Vec<RawCommand>)> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok((text.to_string(), Vec::new()));
    };
    let Some(commands) = table.remove("commands") else {
        return Ok((text.to_string(), Vec::new()));
    };
    let commands: Vec<RawCommand> =
        commands
            .try_into()
            .map_err(|error: toml::de::Error| Error::Config {
                reason: format!("commands: {}", error.message()),
            })?;
    let rest = toml::to_string(&table).map_err(|error| Error::Config {
        reason: format!("failed to re-encode the config: {error}"),
    })?;
    Ok((rest, commands))
}

/// The `[[commands]]` of a `commands_file` (it may hold nothing else).
///
/// # Errors
/// When the file cannot be read, holds other keys, or a table is malformed.
pub fn read_commands_file(path: &std::path::Path) -> Result<Vec<RawCommand>> {
    let text = crate::files::read_small_text(path).map_err(|source| Error::Io {
        what: format!("failed to read commands_file '{}'", path.display()),
        source,
    })?;
    if let Err(error) = text.parse::<toml::Table>() {
        return Err(Error::Config {
            reason: format!(
                "commands_file '{}' is not TOML: {}",
                path.display(),
                error.message()
            ),
        });
    }
    let (rest, commands) = split_commands(&text)?;
    if !rest.trim().is_empty() {
        return Err(Error::Config {
            reason: format!(
                "commands_file '{}' may hold only [[commands]] tables",
                path.display()
            ),
        });
    }
    Ok(commands)
}

/// Splits `piece` into literal text and `{name}` placeholders (a name of `[A-Za-z0-9_]`);
/// other braces are literal.
fn pieces(piece: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = piece;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            out.push((false, &rest[..open]));
            out.push((true, &after[..name_len]));
            rest = &after[name_len + 1..];
        } else {
            out.push((false, &rest[..=open]));
            rest = after;
        }
    }
    out.push((false, rest));
    out
}

fn check_placeholders(piece: &str) -> std::result::Result<(), String> {
    if piece.contains('\0') {
        return Err("has an argument with a NUL byte".to_string());
    }
    Ok(())
}

/// A parameter as text for argv: integers plainly, floats in their shortest exact form,
/// categorical values as they are.
pub fn value_text(value: &ParameterValue) -> Option<String> {
    match value.kind.as_ref()? {
        Kind::IntValue(int) => Some(int.to_string()),
        Kind::FloatValue(float) => Some(float.to_string()),
        Kind::CategoricalValue(text) => Some(text.clone()),
    }
}

impl CommandSpec {
    /// The argv with every `{param}` replaced by the trial's value.
    ///
    /// # Errors
    /// A message naming a placeholder that is not a parameter of the trial.
    pub fn render_argv(
        &self,
        params: &BTreeMap<String, ParameterValue>,
    ) -> std::result::Result<Vec<String>, String> {
        let mut argv = Vec::with_capacity(self.argv.len());
        for piece in &self.argv {
            let mut text = String::new();
            for (is_placeholder, part) in pieces(piece) {
                if !is_placeholder {
                    text.push_str(part);
                    continue;
                }
                let value = params.get(part).and_then(value_text).ok_or_else(|| {
                    format!(
                        "argv of command '{}' uses {{{part}}}, which is not a parameter of the \
                         trial (parameters: {})",
                        self.name,
                        params.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                text.push_str(&value);
            }
            argv.push(text);
        }
        Ok(argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, argv: &[&str]) -> RawCommand {
        RawCommand {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            workdir: None,
            env: BTreeMap::new(),
            metrics: Vec::new(),
            metrics_source: None,
            epoch_timeout_secs: None,
            stop_grace_secs: None,
        }
    }

    fn float(value: f64) -> ParameterValue {
        ParameterValue {
            kind: Some(Kind::FloatValue(value)),
        }
    }

    #[test]
    fn placeholders_take_the_trial_values_and_other_braces_stay() {
        let spec = raw(
            "lr",
            &[
                "python3",
                "--lr={learning_rate}",
                "{epochs}",
                "{\"a\": 1}",
                "{}",
            ],
        )
        .validate()
        .expect("valid");
        let params = BTreeMap::from([
            ("learning_rate".to_string(), float(0.001)),
            (
                "epochs".to_string(),
                ParameterValue {
                    kind: Some(Kind::IntValue(7)),
                },
            ),
        ]);
        let argv = spec.render_argv(&params).expect("renders");
        assert_eq!(argv, ["python3", "--lr=0.001", "7", "{\"a\": 1}", "{}"]);
        let error = spec
            .render_argv(&BTreeMap::from([("epochs".to_string(), float(1.0))]))
            .expect_err("learning_rate missing");
        assert!(
            error.contains("{learning_rate}") && error.contains("'lr'"),
            "{error}"
        );
    }

    #[test]
    fn bad_declarations_name_the_command_and_the_key() {
        let mut bad_source = raw("a", &["x"]);
        bad_source.metrics_source = Some("socket".into());
        let mut bad_timeout = raw("b", &["x"]);
        bad_timeout.epoch_timeout_secs = Some(-1.0);
        let mut bad_grace = raw("c", &["x"]);
        bad_grace.stop_grace_secs = Some(f64::NAN);
        let mut bad_dir = raw("d", &["x"]);
        bad_dir.workdir = Some("/nonexistent/dir".into());
        let cases = [
            (raw("e", &[]), "'e': argv"),
            (raw("bad name", &["x"]), "'bad name'"),
            (bad_source, "'a': metrics_source"),
            (bad_timeout, "'b': epoch_timeout_secs"),
            (bad_grace, "'c': stop_grace_secs"),
            (bad_dir, "'d': workdir"),
        ];
        for (command, words) in cases {
            let error = command.validate().expect_err(words).to_string();
            assert!(error.contains(words), "{words}: {error}");
        }
        let twice = validate_all(vec![raw("t", &["x"]), raw("t", &["y"])]).expect_err("twice");
        assert!(twice.to_string().contains("declared twice"), "{twice}");
        let many = (0..=MAX_COMMANDS).map(|i| raw(&format!("c{i}"), &["x"]));
        let error = validate_all(many.collect()).expect_err("too many");
        assert!(
            error.to_string().contains("at most 1000 commands")
                && error.to_string().contains("1001"),
            "{error}"
        );
        let most = (0..MAX_COMMANDS).map(|i| raw(&format!("c{i}"), &["x"]));
        assert_eq!(
            validate_all(most.collect()).expect("the most").len(),
            MAX_COMMANDS
        );
    }

    const DECLARED: &str = r#"
slots = 2
[[commands]]
name = "train"
argv = ["python3", "train.py", "--lr", "{learning_rate}"]
env = { PYTHONUNBUFFERED = "1", "my.setting" = "x" }
metrics = ["dev_accuracy"]
metrics_source = "file"
epoch_timeout_secs = 120
"#;

    #[test]
    fn commands_come_from_the_config_file_and_from_commands_file() {
        let config = crate::config::from_toml_str(DECLARED).expect("parses");
        assert_eq!(config.slots.get(), 2, "the other settings still apply");
        let train = &config.commands[0];
        assert_eq!(train.argv[3], "{learning_rate}");
        assert_eq!(train.env["PYTHONUNBUFFERED"], "1", "names keep their case");
        assert_eq!(train.env["my.setting"], "x", "dotted names are not paths");
        assert_eq!(train.metrics_source, MetricsSource::File);
        assert_eq!(train.epoch_timeout, Duration::from_secs(120));
        assert_eq!(train.stop_grace, Duration::from_secs(10));
        assert!(config.redacted_summary().contains("commands=[train]"));

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, DECLARED).expect("writes");
        let extra = dir.path().join("commands.toml");
        std::fs::write(&extra, "[[commands]]\nname = \"eval\"\nargv = [\"eval\"]\n")
            .expect("writes");
        let env = std::collections::HashMap::from([(
            "AGENT_COMMANDS_FILE".to_string(),
            extra.display().to_string(),
        )]);
        let cli = crate::config::CliOverrides::default();
        let config = crate::config::load(Some(&file), &env, &cli).expect("loads");
        let names: Vec<&str> = config.commands.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["train", "eval"]);
        std::fs::write(&extra, "slots = 3\n").expect("writes");
        let error = crate::config::load(Some(&file), &env, &cli).expect_err("not only commands");
        assert!(error.to_string().contains("only [[commands]]"), "{error}");
    }

    #[test]
    fn bad_commands_in_a_file_name_the_command_and_the_key() {
        let cases = [
            (
                "[[commands]]\nname = \"t\"\nargv = []\n",
                "command 't': argv",
            ),
            (
                "[[commands]]\nname = \"t\"\nargv = [\"x\"]\nsecret = 1\n",
                "commands: unknown field `secret`",
            ),
            (
                "[[commands]]\nargv = [\"x\"]\n",
                "commands: missing field `name`",
            ),
            (
                "[[commands]]\nname = \"t\"\nargv = [\"x\"]\nstop_grace_secs = 0\n",
                "'t': stop_grace_secs",
            ),
        ];
        for (text, words) in cases {
            let error = crate::config::from_toml_str(text)
                .expect_err(text)
                .to_string();
            assert!(error.contains(words), "{text}: {error}");
        }
    }
}
