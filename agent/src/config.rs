//! The agent's configuration: defaults → TOML file → `AGENT_*` environment → CLI flags.
//!
//! Loading has two stages (STYLE.md §6): the `config` crate layers the sources into
//! [`RawConfig`] (`deny_unknown_fields`, defaults on every field), then [`RawConfig::validate`]
//! turns it into the typed [`Config`] (`Duration`, `SocketAddr`, [`Pricing`]). The environment is
//! passed in as a map so tests can supply one.
//!
//! ```
//! use std::collections::HashMap;
//! use agent::config::{load, CliOverrides};
//! let env = HashMap::from([("AGENT_SLOTS".to_string(), "2".to_string())]);
//! let cfg = load(None, &env, &CliOverrides::default()).unwrap();
//! assert_eq!(cfg.slots.get(), 2);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::command::spec::{CommandSpec, RawCommand, split_commands};
use crate::cost::Pricing;
use crate::error::{Error, Result};
use crate::tls::ClientTls;

/// The only config file version this agent reads.
pub const CONFIG_VERSION: u32 = 1;

/// The raw, layered configuration, as written in TOML or `AGENT_*` variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Config format version; must be 1.
    pub version: u32,
    /// The coordinator's gRPC endpoint, e.g. `http://10.0.0.5:50051`.
    pub coordinator_url: String,
    /// Where `/metrics` listens (port 0 picks a free port).
    pub metrics_listen_addr: String,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// CUDA device ordinal (with `backend = "cuda"`).
    pub gpu_ordinal: u32,
    /// Trials trained at once on the device.
    pub slots: u32,
    /// Cloud instance type, looked up in the built-in catalogue ([`crate::cost`]).
    pub instance_type: Option<String>,
    /// Price of the whole instance in dollars an hour; overrides the catalogue.
    pub price_per_hour_dollars: Option<f64>,
    /// GPUs in the instance; overrides the catalogue.
    pub gpus_per_instance: Option<u32>,
    /// Bearer token sent to the coordinator, when it requires one.
    pub auth_token: Option<String>,
    /// A file holding the bearer token (instead of `auth_token`).
    pub auth_token_file: Option<String>,
    /// CA certificates (PEM) to verify the coordinator with, for an `https://` URL; the
    /// system trust store when unset.
    pub tls_ca_file: Option<String>,
    /// The agent's certificate (PEM), for a coordinator that requires mutual TLS.
    pub tls_cert_file: Option<String>,
    /// The key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<String>,
    /// The name the coordinator's certificate must carry, instead of the URL's host.
    pub tls_domain: Option<String>,
    /// Heartbeat interval used until the coordinator says otherwise.
    pub heartbeat_interval_secs: f64,
    /// Deadline of one RPC.
    pub request_timeout_secs: f64,
    /// Deadline of one connection attempt.
    pub connect_timeout_secs: f64,
    /// First delay between retries of a failed call (doubles, with jitter).
    pub retry_initial_backoff_secs: f64,
    /// Largest delay between retries.
    pub retry_max_backoff_secs: f64,
    /// Longest wait between lease requests when there is no work.
    pub idle_poll_max_secs: f64,
    /// Long poll: how long the coordinator may hold a lease request open until a trial is
    /// ready (0: it answers at once). An older coordinator ignores it.
    pub lease_wait_secs: f64,
    /// On shutdown, how long to keep trying to deliver unreported results.
    pub shutdown_grace_secs: f64,
    /// Threads of the CPU backend (default: all cores).
    pub cpu_threads: Option<usize>,
    /// A TOML file of `[[commands]]` tables, declared beside those of the config file.
    pub commands_file: Option<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            coordinator_url: "http://127.0.0.1:50051".to_string(),
            metrics_listen_addr: "127.0.0.1:9101".to_string(),
            backend: "cpu".to_string(),
            gpu_ordinal: 0,
            slots: 1,
            instance_type: None,
            price_per_hour_dollars: None,
            gpus_per_instance: None,
            auth_token: None,
            auth_token_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_domain: None,
            heartbeat_interval_secs: 5.0,
            request_timeout_secs: 10.0,
            connect_timeout_secs: 3.0,
            retry_initial_backoff_secs: 0.2,
            retry_max_backoff_secs: 10.0,
            idle_poll_max_secs: 2.0,
            lease_wait_secs: 5.0,
            shutdown_grace_secs: 30.0,
            cpu_threads: None,
            commands_file: None,
        }
    }
}

/// The device an agent trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU backend.
    Cpu,
    /// CUDA device with this ordinal.
    Cuda(u32),
}

