//! Launchers of `optim.cu`: the global gradient norm and the RMSProp updates, which read the
//! clipping scale from a device scalar so that a step needs no host round trip.

use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, REDUCE_PARTIALS, driver_error, to_u32};
use crate::{Error, Result, RmsProp, RmsState, RmsTensor};

/// Must match `REDUCE_THREADS` in `optim.cu`.
const REDUCE_THREADS: u32 = 256;
const UPDATE_THREADS: u32 = 256;
const ROW_THREADS: u32 = 128;

/// `acc[0] += Σ_{i<len} x[i]²`, in two deterministic passes through the backend's scratch.
pub(super) fn sum_squares(
    be: &CudaBackend,
    x: &CudaSlice<f32>,
    len: usize,
    acc: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "sum_squares";
    be.check(OP, "x", x, len)?;
    be.check(OP, "acc", acc, 1)?;
    let n = to_u32(OP, "len", len)?;
    if n == 0 {
        return Ok(());
    }
    // The grid depends only on len, so the summation order does too.
    let blocks = len
        .div_ceil(REDUCE_THREADS as usize * 8)
        .clamp(1, REDUCE_PARTIALS);
    let partials = blocks as u32;
    let mut scratch = be
        .reduce_scratch
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let partial_cfg = LaunchConfig {
        grid_dim: (partials, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::SumSquaresPartial)?);
    builder.arg(x).arg(&n).arg(&mut *scratch);
    // SAFETY: the arguments match `sum_squares_partial_fwd_f32(const float* x, unsigned n,
    // float* partials)` in order and type; the grid-stride loop reads x below n (x is long
    // enough, checked above) and block i writes partials[i] for i < partials <= REDUCE_PARTIALS,
    // the scratch's length; the block has the 256 threads the kernel's tree needs.
    unsafe { builder.launch(partial_cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    let final_cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        ..partial_cfg
    };
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::SumSquaresFinal)?);
    builder.arg(&*scratch).arg(&partials).arg(&mut *acc);
    // SAFETY: the arguments match `sum_squares_final_fwd_f32(const float* partials, unsigned
    // n_partials, float* acc)` in order and type; it reads the `partials` values the previous
    // launch wrote on the same stream (the scratch lock is held across both launches) and
    // writes acc[0] (acc holds at least one element, checked above).
    unsafe { builder.launch(final_cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// Tensors a multi-tensor launch takes (`MULTI_MAX` in `optim.cu`).
const MULTI_MAX: usize = 16;

/// `struct TensorList` of `optim.cu`, passed to the kernel by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct TensorList {
    ptr: [u64; MULTI_MAX],
    len: [u32; MULTI_MAX],
    count: u32,
}

// SAFETY: `TensorList` is `repr(C)` plain data with the field order, types and alignment of
// `struct TensorList` in `optim.cu` (16 device pointers, 16 unsigned ints, one unsigned int).
unsafe impl DeviceRepr for TensorList {}

/// `acc[0] = Σ_t Σ_{i<len_t} x_t[i]²` in two launches (partials, then an overwriting final
/// sum) for up to [`MULTI_MAX`] tensors; more fall back to a fill and one reduction a tensor.
pub(super) fn sum_squares_many(
    be: &CudaBackend,
    tensors: &[(&CudaSlice<f32>, usize)],
    acc: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "sum_squares_many";
    be.check(OP, "acc", acc, 1)?;
    if tensors.len() > MULTI_MAX {
        super::elementwise::fill(be, acc, 1, 0.0)?;
        for &(x, len) in tensors {
            sum_squares(be, x, len, acc)?;
        }
        return Ok(());
    }
    let mut list = TensorList {
        ptr: [0; MULTI_MAX],
        len: [0; MULTI_MAX],
        count: to_u32(OP, "tensors", tensors.len())?,
    };
    let mut guards = Vec::with_capacity(tensors.len());
    let mut total = 0usize;
    for (t, &(x, len)) in tensors.iter().enumerate() {
        be.check(OP, "x", x, len)?;
        list.len[t] = to_u32(OP, "len", len)?;
        let (ptr, guard) = x.device_ptr(&be.stream);
        list.ptr[t] = ptr;
        guards.push(guard);
        total += len;
    }
    // The grid depends only on the lengths, so the summation order does too.
    let blocks = total
        .div_ceil(REDUCE_THREADS as usize * 8)
        .clamp(1, REDUCE_PARTIALS);
    let partials = blocks as u32;
    let mut scratch = be
        .reduce_scratch
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let partial_cfg = LaunchConfig {
        grid_dim: (partials, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::SumSquaresMultiPartial)?);
    builder.arg(&list).arg(&mut *scratch);
    // SAFETY: the arguments match `sum_squares_multi_partial_fwd_f32(const TensorList list,
    // float* partials)`; each list entry is a live buffer of this backend's stream (checked
    // above; `guards` keep them borrowed past the launch) holding at least `len` elements, and
    // block i writes partials[i] for i < partials <= REDUCE_PARTIALS, the scratch's length; the
    // block has the 256 threads the kernel's tree needs.
    unsafe { builder.launch(partial_cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    let final_cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        ..partial_cfg
    };
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::SumSquaresMultiFinal)?);
    builder.arg(&*scratch).arg(&partials).arg(&mut *acc);
    // SAFETY: the arguments match `sum_squares_multi_final_fwd_f32(const float* partials,
    // unsigned n_partials, float* acc)`; it reads the partials the previous launch wrote on the
    // same stream (the scratch lock is held across both) and writes acc[0] (checked above).
    unsafe { builder.launch(final_cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    drop(guards);
    Ok(())
}

/// `struct RmsList` of `optim.cu`, passed to the kernel by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct RmsList {
    w: [u64; MULTI_MAX],
    grad: [u64; MULTI_MAX],
    ms: [u64; MULTI_MAX],
    mean: [u64; MULTI_MAX],
    len: [u32; MULTI_MAX],
    count: u32,
}

// SAFETY: `RmsList` is `repr(C)` plain data with the field order, types and alignment of
// `struct RmsList` in `optim.cu` (four arrays of 16 device pointers, 16 and 1 unsigned ints).
unsafe impl DeviceRepr for RmsList {}

/// Dense RMSProp over up to [`MULTI_MAX`] tensors in one launch; more, or none, fall back to
/// one launch a tensor.
pub(super) fn rmsprop_many(
    be: &CudaBackend,
    params: &RmsProp,
    tensors: &mut [RmsTensor<'_, CudaBackend>],
    grad_norm_sq: &CudaSlice<f32>,
    on_device: Option<&OnDevice<'_>>,
) -> Result<()> {
    const OP: &str = "rmsprop_many";
    if on_device.is_some() && tensors.len() > MULTI_MAX {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!(
                "{} tensors: a learning rate in device memory takes at most {MULTI_MAX}",
                tensors.len()
            ),
        });
    }
    if tensors.len() > MULTI_MAX || tensors.is_empty() {
        for t in tensors.iter_mut() {
            let state = RmsState {
                mean_square: &mut *t.state.mean_square,
                mean: t.state.mean.as_deref_mut(),
            };
            rmsprop(be, params, &mut *t.w, t.grad, state, t.len, grad_norm_sq)?;
        }
        return Ok(());
    }
    be.check(OP, "grad_norm_sq", grad_norm_sq, 1)?;
    let mut list = RmsList {
        w: [0; MULTI_MAX],
        grad: [0; MULTI_MAX],
        ms: [0; MULTI_MAX],
        mean: [0; MULTI_MAX],
        len: [0; MULTI_MAX],
        count: to_u32(OP, "tensors", tensors.len())?,
    };
    let mut total = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        // Refuses a centered update without the running mean, naming the op.
        scalars(OP, params, t.state.mean.is_some())?;
        be.check(OP, "w", t.w, t.len)?;
        be.check(OP, "grad", t.grad, t.len)?;
        be.check(OP, "mean_square", t.state.mean_square, t.len)?;
        if let Some(mean) = t.state.mean.as_deref() {
            be.check(OP, "mean", mean, t.len)?;
        }
        list.len[i] = to_u32(OP, "len", t.len)?;
        total += t.len;
    }
    let s = scalars(OP, params, true)?;
    // The device pointers, borrowed (guards) until the launch is enqueued.
    let mut guards = Vec::with_capacity(4 * tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let (w, g) = (t.w.device_ptr(&be.stream), t.grad.device_ptr(&be.stream));
        let ms = t.state.mean_square.device_ptr(&be.stream);
        list.w[i] = w.0;
        list.grad[i] = g.0;
        list.ms[i] = ms.0;
        guards.extend([w.1, g.1, ms.1]);
        if let (true, Some(mean)) = (params.centered, t.state.mean.as_deref()) {
            let m = mean.device_ptr(&be.stream);
            list.mean[i] = m.0;
            guards.push(m.1);
        }
    }
    if total == 0 {
        return Ok(());
    }
    let cfg = be.grid(total, UPDATE_THREADS);
    let mut builder = be.stream.launch_builder(be.function(Kernel::RmsPropMulti)?);
    builder
        .arg(&list)
        .arg(grad_norm_sq)
        .arg(&s.lr)
        .arg(&s.decay)
        .arg(&s.eps)
        .arg(&s.max_norm)
        .arg(&s.centered);
    let null = 0u64;
    match on_device {
        Some(d) => builder.arg(d.lr),
        None => builder.arg(&null),
    };
    // SAFETY: the arguments match `rmsprop_multi_fwd_f32(const RmsList list, const float*
    // norm_sq, float lr, float decay, float eps, float max_norm, int centered, const float*
    // lr_dev)` in order and type; lr_dev is null or a buffer of at least one element (checked
    // by the caller). Every pointer in the list is a live buffer of this backend's stream holding at
    // least len[t] elements (checked above; `guards` keep them borrowed, and the `&mut`s of
    // `tensors` keep them exclusive), the kernel's loops stay below len[t], and a mean is read
    // only when centered, when `scalars` required it to be present. norm_sq holds 1.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    drop(guards);
    Ok(())
}

