//! Decides how kernel modules reach a device: a cubin for its architecture, or PTX as a fallback.
//!
//! The decision is a pure function of the NVRTC version, the architectures NVRTC can target
//! (`nvrtcGetSupportedArchs`), the driver's CUDA version (`cuDriverGetVersion`) and the device's
//! compute capability, so every case is unit-tested with fake versions.
//!
//! The rule, in order:
//! 1. **Cubin** (SASS, loaded as is, no JIT) for the highest architecture NVRTC supports with
//!    the device's major version and a minor version no higher than the device's (SASS for
//!    `sm_XY` runs on `sm_XZ`, `Z >= Y`). It is taken when NVRTC's major version is no newer
//!    than the driver's: CUDA's minor-version compatibility lets a 13.2 cubin run on a 13.0
//!    driver, but makes no promise across major versions.
//! 2. **PTX** (compiled by the driver at load) for the highest architecture NVRTC supports at or
//!    below the device's, only when NVRTC's CUDA version is no newer than the driver's: a driver
//!    rejects PTX of a newer ISA than it knows (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`; NVRTC 13.2
//!    emits ISA 9.2, driver 580 with CUDA 13.0 accepts up to 9.0).
//! 3. Otherwise an error that names both versions and what would fix it.

use std::fmt;

use crate::{Error, Result};

/// A CUDA version, as NVRTC (`nvrtcVersion`: major, minor) or the driver (`cuDriverGetVersion`:
/// `1000 * major + 10 * minor`) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CudaVersion {
    /// Major version (13 for CUDA 13.0).
    pub major: u32,
    /// Minor version (0 for CUDA 13.0).
    pub minor: u32,
}

impl CudaVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Decodes `cuDriverGetVersion`'s integer (13000 is CUDA 13.0, 12080 is 12.8).
    pub const fn from_driver_code(code: u32) -> Self {
        Self {
            major: code / 1000,
            minor: (code % 1000) / 10,
        }
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What NVRTC builds for a device, and so what the driver loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadPlan {
    /// SASS for `sm_<sm>` (`sm` is `10 * major + minor`, 90 for Hopper), via `nvrtcGetCUBIN`.
    Cubin {
        /// Target architecture, `10 * major + minor`.
        sm: u32,
    },
    /// PTX for `compute_<sm>`, which the driver compiles when it loads the module.
    Ptx {
        /// Virtual architecture, `10 * major + minor`.
        sm: u32,
    },
}

impl LoadPlan {
    /// The value of NVRTC's `--gpu-architecture` option: `sm_90` for a cubin, `compute_90` for
    /// PTX.
    pub fn gpu_architecture(&self) -> String {
        match self {
            LoadPlan::Cubin { sm } => format!("sm_{sm}"),
            LoadPlan::Ptx { sm } => format!("compute_{sm}"),
        }
    }
}

impl fmt::Display for LoadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadPlan::Cubin { sm } => write!(f, "cubin for sm_{sm}"),
            LoadPlan::Ptx { sm } => write!(f, "PTX for compute_{sm}"),
        }
    }
}

/// The two libraries' versions and NVRTC's targets, as read by the version probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// `nvrtcVersion`.
    pub nvrtc: CudaVersion,
    /// `nvrtcGetSupportedArchs`, each `10 * major + minor` (e.g. 75, 80, ..., 90, 100, 120).
    pub nvrtc_archs: Vec<u32>,
    /// `cuDriverGetVersion`.
    pub driver: CudaVersion,
}

/// Chooses how to build and load modules for a device of compute capability `(major, minor)`;
/// see the module docs for the rule.
///
/// # Errors
/// [`Error::CudaUnavailable`] naming NVRTC's and the driver's versions when neither a cubin nor
/// PTX the driver accepts can be built, or naming NVRTC's architectures when it supports none
/// at or below the device's.
pub fn plan_load(toolchain: &Toolchain, compute_capability: (u32, u32)) -> Result<LoadPlan> {
    let (major, minor) = compute_capability;
    let device_sm = 10 * major + minor;
    let Toolchain {
        nvrtc,
        nvrtc_archs,
        driver,
    } = toolchain;
    let same_family = nvrtc_archs
        .iter()
        .copied()
        .filter(|&sm| sm / 10 == major && sm <= device_sm)
        .max();
    if let Some(sm) = same_family
        && nvrtc.major <= driver.major
    {
        return Ok(LoadPlan::Cubin { sm });
    }
    let Some(ptx_sm) = nvrtc_archs
        .iter()
        .copied()
        .filter(|&sm| sm <= device_sm)
        .max()
    else {
        return Err(Error::CudaUnavailable {
            reason: format!(
                "NVRTC {nvrtc} cannot build for the device's sm_{device_sm}: it targets only \
                 {} (install the NVRTC of a CUDA release that supports sm_{device_sm})",
                arch_list(nvrtc_archs)
            ),
        });
    };
    if nvrtc <= driver {
        return Ok(LoadPlan::Ptx { sm: ptx_sm });
    }
    let cubin_problem = match same_family {
        Some(sm) => format!(
            "its sm_{sm} cubin is from CUDA major version {} and the driver's is {}",
            nvrtc.major, driver.major
        ),
        None => format!("it cannot build a cubin for the device's sm_{device_sm}"),
    };
    Err(Error::CudaUnavailable {
        reason: format!(
            "NVRTC {nvrtc} emits PTX newer than the CUDA {driver} driver accepts, and {cubin_problem}: \
             install NVRTC {driver} (e.g. pip install 'nvidia-cuda-nvrtc=={driver}.*') or a driver \
             for CUDA {nvrtc} or newer"
        ),
    })
}

