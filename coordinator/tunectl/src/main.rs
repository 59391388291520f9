//! `tunectl`, the tunefleet command-line client: parses the command line and calls the
//! [`tunectl`] library's commands. Errors are one line on stderr and exit code 1, or 128 + the
//! signal's number when SIGTERM, SIGHUP or SIGINT stopped `local` or `study`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use tunectl::cli::{self, ConnectOptions, ExperimentCommand};

/// The ids of [`ConnectOptions`]' flags (global, so `tunectl create --coordinator …` works).
const CONNECT_ARGS: [&str; 6] = [
    "coordinator",
    "token",
    "token_file",
    "ca_file",
    "cert_file",
    "key_file",
];

/// Commands that talk to no coordinator (`local` starts its own): their `--help` leaves the
/// connection flags out, and they refuse one given on the command line.
const OFFLINE_COMMANDS: [&str; 3] = ["ask-tell", "local", "certs"];

/// Creates, inspects and stops tunefleet experiments.
#[derive(Debug, clap::Parser)]
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

/// The command line, with the connection flags hidden from the offline commands' help.
fn command() -> clap::Command {
    let mut command = Args::command();
    // Built first, so the global flags have been copied into every subcommand.
    command.build();
    command.mut_subcommands(|sub| {
        if !OFFLINE_COMMANDS.contains(&sub.get_name()) {
            return sub;
        }
        sub.mut_args(|arg| {
            if CONNECT_ARGS.contains(&arg.get_id().as_str()) {
                arg.hide(true)
            } else {
                arg
            }
        })
    })
}

/// An error when an offline command was given a connection flag, which it would ignore.
fn refuse_connect_flags(matches: &ArgMatches) -> anyhow::Result<()> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    if !OFFLINE_COMMANDS.contains(&name) {
        return Ok(());
    }
    for id in CONNECT_ARGS {
        let given = [matches, sub]
            .iter()
            .any(|m| m.value_source(id) == Some(ValueSource::CommandLine));
        if given {
            anyhow::bail!(
                "`tunectl {name}` talks to no coordinator, so it does not take --{}",
                id.replace('_', "-")
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command()).exit());
    coordinator::telemetry::init(coordinator::telemetry::LogFormat::Text);
    match refuse_connect_flags(&matches).and_then(|()| run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // 128 + the signal's number when a signal stopped a command (`tunectl local`).
            tunectl::local::signals::exit_code_of(&error).map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}
