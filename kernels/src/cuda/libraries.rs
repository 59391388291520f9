//! Reads the driver's and NVRTC's versions before cudarc calls into them, without panicking.
//!
//! With `dynamic-loading`, cudarc resolves each symbol on its first call and panics when the
//! library lacks it (an older driver or an NVRTC older than the CUDA 13.0 bindings). So each
//! library is first found (`is_culib_present`), then every symbol the backend reaches is looked
//! up by name, and only then is the version read and compared with the oldest this build
//! supports. Any failure is an [`Error::CudaUnavailable`] naming the library, its version when
//! known and what is missing.

use std::ffi::c_int;

use super::load_plan::{CudaVersion, Toolchain};
use crate::{Error, Result};

/// The oldest driver: cudarc's bindings are generated for CUDA 13.0 (feature `cuda-13000`) and
/// resolve the 13.0 entry points (`cuEventElapsedTime_v2`, `cuCtxCreate_v4`, ...).
pub const MIN_DRIVER: CudaVersion = CudaVersion::new(13, 0);

/// The oldest NVRTC: 12.0 has every call used here (`nvrtcGetCUBIN`, `nvrtcGetSupportedArchs`)
/// and targets `sm_90`.
pub const MIN_NVRTC: CudaVersion = CudaVersion::new(12, 0);

/// The NVRTC entry points the compiler wrapper and these probes call.
const NVRTC_SYMBOLS: [&str; 12] = [
    "nvrtcVersion",
    "nvrtcGetNumSupportedArchs",
    "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
];

/// The driver entry points behind the backend's cudarc calls (context, streams, memory,
/// modules, launches, events), under the names the CUDA 13.0 bindings resolve.
const DRIVER_SYMBOLS: [&str; 26] = [
    "cuDriverGetVersion",
    "cuInit",
    "cuGetErrorString",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceTotalMem_v2",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuCtxGetCurrent",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
    "cuStreamCreate",
    "cuStreamSynchronize",
    "cuStreamDestroy_v2",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuMemsetD8Async",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuEventElapsedTime_v2",
    "cuMemGetInfo_v2",
];

type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type CountFn = unsafe extern "C" fn(*mut c_int) -> c_int;
type AnyFn = unsafe extern "C" fn();

fn unavailable(reason: String) -> Error {
    Error::CudaUnavailable { reason }
}

/// The NVRTC library cudarc would load, checked: its version and the architectures it
/// targets.
///
/// # Errors
/// [`Error::CudaUnavailable`]: no libnvrtc, a missing entry point, or a version below
/// [`MIN_NVRTC`].
pub fn nvrtc() -> Result<(CudaVersion, Vec<u32>)> {
    // SAFETY: this only tries to dlopen libnvrtc by cudarc's names; loading runs the library's
    // initializers, which for NVIDIA's libnvrtc have no preconditions.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(unavailable(
            "the NVRTC library (libnvrtc.so.13) was not found: install the CUDA 13 runtime \
             compiler or put its folder (e.g. /usr/local/cuda/lib64) on LD_LIBRARY_PATH"
                .to_string(),
        ));
    }
    // SAFETY: the library is present, so `culib` finds it rather than panicking; the type is
    // `nvrtcResult nvrtcVersion(int*, int*)` with the enum read as its underlying int.
    let version_fn = unsafe { nvrtc_symbol::<VersionFn>("nvrtcVersion") }.ok_or_else(|| {
        unavailable(format!(
            "the NVRTC library has no nvrtcVersion: it is not an NVRTC of CUDA {MIN_NVRTC} or newer"
        ))
    })?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both pointers are valid for one write each.
    let status = unsafe { version_fn(&mut major, &mut minor) };
    let version = decode_nvrtc_version(status, major, minor)?;
    // SAFETY: as above; presence only, the pointer is never called.
    let missing = missing_symbols(&NVRTC_SYMBOLS, |name| unsafe {
        nvrtc_symbol::<AnyFn>(name).is_some()
    });
    check_library("NVRTC", version, MIN_NVRTC, &missing)?;
    Ok((version, nvrtc_archs(version)?))
}

