//! The `command` workload: trials run a program the agent declares in its config
//! (`[[commands]]`: a name, an argv template, a working directory, an environment and optionally
//! the metrics it reports), so users tune their own model in their own framework.
//!
//! For each trial the agent fills the argv's `{param}` placeholders with the trial's values and
//! starts the command with `TUNEFLEET_PARAMS` (the parameters as JSON), `TUNEFLEET_TRIAL_ID`,
//! `TUNEFLEET_METRIC`, `TUNEFLEET_METRICS_FILE` and `CUDA_VISIBLE_DEVICES` (the agent's GPU, or
//! empty on a CPU agent). The command prints one JSON line an epoch
//! (`{"epoch": 3, "dev_accuracy": 0.81}`) on stdout or appends it to the metrics file; each
//! epoch is reported as the built-in workloads' are, so early stopping, cost and metrics work
//! unchanged. See `docs/agent-protocol.md` and the README's "Tune your own model".
//!
//! - [`spec`]: the declarations and their validation; [`epoch_line`]: the epoch lines;
//!   [`metrics_file`]: the file source; [`process`]: starting, reading and stopping the command.

pub mod epoch_line;
pub mod metrics_file;
pub mod process;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::v1::parameter_value::Kind;

use crate::config::Device;
use crate::trainer::{EpochControl, EpochMetrics, TrainOutcome, TrialFailure, TrialJob};
use process::Launch;
use spec::CommandSpec;

/// Runs the declared commands of one slot.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    commands: Arc<Vec<CommandSpec>>,
    cuda_visible_devices: String,
}

impl CommandRunner {
    /// A runner of `commands` for an agent on `device`.
    pub fn new(commands: Arc<Vec<CommandSpec>>, device: Device) -> Self {
        let cuda_visible_devices = match device {
            Device::Cuda(ordinal) => ordinal.to_string(),
            Device::Cpu => String::new(),
        };
        Self {
            commands,
            cuda_visible_devices,
        }
    }

    /// The names of the declared commands.
    pub fn names(&self) -> Vec<String> {
        self.commands.iter().map(|c| c.name.clone()).collect()
    }

    fn find(&self, name: &str) -> Result<&CommandSpec, TrialFailure> {
        self.commands
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let declared = self.names();
                TrialFailure::new(format!(
                    "command '{name}' is not declared by this agent (it declares: {})",
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ))
            })
    }

    /// Runs `job`'s command to its end, calling `on_epoch` for each epoch line; `stop_requested`
    /// is polled between epochs (experiment stop, agent shutdown, lost lease).
    ///
    /// # Errors
    /// A [`TrialFailure`] for a command not declared, a metric it does not report, an unknown
    /// placeholder, a command that cannot start, crashes, exits non-zero or goes quiet.
    pub fn run(
        &self,
        job: &TrialJob,
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
        stop_requested: &dyn Fn() -> bool,
    ) -> Result<TrainOutcome, TrialFailure> {
        let spec = self.find(&job.workload.command)?;
        let metric = if job.metric.is_empty() {
            "value"
        } else {
            job.metric.as_str()
        };
        if !spec.metrics.is_empty() && !spec.metrics.iter().any(|m| m == metric) {
            return Err(TrialFailure::new(format!(
                "metric '{metric}' is not reported by command '{}' (it reports: {})",
                spec.name,
                spec.metrics.join(", ")
            )));
        }
        let argv = spec.render_argv(&job.params).map_err(TrialFailure::new)?;
        let metrics_file = metrics_file::MetricsFile::create(&job.trial_id).map_err(|error| {
            TrialFailure::new(format!(
                "failed to create the metrics file directory: {error}"
            ))
        })?;
        let env = vec![
            ("TUNEFLEET_PARAMS".to_string(), params_json(&job.params)),
            ("TUNEFLEET_TRIAL_ID".to_string(), job.trial_id.clone()),
            ("TUNEFLEET_METRIC".to_string(), metric.to_string()),
            (
                "TUNEFLEET_METRICS_FILE".to_string(),
                metrics_file.path().display().to_string(),
            ),
            (
                "CUDA_VISIBLE_DEVICES".to_string(),
                self.cuda_visible_devices.clone(),
            ),
        ];
        let launch = Launch {
            spec,
            argv,
            env,
            metric,
            maximize: job.maximize,
            metrics_file,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| TrialFailure::new(format!("failed to start a runtime: {error}")))?;
        tracing::info!(command = %spec.name, argv = ?launch.argv, "starting command");
        runtime.block_on(process::drive(launch, on_epoch, stop_requested))
    }
}

/// The parameters as a JSON object: numbers as numbers, categorical values as strings.
pub fn params_json(params: &BTreeMap<String, proto::v1::ParameterValue>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .filter_map(|(name, value)| {
            let json = match value.kind.as_ref()? {
                Kind::IntValue(int) => serde_json::Value::from(*int),
                Kind::FloatValue(float) => serde_json::Value::from(*float),
                Kind::CategoricalValue(text) => serde_json::Value::from(text.clone()),
            };
            Some((name.clone(), json))
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests;
