//! Configuration, loaded in two stages (STYLE.md §6): the `config` crate layers defaults, the TOML
//! file, `COORDINATOR_*` environment variables and CLI flags into a raw
//! `#[serde(deny_unknown_fields)]` struct; [`RawConfig::validate`] turns it into a typed
//! [`Config`].
//!
//! ```
//! use std::collections::HashMap;
//! use coordinator::config::{Config, Overrides};
//! let env = HashMap::from([("COORDINATOR_LEASE_TIMEOUT_SECS".to_string(), "30".to_string())]);
//! let config = Config::load(None, &env, &Overrides::default()).unwrap();
//! assert_eq!(config.lease_timeout.as_secs(), 30);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};
use serde::Deserialize;

use crate::grpc::ConnectionLimits;
use crate::grpc::tls::TlsFiles;
use crate::service::Settings;
use crate::{Error, Result};

/// The only config file version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// The environment prefix.
pub const ENV_PREFIX: &str = "COORDINATOR_";

/// Every field of the file, for filtering the environment.
const FIELDS: &[&str] = &[
    "version",
    "listen_addr",
    "metrics_listen_addr",
    "data_dir",
    "lease_timeout_secs",
    "heartbeat_interval_secs",
    "lease_check_interval_secs",
    "max_attempts",
    "default_initial_trials",
    "max_lease_wait_secs",
    "agent_timeout_secs",
    "suggest_concurrency",
    "suggest_timeout_secs",
    "pause_after_failures",
    "max_connections",
    "max_concurrent_streams_per_connection",
    "http2_keepalive_interval_secs",
    "http2_keepalive_timeout_secs",
    "tcp_keepalive_secs",
    "connection_idle_timeout_secs",
    "auth_token",
    "auth_token_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
];

/// The layered, unvalidated configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    version: u32,
    listen_addr: String,
    metrics_listen_addr: String,
    data_dir: String,
    lease_timeout_secs: u64,
    heartbeat_interval_secs: u64,
    lease_check_interval_secs: u64,
    max_attempts: u32,
    default_initial_trials: u32,
    max_lease_wait_secs: u64,
    agent_timeout_secs: u64,
    suggest_concurrency: u32,
    suggest_timeout_secs: u64,
    pause_after_failures: u32,
    max_connections: u64,
    max_concurrent_streams_per_connection: u64,
    http2_keepalive_interval_secs: u64,
    http2_keepalive_timeout_secs: u64,
    tcp_keepalive_secs: u64,
    connection_idle_timeout_secs: u64,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    auth_token_file: Option<String>,
    #[serde(default)]
    tls_cert_file: Option<String>,
    #[serde(default)]
    tls_key_file: Option<String>,
    #[serde(default)]
    tls_client_ca_file: Option<String>,
}

