//! `tunectl`, the tunefleet command-line client: parses the command line and calls the
//! [`tunectl`] library's commands. Errors are one line on stderr and exit code 1, or 128 + the
//! signal's number when SIGTERM, SIGHUP or SIGINT stopped `local` or `study`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tunectl::cli::{self, ConnectOptions, ExperimentCommand};

/// Creates, inspects and stops tunefleet experiments.
#[derive(Debug, Parser)]
#[command(name = "tunectl", version)]
struct Args {
    #[command(flatten)]
    connect: ConnectOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Experiment(ExperimentCommand),
    /// Runs the tuner in-process, speaking JSON lines on stdin/stdout (for benchmarks).
    AskTell(tunectl::ask_tell::AskTellOptions),
    /// Runs a whole cluster on this machine (coordinator and agents as child processes).
    Local(tunectl::local::LocalOptions),
    /// Runs BO, random and grid search on a scenario as one study (tagged experiments).
    Study(tunectl::cli::study::StudyOptions),
    /// Writes a study's tables, plots and parameter importance into a directory.
    Report(tunectl::cli::report::ReportOptions),
    /// Makes a private CA and TLS certificates for the coordinator and its clients.
    Certs(tunectl::cli::certs::CertsOptions),
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Experiment(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut stdout = std::io::stdout().lock();
            runtime.block_on(cli::run(&args.connect, command, &mut stdout))
        }
        Command::AskTell(options) => {
            tunectl::ask_tell::run(&options, std::io::stdin().lock(), std::io::stdout().lock())
        }
        Command::Local(options) => tunectl::local::run(&options),
        Command::Study(options) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut stdout = std::io::stdout().lock();
            runtime.block_on(cli::study::run(&args.connect, &options, &mut stdout))
        }
        Command::Report(options) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut stdout = std::io::stdout().lock();
            runtime.block_on(cli::report::run(&args.connect, &options, &mut stdout))
        }
        Command::Certs(options) => cli::certs::run(&options, &mut std::io::stdout().lock()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    coordinator::telemetry::init(coordinator::telemetry::LogFormat::Text);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // 128 + the signal's number when a signal stopped a command (`tunectl local`).
            tunectl::local::signals::exit_code_of(&error).map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}
