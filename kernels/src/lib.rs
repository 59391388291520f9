//! The numerical operations of the Kim-2014 text CNN, behind one [`Backend`] trait.
//!
//! `kernels` sits at the bottom of the agent's stack (STYLE.md §1: `agent → cnn → kernels`). It
//! knows nothing of tokio, gRPC or the model's structure: it offers buffers and operations with
//! explicit shapes, and the `cnn` crate composes them into forward, backward and optimizer steps.
//!
//! Two implementations:
//! - [`cpu::CpuBackend`]: the reference that every CUDA kernel is checked against, and the
//!   production CPU path (rayon, cache-friendly loops).
//! - `cuda::CudaBackend` (feature `cuda`): hand-written CUDA kernels compiled with NVRTC and
//!   launched through cudarc. Without the feature, [`probe_cuda`] returns
//!   [`Error::CudaUnavailable`].
//!
//! # Conventions shared by every backend
//! - Buffers are flat, row-major `f32` ([`Backend::Buf`]) or `u32` ([`Backend::IdxBuf`]).
//! - Each operation reads and writes only the leading elements its shape needs; a buffer may be
//!   longer (so one allocation serves a smaller last batch) but never shorter, which is an
//!   [`Error::BufferTooShort`] raised before any work is done.
//! - "Overwrite" outputs are fully written; "accumulate" outputs are added to.
//! - Operations are asynchronous on devices that queue work; [`Backend::download`] and
//!   [`Backend::synchronize`] wait for queued work.
//!
//! ```
//! use kernels::{Backend, cpu::CpuBackend, LinearShape};
//! let cpu = CpuBackend::new();
//! let x = cpu.upload(&[1.0, 2.0]).unwrap();
//! let w = cpu.upload(&[3.0, 4.0]).unwrap();
//! let b = cpu.upload(&[0.5]).unwrap();
//! let mut out = cpu.alloc(1).unwrap();
//! let shape = LinearShape { batch: 1, in_features: 2, out_features: 1 };
//! cpu.linear_fwd(&shape, &x, &w, &b, &mut out).unwrap();
//! assert_eq!(cpu.download(&out).unwrap(), vec![11.5]);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod branches;
pub mod cpu;
mod error;
mod head;
pub mod rng;
mod step;
mod types;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use branches::{ConvBwdBranch, ConvFwdBranch, check_branch_shapes};
pub use error::{Error, Result};
pub use head::{HeadDropout, HeadInputs, HeadOutputs, LinearGrads};
pub use step::StepScalars;
pub use types::{ConvShape, DeviceInfo, LinearShape, RmsProp, RmsState, RmsTensor};

