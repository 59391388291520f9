//! The Kim-2014 CNN as a sequence of backend operations: embedding → three convolution branches
//! with ReLU and max over time → concatenation → dropout → linear → softmax cross-entropy.
//!
//! Every buffer lives on the backend and is allocated once for the largest batch; the training
//! loop uploads each batch (ids, labels and the compacted row lists) once a run
//! ([`Model::resident_batch`], [`Model::swap_batch`]), so a step copies nothing from the host,
//! and leaves the loss and accuracy sums in a device buffer read once an epoch.

pub mod batch;

use kernels::{
    Backend, ConvBwdBranch, ConvFwdBranch, ConvShape, HeadDropout, HeadInputs, HeadOutputs,
    LinearGrads, LinearShape,
};

use crate::Result;
use batch::HostBatch;

/// The sizes of one model instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Vocabulary entries.
    pub vocab: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Tokens a (padded) sentence.
    pub seq_len: usize,
    /// Output classes.
    pub classes: usize,
    /// Widths of the three branches.
    pub filter_sizes: [usize; 3],
    /// Feature maps a branch.
    pub maps: usize,
    /// The largest batch any call will use.
    pub capacity: usize,
}

impl Dims {
    /// Columns of the concatenated pooled features.
    pub fn features(&self) -> usize {
        3 * self.maps
    }

    /// The shape of branch `i` for a batch of `n`.
    pub fn conv(&self, i: usize, n: usize) -> ConvShape {
        ConvShape {
            batch: n,
            seq_len: self.seq_len,
            embed_dim: self.embed_dim,
            width: self.filter_sizes[i],
            num_filters: self.maps,
            pooled_cols: self.features(),
            pooled_offset: i * self.maps,
        }
    }

    /// The classifier's shape for a batch of `n`.
    pub fn fc(&self, n: usize) -> LinearShape {
        LinearShape {
            batch: n,
            in_features: self.features(),
            out_features: self.classes,
        }
    }

    /// Lengths of the dense parameters: conv w ×3, conv b ×3, fc w, fc b.
    pub fn dense_lens(&self) -> [usize; 8] {
        let k = |i: usize| self.maps * self.filter_sizes[i] * self.embed_dim;
        let fc_w = self.classes * self.features();
        [
            k(0),
            k(1),
            k(2),
            self.maps,
            self.maps,
            self.maps,
            fc_w,
            self.classes,
        ]
    }
}

/// How a training forward pass seeds its dropout mask.
pub enum Dropout<'a, B: Backend> {
    /// Drop probability `p`, mask seed `seed` (a kernel argument).
    Seed {
        /// Drop probability.
        p: f32,
        /// The mask's seed.
        seed: u64,
    },
    /// Drop probability `p`, seed `kernels::rng::mix64(seed_base, step[0])` with the step
    /// counter read on the device, so a captured step replays with the mask of the step it
    /// replays (see [`kernels::StepScalars`]).
    AtStep {
        /// Drop probability.
        p: f32,
        /// The trial's dropout stream.
        seed_base: u64,
        /// The device step counter.
        step: &'a B::IdxBuf,
    },
}

/// The trainable parameters. Dense tensors are in [`Dims::dense_lens`] order.
pub struct Weights<B: Backend> {
    /// `[vocab, embed_dim]`.
    pub embedding: B::Buf,
    /// Conv weights ×3, conv biases ×3, classifier weights, classifier bias.
    pub dense: Vec<B::Buf>,
}

/// Gradients of one step: the embedding's compacted rows and the dense tensors.
pub struct Grads<B: Backend> {
    /// `[n_rows, embed_dim]` for the batch's distinct ids.
    pub rows: B::Buf,
    /// Same order and lengths as [`Weights::dense`].
    pub dense: Vec<B::Buf>,
}

struct Activations<B: Backend> {
    x: B::Buf,
    pooled: B::Buf,
    argmax: Vec<B::IdxBuf>,
    dropped: B::Buf,
    mask: B::Buf,
    logits: B::Buf,
    grad_logits: B::Buf,
    grad_dropped: B::Buf,
    grad_pooled: B::Buf,
    grad_x: B::Buf,
}