/// The driver library cudarc would load, checked: its CUDA version.
///
/// # Errors
/// [`Error::CudaUnavailable`]: no libcuda, a missing entry point, or a version below
/// [`MIN_DRIVER`].
pub fn driver() -> Result<CudaVersion> {
    // SAFETY: this only tries to dlopen the driver library by cudarc's names; loading runs the
    // library's initializers, which for NVIDIA's libcuda have no preconditions.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "no NVIDIA driver library (libcuda.so) was found: is the NVIDIA driver installed?"
                .to_string(),
        ));
    }
    // SAFETY: the library is present, so `culib` finds it; the type is
    // `CUresult cuDriverGetVersion(int*)` with the enum read as its underlying int.
    let version_fn =
        unsafe { driver_symbol::<CountFn>("cuDriverGetVersion") }.ok_or_else(|| {
            unavailable("the driver library (libcuda.so) has no cuDriverGetVersion".to_string())
        })?;
    let mut code: c_int = 0;
    // SAFETY: the pointer is valid for one write.
    let status = unsafe { version_fn(&mut code) };
    if status != 0 || code <= 0 {
        return Err(unavailable(format!(
            "cuDriverGetVersion failed (CUresult {status}, version {code})"
        )));
    }
    let version = CudaVersion::from_driver_code(code.unsigned_abs());
    // SAFETY: as above; presence only, the pointer is never called.
    let missing = missing_symbols(&DRIVER_SYMBOLS, |name| unsafe {
        driver_symbol::<AnyFn>(name).is_some()
    });
    check_library("the driver", version, MIN_DRIVER, &missing)?;
    Ok(version)
}

/// Both libraries' versions and NVRTC's targets, the inputs of [`super::load_plan::plan_load`].
///
/// # Errors
/// As [`driver`] and [`nvrtc`].
pub fn toolchain() -> Result<Toolchain> {
    let driver = driver()?;
    let (nvrtc, nvrtc_archs) = nvrtc()?;
    Ok(Toolchain {
        nvrtc,
        nvrtc_archs,
        driver,
    })
}

/// Looks `name` up in the NVRTC library cudarc loads.
///
/// # Safety
/// `is_culib_present` must have returned true, and `F` must match the symbol's C signature
/// before the result is called.
unsafe fn nvrtc_symbol<F: Copy>(name: &str) -> Option<F> {
    // SAFETY: the caller checked that the library loads, so `culib` does not panic.
    let library = unsafe { cudarc::nvrtc::sys::culib() };
    // SAFETY: the caller guarantees `F` matches the symbol.
    unsafe { library.get::<F>(name.as_bytes()) }
        .ok()
        .map(|symbol| *symbol)
}

/// Looks `name` up in the driver library cudarc loads.
///
/// # Safety
/// As [`nvrtc_symbol`], for the driver library.
unsafe fn driver_symbol<F: Copy>(name: &str) -> Option<F> {
    // SAFETY: the caller checked that the library loads, so `culib` does not panic.
    let library = unsafe { cudarc::driver::sys::culib() };
    // SAFETY: the caller guarantees `F` matches the symbol.
    unsafe { library.get::<F>(name.as_bytes()) }
        .ok()
        .map(|symbol| *symbol)
}

/// NVRTC's targets, `10 * major + minor` each (its entry points are known to exist).
fn nvrtc_archs(version: CudaVersion) -> Result<Vec<u32>> {
    let failed = |call: &str, status: c_int| {
        unavailable(format!(
            "NVRTC {version}: {call} failed (nvrtcResult {status})"
        ))
    };
    // SAFETY: checked present by `nvrtc`; `nvrtcResult nvrtcGetNumSupportedArchs(int*)`.
    let count_fn = unsafe { nvrtc_symbol::<CountFn>("nvrtcGetNumSupportedArchs") }
        .ok_or_else(|| failed("nvrtcGetNumSupportedArchs lookup", -1))?;
    // SAFETY: checked present by `nvrtc`; `nvrtcResult nvrtcGetSupportedArchs(int*)`.
    let list_fn = unsafe { nvrtc_symbol::<CountFn>("nvrtcGetSupportedArchs") }
        .ok_or_else(|| failed("nvrtcGetSupportedArchs lookup", -1))?;
    let mut count: c_int = 0;
    // SAFETY: the pointer is valid for one write.
    let status = unsafe { count_fn(&mut count) };
    if status != 0 {
        return Err(failed("nvrtcGetNumSupportedArchs", status));
    }
    let mut archs: Vec<c_int> = vec![0; usize::try_from(count).unwrap_or(0)];
    if !archs.is_empty() {
        // SAFETY: `archs` has room for the `count` entries NVRTC writes.
        let status = unsafe { list_fn(archs.as_mut_ptr()) };
        if status != 0 {
            return Err(failed("nvrtcGetSupportedArchs", status));
        }
    }
    Ok(archs
        .into_iter()
        .filter_map(|sm| u32::try_from(sm).ok())
        .collect())
}