/// The update's scalars, as the kernels take them.
struct Scalars {
    lr: f32,
    decay: f32,
    eps: f32,
    max_norm: f32,
    centered: i32,
}

fn scalars(op: &'static str, params: &RmsProp, has_mean: bool) -> Result<Scalars> {
    if params.centered && !has_mean {
        return Err(Error::InvalidShape {
            op,
            reason: "centered RMSProp needs the running mean buffer".to_string(),
        });
    }
    Ok(Scalars {
        lr: params.lr,
        decay: params.decay,
        eps: params.eps,
        max_norm: params.max_grad_norm,
        centered: i32::from(params.centered),
    })
}

/// One dense RMSProp step over `len` elements; see [`crate::Backend::rmsprop`].
pub(super) fn rmsprop(
    be: &CudaBackend,
    params: &RmsProp,
    w: &mut CudaSlice<f32>,
    grad: &CudaSlice<f32>,
    state: RmsState<'_, CudaBackend>,
    len: usize,
    grad_norm_sq: &CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "rmsprop";
    let s = scalars(OP, params, state.mean.is_some())?;
    be.check(OP, "w", w, len)?;
    be.check(OP, "grad", grad, len)?;
    be.check(OP, "mean_square", state.mean_square, len)?;
    be.check(OP, "grad_norm_sq", grad_norm_sq, 1)?;
    let n = to_u32(OP, "len", len)?;
    if n == 0 {
        return Ok(());
    }
    let cfg = be.grid(len, UPDATE_THREADS);
    let null_mean = 0u64;
    let mut builder = be.stream.launch_builder(be.function(Kernel::RmsProp)?);
    builder.arg(&mut *w).arg(grad).arg(&mut *state.mean_square);
    match state.mean {
        Some(mean) if params.centered => {
            be.check(OP, "mean", mean, len)?;
            builder.arg(mean);
        }
        _ => {
            builder.arg(&null_mean);
        }
    }
    builder
        .arg(grad_norm_sq)
        .arg(&n)
        .arg(&s.lr)
        .arg(&s.decay)
        .arg(&s.eps)
        .arg(&s.max_norm)
        .arg(&s.centered);
    // SAFETY: the arguments match `rmsprop_fwd_f32(float* w, const float* grad, float* ms,
    // float* mean, const float* norm_sq, unsigned n, float lr, float decay, float eps, float
    // max_norm, int centered)` in order and type; a null device pointer (8 bytes) stands for
    // the mean only when centered is 0, and the kernel then never touches it. The grid-stride
    // loop stays below n, and w, grad, mean_square and mean hold n elements (checked above);
    // norm_sq holds 1.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// The step counter and learning rate in device memory, read by the kernels in place of the
/// host values (a captured step replays with the values of the step it replays).
pub(super) struct OnDevice<'a> {
    pub step: &'a CudaSlice<u32>,
    pub lr: &'a CudaSlice<f32>,
}