pub(crate) struct BatchBufs<B: Backend> {
    ids: B::IdxBuf,
    labels: B::IdxBuf,
    slots: B::IdxBuf,
    /// The batch's distinct ids (the embedding rows to update).
    pub(crate) rows: B::IdxBuf,
}

/// A batch already on the device (see [`Model::resident_batch`]).
pub struct ResidentBatch<B: Backend> {
    bufs: BatchBufs<B>,
    n: usize,
    n_rows: usize,
}

/// The model, its gradients and its work buffers on one backend.
pub struct Model<B: Backend> {
    /// Sizes.
    pub dims: Dims,
    /// Parameters.
    pub weights: Weights<B>,
    /// Gradients of the last [`Model::backward`].
    pub grads: Grads<B>,
    act: Activations<B>,
    pub(crate) batch: BatchBufs<B>,
    n: usize,
    n_rows: usize,
}

/// Seeds of the parameter tensors' initial values, one stream each.
const INIT_STREAM: u64 = 0x1a17;

/// `len` values uniform in `[-0.1, 0.1]` from the counter-based generator.
fn uniform_init(seed: u64, tensor: u64, len: usize) -> Vec<f32> {
    let stream = kernels::rng::mix64(seed ^ INIT_STREAM, tensor);
    (0..len)
        .map(|i| (kernels::rng::dropout_uniform(stream, i as u64) * 2.0 - 1.0) * 0.1)
        .collect()
}

impl<B: Backend> Model<B> {
    /// Allocates everything and initializes the weights uniform in [-0.1, 0.1], biases zero.
    ///
    /// # Errors
    /// A backend allocation or upload failure.
    pub fn new(b: &B, dims: Dims, seed: u64) -> Result<Self> {
        let lens = dims.dense_lens();
        let mut dense = Vec::with_capacity(lens.len());
        for (i, &len) in lens.iter().enumerate() {
            let is_bias = matches!(i, 3..=5 | 7);
            dense.push(if is_bias {
                b.alloc(len)?
            } else {
                b.upload(&uniform_init(seed, i as u64 + 1, len))?
            });
        }
        let embedding = b.upload(&uniform_init(seed, 0, dims.vocab * dims.embed_dim))?;
        let tokens = dims.capacity * dims.seq_len;
        let feats = dims.capacity * dims.features();
        let logits = dims.capacity * dims.classes;
        let mut grad_dense = Vec::with_capacity(lens.len());
        for &len in &lens {
            grad_dense.push(b.alloc(len)?);
        }
        let act = Activations {
            x: b.alloc(tokens * dims.embed_dim)?,
            pooled: b.alloc(feats)?,
            argmax: (0..3)
                .map(|_| b.alloc_idx(dims.capacity * dims.maps))
                .collect::<Result<_, _>>()?,
            dropped: b.alloc(feats)?,
            mask: b.alloc(feats)?,
            logits: b.alloc(logits)?,
            grad_logits: b.alloc(logits)?,
            grad_dropped: b.alloc(feats)?,
            grad_pooled: b.alloc(feats)?,
            grad_x: b.alloc(tokens * dims.embed_dim)?,
        };
        let batch = BatchBufs {
            ids: b.alloc_idx(tokens)?,
            labels: b.alloc_idx(dims.capacity)?,
            slots: b.alloc_idx(tokens)?,
            rows: b.alloc_idx(tokens)?,
        };
        Ok(Self {
            dims,
            weights: Weights { embedding, dense },
            grads: Grads {
                rows: b.alloc(tokens * dims.embed_dim)?,
                dense: grad_dense,
            },
            act,
            batch,
            n: 0,
            n_rows: 0,
        })
    }

