//! [`Backend`] for [`CudaBackend`]: each operation enqueued on the backend's stream by its
//! launcher (one module per `.cu` file), inside [`CudaBackend::start_profile`]'s events when
//! profiling.

use super::*;

impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;
    type IdxBuf = CudaSlice<u32>;

    fn name(&self) -> String {
        format!("cuda:{} {}", self.info.ordinal, self.info.name)
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        self.alloc_zeros(len)
    }

    fn alloc_idx(&self, len: usize) -> Result<Self::IdxBuf> {
        self.alloc_zeros(len)
    }

    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        let mut buf = self.alloc_zeros(host.len())?;
        self.write_into("upload", &mut buf, host)?;
        Ok(buf)
    }

    fn upload_idx(&self, host: &[u32]) -> Result<Self::IdxBuf> {
        let mut buf = self.alloc_zeros(host.len())?;
        self.write_into("upload_idx", &mut buf, host)?;
        Ok(buf)
    }

    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()> {
        self.write_into("write", dst, host)
    }

    fn write_idx(&self, dst: &mut Self::IdxBuf, host: &[u32]) -> Result<()> {
        self.write_into("write_idx", dst, host)
    }

    fn download(&self, src: &Self::Buf) -> Result<Vec<f32>> {
        self.read_back("download", src)
    }

    fn download_idx(&self, src: &Self::IdxBuf) -> Result<Vec<u32>> {
        self.read_back("download_idx", src)
    }

    fn fill(&self, buf: &mut Self::Buf, len: usize, value: f32) -> Result<()> {
        self.profiled("fill", || elementwise::fill(self, buf, len, value))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_error("synchronize"))
    }

    fn memory_used_bytes(&self) -> Option<u64> {
        // Device-wide (every process), which is what a per-GPU gauge wants.
        let (free, total) = self.ctx.mem_get_info().ok()?;
        Some(total.saturating_sub(free) as u64)
    }

    fn embedding_gather(
        &self,
        table: &Self::Buf,
        vocab: usize,
        embed_dim: usize,
        ids: &Self::IdxBuf,
        n_tokens: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("embedding_gather", || {
            embedding::gather(self, table, vocab, embed_dim, ids, n_tokens, out)
        })
    }

    fn embedding_grad_rows(
        &self,
        grad_out: &Self::Buf,
        slots: &Self::IdxBuf,
        n_tokens: usize,
        embed_dim: usize,
        n_rows: usize,
        grad_rows: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("embedding_grad_rows", || {
            embedding::grad_rows(
                self, grad_out, slots, n_tokens, embed_dim, n_rows, grad_rows,
            )
        })
    }

    fn conv_pool_fwd(
        &self,
        shape: &ConvShape,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: &Self::Buf,
        pooled: &mut Self::Buf,
        argmax: &mut Self::IdxBuf,
    ) -> Result<()> {
        self.profiled("conv_pool_fwd", || {
            // One branch through the multi-branch launcher: the same kernel (re-tiled for
            // widths up to 5) as when the branches run together.
            let mut branch = [ConvFwdBranch {
                shape: *shape,
                w,
                bias,
                argmax,
            }];
            conv_branches::forward(self, x, &mut branch, pooled)
        })
    }

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
    ) -> Result<()> {
        self.profiled("conv_pool_bwd", || {
            let inputs = conv::BackwardInputs {
                grad_pooled,
                pooled,
                argmax,
                x,
                w,
            };
            conv::backward(self, shape, &inputs, grad_w, grad_b, grad_x)
        })
    }

    fn conv_pool_fwd_branches(
        &self,
        x: &Self::Buf,
        branches: &mut [ConvFwdBranch<'_, Self>],
        pooled: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("conv_pool_fwd_branches", || {
            conv_branches::forward(self, x, branches, pooled)
        })
    }

    fn conv_pool_bwd_branches(
        &self,
        grad_pooled: &Self::Buf,
        pooled: &Self::Buf,
        x: &Self::Buf,
        branches: &mut [ConvBwdBranch<'_, Self>],
        grad_x: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("conv_pool_bwd_branches", || {
            let inputs = conv_branches::SharedInputs {
                grad_pooled,
                pooled,
                x,
            };
            conv_branches::backward(self, &inputs, branches, grad_x)
        })
    }

    fn dropout_fwd(
        &self,
        x: &Self::Buf,
        len: usize,
        drop_prob: f32,
        seed: u64,
        out: &mut Self::Buf,
        mask: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("dropout_fwd", || {
            let seed = elementwise::DropoutSeed::Host(seed);
            elementwise::dropout(self, x, len, drop_prob, seed, out, mask)
        })
    }

    fn mul(&self, a: &Self::Buf, b: &Self::Buf, len: usize, out: &mut Self::Buf) -> Result<()> {
        self.profiled("mul", || elementwise::mul(self, a, b, len, out))
    }

    fn linear_fwd(
        &self,
        shape: &LinearShape,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("linear_fwd", || linear::forward(self, shape, x, w, b, out))
    }

    fn linear_bwd(
        &self,
        shape: &LinearShape,
        grad_out: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        grad_x: &mut Self::Buf,
        grad_w: &mut Self::Buf,
        grad_b: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("linear_bwd", || {
            linear::backward(self, shape, grad_out, x, w, grad_x, grad_w, grad_b, None)
        })
    }

    fn softmax_xent(
        &self,
        logits: &Self::Buf,
        labels: &Self::IdxBuf,
        batch: usize,
        classes: usize,
        grad_logits: Option<&mut Self::Buf>,
        stats: &mut Self::Buf,
    ) -> Result<()> {
        self.profiled("softmax_xent", || {
            loss::softmax_xent(self, logits, labels, batch, classes, grad_logits, stats)
        })
    }

    fn sum_squares(&self, x: &Self::Buf, len: usize, acc: &mut Self::Buf) -> Result<()> {
        self.profiled("sum_squares", || optim::sum_squares(self, x, len, acc))
    }

    fn rmsprop_many(
        &self,
        params: &RmsProp,
        tensors: &mut [RmsTensor<'_, Self>],
        grad_norm_sq: &Self::Buf,
    ) -> Result<()> {
        self.profiled("rmsprop_many", || {
            optim::rmsprop_many(self, params, tensors, grad_norm_sq, None)
        })
    }

    fn sum_squares_many(&self, tensors: &[(&Self::Buf, usize)], acc: &mut Self::Buf) -> Result<()> {
        self.profiled("sum_squares_many", || {
            optim::sum_squares_many(self, tensors, acc)
        })
    }

    fn rmsprop(
        &self,
        params: &RmsProp,
        w: &mut Self::Buf,
        grad: &Self::Buf,
        state: RmsState<'_, Self>,
        len: usize,
        grad_norm_sq: &Self::Buf,
    ) -> Result<()> {
        self.profiled("rmsprop", || {
            optim::rmsprop(self, params, w, grad, state, len, grad_norm_sq)
        })
    }

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
    ) -> Result<()> {
        self.profiled("rmsprop_rows", || {
            let sparse = optim::RowsUpdate {
                grad_rows,
                rows,
                n_rows,
                embed_dim,
                step,
                on_device: None,
            };
            optim::rmsprop_rows(self, params, table, &sparse, state, last_step, grad_norm_sq)
        })
    }

    fn advance_step(&self, step: &mut Self::IdxBuf) -> Result<()> {
        self.profiled("advance_step", || elementwise::advance_step(self, step))
    }

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
        self.profiled("dropout_fwd", || {
            let seed = elementwise::DropoutSeed::Device {
                base: seed_base,
                step,
            };
            elementwise::dropout(self, x, len, drop_prob, seed, out, mask)
        })
    }

    fn rmsprop_many_at(
        &self,
        params: &RmsProp,
        tensors: &mut [RmsTensor<'_, Self>],
        grad_norm_sq: &Self::Buf,
        scalars: &StepScalars<'_, Self>,
    ) -> Result<()> {
        self.profiled("rmsprop_many", || {
            let on_device = self.on_device("rmsprop_many_at", scalars)?;
            optim::rmsprop_many(self, params, tensors, grad_norm_sq, Some(&on_device))
        })
    }

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
        self.profiled("rmsprop_rows", || {
            let on_device = self.on_device("rmsprop_rows_at", scalars)?;
            let sparse = optim::RowsUpdate {
                grad_rows,
                rows,
                n_rows,
                embed_dim,
                step: 0,
                on_device: Some(on_device),
            };
            optim::rmsprop_rows(self, params, table, &sparse, state, last_step, grad_norm_sq)
        })
    }

    fn capture_graph(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<Option<usize>> {
        self.capture(body)
    }

    fn replay_graph(&self, id: usize) -> Result<()> {
        self.replay(id)
    }

    fn clear_graphs(&self) {
        self.drop_graphs();
    }

    fn head_fwd(&self, inputs: &HeadInputs<'_, Self>, out: HeadOutputs<'_, Self>) -> Result<()> {
        self.profiled("head_fwd", || loss::head_fwd(self, inputs, out))
    }

    fn linear_bwd_masked(
        &self,
        shape: &LinearShape,
        grad_out: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        mask: &Self::Buf,
        _scratch: &mut Self::Buf,
        grads: LinearGrads<'_, Self>,
    ) -> Result<()> {
        self.profiled("linear_bwd", || {
            let (gx, gw, gb) = (grads.grad_x, grads.grad_w, grads.grad_b);
            linear::backward(self, shape, grad_out, x, w, gx, gw, gb, Some(mask))
        })
    }
}
