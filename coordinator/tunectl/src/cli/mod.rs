//! `tunectl`, the command-line client: create, list, inspect, watch and stop experiments over
//! gRPC, over TLS for an `https://` coordinator ([`tls`]), and make a private CA for that
//! ([`certs`]). (`ask-tell` and `local` live in [`crate::ask_tell`] and [`crate::local`].)

pub mod certs;
pub mod import;
pub mod numbers;
pub mod output;
pub mod report;
pub mod spec;
pub mod study;
pub mod tls;
pub mod watch;

use std::path::PathBuf;

use anyhow::Context;
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use output::Format;
use spec::SpecFile;

/// Where the coordinator is and how to authenticate.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectOptions {
    /// Coordinator gRPC URL; https:// turns TLS on.
    #[arg(
        long,
        env = "TUNEFLEET_COORDINATOR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub coordinator: String,
    /// Bearer token, when the coordinator requires one (prefer --token-file).
    #[arg(long, env = "TUNEFLEET_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "TUNEFLEET_TOKEN_FILE", value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify an https:// coordinator with (default: the system's
    /// trust store).
    #[arg(long, env = "TUNEFLEET_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a coordinator that requires mutual TLS.
    #[arg(long, env = "TUNEFLEET_CERT_FILE", value_name = "FILE", global = true)]
    pub cert_file: Option<PathBuf>,
    /// Private key of --cert-file (PEM).
    #[arg(long, env = "TUNEFLEET_KEY_FILE", value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
}

impl ConnectOptions {
    /// A coordinator at `url` without a token or TLS files (the one `tunectl local` starts).
    pub fn plain(url: &str) -> Self {
        Self {
            coordinator: url.to_owned(),
            token: None,
            token_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// The experiment commands (`create` … `stop`).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ExperimentCommand {
    /// Creates an experiment from a TOML spec and prints its id.
    Create {
        /// The spec file.
        spec: PathBuf,
    },
    /// Lists experiments: name, strategy, study, state, trials done of the budget, best value.
    List {
        /// Only this study's experiments.
        #[arg(long)]
        study: Option<String>,
    },
    /// Shows one experiment.
    Status {
        /// Experiment id.
        id: String,
    },
    /// Shows the experiment's progress until it ends: a live bar on a terminal, else one plain
    /// line per change.
    Watch {
        /// Experiment id.
        id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval_secs: f64,
        /// How long to wait for the coordinator's first answer (one still starting) before
        /// giving up, seconds.
        #[arg(long, default_value_t = 30.0)]
        connect_secs: f64,
        /// How long to keep polling a coordinator that stopped answering (restarting, say)
        /// before giving up, seconds.
        #[arg(long, default_value_t = 600.0)]
        reconnect_secs: f64,
    },
    /// Prints the best trial.
    Best {
        /// Experiment id.
        id: String,
    },
    /// Prints the trials.
    Trials {
        /// Experiment id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Include each trial's epoch reports (JSON only).
        #[arg(long)]
        epochs: bool,
    },
    /// Stops an experiment (running trials stop at their next epoch).
    Stop {
        /// Experiment id.
        id: String,
    },
    /// Resumes an experiment paused because its trials kept failing the same way (fix the
    /// cause first: `tunectl status ID` says what it was).
    Resume {
        /// Experiment id.
        id: String,
    },
    /// Warm start: adds results obtained elsewhere to an experiment, from CSV (`tunectl trials
    /// --format csv` of an older experiment), a JSON array (`--format json`) or JSON lines. BO
    /// uses them like its own results; they do not count towards the budget.
    Import {
        /// Experiment id.
        id: String,
        /// The file: columns or keys named like the experiment's parameters, and `value`.
        file: PathBuf,
        /// Queue the file's configurations to run first instead (values are ignored).
        #[arg(long)]
        enqueue: bool,
    },
}

/// Adds `authorization: Bearer …` to every request when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The client type `tunectl` uses.
pub type Client = ExperimentServiceClient<InterceptedService<Channel, BearerToken>>;

/// Connects to the coordinator, over TLS for an `https://` URL.
///
/// # Errors
/// When the URL, a TLS file or the token file is invalid, or the coordinator cannot be reached
/// (or its certificate does not verify).
pub async fn connect(options: &ConnectOptions) -> anyhow::Result<Client> {
    let (endpoint, token) = endpoint(options)?;
    let channel = endpoint.connect().await.with_context(|| {
        format!(
            "cannot connect to the coordinator at {}",
            options.coordinator
        )
    })?;
    Ok(ExperimentServiceClient::with_interceptor(
        channel,
        BearerToken(token),
    ))
}

/// As [`connect`], but the connection is made at the first request (and made again after it
/// drops), so a coordinator that is down now is an `Unavailable` request later, not an error
/// here: for `tunectl watch`, which waits for a coordinator that is restarting.
///
/// # Errors
/// An invalid URL, token or TLS file.
pub fn connect_lazily(options: &ConnectOptions) -> anyhow::Result<Client> {
    let (endpoint, token) = endpoint(options)?;
    Ok(ExperimentServiceClient::with_interceptor(
        endpoint.connect_lazy(),
        BearerToken(token),
    ))
}

/// The coordinator's endpoint (with TLS when asked for) and the bearer token's header value.
fn endpoint(
    options: &ConnectOptions,
) -> anyhow::Result<(Endpoint, Option<MetadataValue<tonic::metadata::Ascii>>)> {
    let token = tls::token(options)?;
    let mut endpoint = Endpoint::from_shared(options.coordinator.clone())
        .with_context(|| format!("invalid coordinator url '{}'", options.coordinator))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = tls::client_config(options)? {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("cannot set up tls for '{}'", options.coordinator))?;
    }
    let token = match token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .context("the token must be printable ascii")?,
        ),
        None => None,
    };
    Ok((endpoint, token))
}

