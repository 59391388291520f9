//! The CUDA backend: hand-written kernels compiled by NVRTC and launched through cudarc.
//!
//! One `.cu` file per op family sits next to its launcher (`conv.cu` and `conv.rs`, ...);
//! [`module`] holds the registry and the compile cache, [`probe()`] and [`libraries`] the checks
//! that turn a missing driver, library, entry point or device into [`Error::CudaUnavailable`]
//! instead of a panic.
//!
//! # How modules are loaded
//! NVRTC compiles each module to a **cubin** (SASS) for the device's `sm_XY`
//! (`nvrtcGetCUBIN`), which the driver loads as is, whatever NVRTC minor release built it.
//! **PTX** is only the fallback, for a device NVRTC cannot target, and only when NVRTC's CUDA
//! version is no newer than the driver's (a driver rejects PTX of a newer ISA); otherwise
//! [`CudaBackend::new`] fails with an error naming both versions. [`load_plan`] states the
//! rule and [`CudaBackend::load_plan`] says what was chosen.
//!
//! Each [`CudaBackend`] owns a handle on the device's primary context and a stream of its own,
//! plus its buffers, so several trials can share one GPU (`agent --gpu 0 --slots K`): their
//! streams run concurrently, which separate contexts would not (contexts time-slice).
//! Every operation is enqueued on the backend's stream; only [`Backend::download`],
//! [`Backend::download_idx`], the host-to-device writes and [`Backend::synchronize`] wait.
//!
//! ```no_run
//! use kernels::{Backend, cuda::CudaBackend};
//! let gpu = CudaBackend::new(0)?;
//! let x = gpu.upload(&[1.0, 2.0, 3.0])?;
//! let mut y = gpu.alloc(3)?;
//! gpu.mul(&x, &x, 3, &mut y)?;
//! assert_eq!(gpu.download(&y)?, vec![1.0, 4.0, 9.0]);
//! # Ok::<(), kernels::Error>(())
//! ```

mod backend_impl;
mod conv;
mod conv_branches;
mod elementwise;
mod embedding;
mod graph;
pub mod libraries;
mod linear;
pub mod load_plan;
mod loss;
pub mod module;
mod nvrtc;
mod optim;
mod probe;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError,
    LaunchConfig, ValidAsZeroBits,
};

pub use graph::{GRAPH_ENV, graphs_enabled_by};
pub use load_plan::{CudaVersion, LoadPlan, Toolchain, plan_load};
pub use module::compile_all;
pub use probe::probe;

use crate::{
    Backend, ConvBwdBranch, ConvFwdBranch, ConvShape, DeviceInfo, Error, HeadInputs, HeadOutputs,
    LinearGrads, LinearShape, Result, RmsProp, RmsState, RmsTensor, StepScalars,
};
use module::{Kernel, KernelCache};

/// Partial sums of the two-pass sum-of-squares reduction (fixed, so results are deterministic).
const REDUCE_PARTIALS: usize = 1024;

/// The CUDA implementation of [`Backend`] on one device, with its own stream.
#[derive(Debug)]
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: KernelCache,
    info: DeviceInfo,
    multiprocessors: u32,
    /// Scratch of the sum-of-squares reduction; the lock keeps its two launches together.
    reduce_scratch: Mutex<CudaSlice<f32>>,
    /// Kernel launches and host-to-device copies so far (see [`CudaBackend::counters`]).
    launches: AtomicU64,
    copies: AtomicU64,
    graph_launches: AtomicU64,
    /// Captured graphs, and whether capture is on (see [`CudaBackend::set_graphs`]).
    graphs: graph::Graphs,
    graphs_on: AtomicBool,
    /// `Some` while [`CudaBackend::start_profile`] is recording: op name and its two events.
    profile: Mutex<Option<Vec<Recorded>>>,
}

/// One profiled operation: its name and the events recorded before and after it.
type Recorded = (&'static str, CudaEvent, CudaEvent);

/// Work this backend has enqueued since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Kernel launches.
    pub launches: u64,
    /// Host-to-device copies (uploads and writes).
    pub copies: u64,
    /// Graph launches ([`Backend::replay_graph`]); the kernels inside a graph are not counted
    /// in `launches`, which counts the host's kernel launches.
    pub graph_launches: u64,
}

