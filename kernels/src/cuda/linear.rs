//! Launchers of `linear.cu`: the fully connected layer forward and backward.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{LinearShape, Result};

const THREADS: u32 = 256;

struct Dims {
    batch: u32,
    in_features: u32,
    out_features: u32,
}

fn dims(op: &'static str, shape: &LinearShape) -> Result<Dims> {
    to_u32(op, "batch * in_features", shape.batch * shape.in_features)?;
    to_u32(
        op,
        "out_features * in_features",
        shape.out_features * shape.in_features,
    )?;
    to_u32(op, "batch * out_features", shape.batch * shape.out_features)?;
    Ok(Dims {
        batch: to_u32(op, "batch", shape.batch)?,
        in_features: to_u32(op, "in_features", shape.in_features)?,
        out_features: to_u32(op, "out_features", shape.out_features)?,
    })
}

/// `out[n,o] = b[o] + Σ_i x[n,i] · w[o,i]`.
pub(super) fn forward(
    be: &CudaBackend,
    shape: &LinearShape,
    x: &CudaSlice<f32>,
    w: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "linear_fwd";
    let d = dims(OP, shape)?;
    be.check(OP, "x", x, shape.batch * shape.in_features)?;
    be.check(OP, "w", w, shape.out_features * shape.in_features)?;
    be.check(OP, "b", b, shape.out_features)?;
    be.check(OP, "out", out, shape.batch * shape.out_features)?;
    let outputs = shape.batch * shape.out_features;
    if outputs == 0 {
        return Ok(());
    }
    // One warp an output.
    let cfg = be.grid(outputs * 32, THREADS);
    let mut builder = be.stream.launch_builder(be.function(Kernel::LinearFwd)?);
    builder
        .arg(x)
        .arg(w)
        .arg(b)
        .arg(&mut *out)
        .arg(&d.batch)
        .arg(&d.in_features)
        .arg(&d.out_features);
    // SAFETY: the arguments match `linear_fwd_f32(const float* x, const float* w, const float*
    // b, float* out, unsigned batch, unsigned in_features, unsigned out_features)` in order and
    // type. Warps stride over the batch * out_features outputs and lanes over in_features, so
    // reads stay within x [batch, in], w [out, in], b [out] and writes within out, all long
    // enough (checked above); the block is a multiple of 32 threads, as the shuffles need.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// The three gradients of [`forward`] (overwrite), `grad_x` multiplied by `mask` when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    be: &CudaBackend,
    shape: &LinearShape,
    grad_out: &CudaSlice<f32>,
    x: &CudaSlice<f32>,
    w: &CudaSlice<f32>,
    grad_x: &mut CudaSlice<f32>,
    grad_w: &mut CudaSlice<f32>,
    grad_b: &mut CudaSlice<f32>,
    mask: Option<&CudaSlice<f32>>,
) -> Result<()> {
    const OP: &str = "linear_bwd";
    let d = dims(OP, shape)?;
    let x_len = shape.batch * shape.in_features;
    let w_len = shape.out_features * shape.in_features;
    be.check(OP, "grad_out", grad_out, shape.batch * shape.out_features)?;
    be.check(OP, "x", x, x_len)?;
    be.check(OP, "w", w, w_len)?;
    be.check(OP, "grad_x", grad_x, x_len)?;
    be.check(OP, "grad_w", grad_w, w_len)?;
    be.check(OP, "grad_b", grad_b, shape.out_features)?;
    if let Some(mask) = mask {
        be.check(OP, "mask", mask, x_len)?;
    }
    let total = x_len + w_len + shape.out_features;
    to_u32(OP, "gradient elements", total)?;
    if total == 0 {
        return Ok(());
    }
    let cfg = be.grid(total, THREADS);
    let mut builder = be.stream.launch_builder(be.function(Kernel::LinearBwd)?);
    builder
        .arg(grad_out)
        .arg(x)
        .arg(w)
        .arg(&mut *grad_x)
        .arg(&mut *grad_w)
        .arg(&mut *grad_b)
        .arg(&d.batch)
        .arg(&d.in_features)
        .arg(&d.out_features);
    let null = 0u64;
    match mask {
        Some(mask) => builder.arg(mask),
        None => builder.arg(&null),
    };
    // SAFETY: the arguments match `linear_bwd_f32(const float* grad_out, const float* x, const
    // float* w, float* grad_x, float* grad_w, float* grad_b, unsigned batch, unsigned
    // in_features, unsigned out_features, const float* mask)` in order and type; mask is null
    // or holds batch * in_features elements (checked above), read where grad_x is written. The grid-stride loop covers
    // batch * in + out * in + out elements and splits them into the three outputs by range;
    // every read and write stays within the shapes checked above.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