/// Turns a status into a one-line error.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(StatusError(status))
}

/// A refused or failed request, shown as "message (Code)"; kept as the error so callers can
/// tell a coordinator that is away from one that said no ([`StatusError::code`]).
#[derive(Debug)]
pub struct StatusError(pub tonic::Status);

impl StatusError {
    /// The status code of the first `StatusError` in `error`'s chain, if any.
    pub fn code(error: &anyhow::Error) -> Option<tonic::Code> {
        error
            .chain()
            .find_map(|e| e.downcast_ref::<StatusError>())
            .map(|e| e.0.code())
    }
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.0.message(), self.0.code())
    }
}

impl std::error::Error for StatusError {}

/// Runs one experiment command, writing its output to `out`.
///
/// # Errors
/// When the spec is invalid, the coordinator cannot be reached, or it refuses the request.
pub async fn run(
    options: &ConnectOptions,
    command: ExperimentCommand,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    if let ExperimentCommand::Create { spec } = &command {
        // Check the spec before connecting, so a bad file is reported as such.
        let spec = SpecFile::read(spec)?;
        let mut client = connect(options).await?;
        let experiment = create_experiment(&mut client, spec.to_pb()).await?;
        writeln!(out, "{}", experiment.id)?;
        return Ok(());
    }
    let mut client = if matches!(command, ExperimentCommand::Watch { .. }) {
        connect_lazily(options)?
    } else {
        connect(options).await?
    };
    match command {
        ExperimentCommand::Create { .. } => unreachable!("handled above"),
        ExperimentCommand::List { study } => {
            let experiments = list_experiments(&mut client, &study.unwrap_or_default()).await?;
            write!(out, "{}", output::experiments_table(&experiments))?;
        }
        ExperimentCommand::Status { id } => {
            let experiment = get_experiment(&mut client, &id).await?;
            write!(out, "{}", output::experiment_status(&experiment))?;
            if experiment.best_trial_id.is_some() {
                let request = pb::GetBestTrialRequest { experiment_id: id };
                let best = client.get_best_trial(request).await.map_err(status_error)?;
                if let Some(trial) = best.into_inner().trial {
                    write!(out, "{}", output::best_trial_metrics(&trial))?;
                }
            }
        }
        ExperimentCommand::Watch {
            id,
            interval_secs,
            connect_secs,
            reconnect_secs,
        } => {
            let display = watch::Display::for_stdout();
            let timing = watch::Timing::new(interval_secs, connect_secs, reconnect_secs)?;
            watch::watch(&mut client, &id, timing, display, out).await?
        }
        ExperimentCommand::Best { id } => {
            let request = pb::GetBestTrialRequest { experiment_id: id };
            let response = client
                .get_best_trial(request)
                .await
                .map_err(status_error)?
                .into_inner();
            match response.trial {
                Some(trial) => write!(out, "{}", output::trials(&[trial], Format::Table))?,
                None => anyhow::bail!("no result yet"),
            }
        }
        ExperimentCommand::Trials { id, format, epochs } => {
            let trials = list_trials(&mut client, &id, epochs).await?;
            write!(out, "{}", output::trials(&trials, format))?;
        }
        ExperimentCommand::Import { id, file, enqueue } => {
            let summary = import::run(&mut client, &id, &file, enqueue).await?;
            writeln!(out, "{summary}")?;
        }
        ExperimentCommand::Resume { id } => {
            let request = pb::ResumeExperimentRequest { experiment_id: id };
            let response = client
                .resume_experiment(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_new_state(out, response.experiment)?;
        }
        ExperimentCommand::Stop { id } => {
            let request = pb::StopExperimentRequest { experiment_id: id };
            let response = client
                .stop_experiment(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_new_state(out, response.experiment)?;
        }
    }
    Ok(())
}

/// Fetches one experiment.
///
/// # Errors
/// When the request fails.
pub async fn get_experiment(client: &mut Client, id: &str) -> anyhow::Result<pb::Experiment> {
    let request = pb::GetExperimentRequest {
        experiment_id: id.to_owned(),
    };
    let response = client
        .get_experiment(request)
        .await
        .map_err(status_error)?
        .into_inner();
    response
        .experiment
        .context("the coordinator returned no experiment")
}

/// Creates an experiment and returns it as the coordinator stored it.
///
/// # Errors
/// When the request fails or the answer holds no experiment.
pub async fn create_experiment(
    client: &mut Client,
    spec: pb::ExperimentSpec,
) -> anyhow::Result<pb::Experiment> {
    let name = spec.name.clone();
    let request = pb::CreateExperimentRequest { spec: Some(spec) };
    let response = client
        .create_experiment(request)
        .await
        .map_err(status_error)?
        .into_inner();
    // Warnings go to stderr, so the id on stdout stays the only thing a script reads.
    for warning in &response.warnings {
        eprintln!("warning: {warning}");
    }
    response
        .experiment
        .with_context(|| format!("the coordinator returned no experiment for '{name}'"))
}

/// An experiment's trials, with their epoch reports when `include_epochs`.
///
/// # Errors
/// When the request fails.
pub async fn list_trials(
    client: &mut Client,
    id: &str,
    include_epochs: bool,
) -> anyhow::Result<Vec<pb::Trial>> {
    let mut trials = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListTrialsRequest {
            experiment_id: id.to_owned(),
            include_epochs,
            page_token,
            page_size: 0,
        };
        let page = client
            .list_trials(request)
            .await
            .map_err(status_error)?
            .into_inner();
        trials.extend(page.trials);
        if page.next_page_token.is_empty() {
            return Ok(trials);
        }
        page_token = page.next_page_token;
    }
}

/// Every experiment (of `study`, when not empty), oldest first, page by page.
///
/// # Errors
/// When a request fails.
pub async fn list_experiments(
    client: &mut Client,
    study: &str,
) -> anyhow::Result<Vec<pb::Experiment>> {
    let mut experiments = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListExperimentsRequest {
            study: study.to_owned(),
            page_token,
            page_size: 0,
        };
        let page = client
            .list_experiments(request)
            .await
            .map_err(status_error)?
            .into_inner();
        experiments.extend(page.experiments);
        if page.next_page_token.is_empty() {
            return Ok(experiments);
        }
        page_token = page.next_page_token;
    }
}

/// Prints `ID STATE` for the experiment a stop or resume answered with.
fn print_new_state(
    out: &mut impl std::io::Write,
    experiment: Option<pb::Experiment>,
) -> anyhow::Result<()> {
    let experiment = experiment.context("the coordinator returned no experiment")?;
    writeln!(
        out,
        "{} {}",
        experiment.id,
        output::experiment_state(&experiment)
    )?;
    Ok(())
}
