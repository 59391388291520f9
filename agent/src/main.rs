//! The `agent` binary: parses flags and config, sets up logging, and runs [`agent::run`] until
//! SIGTERM or SIGINT, or until the parent process exits if `TUNEFLEET_EXIT_WITH_PARENT` is set
//! ([`agent::parent`]).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// Pulls trials from a tunefleet coordinator and trains them on a GPU or the CPU.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, after_help = SETTINGS_HELP)]
struct Cli {
    /// The coordinator's gRPC endpoint, e.g. http://10.0.0.5:50051.
    #[arg(long = "coordinator", value_name = "URL")]
    coordinator_url: Option<String>,
    /// Train on CUDA device N.
    #[arg(long, value_name = "N", conflicts_with = "cpu")]
    gpu: Option<u32>,
    /// Train on the CPU.
    #[arg(long)]
    cpu: bool,
    /// Trials trained at once.
    #[arg(long, value_name = "K")]
    slots: Option<u32>,
    /// TOML config file (see agent/examples/agent.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where /metrics listens (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    metrics_listen_addr: Option<String>,
    /// Cloud instance type, for pricing (e.g. p2.xlarge).
    #[arg(long, value_name = "NAME")]
    instance_type: Option<String>,
    /// Price of the whole instance in dollars an hour (overrides the catalogue).
    #[arg(long = "price-per-hour", value_name = "DOLLARS")]
    price_per_hour_dollars: Option<f64>,
    /// Threads of the CPU backend (default: all cores; with --slots K, K trials share them).
    #[arg(long, value_name = "N")]
    cpu_threads: Option<usize>,
    /// A TOML file of `[[commands]]` tables this agent runs for `command` workloads.
    #[arg(long, value_name = "FILE")]
    commands_file: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The settings only a config file or the environment sets, shown after the flags.
const SETTINGS_HELP: &str = "\
Settings (in --config FILE, or as AGENT_<NAME> environment variables, e.g. AGENT_CPU_THREADS=4;
flags win over the environment, which wins over the file; agent/examples/agent.toml has them all):
  coordinator_url, metrics_listen_addr, backend (cpu|cuda), gpu_ordinal, slots, cpu_threads,
  instance_type, price_per_hour_dollars, gpus_per_instance, auth_token, auth_token_file,
  tls_ca_file, tls_cert_file, tls_key_file, tls_domain, heartbeat_interval_secs,
  request_timeout_secs, connect_timeout_secs, retry_initial_backoff_secs, retry_max_backoff_secs,
  idle_poll_max_secs, lease_wait_secs, shutdown_grace_secs, commands_file.
Commands (only in --config FILE or commands_file, as [[commands]] tables): name, argv (with
  {param} placeholders), workdir, env, metrics, metrics_source (stdout|file),
  epoch_timeout_secs, stop_grace_secs.
An agent is leased only trials of the workloads it can train (textcnn and function, and
command for the commands it declares).";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trains one configuration locally, without a coordinator.
    Train(agent::train_cmd::TrainOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Train(options)) = &cli.command {
        return agent::train_cmd::run(options);
    }
    let overrides = agent::config::CliOverrides {
        coordinator_url: cli.coordinator_url,
        gpu: cli.gpu,
        cpu: cli.cpu,
        slots: cli.slots,
        metrics_listen_addr: cli.metrics_listen_addr,
        instance_type: cli.instance_type,
        price_per_hour_dollars: cli.price_per_hour_dollars,
        cpu_threads: cli.cpu_threads,
        commands_file: cli.commands_file,
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config = agent::config::load(cli.config.as_deref(), &env, &overrides)
        .context("failed to load the agent config")?;
    if let Some(threads) = config.cpu_threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("failed to size the cpu thread pool")?;
    }
    let parent = agent::parent::ParentWatch::from_env(&env).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    // The signal handlers are installed now, inside the runtime, before the agent is ready.
    let shutdown = {
        let _entered = runtime.enter();
        agent::parent::shutdown_or_parent_exit(shutdown_signal(), parent)
    };
    runtime.block_on(agent::run(config, shutdown))?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The SIGTERM handler is installed when this is called
/// (inside the runtime), not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "failed to listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async {
            match sigterm {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "failed to listen for sigterm");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => tracing::info!("received ctrl-c, shutting down"),
            () = terminate => tracing::info!("received sigterm, shutting down"),
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file or journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
