//! The CPU backend: the reference for every CUDA kernel and the production path of `agent --cpu`.
//!
//! Buffers are plain `Vec<f32>` / `Vec<u32>`, so "device" transfers are copies and every
//! operation finishes before it returns. Work is spread over rayon's global pool: over the batch
//! for the convolution (whose forward pass is a dense matrix product run by faer's AVX2/AVX-512
//! kernels), over rows or chunks elsewhere. Every operation checks its lengths and indices and
//! returns an error before touching an output.
//!
//! One file per op family (private modules): `embedding`, `conv`, `linear`, `loss`, `optim`,
//! `elementwise`.

mod conv;
mod elementwise;
mod embedding;
mod linear;
mod loss;
mod optim;

use crate::{Backend, ConvShape, Error, LinearShape, Result, RmsProp, RmsState};

/// The rayon-parallel CPU backend.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend {}

impl CpuBackend {
    /// A backend on rayon's global thread pool (size it with `rayon::ThreadPoolBuilder` before
    /// the first use, or run calls inside a pool's `install`).
    pub fn new() -> Self {
        Self {}
    }
}

/// Returns [`Error::BufferTooShort`] when `actual < needed`.
pub(crate) fn need(
    op: &'static str,
    buffer: &'static str,
    actual: usize,
    needed: usize,
) -> Result<()> {
    if actual < needed {
        return Err(Error::BufferTooShort {
            op,
            buffer,
            needed,
            actual,
        });
    }
    Ok(())
}

/// Returns [`Error::InvalidShape`] unless `ok`.
pub(crate) fn shape_ok(op: &'static str, ok: bool, reason: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidShape {
            op,
            reason: reason(),
        })
    }
}

/// Returns [`Error::IndexOutOfRange`] for the first index `>= bound`.
pub(crate) fn indices_below(op: &'static str, indices: &[u32], bound: usize) -> Result<()> {
    match indices.iter().find(|&&i| i as usize >= bound) {
        Some(&index) => Err(Error::IndexOutOfRange { op, index, bound }),
        None => Ok(()),
    }
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type IdxBuf = Vec<u32>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn alloc_idx(&self, len: usize) -> Result<Vec<u32>> {
        Ok(vec![0; len])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn upload_idx(&self, host: &[u32]) -> Result<Vec<u32>> {
        Ok(host.to_vec())
    }

    fn write(&self, dst: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        need("write", "dst", dst.len(), host.len())?;
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn write_idx(&self, dst: &mut Vec<u32>, host: &[u32]) -> Result<()> {
        need("write_idx", "dst", dst.len(), host.len())?;
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn download(&self, src: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(src.clone())
    }

    fn download_idx(&self, src: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(src.clone())
    }

    fn fill(&self, buf: &mut Vec<f32>, len: usize, value: f32) -> Result<()> {
        need("fill", "buf", buf.len(), len)?;
        buf[..len].fill(value);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn embedding_gather(
        &self,
        table: &Vec<f32>,
        vocab: usize,
        embed_dim: usize,
        ids: &Vec<u32>,
        n_tokens: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        embedding::gather(table, vocab, embed_dim, ids, n_tokens, out)
    }

    fn embedding_grad_rows(
        &self,
        grad_out: &Vec<f32>,
        slots: &Vec<u32>,
        n_tokens: usize,
        embed_dim: usize,
        n_rows: usize,
        grad_rows: &mut Vec<f32>,
    ) -> Result<()> {
        embedding::grad_rows(grad_out, slots, n_tokens, embed_dim, n_rows, grad_rows)
    }

    fn conv_pool_fwd(
        &self,
        shape: &ConvShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        bias: &Vec<f32>,
        pooled: &mut Vec<f32>,
        argmax: &mut Vec<u32>,
    ) -> Result<()> {
        conv::forward(shape, x, w, bias, pooled, argmax)
    }

    fn conv_pool_bwd(
        &self,
        shape: &ConvShape,
        grad_pooled: &Vec<f32>,
        pooled: &Vec<f32>,
        argmax: &Vec<u32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        grad_w: &mut Vec<f32>,
        grad_b: &mut Vec<f32>,
        grad_x: &mut Vec<f32>,
    ) -> Result<()> {
        let inputs = conv::BackwardInputs {
            grad_pooled,
            pooled,
            argmax,
            x,
            w,
        };
        conv::backward(shape, &inputs, grad_w, grad_b, grad_x)
    }

    fn dropout_fwd(
        &self,
        x: &Vec<f32>,
        len: usize,
        drop_prob: f32,
        seed: u64,
        out: &mut Vec<f32>,
        mask: &mut Vec<f32>,
    ) -> Result<()> {
        elementwise::dropout(x, len, drop_prob, seed, out, mask)
    }

    fn mul(&self, a: &Vec<f32>, b: &Vec<f32>, len: usize, out: &mut Vec<f32>) -> Result<()> {
        elementwise::mul(a, b, len, out)
    }

    fn linear_fwd(
        &self,
        shape: &LinearShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        linear::forward(shape, x, w, b, out)
    }

    fn linear_bwd(
        &self,
        shape: &LinearShape,
        grad_out: &Vec<f32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        grad_x: &mut Vec<f32>,
        grad_w: &mut Vec<f32>,
        grad_b: &mut Vec<f32>,
    ) -> Result<()> {
        linear::backward(shape, grad_out, x, w, grad_x, grad_w, grad_b)
    }

    fn softmax_xent(
        &self,
        logits: &Vec<f32>,
        labels: &Vec<u32>,
        batch: usize,
        classes: usize,
        grad_logits: Option<&mut Vec<f32>>,
        stats: &mut Vec<f32>,
    ) -> Result<()> {
        loss::softmax_xent(logits, labels, batch, classes, grad_logits, stats)
    }

    fn sum_squares(&self, x: &Vec<f32>, len: usize, acc: &mut Vec<f32>) -> Result<()> {
        elementwise::sum_squares(x, len, acc)
    }

    fn rmsprop(
        &self,
        params: &RmsProp,
        w: &mut Vec<f32>,
        grad: &Vec<f32>,
        state: RmsState<'_, Self>,
        len: usize,
        grad_norm_sq: &Vec<f32>,
    ) -> Result<()> {
        optim::rmsprop(
            params,
            w,
            grad,
            state.mean_square,
            state.mean,
            len,
            grad_norm_sq,
        )
    }

    fn rmsprop_rows(
        &self,
        params: &RmsProp,
        table: &mut Vec<f32>,
        grad_rows: &Vec<f32>,
        rows: &Vec<u32>,
        n_rows: usize,
        embed_dim: usize,
        state: RmsState<'_, Self>,
        last_step: &mut Vec<u32>,
        step: u32,
        grad_norm_sq: &Vec<f32>,
    ) -> Result<()> {
        let sparse = optim::SparseRows {
            grad_rows,
            rows,
            n_rows,
            embed_dim,
            step,
        };
        optim::rmsprop_rows(params, table, &sparse, state, last_step, grad_norm_sq)
    }
}