/// Device time of one backend operation recorded by [`CudaBackend::start_profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The [`Backend`] operation (`conv_pool_fwd`, `rmsprop`, ...).
    pub op: &'static str,
    /// Device seconds between the events recorded around it.
    pub seconds: f64,
}

fn driver_error(op: &'static str) -> impl FnOnce(DriverError) -> Error {
    move |err| Error::Cuda {
        op,
        message: err.to_string(),
    }
}

/// The [`LoadPlan`] for a probed device, from the libraries' versions.
fn load_plan_for(info: &DeviceInfo) -> Result<LoadPlan> {
    let toolchain = libraries::toolchain()?;
    let (major, minor) = info.compute_capability;
    let capability = (
        u32::try_from(major).unwrap_or(0),
        u32::try_from(minor).unwrap_or(0),
    );
    plan_load(&toolchain, capability)
}

/// Converts a size to the `unsigned int` the kernels take.
fn to_u32(op: &'static str, what: &str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::InvalidShape {
        op,
        reason: format!("{what} = {value} exceeds the 32-bit range of the CUDA kernels"),
    })
}

impl CudaBackend {
    /// Opens GPU `ordinal`: probes it, takes a handle on its primary context, creates a stream
    /// for this backend and compiles (once per process) and loads every kernel module.
    ///
    /// # Errors
    /// [`Error::CudaUnavailable`] (see [`crate::probe_cuda`]), [`Error::Compile`] with the NVRTC
    /// log, or [`Error::Cuda`].
    pub fn new(ordinal: usize) -> Result<Self> {
        let info = probe::probe(ordinal)?;
        let plan = load_plan_for(&info)?;
        let ctx = CudaContext::new(ordinal).map_err(driver_error("create context"))?;
        // SAFETY: every buffer of this backend is allocated on, and only ever used on, its own
        // stream (launchers check a buffer's stream before launching), so cudarc's cross-stream
        // events are not needed; work on one stream runs in order.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver_error("create stream"))?;
        let multiprocessors = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_error("query multiprocessors"))?;
        let kernels = KernelCache::new(ctx.clone(), plan);
        kernels.load_all()?;
        let scratch = stream
            .alloc_zeros::<f32>(REDUCE_PARTIALS)
            .map_err(driver_error("alloc"))?;
        Ok(Self {
            ctx,
            stream,
            kernels,
            info,
            multiprocessors: u32::try_from(multiprocessors).unwrap_or(1).max(1),
            reduce_scratch: Mutex::new(scratch),
            launches: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            graph_launches: AtomicU64::new(0),
            graphs: Mutex::new(Vec::new()),
            graphs_on: AtomicBool::new(graphs_enabled_by(std::env::var(GRAPH_ENV).ok().as_deref())),
            profile: Mutex::new(None),
        })
    }

    /// Kernel launches and host-to-device copies enqueued so far: the difference over one
    /// training step is that step's launch and copy count.
    pub fn counters(&self) -> Counters {
        Counters {
            launches: self.launches.load(Ordering::Relaxed),
            copies: self.copies.load(Ordering::Relaxed),
            graph_launches: self.graph_launches.load(Ordering::Relaxed),
        }
    }

    fn count_launch(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts recording a device event before and after every compute operation of
    /// [`Backend`] (the transfers are not timed), for a per-kernel breakdown. Costs two events
    /// an operation, so leave it off when timing whole epochs.
    pub fn start_profile(&self) {
        *self.lock_profile() = Some(Vec::new());
    }

    /// Stops recording, waits for the device and returns each recorded operation's time in
    /// order (empty when [`CudaBackend::start_profile`] was not called).
    ///
    /// # Errors
    /// [`Error::Cuda`] when an event cannot be read.
    pub fn take_profile(&self) -> Result<Vec<OpTime>> {
        let recorded = self.lock_profile().take().unwrap_or_default();
        let mut times = Vec::with_capacity(recorded.len());
        for (op, start, end) in &recorded {
            times.push(OpTime {
                op,
                seconds: Self::elapsed_seconds(start, end)?,
            });
        }
        Ok(times)
    }

    fn lock_profile(&self) -> std::sync::MutexGuard<'_, Option<Vec<Recorded>>> {
        self.profile
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `body`, between two recorded events when profiling is on.
    fn profiled(&self, op: &'static str, body: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.lock_profile().is_none() {
            return body();
        }
        let start = self.record_timing_event()?;
        body()?;
        let end = self.record_timing_event()?;
        if let Some(recorded) = self.lock_profile().as_mut() {
            recorded.push((op, start, end));
        }
        Ok(())
    }

    /// How this backend's modules were built and loaded (cubin or PTX, and the architecture).
    pub fn load_plan(&self) -> LoadPlan {
        self.kernels.plan()
    }

    /// The device this backend runs on.
    pub fn device_info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The backend's stream (for timing with events, or CUDA graphs).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Records a timing event on this backend's stream (for device-side timings).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the driver refuses.
    pub fn record_timing_event(&self) -> Result<CudaEvent> {
        self.stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(driver_error("record event"))
    }

    /// Seconds of device time between two events of [`CudaBackend::record_timing_event`],
    /// waiting for `end` to complete.
    ///
    /// # Errors
    /// [`Error::Cuda`] when the driver refuses.
    pub fn elapsed_seconds(start: &CudaEvent, end: &CudaEvent) -> Result<f64> {
        end.synchronize()
            .map_err(driver_error("event synchronize"))?;
        let ms = start
            .elapsed_ms(end)
            .map_err(driver_error("event elapsed"))?;
        Ok(f64::from(ms) / 1e3)
    }

    fn function(&self, kernel: Kernel) -> Result<&CudaFunction> {
        self.kernels.function(kernel)
    }

    /// A 1-D grid of `threads`-wide blocks covering `n` items, capped at 32 blocks a
    /// multiprocessor (the kernels stride over the rest).
    fn grid(&self, n: usize, threads: u32) -> LaunchConfig {
        let cap = (self.multiprocessors as usize) * 32;
        let blocks = n.div_ceil(threads as usize).clamp(1, cap);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Checks that `buf` has at least `needed` elements and belongs to this backend's stream.
    fn check<T>(
        &self,
        op: &'static str,
        buffer: &'static str,
        buf: &CudaSlice<T>,
        needed: usize,
    ) -> Result<()> {
        if !Arc::ptr_eq(buf.stream(), &self.stream) {
            return Err(Error::InvalidShape {
                op,
                reason: format!("buffer '{buffer}' belongs to another backend"),
            });
        }
        if buf.len() < needed {
            return Err(Error::BufferTooShort {
                op,
                buffer,
                needed,
                actual: buf.len(),
            });
        }
        Ok(())
    }

    /// Checks the per-step device scalars and borrows them for the optimizer's kernels.
    fn on_device<'a>(
        &self,
        op: &'static str,
        scalars: &StepScalars<'a, Self>,
    ) -> Result<optim::OnDevice<'a>> {
        self.check(op, "step", scalars.step, 1)?;
        self.check(op, "lr", scalars.lr, 1)?;
        Ok(optim::OnDevice {
            step: scalars.step,
            lr: scalars.lr,
        })
    }

    fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len)
            .map_err(driver_error("alloc"))
    }

    fn write_into<T: DeviceRepr>(
        &self,
        op: &'static str,
        dst: &mut CudaSlice<T>,
        host: &[T],
    ) -> Result<()> {
        self.check(op, "dst", dst, host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice_mut(0..host.len());
        self.copies.fetch_add(1, Ordering::Relaxed);
        self.stream
            .memcpy_htod(host, &mut view)
            .map_err(driver_error(op))
    }

    fn read_back<T: DeviceRepr>(&self, op: &'static str, src: &CudaSlice<T>) -> Result<Vec<T>> {
        self.check(op, "src", src, 0)?;
        if src.is_empty() {
            return Ok(Vec::new());
        }
        let host = self.stream.clone_dtoh(src).map_err(driver_error(op))?;
        self.stream.synchronize().map_err(driver_error(op))?;
        Ok(host)
    }
}
