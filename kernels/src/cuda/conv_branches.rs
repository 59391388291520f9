//! Launchers of `conv.cu`'s multi-branch kernels: every convolution branch of the text CNN in
//! one forward launch and two backward launches (weights of every branch, data of every
//! branch), in place of one forward and two backward launches a branch and a fill of `grad_x`.

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg};

use super::conv::{self, BWD_THREADS, FWD_THREADS, SHARED_LIMIT_BYTES, TILE_FILTERS};
use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{ConvBwdBranch, ConvFwdBranch, ConvShape, Error, Result, check_branch_shapes};

/// Branches a launch takes (`CONV_MAX_BRANCHES` in `conv.cu`).
pub(super) const MAX_BRANCHES: usize = 8;

/// `struct ConvBranchList` of `conv.cu`, passed to the kernels by value.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ConvBranchList {
    w: [u64; MAX_BRANCHES],
    bias: [u64; MAX_BRANCHES],
    argmax: [u64; MAX_BRANCHES],
    grad_w: [u64; MAX_BRANCHES],
    grad_b: [u64; MAX_BRANCHES],
    width: [u32; MAX_BRANCHES],
    num_filters: [u32; MAX_BRANCHES],
    pooled_offset: [u32; MAX_BRANCHES],
    j_group: [u32; MAX_BRANCHES],
    work_end: [u32; MAX_BRANCHES],
    count: u32,
}

// SAFETY: `ConvBranchList` is `repr(C)` plain data with the field order, types and alignment of
// `struct ConvBranchList` in `conv.cu` (five arrays of 8 device pointers, five arrays of 8
// unsigned ints, one unsigned int).
unsafe impl DeviceRepr for ConvBranchList {}

impl ConvBranchList {
    /// A list of `shapes` with their widths, filter counts and offsets (pointers still null).
    fn of(op: &'static str, shapes: &[ConvShape]) -> Result<Self> {
        let mut list = Self {
            count: to_u32(op, "branches", shapes.len())?,
            ..Self::default()
        };
        for (i, s) in shapes.iter().enumerate() {
            list.width[i] = to_u32(op, "width", s.width)?;
            list.num_filters[i] = to_u32(op, "num_filters", s.num_filters)?;
            list.pooled_offset[i] = to_u32(op, "pooled_offset", s.pooled_offset)?;
        }
        Ok(list)
    }

    /// Sets `work_end` to the running sums of `items` and returns their total.
    fn set_work(&mut self, op: &'static str, items: impl Iterator<Item = usize>) -> Result<u32> {
        let mut total = 0usize;
        for (i, n) in items.enumerate() {
            total += n;
            self.work_end[i] = to_u32(op, "work items of all branches", total)?;
        }
        Ok(total as u32)
    }
}

/// Widest filter the re-tiled forward takes (`CONV_RT_MAX_WIDTH` in `conv.cu`), its threads,
/// filters a block, and the floats of one of its two chunk buffers for a width.
const RETILED_MAX_WIDTH: usize = 5;
const RETILED_THREADS: u32 = 160;
const RETILED_FILTERS: usize = 100;
fn retiled_buffer_floats(width: usize) -> usize {
    const POSITIONS: usize = 56;
    const X_ROW_STRIDE: usize = 11;
    const COLUMNS: usize = 10;
    ((POSITIONS + width - 1) * X_ROW_STRIDE).next_multiple_of(4) + width * COLUMNS * RETILED_FILTERS
}

