//! `tunectl local --spec FILE`: the user's own spec (their data set file, or their own command)
//! instead of a built-in scenario, with the command line's overrides.
//!
//! A spec whose workload runs a command needs the command declared for the local agents: the
//! `--agent-config FILE` every agent reads must hold a `[[commands]]` table of that name. It is
//! checked here, before any daemon starts, so a missing declaration is one clear error rather
//! than trials that wait for an agent that never comes.

use std::path::Path;

use anyhow::{Context, bail};
use proto::v1 as pb;

use super::LocalOptions;
use crate::cli::spec::SpecFile;

/// The spec of `path` with the command line's overrides (strategy, budget, parallelism, seed,
/// early stopping, example limits).
///
/// # Errors
/// When the spec cannot be read or is invalid, or its command is not declared in
/// `--agent-config`.
pub fn build(path: &Path, opts: &LocalOptions) -> anyhow::Result<pb::ExperimentSpec> {
    let mut spec = SpecFile::read(path)?.to_pb();
    if let Some(strategy) = &opts.strategy {
        spec.set_strategy(match strategy.as_str() {
            "random" => pb::Strategy::Random,
            "grid" => pb::Strategy::Grid,
            _ => pb::Strategy::Bo,
        });
    }
    spec.budget_trials = opts.budget.unwrap_or(spec.budget_trials);
    let agent_slots = opts.agents.max(1) * opts.slots.max(1);
    spec.parallelism = match (opts.parallelism, spec.parallelism) {
        (Some(parallelism), _) => parallelism,
        (None, 0) => agent_slots,
        (None, own) => own,
    };
    spec.seed = opts.seed.unwrap_or(spec.seed);
    if let Some(rule) = &opts.early_stopping {
        spec.early_stopping =
            coordinator::grpc::convert::rule_to_pb(&crate::study::run::rule_by_name(rule)?);
    }
    if let Some(workload) = spec.workload.as_mut() {
        workload.max_train_examples = opts.max_train.unwrap_or(workload.max_train_examples);
        workload.max_dev_examples = opts.max_dev.unwrap_or(workload.max_dev_examples);
        if workload.kind == "command" {
            check_declared(&workload.command, opts.agent_config.as_deref())?;
        }
    }
    Ok(spec)
}

/// Checks that the agent config declares `command` in a `[[commands]]` table (the agents
/// validate the rest of the table when they start).
///
/// # Errors
/// Naming the command and what to do when it is not declared.
pub fn check_declared(command: &str, agent_config: Option<&Path>) -> anyhow::Result<()> {
    let Some(path) = agent_config else {
        bail!(
            "the spec's workload runs command '{command}': declare it for the local agents in an \
             agent config with a [[commands]] table named '{command}' and pass it with \
             --agent-config FILE (see the README, \"Tune your own model\")"
        );
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read agent config '{}'", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))
        .with_context(|| format!("invalid agent config '{}'", path.display()))?;
    let declared: Vec<&str> = table
        .get("commands")
        .and_then(toml::Value::as_array)
        .map(|commands| {
            commands
                .iter()
                .filter_map(|c| c.get("name").and_then(toml::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !declared.contains(&command) {
        bail!(
            "agent config '{}' declares no command '{command}' (it declares: {}); add a \
             [[commands]] table with name = \"{command}\"",
            path.display(),
            if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        local: LocalOptions,
    }

    const SPEC: &str = r#"
name = "own-model"
metric = "dev_accuracy"
direction = "maximize"
budget = 6
parallelism = 3
early_stopping = { rule = "median" }
[[parameters]]
name = "learning_rate"
type = "float"
low = 0.01
high = 1.0
log = true
[workload]
kind = "command"
command = "logreg"
"#;

    #[test]
    fn a_command_spec_needs_its_command_declared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec_path = dir.path().join("spec.toml");
        std::fs::write(&spec_path, SPEC).expect("writes");
        let spec_arg = spec_path.display().to_string();
        let opts = Wrapper::parse_from(["tunectl", "--spec", &spec_arg]).local;
        let error = build(&spec_path, &opts)
            .expect_err("not declared")
            .to_string();
        assert!(
            error.contains("'logreg'") && error.contains("--agent-config"),
            "{error}"
        );

        let config = dir.path().join("agent.toml");
        std::fs::write(&config, "[[commands]]\nname = \"other\"\nargv = [\"x\"]\n")
            .expect("writes");
        let config_arg = config.display().to_string();
        let opts = Wrapper::parse_from([
            "tunectl",
            "--spec",
            &spec_arg,
            "--agent-config",
            &config_arg,
        ])
        .local;
        let error = build(&spec_path, &opts)
            .expect_err("another command")
            .to_string();
        assert!(
            error.contains("declares no command 'logreg'") && error.contains("other"),
            "{error}"
        );

        std::fs::write(&config, "[[commands]]\nname = \"logreg\"\nargv = [\"x\"]\n")
            .expect("writes");
        let spec = build(&spec_path, &opts).expect("declared");
        assert_eq!(spec.name, "own-model");
        assert_eq!(
            (spec.budget_trials, spec.parallelism),
            (6, 3),
            "the spec's own"
        );
        assert!(spec.early_stopping.is_some(), "the spec's rule is kept");
        let opts = Wrapper::parse_from([
            "tunectl",
            "--spec",
            &spec_arg,
            "--agent-config",
            &config_arg,
            "--budget",
            "2",
            "--early-stopping",
            "none",
        ])
        .local;
        let spec = build(&spec_path, &opts).expect("declared");
        assert_eq!(spec.budget_trials, 2);
        assert!(spec.early_stopping.is_none(), "the flag wins");
    }

    #[test]
    fn spec_and_scenario_do_not_go_together() {
        let parsed =
            Wrapper::try_parse_from(["tunectl", "--spec", "a.toml", "--scenario", "basic"]);
        assert!(parsed.is_err());
    }
}