    /// Uploads a batch of at most `capacity` sentences. Ids must be below `vocab` (checked
    /// here, once, so devices that clamp never see a bad id).
    ///
    /// # Errors
    /// [`kernels::Error::IndexOutOfRange`] for a bad id or label, or a backend failure.
    pub fn upload(&mut self, b: &B, host: &HostBatch) -> Result<()> {
        self.check_batch(host)?;
        b.write_idx(&mut self.batch.ids, &host.ids)?;
        b.write_idx(&mut self.batch.labels, &host.labels)?;
        b.write_idx(&mut self.batch.slots, &host.slots)?;
        b.write_idx(&mut self.batch.rows, &host.rows)?;
        self.n = host.labels.len();
        self.n_rows = host.rows.len();
        Ok(())
    }

    /// Checks a batch against the model's sizes (see [`Model::upload`]).
    fn check_batch(&self, host: &HostBatch) -> Result<()> {
        let n = host.labels.len();
        let d = self.dims;
        if n == 0 || n > d.capacity || host.ids.len() != n * d.seq_len {
            return Err(kernels::Error::InvalidShape {
                op: "upload batch",
                reason: format!(
                    "{n} sentences, {} ids, capacity {}",
                    host.ids.len(),
                    d.capacity
                ),
            }
            .into());
        }
        check_below("batch ids", &host.ids, d.vocab)?;
        check_below("batch labels", &host.labels, d.classes)?;
        Ok(())
    }

    /// Uploads a batch into buffers of its own, checked as [`Model::upload`] checks it, to be
    /// used later with [`Model::swap_batch`] without another host-to-device copy (the training
    /// loop uploads each batch once a run, not once a step).
    ///
    /// # Errors
    /// As [`Model::upload`].
    pub fn resident_batch(&self, b: &B, host: &HostBatch) -> Result<ResidentBatch<B>> {
        self.check_batch(host)?;
        Ok(ResidentBatch {
            bufs: BatchBufs {
                ids: b.upload_idx(&host.ids)?,
                labels: b.upload_idx(&host.labels)?,
                slots: b.upload_idx(&host.slots)?,
                rows: b.upload_idx(&host.rows)?,
            },
            n: host.labels.len(),
            n_rows: host.rows.len(),
        })
    }

    /// Exchanges the model's current batch with `batch`: after one call the model computes on
    /// `batch`; a second call with the same `batch` restores the previous one.
    pub fn swap_batch(&mut self, batch: &mut ResidentBatch<B>) {
        std::mem::swap(&mut self.batch, &mut batch.bufs);
        std::mem::swap(&mut self.n, &mut batch.n);
        std::mem::swap(&mut self.n_rows, &mut batch.n_rows);
    }

    /// The forward pass of the uploaded batch, accumulating `[loss sum, correct]` into `stats`.
    /// With `dropout = Some((p, seed))` it trains (dropout on, gradient of the logits kept for
    /// [`Model::backward`]); with `None` it evaluates.
    ///
    /// # Errors
    /// A backend failure.
    pub fn forward(
        &mut self,
        b: &B,
        dropout: Option<(f32, u64)>,
        stats: &mut B::Buf,
    ) -> Result<()> {
        let dropout = dropout.map(|(p, seed)| Dropout::Seed { p, seed });
        self.forward_with(b, dropout, stats)
    }

