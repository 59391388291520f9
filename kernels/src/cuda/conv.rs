//! Launchers of `conv.cu` for one branch: the shape checks and shared-memory sizing of the fused
//! forward (launched by `conv_branches`, one branch or several), and its
//! backward through the argmax positions.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{ConvShape, Error, Result};

/// Must match `conv.cu`: threads a block, and the tile sizes that size shared memory.
pub(super) const FWD_THREADS: u32 = 128;
const TILE_POSITIONS: usize = 64;
pub(super) const TILE_FILTERS: usize = 32;
const CHUNK_COLUMNS: usize = 32;
const X_ROW_STRIDE: usize = CHUNK_COLUMNS + 1;
/// Dynamic shared memory a block may use without opting in.
pub(super) const SHARED_LIMIT_BYTES: usize = 48 * 1024;
pub(super) const BWD_THREADS: u32 = 256;

/// The shape as the kernels' `unsigned int` arguments.
pub(super) struct Dims {
    batch: u32,
    seq_len: u32,
    embed_dim: u32,
    width: u32,
    num_filters: u32,
    pooled_cols: u32,
    pooled_offset: u32,
}

/// Validates a shape and converts it for the kernels.
pub(super) fn dims(op: &'static str, shape: &ConvShape) -> Result<Dims> {
    let invalid = |reason: String| Error::InvalidShape { op, reason };
    if shape.embed_dim == 0 || shape.num_filters == 0 || shape.width == 0 {
        return Err(invalid(format!(
            "embed_dim, width and num_filters must be positive: {shape:?}"
        )));
    }
    if shape.width > shape.seq_len {
        return Err(invalid(format!(
            "width {} exceeds seq_len {}",
            shape.width, shape.seq_len
        )));
    }
    if shape.pooled_offset + shape.num_filters > shape.pooled_cols {
        return Err(invalid(format!(
            "filters {}..{} exceed the pooled matrix's {} columns",
            shape.pooled_offset,
            shape.pooled_offset + shape.num_filters,
            shape.pooled_cols
        )));
    }
    to_u32(
        op,
        "batch * seq_len * embed_dim",
        shape.batch * shape.seq_len * shape.embed_dim,
    )?;
    to_u32(
        op,
        "num_filters * width * embed_dim",
        shape.num_filters * shape.width * shape.embed_dim,
    )?;
    to_u32(op, "batch * pooled_cols", shape.batch * shape.pooled_cols)?;
    Ok(Dims {
        batch: to_u32(op, "batch", shape.batch)?,
        seq_len: to_u32(op, "seq_len", shape.seq_len)?,
        embed_dim: to_u32(op, "embed_dim", shape.embed_dim)?,
        width: to_u32(op, "width", shape.width)?,
        num_filters: to_u32(op, "num_filters", shape.num_filters)?,
        pooled_cols: to_u32(op, "pooled_cols", shape.pooled_cols)?,
        pooled_offset: to_u32(op, "pooled_offset", shape.pooled_offset)?,
    })
}

/// Shared memory of the forward kernel: the staged x rows and `j_group` filter rows.
/// Returns `(j_group, bytes)`, the most filter rows a block can stage at once.
pub(super) fn forward_shared_memory(op: &'static str, width: usize) -> Result<(u32, u32)> {
    let x_floats = ((TILE_POSITIONS + width - 1) * X_ROW_STRIDE).next_multiple_of(4);
    let w_row_floats = CHUNK_COLUMNS * TILE_FILTERS;
    let budget = SHARED_LIMIT_BYTES / 4;
    if x_floats + w_row_floats > budget {
        return Err(Error::InvalidShape {
            op,
            reason: format!("filter width {width} is too wide for the CUDA convolution kernel"),
        });
    }
    let j_group = ((budget - x_floats) / w_row_floats).min(width);
    let bytes = (x_floats + j_group * w_row_floats) * 4;
    Ok((j_group as u32, bytes as u32))
}

/// The read-only inputs of the backward pass.
pub(super) struct BackwardInputs<'a> {
    pub grad_pooled: &'a CudaSlice<f32>,
    pub pooled: &'a CudaSlice<f32>,
    pub argmax: &'a CudaSlice<u32>,
    pub x: &'a CudaSlice<f32>,
    pub w: &'a CudaSlice<f32>,
}

