//! The `coordinator` daemon: parses flags, loads the config, sets up logging and calls
//! [`coordinator::run`], which stops on SIGTERM or SIGINT, or when the parent process exits if
//! `TUNEFLEET_EXIT_WITH_PARENT` is set ([`coordinator::parent`]).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coordinator::config::{Config, Overrides};
use coordinator::parent::{self, ParentWatch};
use coordinator::telemetry::{self, LogFormat};

/// Runs the tunefleet coordinator (gRPC on listen_addr, Prometheus on metrics_listen_addr).
#[derive(Debug, Parser)]
#[command(name = "coordinator", version)]
struct Args {
    /// TOML config file (fields: see coordinator/examples/coordinator.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC listen address, e.g. 0.0.0.0:50051 (overrides the config).
    #[arg(long, value_name = "ADDR")]
    listen_addr: Option<String>,
    /// Prometheus /metrics listen address (overrides the config).
    #[arg(long, value_name = "ADDR")]
    metrics_listen_addr: Option<String>,
    /// Directory of the SQLite store (overrides the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// File holding the bearer token agents and clients must send (overrides the config).
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let overrides = Overrides {
        listen_addr: args.listen_addr,
        metrics_listen_addr: args.metrics_listen_addr,
        data_dir: args.data_dir,
        auth_token_file: args.auth_token_file,
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let result = Config::load(args.config.as_deref(), &env, &overrides).and_then(|config| {
        let parent = ParentWatch::from_env(&env).map_err(coordinator::Error::Config)?;
        let runtime = tokio::runtime::Runtime::new()
            .map_err(|e| coordinator::Error::io("start the tokio runtime", e))?;
        // The signal handler is installed now, inside the runtime, before the readiness line.
        let shutdown = {
            let _entered = runtime.enter();
            parent::shutdown_or_parent_exit(coordinator::shutdown_signal(), parent)
        };
        runtime.block_on(coordinator::run(config, shutdown))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", coordinator::display_chain(&error));
            ExitCode::FAILURE
        }
    }
}