/// Checks that CUDA device `ordinal` can be used, without panicking when the driver is absent.
///
/// # Errors
/// [`Error::CudaUnavailable`] saying which case it was: built without the `cuda` feature, no
/// driver library, no NVRTC library, no device, or an ordinal past the last device.
pub fn probe_cuda(ordinal: usize) -> Result<DeviceInfo> {
    #[cfg(feature = "cuda")]
    {
        cuda::probe(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(Error::CudaUnavailable {
            reason: format!(
                "GPU {ordinal} requested, but this binary was built without the `cuda` feature \
                 (rebuild with `--features cuda`)"
            ),
        })
    }
}

/// The operations a training step and an evaluation need, one for one on every backend.
///
/// Each method documents its exact arithmetic; the CPU backend is the reference and the CUDA
/// backend must match it within floating-point tolerance (index outputs exactly, on inputs
/// without ties).
pub trait Backend {
    /// A device buffer of `f32`.
    type Buf;
    /// A device buffer of `u32` (token ids, labels, argmax positions, row lists).
    type IdxBuf;

    /// A short description, e.g. "cpu (2 threads)" or "cuda:0 NVIDIA H100".
    fn name(&self) -> String;

    /// Allocates `len` zeros.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// Allocates `len` zero indices.
    fn alloc_idx(&self, len: usize) -> Result<Self::IdxBuf>;
    /// Copies host data into a new buffer.
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// Copies host indices into a new buffer.
    fn upload_idx(&self, host: &[u32]) -> Result<Self::IdxBuf>;
    /// Copies `host` into the first `host.len()` elements of `dst`.
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()>;
    /// Copies `host` into the first `host.len()` elements of `dst`.
    fn write_idx(&self, dst: &mut Self::IdxBuf, host: &[u32]) -> Result<()>;
    /// Copies a whole buffer to the host, waiting for queued work.
    fn download(&self, src: &Self::Buf) -> Result<Vec<f32>>;
    /// Copies a whole index buffer to the host, waiting for queued work.
    fn download_idx(&self, src: &Self::IdxBuf) -> Result<Vec<u32>>;
    /// Sets the first `len` elements to `value`.
    fn fill(&self, buf: &mut Self::Buf, len: usize, value: f32) -> Result<()>;
    /// Waits until all queued work is done.
    fn synchronize(&self) -> Result<()>;
    /// Device memory in use by this process, where the backend can tell.
    fn memory_used_bytes(&self) -> Option<u64> {
        None
    }

    /// Embedding lookup: `out[t*E + e] = table[ids[t]*E + e]` for `t < n_tokens`, `e < E`.
    ///
    /// `table` is `[vocab, embed_dim]`; an id `>= vocab` is [`Error::IndexOutOfRange`] (the CPU
    /// checks; devices may clamp, so callers validate ids once on upload).
    fn embedding_gather(
        &self,
        table: &Self::Buf,
        vocab: usize,
        embed_dim: usize,
        ids: &Self::IdxBuf,
        n_tokens: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Embedding gradient, compacted to the rows a batch touched (overwrite):
    /// `grad_rows[r*E + e] = Σ_{t : slots[t] = r} grad_out[t*E + e]` for `r < n_rows`.
    ///
    /// `slots[t]` maps token position `t` to its row's slot in the batch's list of distinct ids
    /// (built on the host with the batch). Rows no token maps to are zero.
    fn embedding_grad_rows(
        &self,
        grad_out: &Self::Buf,
        slots: &Self::IdxBuf,
        n_tokens: usize,
        embed_dim: usize,
        n_rows: usize,
        grad_rows: &mut Self::Buf,
    ) -> Result<()>;

    /// Convolution, bias, ReLU and max over time, fused (see [`ConvShape`]):
    /// `z[b,t,f] = bias[f] + Σ_{j<width, e<E} x[b,t+j,e] · w[f,j,e]` for `t < positions`,
    /// `argmax[b*F + f]` = the first `t` maximizing `z[b,t,f]`, and
    /// `pooled[b*pooled_cols + pooled_offset + f] = max(0, z[b, argmax, f])` (overwrite).
    ///
    /// `max_t relu(z) = relu(max_t z)`, so this equals the unfused chain exactly.
    #[allow(clippy::too_many_arguments)]
    fn conv_pool_fwd(
        &self,
        shape: &ConvShape,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: &Self::Buf,
        pooled: &mut Self::Buf,
        argmax: &mut Self::IdxBuf,
    ) -> Result<()>;

    /// Backward of [`Backend::conv_pool_fwd`]. With the ReLU gate
    /// `g[b,f] = grad_pooled[b*pooled_cols + pooled_offset + f]` where
    /// `pooled[..same index..] > 0`, else 0:
    /// - `grad_w[f,j,e] = Σ_b g[b,f] · x[b, argmax[b,f] + j, e]` (overwrite);
    /// - `grad_b[f] = Σ_b g[b,f]` (overwrite);
    /// - `grad_x[b, argmax[b,f] + j, e] += g[b,f] · w[f,j,e]` (accumulate, so the branches add up).
    #[allow(clippy::too_many_arguments)]
    fn conv_pool_bwd(
        &self,
        shape: &ConvShape,
        grad_pooled: &Self::Buf,
        pooled: &Self::Buf,
        argmax: &Self::IdxBuf,
        x: &Self::Buf,
        w: &Self::Buf,
        grad_w: &mut Self::Buf,
        grad_b: &mut Self::Buf,
        grad_x: &mut Self::Buf,
    ) -> Result<()>;

    /// [`Backend::conv_pool_fwd`] for several branches over the same `x`, each writing its own
    /// columns of `pooled` (see [`check_branch_shapes`]). The default runs the branches in
    /// order; the CUDA backend runs them all in one launch (the same arithmetic, so the same
    /// result).
    fn conv_pool_fwd_branches(
        &self,
        x: &Self::Buf,
        branches: &mut [ConvFwdBranch<'_, Self>],
        pooled: &mut Self::Buf,
    ) -> Result<()> {
        let shapes: Vec<ConvShape> = branches.iter().map(|b| b.shape).collect();
        check_branch_shapes("conv_pool_fwd_branches", &shapes)?;
        for br in branches.iter_mut() {
            self.conv_pool_fwd(&br.shape, x, br.w, br.bias, pooled, &mut *br.argmax)?;
        }
        Ok(())
    }

    /// [`Backend::conv_pool_bwd`] for the branches of [`Backend::conv_pool_fwd_branches`],
    /// except that `grad_x` is **overwritten** with the sum of the branches' data gradients
    /// (the first `batch * seq_len * embed_dim` elements), added in branch order. The default
    /// fills `grad_x` with zero and runs the branches in order; the CUDA backend does it in
    /// two launches (weights of every branch, data of every branch) with the same arithmetic.
    fn conv_pool_bwd_branches(
        &self,
        grad_pooled: &Self::Buf,
        pooled: &Self::Buf,
        x: &Self::Buf,
        branches: &mut [ConvBwdBranch<'_, Self>],
        grad_x: &mut Self::Buf,
    ) -> Result<()> {
        let shapes: Vec<ConvShape> = branches.iter().map(|b| b.shape).collect();
        let first = check_branch_shapes("conv_pool_bwd_branches", &shapes)?;
        self.fill(grad_x, first.batch * first.seq_len * first.embed_dim, 0.0)?;
        for br in branches.iter_mut() {
            self.conv_pool_bwd(
                &br.shape,
                grad_pooled,
                pooled,
                br.argmax,
                x,
                br.w,
                &mut *br.grad_w,
                &mut *br.grad_b,
                grad_x,
            )?;
        }
        Ok(())
    }

    /// Inverted dropout (overwrite): `mask[i] = 1/(1-p)` when
    /// [`rng::dropout_uniform`]`(seed, i) >= p`, else 0; `out[i] = x[i] · mask[i]`.
    /// `p = 0` keeps everything (`mask = 1`); `p` must be in `[0, 1)`.
    fn dropout_fwd(
        &self,
        x: &Self::Buf,
        len: usize,
        drop_prob: f32,
        seed: u64,
        out: &mut Self::Buf,
        mask: &mut Self::Buf,
    ) -> Result<()>;

    /// Element-wise product (overwrite): `out[i] = a[i] · b[i]`. Dropout's backward.
    fn mul(&self, a: &Self::Buf, b: &Self::Buf, len: usize, out: &mut Self::Buf) -> Result<()>;

    /// Fully connected layer (overwrite): `out[n,o] = b[o] + Σ_i x[n,i] · w[o,i]`.
    fn linear_fwd(
        &self,
        shape: &LinearShape,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::linear_fwd`] (all overwrite):
    /// `grad_x[n,i] = Σ_o grad_out[n,o] · w[o,i]`, `grad_w[o,i] = Σ_n grad_out[n,o] · x[n,i]`,
    /// `grad_b[o] = Σ_n grad_out[n,o]`.
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd(
        &self,
        shape: &LinearShape,
        grad_out: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        grad_x: &mut Self::Buf,
        grad_w: &mut Self::Buf,
        grad_b: &mut Self::Buf,
    ) -> Result<()>;

    /// [`Backend::linear_bwd`] with dropout's backward fused in: `grads.grad_x[n,i] =
    /// mask[n,i] · Σ_o grad_out[n,o] · w[o,i]`, the gradients of `w` and `b` as
    /// [`Backend::linear_bwd`] (all overwrite). The default runs [`Backend::linear_bwd`] into
    /// `scratch` and [`Backend::mul`] by `mask`; the CUDA backend does both in one launch (the
    /// same product, so the same bits) and leaves `scratch` alone.
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd_masked(
        &self,
        shape: &LinearShape,
        grad_out: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        mask: &Self::Buf,
        scratch: &mut Self::Buf,
        grads: LinearGrads<'_, Self>,
    ) -> Result<()> {
        self.linear_bwd(shape, grad_out, x, w, scratch, grads.grad_w, grads.grad_b)?;
        let len = shape.batch * shape.in_features;
        self.mul(scratch, mask, len, grads.grad_x)
    }

    /// Softmax cross-entropy over `logits [batch, classes]` with `labels [batch]`.
    ///
    /// Accumulates `stats[0] += Σ_n -log softmax(logits[n])[labels[n]]` (computed stably, by
    /// log-sum-exp) and `stats[1] += #{n : first argmax of logits[n] = labels[n]}`. When
    /// `grad_logits` is given it is overwritten with `(softmax(logits[n])[c] - [c = label]) /
    /// batch`, the gradient of the batch-mean loss.
    fn softmax_xent(
        &self,
        logits: &Self::Buf,
        labels: &Self::IdxBuf,
        batch: usize,
        classes: usize,
        grad_logits: Option<&mut Self::Buf>,
        stats: &mut Self::Buf,
    ) -> Result<()>;

    /// The head in one call: with `inputs.dropout`, [`Backend::dropout_fwd_at`] of `pooled`
    /// into `dropped` and `mask`, and the features are `dropped` (else `pooled`); then
    /// [`Backend::linear_fwd`] into `logits` and [`Backend::softmax_xent`]. The default makes
    /// those calls; the CUDA backend runs them in one launch with the same arithmetic, so the
    /// same results bit for bit.
    fn head_fwd(&self, inputs: &HeadInputs<'_, Self>, out: HeadOutputs<'_, Self>) -> Result<()> {
        let s = inputs.shape;
        let features = match &inputs.dropout {
            Some(d) => {
                let len = s.batch * s.in_features;
                let (dropped, mask) = (out.dropped, out.mask);
                self.dropout_fwd_at(
                    inputs.pooled,
                    len,
                    d.drop_prob,
                    d.seed_base,
                    d.step,
                    dropped,
                    mask,
                )?;
                &*dropped
            }
            None => inputs.pooled,
        };
        self.linear_fwd(&s, features, inputs.w, inputs.b, out.logits)?;
        let (batch, classes) = (s.batch, s.out_features);
        self.softmax_xent(
            out.logits,
            inputs.labels,
            batch,
            classes,
            out.grad_logits,
            out.stats,
        )
    }

    /// Accumulates the sum of squares: `acc[0] += Σ_{i<len} x[i]²`. Used for the global
    /// gradient norm without a host round trip.
    fn sum_squares(&self, x: &Self::Buf, len: usize, acc: &mut Self::Buf) -> Result<()>;

    /// Overwrites `acc[0]` with the sum of squares of several tensors, `Σ_t Σ_{i<len_t} x_t[i]²`
    /// (the squared global gradient norm). The default fills `acc` with zero and calls
    /// [`Backend::sum_squares`] on each tensor in order; the CUDA backend does it in two
    /// launches for up to 16 tensors.
    fn sum_squares_many(&self, tensors: &[(&Self::Buf, usize)], acc: &mut Self::Buf) -> Result<()> {
        self.fill(acc, 1, 0.0)?;
        for &(x, len) in tensors {
            self.sum_squares(x, len, acc)?;
        }
        Ok(())
    }

    /// One dense RMSProp step with global-norm clipping (see [`RmsProp`]) over `len` elements.
    /// `grad_norm_sq[0]` holds the squared global norm of all gradients of the step.
    fn rmsprop(
        &self,
        params: &RmsProp,
        w: &mut Self::Buf,
        grad: &Self::Buf,
        state: RmsState<'_, Self>,
        len: usize,
        grad_norm_sq: &Self::Buf,
    ) -> Result<()>;

    /// [`Backend::rmsprop`] on several dense parameters of one step. The default calls it on
    /// each in order; the CUDA backend updates up to 16 in one launch (the same arithmetic
    /// element by element, so the same result).
    fn rmsprop_many(
        &self,
        params: &RmsProp,
        tensors: &mut [RmsTensor<'_, Self>],
        grad_norm_sq: &Self::Buf,
    ) -> Result<()> {
        for t in tensors.iter_mut() {
            let state = RmsState {
                mean_square: &mut *t.state.mean_square,
                mean: t.state.mean.as_deref_mut(),
            };
            self.rmsprop(params, &mut *t.w, t.grad, state, t.len, grad_norm_sq)?;
        }
        Ok(())
    }

    /// Adds one to `step[0]`, the training step counter in device memory (see
    /// [`StepScalars`]). The default reads and writes it through the host.
    fn advance_step(&self, step: &mut Self::IdxBuf) -> Result<()> {
        let next = step::first(self.download_idx(step)?, "advance_step")?.wrapping_add(1);
        self.write_idx(step, &[next])
    }

    /// [`Backend::dropout_fwd`] with `seed = rng::mix64(seed_base, step[0])`, the step read
    /// from device memory (so a replayed graph draws the mask of the step it replays).
    #[allow(clippy::too_many_arguments)]
    fn dropout_fwd_at(
        &self,
        x: &Self::Buf,
        len: usize,
        drop_prob: f32,
        seed_base: u64,
        step: &Self::IdxBuf,
        out: &mut Self::Buf,
        mask: &mut Self::Buf,
    ) -> Result<()> {
        let at = step::first(self.download_idx(step)?, "dropout_fwd_at")?;
        let seed = rng::mix64(seed_base, u64::from(at));
        self.dropout_fwd(x, len, drop_prob, seed, out, mask)
    }

    /// [`Backend::rmsprop_many`] with the learning rate read from `scalars.lr[0]` in place of
    /// `params.lr`.
    fn rmsprop_many_at(
        &self,
        params: &RmsProp,
        tensors: &mut [RmsTensor<'_, Self>],
        grad_norm_sq: &Self::Buf,
        scalars: &StepScalars<'_, Self>,
    ) -> Result<()> {
        let lr = step::first(self.download(scalars.lr)?, "rmsprop_many_at")?;
        let at = RmsProp { lr, ..*params };
        self.rmsprop_many(&at, tensors, grad_norm_sq)
    }

    /// [`Backend::rmsprop_rows`] with the step and the learning rate read from `scalars` in
    /// place of `step` and `params.lr`.
    #[allow(clippy::too_many_arguments)]
    fn rmsprop_rows_at(
        &self,
        params: &RmsProp,
        table: &mut Self::Buf,
        grad_rows: &Self::Buf,
        rows: &Self::IdxBuf,
        n_rows: usize,
        embed_dim: usize,
        state: RmsState<'_, Self>,
        last_step: &mut Self::IdxBuf,
        grad_norm_sq: &Self::Buf,
        scalars: &StepScalars<'_, Self>,
    ) -> Result<()> {
        let lr = step::first(self.download(scalars.lr)?, "rmsprop_rows_at")?;
        let at_step = step::first(self.download_idx(scalars.step)?, "rmsprop_rows_at")?;
        let at = RmsProp { lr, ..*params };
        self.rmsprop_rows(
            &at,
            table,
            grad_rows,
            rows,
            n_rows,
            embed_dim,
            state,
            last_step,
            at_step,
            grad_norm_sq,
        )
    }

    /// Records the work `body` enqueues as a graph to replay with [`Backend::replay_graph`],
    /// **without running it**, and returns the graph's id; `Ok(None)` when this backend does
    /// not capture (the default, or CUDA with graphs switched off), and then `body` is not
    /// called. Everything `body` passes by value is frozen into the graph: values that change
    /// between replays must be read from device memory ([`StepScalars`]), and the buffers it
    /// uses must stay allocated while the graph lives.
    fn capture_graph(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<Option<usize>> {
        let _ = body;
        Ok(None)
    }

    /// Runs the work a graph of [`Backend::capture_graph`] recorded, enqueued like the
    /// operations themselves.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] for an id this backend did not return.
    fn replay_graph(&self, id: usize) -> Result<()> {
        Err(Error::InvalidShape {
            op: "replay_graph",
            reason: format!(
                "graph {id} was never captured: {} captures none",
                self.name()
            ),
        })
    }

    /// Drops every captured graph (before the buffers they use are freed or replaced).
    fn clear_graphs(&self) {}

    /// RMSProp on the embedding rows one batch touched, with lazy decay, equal to the dense
    /// update to rounding.
    ///
    /// A row whose gradient is zero at a step leaves its weights unchanged and only decays its
    /// running averages by `decay`. So for each slot `s < n_rows`, row `r = rows[s]`, the missed
    /// steps `k = step - last_step[r] - 1` are applied first (`n *= decay^k`, and `a *= decay^k`
    /// when centered), then the step with `grad_rows[s]` exactly as [`Backend::rmsprop`], and
    /// `last_step[r] = step`. Steps count from 1; `last_step` starts at 0.
    #[allow(clippy::too_many_arguments)]
    fn rmsprop_rows(
        &self,
        params: &RmsProp,
        table: &mut Self::Buf,
        grad_rows: &Self::Buf,
        rows: &Self::IdxBuf,
        n_rows: usize,
        embed_dim: usize,
        state: RmsState<'_, Self>,
        last_step: &mut Self::IdxBuf,
        step: u32,
        grad_norm_sq: &Self::Buf,
    ) -> Result<()>;
}