/// The backward; see [`crate::Backend::conv_pool_bwd`].
pub(super) fn backward(
    be: &CudaBackend,
    shape: &ConvShape,
    inputs: &BackwardInputs<'_>,
    grad_w: &mut CudaSlice<f32>,
    grad_b: &mut CudaSlice<f32>,
    grad_x: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd";
    let d = dims(OP, shape)?;
    let x_len = shape.batch * shape.seq_len * shape.embed_dim;
    let w_len = shape.num_filters * shape.width * shape.embed_dim;
    be.check(
        OP,
        "grad_pooled",
        inputs.grad_pooled,
        shape.batch * shape.pooled_cols,
    )?;
    be.check(OP, "pooled", inputs.pooled, shape.batch * shape.pooled_cols)?;
    be.check(OP, "argmax", inputs.argmax, shape.batch * shape.num_filters)?;
    be.check(OP, "x", inputs.x, x_len)?;
    be.check(OP, "w", inputs.w, w_len)?;
    be.check(OP, "grad_w", grad_w, w_len)?;
    be.check(OP, "grad_b", grad_b, shape.num_filters)?;
    be.check(OP, "grad_x", grad_x, x_len)?;
    weight_grads(be, &d, w_len, inputs, grad_w, grad_b)?;
    if shape.batch == 0 {
        return Ok(());
    }
    data_grad(be, &d, inputs, grad_x)
}

fn weight_grads(
    be: &CudaBackend,
    d: &Dims,
    w_len: usize,
    inputs: &BackwardInputs<'_>,
    grad_w: &mut CudaSlice<f32>,
    grad_b: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd";
    let cfg = be.grid(w_len, BWD_THREADS);
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::ConvPoolWeights)?);
    builder
        .arg(inputs.grad_pooled)
        .arg(inputs.pooled)
        .arg(inputs.argmax)
        .arg(inputs.x)
        .arg(&mut *grad_w)
        .arg(&mut *grad_b)
        .arg(&d.batch)
        .arg(&d.seq_len)
        .arg(&d.embed_dim)
        .arg(&d.width)
        .arg(&d.num_filters)
        .arg(&d.pooled_cols)
        .arg(&d.pooled_offset);
    // SAFETY: the arguments match `conv_pool_weights_bwd_f32(const float* grad_pooled, const
    // float* pooled, const unsigned* argmax, const float* x, float* grad_w, float* grad_b,
    // unsigned batch, seq_len, embed_dim, width, num_filters, pooled_cols, pooled_offset)` in
    // order and type. The grid-stride loop covers the num_filters * width * embed_dim weights
    // (grad_w holds them; grad_b holds num_filters); x is read only where
    // argmax + width <= seq_len, and the pooled columns stay below pooled_cols (checked in
    // `dims`); every buffer is long enough (checked by the caller).
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

fn data_grad(
    be: &CudaBackend,
    d: &Dims,
    inputs: &BackwardInputs<'_>,
    grad_x: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd";
    let rows = d.batch as usize * d.seq_len as usize;
    let threads = (d.embed_dim.next_multiple_of(32)).clamp(32, 512);
    let shared_bytes = 8 * d.num_filters;
    if shared_bytes as usize > SHARED_LIMIT_BYTES {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!(
                "{} filters exceed the CUDA data-gradient kernel",
                d.num_filters
            ),
        });
    }
    let mut cfg = be.grid(rows * threads as usize, threads);
    cfg.shared_mem_bytes = shared_bytes;
    let mut builder = be.stream.launch_builder(be.function(Kernel::ConvPoolData)?);
    builder
        .arg(inputs.grad_pooled)
        .arg(inputs.pooled)
        .arg(inputs.argmax)
        .arg(inputs.w)
        .arg(&mut *grad_x)
        .arg(&d.batch)
        .arg(&d.seq_len)
        .arg(&d.embed_dim)
        .arg(&d.width)
        .arg(&d.num_filters)
        .arg(&d.pooled_cols)
        .arg(&d.pooled_offset);
    // SAFETY: the arguments match `conv_pool_data_bwd_f32(const float* grad_pooled, const float*
    // pooled, const unsigned* argmax, const float* w, float* grad_x, unsigned batch, seq_len,
    // embed_dim, width, num_filters, pooled_cols, pooled_offset)` in order and type. Blocks
    // stride over the batch * seq_len rows of grad_x and threads over embed_dim; w is read at
    // f < num_filters, j = t - argmax < width; the 2 * num_filters words of shared memory are
    // sized above; every buffer is long enough (checked by the caller).
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