fn arch_list(archs: &[u32]) -> String {
    if archs.is_empty() {
        return "no architecture".to_string();
    }
    let names: Vec<String> = archs.iter().map(|sm| format!("sm_{sm}")).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC 13.x's targets (what `nvrtcGetSupportedArchs` listed for 13.0 on this machine).
    const ARCHS_13: [u32; 12] = [75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121];
    /// NVRTC 12.4's targets.
    const ARCHS_12: [u32; 12] = [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 90];

    fn toolchain(nvrtc: (u32, u32), archs: &[u32], driver: (u32, u32)) -> Toolchain {
        Toolchain {
            nvrtc: CudaVersion::new(nvrtc.0, nvrtc.1),
            nvrtc_archs: archs.to_vec(),
            driver: CudaVersion::new(driver.0, driver.1),
        }
    }

    fn reason(result: Result<LoadPlan>) -> String {
        match result {
            Err(Error::CudaUnavailable { reason }) => reason,
            other => panic!("expected CudaUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn driver_codes_decode() {
        assert_eq!(
            CudaVersion::from_driver_code(13000),
            CudaVersion::new(13, 0)
        );
        assert_eq!(
            CudaVersion::from_driver_code(12080),
            CudaVersion::new(12, 8)
        );
        assert_eq!(CudaVersion::from_driver_code(11020).to_string(), "11.2");
    }

    #[test]
    fn nvrtc_13_2_on_a_13_0_driver_loads_a_cubin() {
        let tc = toolchain((13, 2), &ARCHS_13, (13, 0));
        assert_eq!(plan_load(&tc, (9, 0)).unwrap(), LoadPlan::Cubin { sm: 90 });
        assert_eq!(plan_load(&tc, (8, 0)).unwrap(), LoadPlan::Cubin { sm: 80 });
    }

    #[test]
    fn matching_versions_load_a_cubin() {
        let tc = toolchain((13, 0), &ARCHS_13, (13, 0));
        let plan = plan_load(&tc, (9, 0)).unwrap();
        assert_eq!(plan, LoadPlan::Cubin { sm: 90 });
        assert_eq!(plan.gpu_architecture(), "sm_90");
    }

    #[test]
    fn nvrtc_12_on_a_13_0_driver_loads_a_cubin() {
        let tc = toolchain((12, 4), &ARCHS_12, (13, 0));
        assert_eq!(plan_load(&tc, (9, 0)).unwrap(), LoadPlan::Cubin { sm: 90 });
    }

    #[test]
    fn a_minor_revision_without_its_own_target_uses_the_family_cubin() {
        // sm_89 is not in NVRTC 12.4's list; SASS for sm_86 runs on it.
        let tc = toolchain((12, 4), &ARCHS_12, (13, 0));
        assert_eq!(plan_load(&tc, (8, 9)).unwrap(), LoadPlan::Cubin { sm: 86 });
    }

    #[test]
    fn an_arch_unknown_to_an_older_nvrtc_falls_back_to_ptx() {
        // A Blackwell device (sm_100) and NVRTC 12.4, which knows up to sm_90.
        let tc = toolchain((12, 4), &ARCHS_12, (13, 0));
        let plan = plan_load(&tc, (10, 0)).unwrap();
        assert_eq!(plan, LoadPlan::Ptx { sm: 90 });
        assert_eq!(plan.gpu_architecture(), "compute_90");
    }

    #[test]
    fn an_unknown_arch_with_a_newer_nvrtc_than_the_driver_names_both_versions() {
        let tc = toolchain((13, 2), &[75, 80, 90], (13, 0));
        let why = reason(plan_load(&tc, (12, 1)));
        assert!(why.contains("NVRTC 13.2"), "{why}");
        assert!(why.contains("CUDA 13.0 driver"), "{why}");
        assert!(why.contains("sm_121"), "{why}");
    }

    #[test]
    fn a_newer_major_nvrtc_than_the_driver_is_refused_with_both_versions() {
        let tc = toolchain((13, 0), &ARCHS_13, (12, 8));
        let why = reason(plan_load(&tc, (9, 0)));
        assert!(why.contains("NVRTC 13.0"), "{why}");
        assert!(why.contains("CUDA 12.8"), "{why}");
        assert!(why.contains("major version 13"), "{why}");
    }

    #[test]
    fn a_device_older_than_every_target_is_refused() {
        let tc = toolchain((13, 0), &ARCHS_13, (13, 0));
        let why = reason(plan_load(&tc, (6, 1)));
        assert!(why.contains("sm_61"), "{why}");
        assert!(why.contains("sm_75"), "{why}");
        let empty = toolchain((13, 0), &[], (13, 0));
        assert!(reason(plan_load(&empty, (9, 0))).contains("no architecture"));
    }
}