    /// [`Model::forward`] with the dropout mask's seed given either way (see [`Dropout`]).
    ///
    /// # Errors
    /// A backend failure.
    pub fn forward_with(
        &mut self,
        b: &B,
        dropout: Option<Dropout<'_, B>>,
        stats: &mut B::Buf,
    ) -> Result<()> {
        let (d, n) = (self.dims, self.n);
        let w = &self.weights;
        let a = &mut self.act;
        b.embedding_gather(
            &w.embedding,
            d.vocab,
            d.embed_dim,
            &self.batch.ids,
            n * d.seq_len,
            &mut a.x,
        )?;
        // The three branches in one call (one launch on CUDA).
        let mut branches: Vec<ConvFwdBranch<'_, B>> = a
            .argmax
            .iter_mut()
            .enumerate()
            .map(|(i, argmax)| ConvFwdBranch {
                shape: d.conv(i, n),
                w: &w.dense[i],
                bias: &w.dense[3 + i],
                argmax,
            })
            .collect();
        b.conv_pool_fwd_branches(&a.x, &mut branches, &mut a.pooled)?;
        drop(branches);
        let head_dropout = match dropout {
            // The host-seeded form (tests, `gpu-bench kernels`): three calls.
            Some(Dropout::Seed { p, seed }) => {
                let len = n * d.features();
                b.dropout_fwd(&a.pooled, len, p, seed, &mut a.dropped, &mut a.mask)?;
                b.linear_fwd(
                    &d.fc(n),
                    &a.dropped,
                    &w.dense[6],
                    &w.dense[7],
                    &mut a.logits,
                )?;
                let grad = Some(&mut a.grad_logits);
                b.softmax_xent(&a.logits, &self.batch.labels, n, d.classes, grad, stats)?;
                return Ok(());
            }
            Some(Dropout::AtStep { p, seed_base, step }) => Some(HeadDropout {
                drop_prob: p,
                seed_base,
                step,
            }),
            None => None,
        };
        // Dropout, linear and softmax cross-entropy in one call (one launch on CUDA).
        let training = head_dropout.is_some();
        let inputs = HeadInputs {
            shape: d.fc(n),
            pooled: &a.pooled,
            w: &w.dense[6],
            b: &w.dense[7],
            labels: &self.batch.labels,
            dropout: head_dropout,
        };
        let out = HeadOutputs {
            dropped: &mut a.dropped,
            mask: &mut a.mask,
            logits: &mut a.logits,
            grad_logits: training.then_some(&mut a.grad_logits),
            stats,
        };
        b.head_fwd(&inputs, out)?;
        Ok(())
    }

    /// The backward pass of the last training [`Model::forward`], into [`Model::grads`].
    ///
    /// # Errors
    /// A backend failure.
    pub fn backward(&mut self, b: &B) -> Result<()> {
        let (d, n) = (self.dims, self.n);
        let (w, g, a) = (&self.weights, &mut self.grads, &mut self.act);
        let (gw, rest) = g.dense.split_at_mut(7);
        // The classifier's backward and dropout's in one call (one launch on CUDA).
        let grads = LinearGrads {
            grad_x: &mut a.grad_pooled,
            grad_w: &mut gw[6],
            grad_b: &mut rest[0],
        };
        b.linear_bwd_masked(
            &d.fc(n),
            &a.grad_logits,
            &a.dropped,
            &w.dense[6],
            &a.mask,
            &mut a.grad_dropped,
            grads,
        )?;
        // The three branches in one call, overwriting grad_x (two launches on CUDA, no fill).
        let (conv_w, conv_b) = gw.split_at_mut(3);
        let mut branches: Vec<ConvBwdBranch<'_, B>> = conv_w
            .iter_mut()
            .zip(conv_b.iter_mut())
            .enumerate()
            .map(|(i, (grad_w, grad_b))| ConvBwdBranch {
                shape: d.conv(i, n),
                argmax: &a.argmax[i],
                w: &w.dense[i],
                grad_w,
                grad_b,
            })
            .collect();
        b.conv_pool_bwd_branches(
            &a.grad_pooled,
            &a.pooled,
            &a.x,
            &mut branches,
            &mut a.grad_x,
        )?;
        drop(branches);
        let tokens = n * d.seq_len;
        b.embedding_grad_rows(
            &a.grad_x,
            &self.batch.slots,
            tokens,
            d.embed_dim,
            self.n_rows,
            &mut g.rows,
        )?;
        Ok(())
    }

    /// Distinct ids of the uploaded batch.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
}

fn check_below(op: &'static str, values: &[u32], bound: usize) -> Result<()> {
    match values.iter().find(|&&v| v as usize >= bound) {
        Some(&index) => Err(kernels::Error::IndexOutOfRange { op, index, bound }.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