/// Every branch's forward; see [`crate::Backend::conv_pool_fwd_branches`]. Branches of width
/// up to 5 (the study's 3/4/5) run in one launch of the re-tiled kernel
/// (`conv_pool_retiled_fwd_f32`), wider ones in one launch of `conv_pool_branches_fwd_f32`; a
/// single branch goes the same way, so one call per branch gives the same bits as one call
/// for all. More than [`MAX_BRANCHES`] branches run one call each.
pub(super) fn forward(
    be: &CudaBackend,
    x: &CudaSlice<f32>,
    branches: &mut [ConvFwdBranch<'_, CudaBackend>],
    pooled: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_fwd_branches";
    let shapes: Vec<ConvShape> = branches.iter().map(|b| b.shape).collect();
    check_branch_shapes(OP, &shapes)?;
    if branches.len() > MAX_BRANCHES {
        for br in branches.iter_mut() {
            forward(be, x, std::slice::from_mut(br), pooled)?;
        }
        return Ok(());
    }
    let (mut narrow, mut wide): (Vec<_>, Vec<_>) = branches
        .iter_mut()
        .partition(|br| br.shape.width <= RETILED_MAX_WIDTH);
    for (group, retiled) in [(&mut narrow, true), (&mut wide, false)] {
        if !group.is_empty() {
            launch_forward(be, x, group, pooled, retiled)?;
        }
    }
    Ok(())
}

/// One launch over `group`, of the re-tiled kernel (every width <= 5) or of the 64 x 32 one.
fn launch_forward(
    be: &CudaBackend,
    x: &CudaSlice<f32>,
    group: &mut [&mut ConvFwdBranch<'_, CudaBackend>],
    pooled: &mut CudaSlice<f32>,
    retiled: bool,
) -> Result<()> {
    const OP: &str = "conv_pool_fwd_branches";
    let shapes: Vec<ConvShape> = group.iter().map(|b| b.shape).collect();
    let first = shapes[0];
    let mut list = ConvBranchList::of(OP, &shapes)?;
    let mut shared_bytes = 0;
    for (i, br) in group.iter().enumerate() {
        let s = &br.shape;
        conv::dims(OP, s)?;
        be.check(OP, "x", x, s.batch * s.seq_len * s.embed_dim)?;
        be.check(OP, "w", br.w, s.num_filters * s.width * s.embed_dim)?;
        be.check(OP, "bias", br.bias, s.num_filters)?;
        be.check(OP, "argmax", br.argmax, s.batch * s.num_filters)?;
        let bytes = if retiled {
            debug_assert!(
                s.width <= RETILED_MAX_WIDTH,
                "a wide branch in the re-tiled group"
            );
            (2 * retiled_buffer_floats(s.width) * 4) as u32
        } else {
            let (j_group, bytes) = conv::forward_shared_memory(OP, s.width)?;
            list.j_group[i] = j_group;
            bytes
        };
        shared_bytes = shared_bytes.max(bytes);
    }
    be.check(OP, "pooled", pooled, first.batch * first.pooled_cols)?;
    let tile = if retiled {
        RETILED_FILTERS
    } else {
        TILE_FILTERS
    };
    let tiles = list.set_work(
        OP,
        shapes
            .iter()
            .map(|s| s.batch * s.num_filters.div_ceil(tile)),
    )?;
    if first.batch == 0 {
        return Ok(());
    }
    let mut guards = Vec::with_capacity(3 * group.len());
    for (i, br) in group.iter_mut().enumerate() {
        let (w, bias) = (br.w.device_ptr(&be.stream), br.bias.device_ptr(&be.stream));
        let argmax = br.argmax.device_ptr_mut(&be.stream);
        (list.w[i], list.bias[i], list.argmax[i]) = (w.0, bias.0, argmax.0);
        guards.extend([w.1, bias.1]);
        guards.push(argmax.1);
    }
    let (kernel, threads) = if retiled {
        (Kernel::ConvPoolRetiled, RETILED_THREADS)
    } else {
        (Kernel::ConvPoolBranches, FWD_THREADS)
    };
    let cfg = LaunchConfig {
        grid_dim: (tiles, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: shared_bytes,
    };
    let (seq_len, embed_dim, pooled_cols) = (
        to_u32(OP, "seq_len", first.seq_len)?,
        to_u32(OP, "embed_dim", first.embed_dim)?,
        to_u32(OP, "pooled_cols", first.pooled_cols)?,
    );
    let mut builder = be.stream.launch_builder(be.function(kernel)?);
    builder
        .arg(x)
        .arg(&mut *pooled)
        .arg(&list)
        .arg(&seq_len)
        .arg(&embed_dim)
        .arg(&pooled_cols);
    // SAFETY: the arguments match `conv_pool_branches_fwd_f32` and `conv_pool_retiled_fwd_f32`
    // (both `const float* x, float* pooled, const ConvBranchList list, unsigned seq_len,
    // embed_dim, pooled_cols`) in order and type. Every branch passed `conv::dims` (width <=
    // seq_len, its pooled columns inside pooled_cols, 32-bit sizes) and shares batch, seq_len,
    // embed_dim and pooled_cols with the others (`check_branch_shapes`); each list pointer is a
    // live buffer of this stream as long as its shape needs (checked above; `guards` keep them
    // borrowed past the enqueue, and the `&mut` argmax buffers are exclusive). The grid covers
    // work_end[count - 1] = the branches' tiles (100 filters a tile re-tiled, 32 otherwise),
    // and each block's branch is found from work_end. Shared memory is the largest need of the
    // group's branches by the kernel's own formula (two chunk buffers re-tiled, every width
    // <= 5; x rows and j_group filter rows otherwise, each branch's j_group computed with it),
    // under the 48 KB a block may use without opting in, and the block has the threads the
    // kernel requires (160 re-tiled, 128 otherwise).
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    drop(guards);
    Ok(())
}

/// The read-only inputs shared by every branch of the backward pass.
pub(super) struct SharedInputs<'a> {
    pub grad_pooled: &'a CudaSlice<f32>,
    pub pooled: &'a CudaSlice<f32>,
    pub x: &'a CudaSlice<f32>,
}

/// Every branch's backward in two launches; see [`crate::Backend::conv_pool_bwd_branches`].
/// More than [`MAX_BRANCHES`] branches fill `grad_x` and run two launches each.
pub(super) fn backward(
    be: &CudaBackend,
    inputs: &SharedInputs<'_>,
    branches: &mut [ConvBwdBranch<'_, CudaBackend>],
    grad_x: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd_branches";
    let shapes: Vec<ConvShape> = branches.iter().map(|b| b.shape).collect();
    let first = check_branch_shapes(OP, &shapes)?;
    let x_len = first.batch * first.seq_len * first.embed_dim;
    if branches.len() > MAX_BRANCHES {
        super::elementwise::fill(be, grad_x, x_len, 0.0)?;
        for br in branches.iter_mut() {
            let per_branch = conv::BackwardInputs {
                grad_pooled: inputs.grad_pooled,
                pooled: inputs.pooled,
                argmax: br.argmax,
                x: inputs.x,
                w: br.w,
            };
            conv::backward(be, &br.shape, &per_branch, br.grad_w, br.grad_b, grad_x)?;
        }
        return Ok(());
    }
    let cols = first.batch * first.pooled_cols;
    be.check(OP, "grad_pooled", inputs.grad_pooled, cols)?;
    be.check(OP, "pooled", inputs.pooled, cols)?;
    be.check(OP, "x", inputs.x, x_len)?;
    be.check(OP, "grad_x", grad_x, x_len)?;
    let mut list = ConvBranchList::of(OP, &shapes)?;
    for br in branches.iter() {
        let s = &br.shape;
        let w_len = s.num_filters * s.width * s.embed_dim;
        conv::dims(OP, s)?;
        be.check(OP, "argmax", br.argmax, s.batch * s.num_filters)?;
        be.check(OP, "w", br.w, w_len)?;
        be.check(OP, "grad_w", br.grad_w, w_len)?;
        be.check(OP, "grad_b", br.grad_b, s.num_filters)?;
    }
    let mut guards = Vec::with_capacity(4 * branches.len());
    for (i, br) in branches.iter_mut().enumerate() {
        let (w, argmax) = (
            br.w.device_ptr(&be.stream),
            br.argmax.device_ptr(&be.stream),
        );
        let (gw, gb) = (
            br.grad_w.device_ptr_mut(&be.stream),
            br.grad_b.device_ptr_mut(&be.stream),
        );
        (list.w[i], list.argmax[i], list.grad_w[i], list.grad_b[i]) = (w.0, argmax.0, gw.0, gb.0);
        guards.extend([w.1, argmax.1]);
        guards.extend([gw.1, gb.1]);
    }
    let dims = BatchDims {
        batch: to_u32(OP, "batch", first.batch)?,
        seq_len: to_u32(OP, "seq_len", first.seq_len)?,
        embed_dim: to_u32(OP, "embed_dim", first.embed_dim)?,
        pooled_cols: to_u32(OP, "pooled_cols", first.pooled_cols)?,
    };
    let weights = list.set_work(
        OP,
        shapes.iter().map(|s| s.num_filters * s.width * s.embed_dim),
    )?;
    weight_grads(be, inputs, &list, weights, &dims)?;
    list.set_work(OP, shapes.iter().map(|s| s.num_filters))?;
    if first.batch > 0 {
        data_grad(be, inputs, &list, &dims, grad_x)?;
    }
    drop(guards);
    Ok(())
}

/// The sizes every branch shares, as the kernels' `unsigned int` arguments.
struct BatchDims {
    batch: u32,
    seq_len: u32,
    embed_dim: u32,
    pooled_cols: u32,
}

fn weight_grads(
    be: &CudaBackend,
    inputs: &SharedInputs<'_>,
    list: &ConvBranchList,
    weights: u32,
    d: &BatchDims,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd_branches";
    let cfg = be.grid(weights as usize, BWD_THREADS);
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::ConvPoolBranchesWeights)?);
    builder
        .arg(inputs.grad_pooled)
        .arg(inputs.pooled)
        .arg(inputs.x)
        .arg(list)
        .arg(&d.batch)
        .arg(&d.seq_len)
        .arg(&d.embed_dim)
        .arg(&d.pooled_cols);
    // SAFETY: the arguments match `conv_pool_branches_weights_bwd_f32(const float* grad_pooled,
    // const float* pooled, const float* x, const ConvBranchList list, unsigned batch, seq_len,
    // embed_dim, pooled_cols)` in order and type. work_end holds the running sums of each
    // branch's num_filters * width * embed_dim weights, so the grid-stride loop writes
    // grad_w[br] below its length and grad_b[br] below num_filters; x is read only where
    // argmax + width <= seq_len; every pointer was checked long enough by the caller, whose
    // guards keep the buffers borrowed past the enqueue.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

fn data_grad(
    be: &CudaBackend,
    inputs: &SharedInputs<'_>,
    list: &ConvBranchList,
    d: &BatchDims,
    grad_x: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "conv_pool_bwd_branches";
    let all_filters = list.work_end[list.count as usize - 1];
    let shared_bytes = 8 * all_filters as usize;
    if shared_bytes > SHARED_LIMIT_BYTES {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!("{all_filters} filters in all exceed the CUDA data-gradient kernel"),
        });
    }
    let rows = d.batch as usize * d.seq_len as usize;
    let threads = (d.embed_dim.next_multiple_of(32)).clamp(32, 512);
    let mut cfg = be.grid(rows * threads as usize, threads);
    cfg.shared_mem_bytes = shared_bytes as u32;
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::ConvPoolBranchesData)?);
    builder
        .arg(inputs.grad_pooled)
        .arg(inputs.pooled)
        .arg(&mut *grad_x)
        .arg(list)
        .arg(&d.batch)
        .arg(&d.seq_len)
        .arg(&d.embed_dim)
        .arg(&d.pooled_cols);
    // SAFETY: the arguments match `conv_pool_branches_data_bwd_f32(const float* grad_pooled,
    // const float* pooled, float* grad_x, const ConvBranchList list, unsigned batch, seq_len,
    // embed_dim, pooled_cols)` in order and type. work_end holds the running filter counts,
    // whose total sizes the 2 * all_filters words of shared memory above; blocks stride over
    // the batch * seq_len rows of grad_x and threads over embed_dim; w[br] is read at
    // f < num_filters, t - argmax < width; every buffer was checked long enough by the caller.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