/// Retry and timing settings, all as `Duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Heartbeat interval until the coordinator gives one.
    pub heartbeat_interval: Duration,
    /// Deadline of one RPC.
    pub request_timeout: Duration,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// First retry delay.
    pub retry_initial_backoff: Duration,
    /// Largest retry delay.
    pub retry_max_backoff: Duration,
    /// Longest idle wait between lease requests.
    pub idle_poll_max: Duration,
    /// How long a lease request may wait at the coordinator for a trial (zero: no long poll).
    pub lease_wait: Duration,
    /// Time to deliver unreported results on shutdown.
    pub shutdown_grace: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The coordinator's gRPC endpoint.
    pub coordinator_url: String,
    /// Where `/metrics` listens.
    pub metrics_listen_addr: SocketAddr,
    /// The training device.
    pub device: Device,
    /// Trials at once.
    pub slots: NonZeroU32,
    /// How trials are priced.
    pub pricing: Pricing,
    /// Bearer token for the coordinator.
    pub auth_token: Option<String>,
    /// TLS to the coordinator: `Some` exactly when `coordinator_url` is `https://`.
    pub tls: Option<ClientTls>,
    /// Timing and retries.
    pub timing: Timing,
    /// CPU backend threads.
    pub cpu_threads: Option<usize>,
    /// The commands this agent runs for `command` workloads ([`crate::command`]).
    pub commands: Vec<CommandSpec>,
}

/// Flags given on the command line, applied over every other source.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `--coordinator URL`.
    pub coordinator_url: Option<String>,
    /// `--gpu N` (Some) or `--cpu` (`cpu = true`).
    pub gpu: Option<u32>,
    /// `--cpu`.
    pub cpu: bool,
    /// `--slots K`.
    pub slots: Option<u32>,
    /// `--metrics-listen-addr ADDR`.
    pub metrics_listen_addr: Option<String>,
    /// `--instance-type NAME`.
    pub instance_type: Option<String>,
    /// `--price-per-hour DOLLARS`.
    pub price_per_hour_dollars: Option<f64>,
    /// `--cpu-threads N`.
    pub cpu_threads: Option<usize>,
    /// `--commands-file FILE`.
    pub commands_file: Option<String>,
}

/// Loads the configuration from the layered sources.
///
/// # Errors
/// [`Error::ConfigLoad`] when a source cannot be read or a field has the wrong type or is
/// unknown; [`Error::Config`] when a value is out of range.
pub fn load(
    file: Option<&Path>,
    env: &HashMap<String, String>,
    cli: &CliOverrides,
) -> Result<Config> {
    let mut builder = config::Config::builder();
    let mut raw_commands = Vec::new();
    if let Some(path) = file {
        // The `config` crate reads the file and reports what is wrong with it; the keys are
        // checked first (a file that cannot be read is left for it to report).
        let text = std::fs::read_to_string(path).ok();
        if let Some(text) = &text {
            check_keys(text)?;
        }
        match text.as_deref().map(split_commands).transpose()? {
            Some((rest, commands)) if !commands.is_empty() => {
                raw_commands = commands;
                builder =
                    builder.add_source(config::File::from_str(&rest, config::FileFormat::Toml));
            }
            _ => {
                builder =
                    builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
        }
    }
    let agent_env: config::Map<String, String> = env
        .iter()
        .filter(|(key, _)| key.starts_with("AGENT_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in agent_env.keys() {
        if !is_plain_key(&key["AGENT_".len()..]) {
            return Err(invalid(format!(
                "environment variable '{}' names no config field",
                short(key)
            )));
        }
    }
    builder = builder.add_source(
        config::Environment::with_prefix("AGENT")
            .prefix_separator("_")
            .try_parsing(true)
            .source(Some(agent_env)),
    );
    builder = apply_cli(builder, cli)?;
    let raw: RawConfig = builder.build()?.try_deserialize()?;
    with_commands(raw, raw_commands)
}

/// Validates `raw` and the commands of the config file and of `commands_file`.
fn with_commands(raw: RawConfig, mut commands: Vec<RawCommand>) -> Result<Config> {
    if let Some(path) = raw
        .commands_file
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        commands.extend(crate::command::spec::read_commands_file(Path::new(path))?);
    }
    let mut config = raw.validate()?;
    config.commands = crate::command::spec::validate_all(commands)?;
    Ok(config)
}

/// Parses a TOML document (an example file, a test) over the defaults, without other layers.
///
/// # Errors
/// As [`load`].
pub fn from_toml_str(text: &str) -> Result<Config> {
    check_keys(text)?;
    let (rest, commands) = split_commands(text)?;
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::from_str(&rest, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?;
    with_commands(raw, commands)
}

/// Whether a key is a plain name (letters, digits, `_`), as every field is. The `config` crate
/// reads any other key as a path and grows an array to the index it names, so
/// `'g[167440737095516150]' = 1` panicked (capacity overflow) and a smaller index could take all
/// memory (found by the `config_toml` fuzz target, `docs/RELIABILITY.md`).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Refuses a document with a top-level key that is not a plain name (see [`is_plain_key`]).
/// Text that is not TOML passes, for the `config` crate to report.
fn check_keys(text: &str) -> Result<()> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    match table.keys().find(|key| !is_plain_key(key)) {
        Some(key) => Err(invalid(format!(
            "key '{}' names no config field",
            short(key)
        ))),
        None => Ok(()),
    }
}

/// At most 64 characters of a refused key, for the error.
fn short(raw: &str) -> String {
    match raw.char_indices().nth(64) {
        None => raw.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes)", &raw[..cut], raw.len()),
    }
}

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

