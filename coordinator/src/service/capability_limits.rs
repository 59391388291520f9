//! Bounds on what an agent says about itself at `RegisterAgent`.
//!
//! The capabilities are kept in memory and in the store for as long as the agent is known, and
//! the instance type is copied into every trial the agent runs. Unbounded, one registration of
//! a few megabytes would grow every later trial row (and every `ListTrials` page) by as much.
//! Each text is therefore capped, each list counted, and the price and slots kept in range.
//! Zeros (and empty texts) pass: they mean "not said", as proto3 defaults.

use crate::service::limits::{
    MAX_COMMAND_NAME_BYTES, MAX_NAME_BYTES, MAX_PARALLELISM, check_amount, check_len,
};
use crate::service::model::AgentCapabilities;
use crate::{Error, Result};

/// The most workload kinds an agent may declare.
pub const MAX_AGENT_WORKLOADS: usize = 16;
/// The longest workload kind an agent may declare, in bytes.
pub const MAX_WORKLOAD_KIND_BYTES: usize = 64;
/// The most commands an agent may declare.
pub const MAX_AGENT_COMMANDS: usize = 1_000;
/// The highest price an agent may advertise, in dollars an hour.
pub const MAX_PRICE_PER_HOUR_DOLLARS: f64 = 1e6;
/// The most slots an agent may advertise.
pub const MAX_AGENT_SLOTS: u32 = MAX_PARALLELISM;

/// Checks an agent's capabilities against every bound.
///
/// # Errors
/// `InvalidArgument` naming the first field over its bound, the bound and a short echo.
pub fn check_capabilities(capabilities: &AgentCapabilities) -> Result<()> {
    let texts = [
        ("capabilities.device_name", &capabilities.device_name),
        ("capabilities.instance_type", &capabilities.instance_type),
        ("capabilities.hostname", &capabilities.hostname),
        ("capabilities.version", &capabilities.version),
    ];
    for (field, text) in texts {
        check_len(field, text, MAX_NAME_BYTES)?;
    }
    check_list(
        "capabilities.workloads",
        &capabilities.workloads,
        MAX_AGENT_WORKLOADS,
        MAX_WORKLOAD_KIND_BYTES,
    )?;
    check_list(
        "capabilities.commands",
        &capabilities.commands,
        MAX_AGENT_COMMANDS,
        MAX_COMMAND_NAME_BYTES,
    )?;
    check_amount(
        "capabilities.price_per_hour_dollars",
        capabilities.price_per_hour_dollars,
        MAX_PRICE_PER_HOUR_DOLLARS,
    )?;
    if capabilities.slots > MAX_AGENT_SLOTS {
        return Err(Error::InvalidArgument(format!(
            "capabilities.slots must be at most {MAX_AGENT_SLOTS}, got {}",
            capabilities.slots
        )));
    }
    if capabilities.device_ordinal < -1 {
        return Err(Error::InvalidArgument(format!(
            "capabilities.device_ordinal must be a GPU ordinal >= 0, or -1 for a CPU, got {}",
            capabilities.device_ordinal
        )));
    }
    Ok(())
}

fn check_list(field: &str, items: &[String], max_items: usize, max_bytes: usize) -> Result<()> {
    if items.len() > max_items {
        return Err(Error::InvalidArgument(format!(
            "{field} must number at most {max_items}, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .try_for_each(|item| check_len(field, item, max_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentCapabilities {
        AgentCapabilities {
            backend: "cuda".into(),
            device_name: "NVIDIA H100 80GB HBM3".into(),
            device_memory_bytes: 80 << 30,
            device_ordinal: 0,
            instance_type: "p5.48xlarge".into(),
            price_per_hour_dollars: 12.29,
            slots: 1,
            hostname: "gpu-node-7".into(),
            workloads: vec!["textcnn".into(), "function".into(), "command".into()],
            version: "0.1.0".into(),
            commands: vec!["train-resnet".into()],
        }
    }

    fn refusal(edit: impl FnOnce(&mut AgentCapabilities)) -> String {
        let mut capabilities = agent();
        edit(&mut capabilities);
        match check_capabilities(&capabilities) {
            Err(Error::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_real_agent_and_an_unsaid_one_pass() {
        check_capabilities(&agent()).unwrap();
        check_capabilities(&AgentCapabilities::default()).unwrap();
        let mut at_bounds = agent();
        at_bounds.hostname = "h".repeat(MAX_NAME_BYTES);
        at_bounds.commands = vec!["c".repeat(MAX_COMMAND_NAME_BYTES); MAX_AGENT_COMMANDS];
        at_bounds.price_per_hour_dollars = MAX_PRICE_PER_HOUR_DOLLARS;
        at_bounds.slots = MAX_AGENT_SLOTS;
        at_bounds.device_ordinal = -1;
        check_capabilities(&at_bounds).unwrap();
    }

    #[test]
    fn each_text_is_capped_naming_the_field() {
        let message = refusal(|c| c.instance_type = "x".repeat(3 << 20));
        assert!(message.contains("capabilities.instance_type"), "{message}");
        assert!(message.contains("at most 256 bytes"), "{message}");
        assert!(message.len() < 300, "the echo is short: {message}");
        let message = refusal(|c| c.hostname = "é".repeat(200));
        assert!(message.contains("capabilities.hostname"), "{message}");
        let message = refusal(|c| c.device_name = "d".repeat(MAX_NAME_BYTES + 1));
        assert!(message.contains("capabilities.device_name"), "{message}");
        let message = refusal(|c| c.version = "v".repeat(MAX_NAME_BYTES + 1));
        assert!(message.contains("capabilities.version"), "{message}");
    }

    #[test]
    fn lists_are_counted_and_their_items_capped() {
        let message = refusal(|c| c.workloads = vec!["textcnn".into(); MAX_AGENT_WORKLOADS + 1]);
        assert!(
            message.contains("capabilities.workloads must number at most 16"),
            "{message}"
        );
        let message = refusal(|c| c.workloads.push("k".repeat(MAX_WORKLOAD_KIND_BYTES + 1)));
        assert!(
            message.contains("capabilities.workloads must be at most 64 bytes"),
            "{message}"
        );
        let message = refusal(|c| c.commands = vec!["c".into(); MAX_AGENT_COMMANDS + 1]);
        assert!(
            message.contains("capabilities.commands must number at most 1000"),
            "{message}"
        );
        let message = refusal(|c| c.commands.push("c".repeat(MAX_COMMAND_NAME_BYTES + 1)));
        assert!(message.contains("capabilities.commands"), "{message}");
    }

    #[test]
    fn the_price_slots_and_ordinal_are_kept_in_range() {
        for price in [f64::NAN, f64::INFINITY, -0.01, 1.1e6] {
            let message = refusal(|c| c.price_per_hour_dollars = price);
            assert!(
                message.contains("capabilities.price_per_hour_dollars"),
                "{message}"
            );
        }
        let message = refusal(|c| c.slots = u32::MAX);
        assert!(
            message.contains("capabilities.slots must be at most 10000"),
            "{message}"
        );
        let message = refusal(|c| c.device_ordinal = -2);
        assert!(message.contains("capabilities.device_ordinal"), "{message}");
    }
}
