//! Finds out, without panicking, whether a CUDA device can be used.
//!
//! With cudarc's `dynamic-loading`, the first call into a missing library or symbol panics, so
//! the driver and NVRTC libraries, their entry points and versions are checked
//! ([`super::libraries`]) before any other cudarc call (STACK.md, "cudarc traps").

use cudarc::driver::result as driver;
use cudarc::driver::sys::CUdevice_attribute;

use crate::{DeviceInfo, Error, Result};

fn unavailable(reason: impl Into<String>) -> Error {
    Error::CudaUnavailable {
        reason: reason.into(),
    }
}

/// Fails with [`Error::CudaUnavailable`] unless both the driver library and NVRTC can be
/// loaded, have every entry point the backend calls and are recent enough
/// ([`super::libraries`]).
pub fn ensure_libraries() -> Result<()> {
    super::libraries::toolchain().map(|_| ())
}

/// Checks that device `ordinal` exists and describes it; see [`crate::probe_cuda`].
///
/// # Errors
/// [`Error::CudaUnavailable`]: no driver library, no NVRTC library, either one too old or
/// lacking an entry point, the driver failed to initialize, no device, or an ordinal past the last device.
pub fn probe(ordinal: usize) -> Result<DeviceInfo> {
    ensure_libraries()?;
    driver::init().map_err(|err| {
        unavailable(format!(
            "the CUDA driver failed to initialize ({err}): no usable GPU"
        ))
    })?;
    let count = driver::device::get_count()
        .map_err(|err| unavailable(format!("cannot count CUDA devices: {err}")))?;
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(unavailable("the CUDA driver found no device"));
    }
    if ordinal >= count {
        return Err(unavailable(format!(
            "GPU {ordinal} requested, but only {count} device(s) exist (ordinals 0..={})",
            count - 1
        )));
    }
    describe(ordinal)
}

fn describe(ordinal: usize) -> Result<DeviceInfo> {
    let query = |what: &str, err: driver::DriverError| {
        unavailable(format!("cannot query the {what} of GPU {ordinal}: {err}"))
    };
    let ordinal_i32 = i32::try_from(ordinal)
        .map_err(|_| unavailable(format!("GPU ordinal {ordinal} is out of range")))?;
    let device = driver::device::get(ordinal_i32).map_err(|err| query("handle", err))?;
    let name = driver::device::get_name(device).map_err(|err| query("name", err))?;
    // SAFETY: `device` is a valid handle returned by cuDeviceGet for an ordinal below the count.
    let memory_bytes =
        unsafe { driver::device::total_mem(device) }.map_err(|err| query("memory", err))?;
    // SAFETY: as above; the attributes are plain integer queries.
    let major = unsafe {
        driver::device::get_attribute(
            device,
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
        )
    }
    .map_err(|err| query("compute capability", err))?;
    // SAFETY: as above.
    let minor = unsafe {
        driver::device::get_attribute(
            device,
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
        )
    }
    .map_err(|err| query("compute capability", err))?;
    Ok(DeviceInfo {
        name,
        memory_bytes: memory_bytes as u64,
        compute_capability: (major, minor),
        ordinal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine with a driver this describes GPU 0; without one it must be a clear
    /// `CudaUnavailable`, never a panic.
    #[test]
    fn probe_returns_an_error_or_a_device_without_panicking() {
        match probe(0) {
            Ok(info) => assert_eq!(info.ordinal, 0),
            Err(Error::CudaUnavailable { reason }) => assert!(!reason.is_empty()),
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }

    #[test]
    fn an_ordinal_past_the_last_device_is_refused() {
        match probe(10_000) {
            Err(Error::CudaUnavailable { reason }) => {
                assert!(!reason.is_empty());
            }
            other => panic!("expected CudaUnavailable, got {other:?}"),
        }
    }
}
