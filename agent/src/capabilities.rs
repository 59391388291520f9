//! What the agent tells the coordinator about itself: backend, device, instance, price, slots.

use proto::v1::{AgentCapabilities, Backend};

use crate::config::{Config, Device};
use crate::error::Result;

/// Probes the device and builds the registration's capabilities.
///
/// An agent that declares commands starts on a GPU that CUDA cannot probe (the commands bring
/// their own framework): it says so in its log and advertises no text CNN.
///
/// # Errors
/// [`crate::Error::Device`] when a CUDA device was asked for and cannot be used (built without
/// the `cuda` feature, no driver, no device, ordinal past the last device) and the agent
/// declares no commands.
pub fn probe(config: &Config) -> Result<AgentCapabilities> {
    let mut builtin_gpu = true;
    let (backend, device_name, device_memory_bytes, device_ordinal) = match config.device {
        Device::Cuda(ordinal) => match kernels::probe_cuda(ordinal as usize) {
            Ok(info) => (Backend::Cuda, info.name, info.memory_bytes, ordinal as i32),
            Err(error) if !config.commands.is_empty() => {
                tracing::warn!(%error, gpu = ordinal,
                    "cuda is unavailable: built-in GPU workloads are unavailable, the declared commands run on this GPU");
                builtin_gpu = false;
                (
                    Backend::Cuda,
                    format!("GPU {ordinal} (not probed)"),
                    0,
                    ordinal as i32,
                )
            }
            Err(error) => return Err(error.into()),
        },
        Device::Cpu => (Backend::Cpu, cpu_model_name(), total_memory_bytes(), -1),
    };
    let workloads = crate::trainer::WORKLOADS
        .iter()
        .filter(|kind| match **kind {
            "command" => !config.commands.is_empty(),
            "textcnn" => builtin_gpu,
            _ => true,
        })
        .map(|kind| kind.to_string())
        .collect();
    Ok(AgentCapabilities {
        backend: backend as i32,
        device_name,
        device_memory_bytes,
        device_ordinal,
        instance_type: config.pricing.instance_type.clone(),
        price_per_hour_dollars: config.pricing.device_price_per_hour_dollars(),
        slots: config.slots.get(),
        hostname: hostname(),
        workloads,
        version: env!("CARGO_PKG_VERSION").to_string(),
        commands: config.commands.iter().map(|c| c.name.clone()).collect(),
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The CPU model from `/proc/cpuinfo` ("cpu" where it cannot be read).
pub fn cpu_model_name() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = parse_cpu_model(&read("/proc/cpuinfo"))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model} ({cores} threads)")
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

/// Total memory from `/proc/meminfo` (0 where it cannot be read).
pub fn total_memory_bytes() -> u64 {
    parse_mem_total(&read("/proc/meminfo")).unwrap_or(0)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The host name from `/proc/sys/kernel/hostname` or `HOSTNAME` (empty where unknown).
pub fn hostname() -> String {
    let from_proc = read("/proc/sys/kernel/hostname").trim().to_string();
    if from_proc.is_empty() {
        std::env::var("HOSTNAME").unwrap_or_default()
    } else {
        from_proc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz")
        );
        assert_eq!(
            parse_mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16384 * 1024)
        );
        assert_eq!(parse_mem_total("nothing"), None);
    }

    #[test]
    fn cpu_capabilities_advertise_price_slots_and_workloads() {
        let config = crate::config::from_toml_str("instance_type = \"m4.4xlarge\"\nslots = 2")
            .expect("config");
        let caps = probe(&config).expect("cpu probe never fails");
        assert_eq!(caps.backend(), Backend::Cpu);
        assert_eq!(caps.device_ordinal, -1);
        assert_eq!(caps.slots, 2);
        assert!((caps.price_per_hour_dollars - 0.862).abs() < 1e-12);
        assert!(caps.workloads.contains(&"textcnn".to_string()));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_without_the_feature_is_a_clear_error() {
        let config =
            crate::config::from_toml_str("backend = \"cuda\"\ngpu_ordinal = 0").expect("config");
        let err = probe(&config).expect_err("no cuda feature");
        assert!(err.to_string().contains("cuda"), "{err}");
    }
}