fn decode_nvrtc_version(status: c_int, major: c_int, minor: c_int) -> Result<CudaVersion> {
    match (status, u32::try_from(major), u32::try_from(minor)) {
        (0, Ok(major), Ok(minor)) if major > 0 => Ok(CudaVersion::new(major, minor)),
        _ => Err(unavailable(format!(
            "nvrtcVersion failed (nvrtcResult {status}, version {major}.{minor})"
        ))),
    }
}

fn missing_symbols<'a>(symbols: &[&'a str], present: impl Fn(&str) -> bool) -> Vec<&'a str> {
    symbols
        .iter()
        .copied()
        .filter(|name| !present(name))
        .collect()
}

/// Refuses a library that is older than `minimum` or lacks entry points, naming both.
fn check_library(
    library: &str,
    found: CudaVersion,
    minimum: CudaVersion,
    missing: &[&str],
) -> Result<()> {
    if found < minimum {
        return Err(unavailable(format!(
            "{library} is CUDA {found}, older than CUDA {minimum}, the oldest this build \
             supports: install a newer one"
        )));
    }
    if !missing.is_empty() {
        return Err(unavailable(format!(
            "{library} (CUDA {found}) lacks {}: the library found is not a complete CUDA \
             {minimum}+ {library}",
            missing.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<()>) -> String {
        match result {
            Err(Error::CudaUnavailable { reason }) => reason,
            other => panic!("expected CudaUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn an_old_nvrtc_is_refused_with_both_versions() {
        let why = reason(check_library(
            "NVRTC",
            CudaVersion::new(11, 8),
            MIN_NVRTC,
            &[],
        ));
        assert!(why.contains("NVRTC is CUDA 11.8"), "{why}");
        assert!(why.contains("CUDA 12.0"), "{why}");
    }

    #[test]
    fn an_old_driver_is_refused_with_both_versions() {
        let found = CudaVersion::from_driver_code(12080);
        let why = reason(check_library("the driver", found, MIN_DRIVER, &[]));
        assert!(why.contains("the driver is CUDA 12.8"), "{why}");
        assert!(why.contains("CUDA 13.0"), "{why}");
    }

    #[test]
    fn missing_entry_points_are_named() {
        let present = |name: &str| !name.contains("CUBIN");
        let missing = missing_symbols(&NVRTC_SYMBOLS, present);
        assert_eq!(missing, ["nvrtcGetCUBINSize", "nvrtcGetCUBIN"]);
        let why = reason(check_library(
            "NVRTC",
            CudaVersion::new(12, 4),
            MIN_NVRTC,
            &missing,
        ));
        assert!(
            why.contains("lacks nvrtcGetCUBINSize, nvrtcGetCUBIN"),
            "{why}"
        );
    }

    #[test]
    fn current_libraries_pass() {
        assert!(check_library("NVRTC", CudaVersion::new(13, 2), MIN_NVRTC, &[]).is_ok());
        assert!(check_library("the driver", MIN_DRIVER, MIN_DRIVER, &[]).is_ok());
    }

    #[test]
    fn a_failed_version_call_is_an_error() {
        assert!(decode_nvrtc_version(0, 13, 0).is_ok());
        assert!(decode_nvrtc_version(3, 13, 0).is_err());
        assert!(decode_nvrtc_version(0, -1, 0).is_err());
    }

    /// Without a driver this must be a clear error, never a panic.
    #[test]
    fn the_driver_probe_never_panics() {
        match driver() {
            Ok(version) => assert!(version >= MIN_DRIVER),
            Err(Error::CudaUnavailable { reason }) => assert!(!reason.is_empty()),
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }
}