/// Values from CLI flags, the highest layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen-addr`.
    pub listen_addr: Option<String>,
    /// `--metrics-listen-addr`.
    pub metrics_listen_addr: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--auth-token-file`.
    pub auth_token_file: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// gRPC listener.
    pub listen_addr: SocketAddr,
    /// `/metrics` listener.
    pub metrics_listen_addr: SocketAddr,
    /// Directory of the SQLite file.
    pub data_dir: PathBuf,
    /// Lease expiry.
    pub lease_timeout: Duration,
    /// Heartbeat period told to agents.
    pub heartbeat_interval: Duration,
    /// Expiry sweep period.
    pub lease_check_interval: Duration,
    /// Default leases a trial gets.
    pub max_attempts: NonZeroU32,
    /// The cap of a spec's default initial space-filling trials (which grow with its budget:
    /// `service::experiments::default_initial_trials`).
    pub default_initial_trials: NonZeroU32,
    /// The longest a `LeaseTrial` long poll waits (0: never waits).
    pub max_lease_wait: Duration,
    /// Agents silent for this long are forgotten.
    pub agent_timeout: Duration,
    /// BO suggestions computed at once (0 in the file: one fewer than the cores).
    pub suggest_concurrency: usize,
    /// The time budget of one suggestion round; an experiment past it is marked failed.
    pub suggest_timeout: Duration,
    /// Trials failing in a row for the same reason that pause their experiment (0: never).
    pub pause_after_failures: u32,
    /// Limits on the gRPC listener's connections.
    pub connections: ConnectionLimits,
    /// Bearer token, when required.
    pub auth_token: Option<String>,
    /// TLS on the gRPC listener, when configured (read at startup by [`TlsFiles::load`]).
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for Config {
    /// Prints the effective config with the token redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("metrics_listen_addr", &self.metrics_listen_addr)
            .field("data_dir", &self.data_dir)
            .field("lease_timeout", &self.lease_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("lease_check_interval", &self.lease_check_interval)
            .field("max_attempts", &self.max_attempts)
            .field("default_initial_trials", &self.default_initial_trials)
            .field("max_lease_wait", &self.max_lease_wait)
            .field("agent_timeout", &self.agent_timeout)
            .field("suggest_concurrency", &self.suggest_concurrency)
            .field("suggest_timeout", &self.suggest_timeout)
            .field("pause_after_failures", &self.pause_after_failures)
            .field("connections", &self.connections)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("tls", &self.tls)
            .finish()
    }
}

fn builder_defaults()
-> Result<config::ConfigBuilder<config::builder::DefaultState>, config::ConfigError> {
    config::Config::builder()
        .set_default("version", i64::from(CONFIG_VERSION))?
        .set_default("listen_addr", "127.0.0.1:50051")?
        .set_default("metrics_listen_addr", "127.0.0.1:9464")?
        .set_default("data_dir", "./tunefleet-data")?
        .set_default("lease_timeout_secs", 60)?
        .set_default("heartbeat_interval_secs", 10)?
        .set_default("lease_check_interval_secs", 5)?
        .set_default("max_attempts", 3)?
        .set_default("default_initial_trials", 10)?
        .set_default("max_lease_wait_secs", 5)?
        .set_default("agent_timeout_secs", 60)?
        .set_default("suggest_concurrency", 0)?
        .set_default("suggest_timeout_secs", 300)?
        .set_default(
            "pause_after_failures",
            i64::from(crate::service::pause::DEFAULT_PAUSE_AFTER_FAILURES),
        )?
        .set_default("max_connections", 4096)?
        .set_default("max_concurrent_streams_per_connection", 256)?
        .set_default("http2_keepalive_interval_secs", 30)?
        .set_default("http2_keepalive_timeout_secs", 10)?
        .set_default("tcp_keepalive_secs", 60)?
        .set_default("connection_idle_timeout_secs", 30)
}

/// The known `COORDINATOR_*` variables, keyed by field. Others are ignored: Kubernetes injects
/// `COORDINATOR_PORT` and friends for a Service named `coordinator`.
fn known_env(env: &HashMap<String, String>) -> config::Map<String, String> {
    env.iter()
        .filter_map(|(key, value)| {
            let field = key.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
            FIELDS.contains(&field.as_str()).then(|| {
                (
                    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase()),
                    value.clone(),
                )
            })
        })
        .collect()
}

/// Reads and checks the config file on its own, so its errors name the file.
fn check_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    })?;
    check_text(&text).map_err(|message| Error::ConfigFile {
        path: path.to_owned(),
        message,
    })?;
    Ok(text)
}

/// Checks that config text is TOML whose top-level keys are all fields, with the `version` this
/// build reads. The keys are checked here, before the `config` crate sees them: it reads a key as
/// a path and grows an array to the index one names, so `'g[167440737095516150]' = 1` panicked
/// (capacity overflow) and a smaller index could take all memory (found by the `config_toml`
/// fuzz target, `docs/RELIABILITY.md`).
fn check_text(text: &str) -> std::result::Result<(), String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.to_string().trim().to_owned())?;
    if let Some(unknown) = table.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(format!(
            "unknown field `{}` (fields: {})",
            crate::service::limits::short(unknown),
            FIELDS.join(", ")
        ));
    }
    match table.get("version") {
        Some(toml::Value::Integer(v)) if *v == i64::from(CONFIG_VERSION) => Ok(()),
        Some(other) => Err(format!(
            "unsupported version {other} (this coordinator reads version {CONFIG_VERSION})"
        )),
        None => Err(format!("missing top-level `version = {CONFIG_VERSION}`")),
    }
}

impl Config {
    /// Loads defaults, then `file`, then the `COORDINATOR_*` entries of `env`, then `overrides`.
    ///
    /// # Errors
    /// `ConfigFile` naming the file when it cannot be read or parsed; `Config` when a value is
    /// invalid.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self> {
        let layer = |e: config::ConfigError| match file {
            Some(path) => Error::ConfigFile {
                path: path.to_owned(),
                message: e.to_string(),
            },
            None => Error::Config(e.to_string()),
        };
        let mut builder = builder_defaults().map_err(layer)?;
        if let Some(path) = file {
            let text = check_file(path)?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("COORDINATOR")
                .prefix_separator("_")
                .try_parsing(true)
                .source(Some(known_env(env))),
        );
        let flags = [
            ("listen_addr", overrides.listen_addr.clone()),
            ("metrics_listen_addr", overrides.metrics_listen_addr.clone()),
            (
                "data_dir",
                overrides.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            (
                "auth_token_file",
                overrides
                    .auth_token_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
        ];
        for (key, value) in flags {
            builder = builder.set_override_option(key, value).map_err(layer)?;
        }
        let raw: RawConfig = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(layer)?;
        raw.validate()
    }

    /// Parses config text over the defaults, with the checks of [`Config::load`] but no
    /// environment or flags (for examples, tests and the fuzzer). An `auth_token_file` in the
    /// text is read.
    ///
    /// # Errors
    /// `Config` when the text is not a valid config or a value is invalid.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        check_text(text).map_err(Error::Config)?;
        let raw: RawConfig = builder_defaults()
            .and_then(|builder| {
                builder
                    .add_source(File::from_str(text, FileFormat::Toml))
                    .build()
            })
            .and_then(config::Config::try_deserialize)
            .map_err(|e| Error::Config(e.to_string()))?;
        raw.validate()
    }

    /// The service settings this config implies.
    pub fn settings(&self) -> Settings {
        Settings {
            lease_timeout: self.lease_timeout,
            heartbeat_interval: self.heartbeat_interval,
            lease_check_interval: self.lease_check_interval,
            max_attempts: self.max_attempts,
            default_initial_trials: self.default_initial_trials,
            max_lease_wait: self.max_lease_wait,
            agent_timeout: self.agent_timeout,
            suggest_concurrency: self.suggest_concurrency,
            suggest_timeout: self.suggest_timeout,
            pause_after_failures: self.pause_after_failures,
            ..Settings::default()
        }
    }
}

fn addr(field: &str, raw: &str) -> Result<SocketAddr> {
    raw.parse().map_err(|e| {
        Error::Config(format!(
            "{field} '{raw}' is not a socket address (host:port): {e}"
        ))
    })
}

/// The longest lease timeout: a day.
pub const MAX_LEASE_TIMEOUT_SECS: u64 = 86_400;
/// The longest time an agent may stay silent before it is forgotten: a week.
pub const MAX_AGENT_TIMEOUT_SECS: u64 = 7 * 86_400;
/// Largest `pause_after_failures`.
const MAX_PAUSE_AFTER_FAILURES: u32 = 10_000;

/// Longest `suggest_timeout_secs`: a day.
pub const MAX_SUGGEST_TIMEOUT_SECS: u64 = 86_400;
/// The most leases a trial may get by default.
pub const MAX_MAX_ATTEMPTS: u32 = crate::service::limits::MAX_ATTEMPTS;
/// The most default space-filling trials.
pub const MAX_DEFAULT_INITIAL_TRIALS: u32 = crate::service::limits::MAX_INITIAL_TRIALS;

fn range_error(field: &str, value: impl std::fmt::Display, min: u64, max: u64) -> Error {
    Error::Config(format!("{field} must be in {min}..={max}, got {value}"))
}

/// Seconds in `1..=max`.
fn secs_in(field: &str, secs: u64, max: u64) -> Result<Duration> {
    if secs == 0 || secs > max {
        return Err(range_error(field, secs, 1, max));
    }
    Ok(Duration::from_secs(secs))
}

/// `value` when it lies in `min..=max`, else an error naming the field and the range.
fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    Err(Error::Config(format!(
        "{field} must be between {min} and {max}, got {value}"
    )))
}

/// A count in `1..=max`.
fn count_in(field: &str, value: u32, max: u32) -> Result<NonZeroU32> {
    NonZeroU32::new(value)
        .filter(|v| v.get() <= max)
        .ok_or_else(|| range_error(field, value, 1, u64::from(max)))
}

impl RawConfig {
    /// Checks every value and builds the typed config (reading the token file if given).
    ///
    /// # Errors
    /// `Config` naming the field.
    pub fn validate(self) -> Result<Config> {
        if self.version != CONFIG_VERSION {
            return Err(Error::Config(format!(
                "version must be {CONFIG_VERSION}, got {}",
                self.version
            )));
        }
        let lease_timeout = secs_in(
            "lease_timeout_secs",
            self.lease_timeout_secs,
            MAX_LEASE_TIMEOUT_SECS,
        )?;
        let heartbeat_interval = secs_in(
            "heartbeat_interval_secs",
            self.heartbeat_interval_secs,
            MAX_LEASE_TIMEOUT_SECS,
        )?;
        // A sweep rarer than the lease timeout would leave expired leases unexpired.
        let lease_check_interval = secs_in(
            "lease_check_interval_secs (at most lease_timeout_secs)",
            self.lease_check_interval_secs,
            self.lease_timeout_secs,
        )?;
        if heartbeat_interval >= lease_timeout {
            return Err(Error::Config(format!(
                "heartbeat_interval_secs ({}) must be less than lease_timeout_secs ({})",
                self.heartbeat_interval_secs, self.lease_timeout_secs
            )));
        }
        if self.max_lease_wait_secs > 60 {
            return Err(Error::Config(format!(
                "max_lease_wait_secs must be at most 60 (a long poll, not a hang), got {}",
                self.max_lease_wait_secs
            )));
        }
        let agent_timeout = secs_in(
            "agent_timeout_secs",
            self.agent_timeout_secs,
            MAX_AGENT_TIMEOUT_SECS,
        )?;
        if agent_timeout < heartbeat_interval * 2 {
            return Err(Error::Config(format!(
                "agent_timeout_secs ({}) must be at least twice heartbeat_interval_secs ({})",
                self.agent_timeout_secs, self.heartbeat_interval_secs
            )));
        }
        if self.suggest_concurrency > 1024 {
            return Err(Error::Config(format!(
                "suggest_concurrency must be at most 1024 (0: one fewer than the cores), got {}",
                self.suggest_concurrency
            )));
        }
        if self.data_dir.trim().is_empty() {
            return Err(Error::Config("data_dir must not be empty".into()));
        }
        let connections = self.connection_limits()?;
        Ok(Config {
            listen_addr: addr("listen_addr", &self.listen_addr)?,
            metrics_listen_addr: addr("metrics_listen_addr", &self.metrics_listen_addr)?,
            data_dir: PathBuf::from(self.data_dir),
            lease_timeout,
            heartbeat_interval,
            lease_check_interval,
            max_attempts: count_in("max_attempts", self.max_attempts, MAX_MAX_ATTEMPTS)?,
            default_initial_trials: count_in(
                "default_initial_trials",
                self.default_initial_trials,
                MAX_DEFAULT_INITIAL_TRIALS,
            )?,
            max_lease_wait: Duration::from_secs(self.max_lease_wait_secs),
            agent_timeout,
            suggest_timeout: secs_in(
                "suggest_timeout_secs",
                self.suggest_timeout_secs,
                MAX_SUGGEST_TIMEOUT_SECS,
            )?,
            pause_after_failures: if self.pause_after_failures > MAX_PAUSE_AFTER_FAILURES {
                return Err(Error::Config(format!(
                    "pause_after_failures must be at most {MAX_PAUSE_AFTER_FAILURES} (0: never \
                     pause), got {}",
                    self.pause_after_failures
                )));
            } else {
                self.pause_after_failures
            },
            suggest_concurrency: match self.suggest_concurrency {
                0 => crate::service::default_suggest_concurrency(),
                n => n as usize,
            },
            connections,
            auth_token: resolve_token(self.auth_token, self.auth_token_file)?,
            tls: resolve_tls(
                self.tls_cert_file,
                self.tls_key_file,
                self.tls_client_ca_file,
            )?,
        })
    }
}

impl RawConfig {
    /// The connection fields, range-checked. `max_connections` must hold a fleet of 1,000
    /// agents (one connection each) and its clients only if the operator wants that; the
    /// default is 4096.
    fn connection_limits(&self) -> Result<ConnectionLimits> {
        let secs = |field: &str, value: u64, max: u64| {
            in_range(field, value, 1, max).map(Duration::from_secs)
        };
        let max_connections = in_range("max_connections", self.max_connections, 1, 1 << 20)?;
        let max_streams = in_range(
            "max_concurrent_streams_per_connection",
            self.max_concurrent_streams_per_connection,
            1,
            65_535,
        )?;
        Ok(ConnectionLimits {
            max_connections: usize::try_from(max_connections)
                .map_err(|_| Error::Config("max_connections does not fit this machine".into()))?,
            max_concurrent_streams: u32::try_from(max_streams)
                .expect("checked to be at most 65535"),
            http2_keepalive_interval: secs(
                "http2_keepalive_interval_secs",
                self.http2_keepalive_interval_secs,
                3600,
            )?,
            http2_keepalive_timeout: secs(
                "http2_keepalive_timeout_secs",
                self.http2_keepalive_timeout_secs,
                600,
            )?,
            tcp_keepalive: secs("tcp_keepalive_secs", self.tcp_keepalive_secs, 7200)?,
            idle_timeout: secs(
                "connection_idle_timeout_secs",
                self.connection_idle_timeout_secs,
                3600,
            )?,
        })
    }
}

fn resolve_token(token: Option<String>, file: Option<String>) -> Result<Option<String>> {
    let token = token.filter(|t| !t.is_empty());
    let file = file.filter(|f| !f.is_empty());
    match (token, file) {
        (Some(_), Some(_)) => Err(Error::Config(
            "set auth_token or auth_token_file, not both".into(),
        )),
        (Some(token), None) => Ok(Some(token)),
        (None, Some(path)) => {
            let text = crate::files::read_small_text(Path::new(&path))
                .map_err(|e| Error::io(format!("read auth_token_file '{path}'"), e))?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(Error::Config(format!("auth_token_file '{path}' is empty")));
            }
            Ok(Some(token))
        }
        (None, None) => Ok(None),
    }
}

/// The TLS files: the certificate and key both or neither, and a client CA only with them. An
/// empty value counts as unset.
fn resolve_tls(
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
) -> Result<Option<TlsFiles>> {
    let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    match (set(cert), set(key), set(client_ca)) {
        (Some(cert_file), Some(key_file), client_ca_file) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
            client_ca_file,
        })),
        (Some(cert), None, _) => Err(Error::Config(format!(
            "tls_cert_file '{}' is set but tls_key_file is not: set both or neither",
            cert.display()
        ))),
        (None, Some(key), _) => Err(Error::Config(format!(
            "tls_key_file '{}' is set but tls_cert_file is not: set both or neither",
            key.display()
        ))),
        (None, None, Some(ca)) => Err(Error::Config(format!(
            "tls_client_ca_file '{}' needs tls_cert_file and tls_key_file (mutual TLS is TLS)",
            ca.display()
        ))),
        (None, None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests;
