//! Launchers of `embedding.cu`: the embedding gather and its gradient rows.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{Error, Result};

const THREADS: u32 = 256;

/// Threads a block of `embedding_bwd_f32` (`EMB_BWD_THREADS` in `embedding.cu`).
const GRAD_THREADS: u32 = 128;

/// `out[t*E + e] = table[ids[t]*E + e]`; ids past the vocabulary are clamped on the device.
pub(super) fn gather(
    be: &CudaBackend,
    table: &CudaSlice<f32>,
    vocab: usize,
    embed_dim: usize,
    ids: &CudaSlice<u32>,
    n_tokens: usize,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "embedding_gather";
    if vocab == 0 || embed_dim == 0 {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!("vocab {vocab} and embed_dim {embed_dim} must be positive"),
        });
    }
    let total = n_tokens * embed_dim;
    be.check(OP, "table", table, vocab * embed_dim)?;
    be.check(OP, "ids", ids, n_tokens)?;
    be.check(OP, "out", out, total)?;
    let n_tokens_u32 = to_u32(OP, "n_tokens", n_tokens)?;
    let embed_dim_u32 = to_u32(OP, "embed_dim", embed_dim)?;
    let vocab_u32 = to_u32(OP, "vocab", vocab)?;
    to_u32(OP, "vocab * embed_dim", vocab * embed_dim)?;
    if total == 0 {
        return Ok(());
    }
    let cfg = be.grid(total, THREADS);
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::EmbeddingGather)?);
    builder
        .arg(table)
        .arg(ids)
        .arg(&mut *out)
        .arg(&n_tokens_u32)
        .arg(&embed_dim_u32)
        .arg(&vocab_u32);
    // SAFETY: the arguments match `embedding_fwd_f32(const float* table, const unsigned* ids,
    // float* out, unsigned n_tokens, unsigned embed_dim, unsigned vocab)` in order and type.
    // The grid-stride loop covers t < n_tokens, e < embed_dim: `ids` and `out` are long enough
    // (checked above), and ids are clamped below `vocab`, so table reads stay under
    // vocab * embed_dim, which `table` holds.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}

/// `grad_rows[r*E + e] = Σ_{t : slots[t] = r} grad_out[t*E + e]` (overwrite), summed in token
/// order without atomics: bitwise the CPU backend's result, the same on every run.
pub(super) fn grad_rows(
    be: &CudaBackend,
    grad_out: &CudaSlice<f32>,
    slots: &CudaSlice<u32>,
    n_tokens: usize,
    embed_dim: usize,
    n_rows: usize,
    grad_rows: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "embedding_grad_rows";
    let total = n_tokens * embed_dim;
    be.check(OP, "grad_out", grad_out, total)?;
    be.check(OP, "slots", slots, n_tokens)?;
    be.check(OP, "grad_rows", grad_rows, n_rows * embed_dim)?;
    let n_tokens_u32 = to_u32(OP, "n_tokens", n_tokens)?;
    let embed_dim_u32 = to_u32(OP, "embed_dim", embed_dim)?;
    let n_rows_u32 = to_u32(OP, "n_rows", n_rows)?;
    if n_rows == 0 || embed_dim == 0 {
        return Ok(());
    }
    // One block a row (grid-stride past the cap); every row is written, so no fill is needed.
    let cap = be.multiprocessors as usize * 32;
    let cfg = LaunchConfig {
        grid_dim: (n_rows.clamp(1, cap) as u32, 1, 1),
        block_dim: (GRAD_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = be
        .stream
        .launch_builder(be.function(Kernel::EmbeddingGradRows)?);
    builder
        .arg(grad_out)
        .arg(slots)
        .arg(&mut *grad_rows)
        .arg(&n_tokens_u32)
        .arg(&embed_dim_u32)
        .arg(&n_rows_u32);
    // SAFETY: the arguments match `embedding_bwd_f32(const float* grad_out, const unsigned*
    // slots, float* grad_rows, unsigned n_tokens, unsigned embed_dim, unsigned n_rows)` in order
    // and type, and the block has the EMB_BWD_THREADS threads its scan assumes. Reads cover
    // t < n_tokens, e < embed_dim (within `grad_out` and `slots`, checked above); writes are
    // row < n_rows, e < embed_dim, within `grad_rows`.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
