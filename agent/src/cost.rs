//! Dollar cost of trials: a built-in instance catalogue and the cost-sharing rule.
//!
//! # The rule
//! An agent drives one device (one GPU, or the whole CPU of its instance) and runs `slots`
//! trials on it at once. Its share of the instance price is
//! `price_per_hour / devices_per_instance`, where `devices_per_instance` is the instance's GPU
//! count for a CUDA agent and 1 for a CPU agent (a CPU agent is billed the whole instance). Each
//! slot owns an equal `1 / slots` share of that device for as long as its trial holds it, so
//!
//! ```text
//! cost(trial) = wall_seconds × price_per_hour / 3600 / devices_per_instance / slots
//! ```
//!
//! When every slot is busy, the trials of one device together pay exactly the device's rented
//! time; idle slots are charged to no trial (that time is idle capacity, not a trial's cost).
//! Wall time, not device-busy time, is used because the instance is rented by the wall clock:
//! a trial that waits on its data loader still holds its share. The study (p2.xlarge at $0.90
//! an hour, one K80 per instance, one trial at a time) is the special case
//! `devices_per_instance = slots = 1`.
//!
//! # The prices
//! The study's two instances carry the study's prices. The current GPU instances are AWS
//! on-demand Linux list prices in us-east-1 as of mid-2025 (after AWS's June 2025 P4/P5 price
//! cut), rounded; g5.xlarge at $1.006 an hour matches a June 2026 survey of the EC2 rate card
//! (factualminds.com, "Amazon EC2 On-Demand Pricing … (2026)"). Prices change: they are
//! defaults, and `price_per_hour_dollars` in the agent config overrides them.
//!
//! ```
//! use agent::cost::{Pricing, instance};
//! let p2 = Pricing::for_instance(instance("p2.xlarge").unwrap(), false, 1);
//! assert!((p2.trial_cost_dollars(3600.0) - 0.90).abs() < 1e-12);
//! ```

use crate::error::{Error, Result};

/// One entry of the built-in instance catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    /// The cloud's name for the instance, e.g. "p2.xlarge".
    pub name: &'static str,
    /// On-demand price of the whole instance, dollars an hour.
    pub price_per_hour_dollars: f64,
    /// GPUs in the instance (0 for a CPU instance).
    pub gpus: u32,
    /// What the GPUs (or CPUs) are, for display.
    pub accelerator: &'static str,
}

/// The built-in catalogue; see the module docs for where the prices come from.
/// The highest instance price the agent takes, in dollars an hour: a hundred times the dearest
/// GPU instance of the catalogue. More is a typo.
pub const MAX_PRICE_PER_HOUR_DOLLARS: f64 = 10_000.0;
/// The longest instance type name, in bytes (the coordinator's bound on the texts an agent
/// registers with).
pub const MAX_INSTANCE_TYPE_BYTES: usize = 256;
/// The most dollars one completion may report (the coordinator refuses more); a trial's cost
/// is capped here.
pub const MAX_TRIAL_COST_DOLLARS: f64 = 1e6;

pub const CATALOGUE: &[InstanceType] = &[
    InstanceType {
        name: "p2.xlarge",
        price_per_hour_dollars: 0.90,
        gpus: 1,
        accelerator: "1x NVIDIA K80 (study)",
    },
    InstanceType {
        name: "m4.4xlarge",
        price_per_hour_dollars: 0.862,
        gpus: 0,
        accelerator: "16 vCPU Xeon (study)",
    },
    InstanceType {
        name: "g5.xlarge",
        price_per_hour_dollars: 1.006,
        gpus: 1,
        accelerator: "1x NVIDIA A10G",
    },
    InstanceType {
        name: "g6e.xlarge",
        price_per_hour_dollars: 1.861,
        gpus: 1,
        accelerator: "1x NVIDIA L40S",
    },
    InstanceType {
        name: "p4d.24xlarge",
        price_per_hour_dollars: 21.96,
        gpus: 8,
        accelerator: "8x NVIDIA A100 40GB",
    },
    InstanceType {
        name: "p5.48xlarge",
        price_per_hour_dollars: 55.04,
        gpus: 8,
        accelerator: "8x NVIDIA H100 80GB",
    },
];