fn apply_cli(builder: Builder, cli: &CliOverrides) -> Result<Builder> {
    let mut builder = builder
        .set_override_option("coordinator_url", cli.coordinator_url.clone())?
        .set_override_option("slots", cli.slots.map(i64::from))?
        .set_override_option("metrics_listen_addr", cli.metrics_listen_addr.clone())?
        .set_override_option("instance_type", cli.instance_type.clone())?
        .set_override_option("price_per_hour_dollars", cli.price_per_hour_dollars)?
        .set_override_option("commands_file", cli.commands_file.clone())?
        .set_override_option(
            "cpu_threads",
            cli.cpu_threads
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        )?;
    if let Some(ordinal) = cli.gpu {
        builder = builder
            .set_override("backend", "cuda")?
            .set_override("gpu_ordinal", i64::from(ordinal))?;
    } else if cli.cpu {
        builder = builder.set_override("backend", "cpu")?;
    }
    Ok(builder)
}

impl RawConfig {
    /// Checks every field and builds the typed [`Config`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field.
    pub fn validate(self) -> Result<Config> {
        if self.version != CONFIG_VERSION {
            return Err(invalid(format!(
                "version must be {CONFIG_VERSION}, got {}",
                self.version
            )));
        }
        let device = match self.backend.as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(self.gpu_ordinal),
            other => {
                return Err(invalid(format!(
                    "backend must be 'cpu' or 'cuda', got '{other}'"
                )));
            }
        };
        let slots = NonZeroU32::new(self.slots)
            .filter(|slots| slots.get() <= MAX_SLOTS)
            .ok_or_else(|| {
                invalid(format!(
                    "slots must be from 1 to {MAX_SLOTS}, got {}",
                    self.slots
                ))
            })?;
        let metrics_listen_addr = self.metrics_listen_addr.parse().map_err(|_| {
            invalid(format!(
                "metrics_listen_addr '{}' is not an address like 127.0.0.1:9101",
                self.metrics_listen_addr
            ))
        })?;
        let tls = self.tls()?;
        let pricing = Pricing::resolve(
            self.instance_type.as_deref(),
            self.price_per_hour_dollars,
            self.gpus_per_instance,
            device != Device::Cpu,
            slots.get(),
        )?;
        let timing = self.timing()?;
        if let Some(threads) = self.cpu_threads
            && !(1..=MAX_CPU_THREADS).contains(&threads)
        {
            return Err(invalid(format!(
                "cpu_threads must be from 1 to {MAX_CPU_THREADS}, got {threads}"
            )));
        }
        Ok(Config {
            coordinator_url: self.coordinator_url,
            metrics_listen_addr,
            device,
            slots,
            pricing,
            auth_token: resolve_token(self.auth_token, self.auth_token_file)?,
            tls,
            timing,
            cpu_threads: self.cpu_threads,
            commands: Vec::new(),
        })
    }

    /// The TLS settings an `https://` URL implies; TLS fields with an `http://` URL are
    /// refused rather than ignored.
    fn tls(&self) -> Result<Option<ClientTls>> {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        let tls = ClientTls {
            ca_file: set(&self.tls_ca_file).map(PathBuf::from),
            cert_file: set(&self.tls_cert_file).map(PathBuf::from),
            key_file: set(&self.tls_key_file).map(PathBuf::from),
            domain: set(&self.tls_domain),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "tls_cert_file and tls_key_file go together: set both or neither".to_string(),
            ));
        }
        if self.coordinator_url.starts_with("https://") {
            return Ok(Some(tls));
        }
        if !self.coordinator_url.starts_with("http://") {
            return Err(invalid(format!(
                "coordinator_url '{}' must start with http:// or https://",
                self.coordinator_url
            )));
        }
        if tls != ClientTls::default() {
            return Err(invalid(format!(
                "tls_* fields are set but coordinator_url '{}' is http://: use https:// for TLS",
                self.coordinator_url
            )));
        }
        Ok(None)
    }

    fn timing(&self) -> Result<Timing> {
        let timing = Timing {
            heartbeat_interval: seconds("heartbeat_interval_secs", self.heartbeat_interval_secs)?,
            request_timeout: seconds("request_timeout_secs", self.request_timeout_secs)?,
            connect_timeout: seconds("connect_timeout_secs", self.connect_timeout_secs)?,
            retry_initial_backoff: seconds(
                "retry_initial_backoff_secs",
                self.retry_initial_backoff_secs,
            )?,
            retry_max_backoff: seconds("retry_max_backoff_secs", self.retry_max_backoff_secs)?,
            idle_poll_max: seconds("idle_poll_max_secs", self.idle_poll_max_secs)?,
            lease_wait: seconds_or_zero("lease_wait_secs", self.lease_wait_secs)?,
            shutdown_grace: seconds("shutdown_grace_secs", self.shutdown_grace_secs)?,
        };
        if timing.retry_max_backoff < timing.retry_initial_backoff {
            return Err(invalid(
                "retry_max_backoff_secs must be >= retry_initial_backoff_secs".to_string(),
            ));
        }
        Ok(timing)
    }
}