/// The sparse arguments of [`rmsprop_rows`].
pub(super) struct RowsUpdate<'a> {
    pub grad_rows: &'a CudaSlice<f32>,
    pub rows: &'a CudaSlice<u32>,
    pub n_rows: usize,
    pub embed_dim: usize,
    pub step: u32,
    /// When set, the kernel reads the step and the learning rate here instead.
    pub on_device: Option<OnDevice<'a>>,
}

/// RMSProp on the rows a batch touched; see [`crate::Backend::rmsprop_rows`].
pub(super) fn rmsprop_rows(
    be: &CudaBackend,
    params: &RmsProp,
    table: &mut CudaSlice<f32>,
    sparse: &RowsUpdate<'_>,
    state: RmsState<'_, CudaBackend>,
    last_step: &mut CudaSlice<u32>,
    grad_norm_sq: &CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "rmsprop_rows";
    let s = scalars(OP, params, state.mean.is_some())?;
    if sparse.embed_dim == 0 {
        return Err(Error::InvalidShape {
            op: OP,
            reason: "embed_dim must be positive".to_string(),
        });
    }
    let vocab = table.len() / sparse.embed_dim;
    let table_len = vocab * sparse.embed_dim;
    be.check(
        OP,
        "grad_rows",
        sparse.grad_rows,
        sparse.n_rows * sparse.embed_dim,
    )?;
    be.check(OP, "rows", sparse.rows, sparse.n_rows)?;
    be.check(OP, "mean_square", state.mean_square, table_len)?;
    be.check(OP, "last_step", last_step, vocab)?;
    be.check(OP, "grad_norm_sq", grad_norm_sq, 1)?;
    let dims = [
        to_u32(OP, "n_rows", sparse.n_rows)?,
        to_u32(OP, "embed_dim", sparse.embed_dim)?,
        to_u32(OP, "vocab", vocab)?,
    ];
    to_u32(OP, "table length", table_len)?;
    if sparse.n_rows == 0 || vocab == 0 {
        return Ok(());
    }
    let cfg = be.grid(sparse.n_rows * ROW_THREADS as usize, ROW_THREADS);
    let null_mean = 0u64;
    let mut builder = be.stream.launch_builder(be.function(Kernel::RmsPropRows)?);
    builder
        .arg(&mut *table)
        .arg(sparse.grad_rows)
        .arg(sparse.rows)
        .arg(&mut *state.mean_square);
    match state.mean {
        Some(mean) if params.centered => {
            be.check(OP, "mean", mean, table_len)?;
            builder.arg(mean);
        }
        _ => {
            builder.arg(&null_mean);
        }
    }
    builder
        .arg(&mut *last_step)
        .arg(grad_norm_sq)
        .arg(&dims[0])
        .arg(&dims[1])
        .arg(&dims[2])
        .arg(&sparse.step)
        .arg(&s.lr)
        .arg(&s.decay)
        .arg(&s.eps)
        .arg(&s.max_norm)
        .arg(&s.centered);
    let null = 0u64;
    match &sparse.on_device {
        Some(d) => builder.arg(d.step).arg(d.lr),
        None => builder.arg(&null).arg(&null),
    };
    // SAFETY: the arguments match `rmsprop_rows_fwd_f32(float* table, const float* grad_rows,
    // const unsigned* rows, float* ms, float* mean, unsigned* last_step, const float* norm_sq,
    // unsigned n_rows, unsigned embed_dim, unsigned vocab, unsigned step, float lr, float decay,
    // float eps, float max_norm, int centered, const unsigned* step_dev, const float* lr_dev)`
    // in order and type; step_dev and lr_dev are both null or buffers of at least one element
    // (checked by the caller); a null mean is passed only with centered 0. Blocks stride over slots s < n_rows (grad_rows and rows are long enough)
    // and skip rows >= vocab, so table, mean_square, mean (vocab * embed_dim elements) and
    // last_step (vocab) are indexed in bounds; rows must be distinct, as the trait's row list
    // of distinct ids is.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