/// Looks an instance type up in the built-in catalogue.
pub fn instance(name: &str) -> Option<&'static InstanceType> {
    CATALOGUE.iter().find(|entry| entry.name == name)
}

/// The price this agent charges its trials.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// The instance type, for reports ("" when unknown).
    pub instance_type: String,
    /// Price of the whole instance, dollars an hour.
    pub instance_price_per_hour_dollars: f64,
    /// Devices the instance price is split between (≥ 1).
    pub devices_per_instance: u32,
    /// Trials run at once on this agent's device (≥ 1).
    pub slots: u32,
}

impl Pricing {
    /// Prices a catalogue instance: GPU agents split it among the GPUs, CPU agents pay it whole.
    pub fn for_instance(entry: &InstanceType, gpu_agent: bool, slots: u32) -> Self {
        let devices = if gpu_agent { entry.gpus.max(1) } else { 1 };
        Self {
            instance_type: entry.name.to_string(),
            instance_price_per_hour_dollars: entry.price_per_hour_dollars,
            devices_per_instance: devices,
            slots: slots.max(1),
        }
    }

    /// Builds the pricing from the config's fields: an instance type from the catalogue, with
    /// the price and GPU count overridable; an unknown type needs an explicit price.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown instance type without a price, or a negative or
    /// non-finite price.
    pub fn resolve(
        instance_type: Option<&str>,
        price_override: Option<f64>,
        gpus_override: Option<u32>,
        gpu_agent: bool,
        slots: u32,
    ) -> Result<Self> {
        if let Some(price) = price_override
            && !(price.is_finite() && (0.0..=MAX_PRICE_PER_HOUR_DOLLARS).contains(&price))
        {
            return Err(config_error(format!(
                "price_per_hour_dollars must be a finite number from 0 to \
                 {MAX_PRICE_PER_HOUR_DOLLARS}, got {price}"
            )));
        }
        let name = instance_type.unwrap_or("");
        if name.len() > MAX_INSTANCE_TYPE_BYTES {
            return Err(config_error(format!(
                "instance_type must be at most {MAX_INSTANCE_TYPE_BYTES} bytes, got {}",
                name.len()
            )));
        }
        let entry = instance(name);
        let price = match (price_override, entry) {
            (Some(price), _) => price,
            (None, Some(entry)) => entry.price_per_hour_dollars,
            (None, None) if name.is_empty() => 0.0,
            (None, None) => {
                return Err(config_error(format!(
                    "instance_type '{name}' is not in the built-in catalogue ({}); set price_per_hour_dollars",
                    known_names()
                )));
            }
        };
        let catalogue_gpus = entry.map_or(1, |entry| entry.gpus.max(1));
        let gpus = gpus_override.unwrap_or(catalogue_gpus).max(1);
        Ok(Self {
            instance_type: name.to_string(),
            instance_price_per_hour_dollars: price,
            devices_per_instance: if gpu_agent { gpus } else { 1 },
            slots: slots.max(1),
        })
    }

    /// Dollars an hour for this agent's device (what it advertises to the coordinator).
    pub fn device_price_per_hour_dollars(&self) -> f64 {
        self.instance_price_per_hour_dollars / f64::from(self.devices_per_instance)
    }

    /// Dollars an hour for one slot's share of the device.
    pub fn slot_price_per_hour_dollars(&self) -> f64 {
        self.device_price_per_hour_dollars() / f64::from(self.slots)
    }

