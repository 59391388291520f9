//! RMSProp with global-norm clipping over the model's parameters, all on the backend.
//!
//! The squared global norm is summed on the device (`sum_squares_many` over every gradient) and read
//! by the update kernels from the device, so a step needs no host round trip. The embedding is
//! updated sparsely with `rmsprop_rows`: a row that no token of the batch uses has a zero
//! gradient, which in the dense update leaves its weights unchanged and only multiplies its
//! running average by `decay`; the lazy form applies those `k` missed decays as `decay^k` when
//! the row is next used. The weights are therefore the dense update's to rounding, and the
//! norm is the same because the missing rows contribute zero to it.

use kernels::{Backend, RmsProp, RmsState, RmsTensor, StepScalars};

use crate::model::Model;
use crate::{HyperParams, Result};

/// RMSProp's decay and epsilon in the study.
const DECAY: f32 = 0.9;
const EPS: f32 = 1e-8;

/// The optimizer state of one model.
pub struct Optimizer<B: Backend> {
    params: RmsProp,
    dense_n: Vec<B::Buf>,
    dense_a: Vec<B::Buf>,
    embedding_n: B::Buf,
    embedding_a: Option<B::Buf>,
    last_step: B::IdxBuf,
    norm_sq: B::Buf,
    step: u32,
}

impl<B: Backend> Optimizer<B> {
    /// Zero state for `model`.
    ///
    /// # Errors
    /// A backend allocation failure.
    pub fn new(b: &B, model: &Model<B>, hp: &HyperParams) -> Result<Self> {
        let d = model.dims;
        let centered = hp.centered_rmsprop;
        let lens = d.dense_lens();
        let dense_n = lens.iter().map(|&l| b.alloc(l)).collect::<Result<_, _>>()?;
        let dense_a = if centered {
            lens.iter().map(|&l| b.alloc(l)).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let table = d.vocab * d.embed_dim;
        Ok(Self {
            params: RmsProp {
                lr: hp.learning_rate as f32,
                decay: DECAY,
                eps: EPS,
                max_grad_norm: hp.max_grad_norm as f32,
                centered,
            },
            dense_n,
            dense_a,
            embedding_n: b.alloc(table)?,
            embedding_a: if centered {
                Some(b.alloc(table)?)
            } else {
                None
            },
            last_step: b.alloc_idx(d.vocab)?,
            norm_sq: b.alloc(1)?,
            step: 0,
        })
    }

    /// Sets the learning rate (the schedule halves it after epochs 50 and 100).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr as f32;
    }

    /// Clips by the global norm and applies one step to every parameter of `model`.
    ///
    /// # Errors
    /// A backend failure.
    pub fn step(&mut self, b: &B, model: &mut Model<B>) -> Result<()> {
        self.step += 1;
        self.update(b, model, None)
    }

    /// [`Optimizer::step`] with the step number and the learning rate read from `scalars` in
    /// device memory (the training loop's form, which a CUDA graph can replay): `scalars.step`
    /// must already hold this step's number, and `scalars.lr` the learning rate.
    ///
    /// # Errors
    /// A backend failure.
    pub fn step_at(
        &mut self,
        b: &B,
        model: &mut Model<B>,
        scalars: &StepScalars<'_, B>,
    ) -> Result<()> {
        self.update(b, model, Some(scalars))
    }

    fn update(
        &mut self,
        b: &B,
        model: &mut Model<B>,
        scalars: Option<&StepScalars<'_, B>>,
    ) -> Result<()> {
        let d = model.dims;
        let lens = d.dense_lens();
        let n_rows = model.n_rows();
        // One multi-tensor reduction (two launches on CUDA; the CPU's order is unchanged).
        let mut tensors = Vec::with_capacity(1 + lens.len());
        tensors.push((&model.grads.rows, n_rows * d.embed_dim));
        for (g, &len) in model.grads.dense.iter().zip(&lens) {
            tensors.push((g, len));
        }
        b.sum_squares_many(&tensors, &mut self.norm_sq)?;
        // One multi-tensor update (one launch on CUDA; the CPU runs them in order, as before).
        let mut means = self.dense_a.iter_mut();
        let mut tensors = Vec::with_capacity(lens.len());
        for (((w, g), n), &len) in model
            .weights
            .dense
            .iter_mut()
            .zip(&model.grads.dense)
            .zip(self.dense_n.iter_mut())
            .zip(&lens)
        {
            tensors.push(RmsTensor {
                w,
                grad: g,
                state: RmsState {
                    mean_square: n,
                    mean: means.next(),
                },
                len,
            });
        }
        match scalars {
            Some(at) => b.rmsprop_many_at(&self.params, &mut tensors, &self.norm_sq, at)?,
            None => b.rmsprop_many(&self.params, &mut tensors, &self.norm_sq)?,
        }
        drop(tensors);
        let state = RmsState {
            mean_square: &mut self.embedding_n,
            mean: self.embedding_a.as_mut(),
        };
        let (table, grad_rows, rows) = (
            &mut model.weights.embedding,
            &model.grads.rows,
            &model.batch.rows,
        );
        let (params, last_step, norm_sq) = (&self.params, &mut self.last_step, &self.norm_sq);
        let e = d.embed_dim;
        match scalars {
            Some(at) => b.rmsprop_rows_at(
                params, table, grad_rows, rows, n_rows, e, state, last_step, norm_sq, at,
            )?,
            None => b.rmsprop_rows(
                params, table, grad_rows, rows, n_rows, e, state, last_step, self.step, norm_sq,
            )?,
        }
        Ok(())
    }
}