impl Config {
    /// A one-line description of the effective config, with the auth token redacted.
    pub fn redacted_summary(&self) -> String {
        format!(
            "coordinator_url={} metrics_listen_addr={} device={:?} slots={} instance_type='{}' \
             price_per_hour_dollars={} devices_per_instance={} auth_token={} tls={} timing={:?} \
             commands=[{}]",
            self.coordinator_url,
            self.metrics_listen_addr,
            self.device,
            self.slots,
            self.pricing.instance_type,
            self.pricing.instance_price_per_hour_dollars,
            self.pricing.devices_per_instance,
            if self.auth_token.is_some() {
                "<redacted>"
            } else {
                "<none>"
            },
            self.tls.as_ref().map_or_else(
                || "off".to_string(),
                |tls| format!("on ({})", tls.summary())
            ),
            self.timing,
            self.commands
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// The bearer token, inline or from a file (trimmed); not both.
fn resolve_token(token: Option<String>, file: Option<String>) -> Result<Option<String>> {
    let token = token.filter(|t| !t.is_empty());
    let file = file.filter(|f| !f.trim().is_empty());
    match (token, file) {
        (Some(_), Some(_)) => Err(invalid(
            "set auth_token (AGENT_AUTH_TOKEN) or auth_token_file, not both".to_string(),
        )),
        (Some(token), None) => Ok(Some(token)),
        (None, Some(path)) => {
            let text =
                crate::files::read_small_text(std::path::Path::new(&path)).map_err(|source| {
                    Error::Io {
                        what: format!("failed to read auth_token_file '{path}'"),
                        source,
                    }
                })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(invalid(format!("auth_token_file '{path}' is empty")));
            }
            Ok(Some(token.to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// The most trials one agent trains at once: each slot is a thread of its own, and a typo of
/// millions spawned threads until the system refused one.
pub const MAX_SLOTS: u32 = 1_024;
/// The most threads of the CPU backend (a typo of millions stalled the agent at startup).
pub const MAX_CPU_THREADS: usize = 1_024;

/// The longest any timing field may be, in seconds: a day, as the coordinator's lease timeout.
/// More is a typo, and a value past `Duration`'s range panicked the agent at startup (found by
/// the `config_toml` fuzz target, `docs/RELIABILITY.md`).
pub const MAX_TIMING_SECS: f64 = 86_400.0;

fn seconds(field: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= MAX_TIMING_SECS) {
        return Err(invalid(format!(
            "{field} must be a positive number of seconds, at most {MAX_TIMING_SECS}, got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

fn seconds_or_zero(field: &str, value: f64) -> Result<Duration> {
    if value == 0.0 {
        return Ok(Duration::ZERO);
    }
    seconds(field, value).map_err(|_| {
        invalid(format!(
            "{field} must be 0 or a positive number of seconds, at most {MAX_TIMING_SECS}, got {value}"
        ))
    })
}

fn invalid(reason: String) -> Error {
    Error::Config { reason }
}

#[cfg(test)]
mod tests;