    /// The cost of a trial that held one slot for `wall_seconds`, at most
    /// [`MAX_TRIAL_COST_DOLLARS`] (a completion reporting more is refused, and its result
    /// would be lost).
    pub fn trial_cost_dollars(&self, wall_seconds: f64) -> f64 {
        (wall_seconds.max(0.0) * self.slot_price_per_hour_dollars() / 3600.0)
            .min(MAX_TRIAL_COST_DOLLARS)
    }
}

fn known_names() -> String {
    CATALOGUE
        .iter()
        .map(|entry| entry.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn config_error(reason: String) -> Error {
    Error::Config { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn study_instances_have_the_study_prices() {
        let p2 = instance("p2.xlarge").expect("in catalogue");
        assert!(close(p2.price_per_hour_dollars, 0.90));
        assert_eq!(p2.gpus, 1);
        let m4 = instance("m4.4xlarge").expect("in catalogue");
        assert!(close(m4.price_per_hour_dollars, 0.862));
        assert_eq!(m4.gpus, 0);
    }

    #[test]
    fn an_hour_on_a_p2_costs_its_hourly_price() {
        let pricing = Pricing::resolve(Some("p2.xlarge"), None, None, true, 1).expect("known");
        assert!(close(pricing.trial_cost_dollars(3600.0), 0.90));
        // The study's 146 s CPU epoch on m4.4xlarge, one trial at a time.
        let cpu = Pricing::resolve(Some("m4.4xlarge"), None, None, false, 1).expect("known");
        assert!(close(cpu.trial_cost_dollars(146.0), 146.0 * 0.862 / 3600.0));
    }

    #[test]
    fn multi_gpu_instances_split_their_price_per_gpu() {
        let p5 = Pricing::resolve(Some("p5.48xlarge"), None, None, true, 1).expect("known");
        assert_eq!(p5.devices_per_instance, 8);
        assert!(close(p5.device_price_per_hour_dollars(), 55.04 / 8.0));
        // Eight agents, one per GPU, each busy for an hour pay the instance's hour.
        assert!(close(8.0 * p5.trial_cost_dollars(3600.0), 55.04));
    }

    #[test]
    fn slots_share_their_device_so_a_full_device_pays_its_time_once() {
        let pricing = Pricing::resolve(Some("g5.xlarge"), None, None, true, 4).expect("known");
        let one_trial = pricing.trial_cost_dollars(3600.0);
        assert!(close(one_trial, 1.006 / 4.0));
        assert!(close(4.0 * one_trial, 1.006));
    }

    #[test]
    fn cpu_agents_pay_the_whole_instance() {
        let pricing = Pricing::resolve(Some("p4d.24xlarge"), None, None, false, 1).expect("known");
        assert_eq!(pricing.devices_per_instance, 1);
        assert!(close(pricing.device_price_per_hour_dollars(), 21.96));
    }

    #[test]
    fn overrides_win_over_the_catalogue() {
        let pricing =
            Pricing::resolve(Some("p5.48xlarge"), Some(80.0), Some(4), true, 1).expect("ok");
        assert!(close(pricing.device_price_per_hour_dollars(), 20.0));
    }

    #[test]
    fn unknown_instance_needs_a_price() {
        let err = Pricing::resolve(Some("x9.huge"), None, None, true, 1).expect_err("unknown");
        assert!(err.to_string().contains("x9.huge"), "{err}");
        let priced = Pricing::resolve(Some("x9.huge"), Some(2.0), Some(2), true, 1).expect("ok");
        assert!(close(priced.device_price_per_hour_dollars(), 1.0));
    }

    #[test]
    fn no_instance_means_free_and_negative_prices_are_refused() {
        let free = Pricing::resolve(None, None, None, false, 2).expect("ok");
        assert!(close(free.trial_cost_dollars(100.0), 0.0));
        assert!(Pricing::resolve(None, Some(-1.0), None, false, 1).is_err());
        assert!(Pricing::resolve(None, Some(f64::NAN), None, false, 1).is_err());
        assert!(close(free.trial_cost_dollars(-5.0), 0.0));
    }
}
