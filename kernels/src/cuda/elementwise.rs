//! Launchers of `elementwise.cu`: fill, element-wise product and dropout.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{Error, Result};

const THREADS: u32 = 256;

/// `buf[i] = value` for `i < len`.
pub(super) fn fill(
    be: &CudaBackend,
    buf: &mut CudaSlice<f32>,
    len: usize,
    value: f32,
) -> Result<()> {
    const OP: &str = "fill";
    be.check(OP, "buf", buf, len)?;
    let n = to_u32(OP, "len", len)?;
    if n == 0 {
        return Ok(());
    }
    let cfg = be.grid(len, THREADS);
    let mut builder = be.stream.launch_builder(be.function(Kernel::Fill)?);
    builder.arg(&mut *buf).arg(&n).arg(&value);
    // SAFETY: the arguments match `fill_fwd_f32(float* out, unsigned n, float value)` in order
    // and type; `buf` holds at least `n` elements (checked above) and the kernel's grid-stride
    // loop stops at `n`.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// `out[i] = a[i] * b[i]` for `i < len`.
pub(super) fn mul(
    be: &CudaBackend,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    len: usize,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "mul";
    be.check(OP, "a", a, len)?;
    be.check(OP, "b", b, len)?;
    be.check(OP, "out", out, len)?;
    let n = to_u32(OP, "len", len)?;
    if n == 0 {
        return Ok(());
    }
    let cfg = be.grid(len, THREADS);
    let mut builder = be.stream.launch_builder(be.function(Kernel::Mul)?);
    builder.arg(a).arg(b).arg(&mut *out).arg(&n);
    // SAFETY: the arguments match `mul_fwd_f32(const float* a, const float* b, float* out,
    // unsigned n)` in order and type; all three buffers hold at least `n` elements (checked
    // above) and the grid-stride loop stops at `n`.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// The keep factor `1 / (1 - p)`, computed in `f32` like the CPU backend.
pub(crate) fn keep_scale(drop_prob: f32) -> f32 {
    1.0 / (1.0 - drop_prob)
}

/// Where a dropout launch takes its seed from.
pub(super) enum DropoutSeed<'a> {
    /// The seed itself, a kernel argument.
    Host(u64),
    /// `mix64(base, step[0])`, with the step counter read on the device.
    Device { base: u64, step: &'a CudaSlice<u32> },
}

/// Inverted dropout with the counter-based mask of [`crate::rng::dropout_uniform`].
pub(super) fn dropout(
    be: &CudaBackend,
    x: &CudaSlice<f32>,
    len: usize,
    drop_prob: f32,
    seed: DropoutSeed<'_>,
    out: &mut CudaSlice<f32>,
    mask: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "dropout_fwd";
    if !(0.0..1.0).contains(&drop_prob) {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!("drop probability {drop_prob} is outside [0, 1)"),
        });
    }
    be.check(OP, "x", x, len)?;
    be.check(OP, "out", out, len)?;
    be.check(OP, "mask", mask, len)?;
    if let DropoutSeed::Device { step, .. } = &seed {
        be.check(OP, "step", step, 1)?;
    }
    let n = to_u32(OP, "len", len)?;
    if n == 0 {
        return Ok(());
    }
    let scale = keep_scale(drop_prob);
    let cfg = be.grid(len, THREADS);
    let kernel = match seed {
        DropoutSeed::Host(_) => Kernel::Dropout,
        DropoutSeed::Device { .. } => Kernel::DropoutStep,
    };
    let mut builder = be.stream.launch_builder(be.function(kernel)?);
    builder
        .arg(x)
        .arg(&mut *out)
        .arg(&mut *mask)
        .arg(&n)
        .arg(&drop_prob)
        .arg(&scale);
    match &seed {
        DropoutSeed::Host(seed) => builder.arg(seed),
        DropoutSeed::Device { base, step } => builder.arg(base).arg(*step),
    };
    // SAFETY: the arguments match `dropout_fwd_f32(const float* x, float* out, float* mask,
    // unsigned n, float drop_prob, float keep_scale, unsigned long long seed)`, or with a
    // device step `dropout_step_fwd_f32(..same.., unsigned long long seed_base, const unsigned*
    // step)`, in order and type (u64 is unsigned long long); the buffers hold at least `n`
    // elements and step at least one (checked above), and the grid-stride loop stops at `n`.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// `step[0] += 1` on the device (see [`crate::Backend::advance_step`]).
pub(super) fn advance_step(be: &CudaBackend, step: &mut CudaSlice<u32>) -> Result<()> {
    const OP: &str = "advance_step";
    be.check(OP, "step", step, 1)?;
    let cfg = be.grid(1, 32);
    let mut builder = be.stream.launch_builder(be.function(Kernel::StepAdvance)?);
    builder.arg(&mut *step);
    // SAFETY: the argument matches `step_advance_fwd_f32(unsigned* step)`; one thread writes
    // step[0], and step holds at least one element (checked above).
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
