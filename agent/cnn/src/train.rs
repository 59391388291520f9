//! The training loop: fixed batch order, RMSProp, evaluation on the validation set each epoch.
//!
//! As the reference: the training sentences are taken in their (permuted) order in batches of
//! `batch_size`, the last partial batch is dropped, the order is the same every epoch; dropout
//! draws from a seed derived from the trial seed and the step; the learning rate halves after
//! epochs 50 and 100; the score is the validation accuracy after the final epoch. A training set
//! smaller than `batch_size` is one batch of all of it, as a data loader that keeps its last
//! batch would train it.

use std::borrow::Cow;
use std::time::Instant;

use kernels::{Backend, StepScalars};
use serde::{Deserialize, Serialize};

use crate::model::batch::{Batcher, HostBatch};
use crate::model::{Dims, Dropout, Model, ResidentBatch};
use crate::optim::Optimizer;
use crate::{Dataset, Error, HyperParams, Result};

/// Sentences an evaluation batch holds at least.
const EVAL_BATCH: usize = 250;

/// The dropout stream of a trial's seed.
const DROPOUT_STREAM: u64 = 0x0d20_f0a7;

/// What one epoch achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's examples (with dropout, as trained).
    pub train_loss: f64,
    /// Training accuracy over the epoch's examples (with dropout, as trained).
    pub train_accuracy: f64,
    /// Validation accuracy after the epoch.
    pub dev_accuracy: f64,
    /// Wall seconds of the epoch, evaluation included.
    pub epoch_seconds: f64,
    /// Training examples processed in the epoch.
    pub examples: usize,
}

/// What the caller wants after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// End training at this epoch boundary.
    Stop,
}

/// The result of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Validation accuracy after the last epoch run: the score.
    pub final_dev_accuracy: f64,
    /// Best validation accuracy over the epochs.
    pub best_dev_accuracy: f64,
    /// The first epoch that reached the best.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Whether `on_epoch` stopped training early.
    pub stopped: bool,
    /// Wall seconds from start to end, setup included.
    pub wall_seconds: f64,
    /// Seconds spent in the epochs (training and evaluation) on the backend.
    pub device_seconds: f64,
    /// Accuracy of the final model (after the last epoch run, the model the score is measured
    /// on) on the data set's test sentences; `None` without a test set. Computed once, after
    /// training, so it never influences training or selection.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
}

/// The learning rate of a 1-based epoch: halved after epochs 50 and 100.
pub fn learning_rate_at(base: f64, epoch: usize) -> f64 {
    let halvings = [50, 100].iter().filter(|&&e| epoch > e).count();
    base * 0.5f64.powi(halvings as i32)
}

/// Trains on any backend; calls `on_epoch` after each epoch (`Stop` ends training there).
///
/// # Errors
/// [`Error::Data`] when there are no training or no validation sentences, [`Error::Diverged`]
/// for a non-finite loss, a backend failure.
pub fn train<B: Backend>(
    backend: &B,
    data: &Dataset,
    hp: &HyperParams,
    seed: u64,
    mut on_epoch: impl FnMut(&EpochReport) -> Control,
) -> Result<TrainSummary> {
    let start = Instant::now();
    let data = padded_for(data, hp.max_filter_size());
    if data.train_len() == 0 || data.dev_len() == 0 {
        return Err(Error::Data {
            reason: format!(
                "training needs at least one training and one validation sentence (got {} and {})",
                data.train_len(),
                data.dev_len()
            ),
        });
    }
    let hp = &fitted_to(hp, data.train_len());
    let batches = data.train_len() / hp.batch_size;
    let dims = Dims {
        vocab: data.vocab_size(),
        embed_dim: hp.embed_dim,
        seq_len: data.seq_len,
        classes: data.num_classes,
        filter_sizes: hp.filter_sizes,
        maps: hp.num_feature_maps,
        capacity: hp.batch_size.max(EVAL_BATCH.min(data.dev_len())),
    };
    let mut model = Model::new(backend, dims, seed)?;
    let mut optimizer = Optimizer::new(backend, &model, hp)?;
    let mut run = Run {
        backend,
        data: &data,
        hp,
        seed,
        batcher: Batcher::new(dims.vocab),
        host: HostBatch::default(),
        stats: backend.alloc(2)?,
        step: backend.alloc_idx(1)?,
        lr: backend.alloc(1)?,
        train_batches: Vec::new(),
        dev_batches: Vec::new(),
        graphs: Vec::new(),
        capture: true,
    };
    let mut summary = TrainSummary {
        final_dev_accuracy: 0.0,
        best_dev_accuracy: f64::NEG_INFINITY,
        best_epoch: 0,
        epochs_run: 0,
        stopped: false,
        wall_seconds: 0.0,
        device_seconds: 0.0,
        test_accuracy: None,
    };
    for epoch in 1..=hp.epochs {
        let lr = learning_rate_at(hp.learning_rate, epoch);
        optimizer.set_learning_rate(lr);
        // Between steps and outside any graph: the captured steps read it from here.
        backend.write(&mut run.lr, &[lr as f32])?;
        let report = run.epoch(epoch, batches, &mut model, &mut optimizer)?;
        summary.epochs_run = epoch;
        summary.device_seconds += report.epoch_seconds;
        summary.final_dev_accuracy = report.dev_accuracy;
        if report.dev_accuracy > summary.best_dev_accuracy {
            summary.best_dev_accuracy = report.dev_accuracy;
            summary.best_epoch = epoch;
        }
        if on_epoch(&report) == Control::Stop {
            summary.stopped = epoch < hp.epochs;
            break;
        }
    }
    // The graphs use the run's buffers, which are freed when `run` and `model` are dropped.
    backend.clear_graphs();
    if data.test_len() > 0 {
        let (ids, labels) = (&data.test_ids, &data.test_labels);
        summary.test_accuracy = Some(run.accuracy(&mut model, ids, labels)?);
    }
    summary.wall_seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// The configuration with `batch_size` at most the training set's size, borrowed when it is.
fn fitted_to(hp: &HyperParams, train_len: usize) -> Cow<'_, HyperParams> {
    if hp.batch_size <= train_len {
        return Cow::Borrowed(hp);
    }
    Cow::Owned(HyperParams {
        batch_size: train_len,
        ..hp.clone()
    })
}

/// The data with sentences padded to at least `min_len` tokens (filters wider than the
/// longest sentence still get one position), borrowed when already long enough.
fn padded_for(data: &Dataset, min_len: usize) -> Cow<'_, Dataset> {
    if data.seq_len >= min_len {
        return Cow::Borrowed(data);
    }
    let pad = |ids: &[u32]| -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len() / data.seq_len.max(1) * min_len);
        for sentence in ids.chunks(data.seq_len.max(1)) {
            out.extend_from_slice(sentence);
            out.extend(std::iter::repeat_n(data.pad_id, min_len - sentence.len()));
        }
        out
    };
    let mut padded = data.clone();
    padded.train_ids = pad(&data.train_ids);
    padded.dev_ids = pad(&data.dev_ids);
    padded.test_ids = pad(&data.test_ids);
    padded.seq_len = min_len;
    Cow::Owned(padded)
}

/// The loss, or [`Error::Diverged`] when it is NaN or infinite.
fn finite_loss(loss: f64, epoch: usize) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(Error::Diverged { epoch })
    }
}

/// The device buffers a training step reads its varying values from (see
/// [`kernels::StepScalars`]), and the run's loss and accuracy sums.
struct StepBuffers<'a, B: Backend> {
    /// `[step]`, advanced on the device at the start of each step.
    step: &'a mut B::IdxBuf,
    /// `[learning rate]`, written once an epoch between steps.
    lr: &'a B::Buf,
    /// `[loss sum, correct]`, accumulated by every step.
    stats: &'a mut B::Buf,
}

/// One training step on the model's current batch, in the form a CUDA graph can capture once
/// and replay every epoch. What changes between replays, and why each is safe:
/// - the batch: a graph is captured per batch, with that batch's resident buffers swapped into
///   the model; they stay allocated, at the same addresses, for the whole run;
/// - the step number (dropout mask, lazy embedding decay): advanced on the device by the step
///   itself, first, and read from device memory by the dropout and `rmsprop_rows` kernels;
/// - the dropout seed: `mix64(seed_base, step)`, `seed_base` being fixed for the run;
/// - the learning rate: read from device memory by the RMSProp kernels; the host writes it
///   between epochs, outside any graph;
/// - the loss and accuracy sums: accumulated on the device into `stats`, zeroed by the host
///   between epochs, outside any graph.
///
/// Everything else a kernel receives (shapes, `n_rows` of the batch, buffer addresses, drop
/// probability, RMSProp's decay, epsilon and clip) is the same at every replay of a batch.
fn train_step<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    optimizer: &mut Optimizer<B>,
    hp: &HyperParams,
    seed_base: u64,
    bufs: &mut StepBuffers<'_, B>,
) -> Result<()> {
    b.advance_step(bufs.step)?;
    let dropout = Dropout::AtStep {
        p: hp.dropout as f32,
        seed_base,
        step: &*bufs.step,
    };
    model.forward_with(b, Some(dropout), bufs.stats)?;
    model.backward(b)?;
    let scalars = StepScalars {
        step: &*bufs.step,
        lr: bufs.lr,
    };
    optimizer.step_at(b, model, &scalars)
}

/// The state of one run besides the model and the optimizer.
struct Run<'a, B: Backend> {
    backend: &'a B,
    data: &'a Dataset,
    hp: &'a HyperParams,
    seed: u64,
    batcher: Batcher,
    host: HostBatch,
    stats: B::Buf,
    /// The training step counter on the device (see [`train_step`]).
    step: B::IdxBuf,
    /// The learning rate on the device.
    lr: B::Buf,
    /// The training batches, uploaded once in the first epoch (the order is the same every
    /// epoch), so a step copies nothing from the host.
    train_batches: Vec<ResidentBatch<B>>,
    /// The validation batches, likewise.
    dev_batches: Vec<ResidentBatch<B>>,
    /// The captured graph of each training batch's step, from the second epoch on.
    graphs: Vec<Option<usize>>,
    /// Whether to capture: false once the backend declined (no graphs, or switched off).
    capture: bool,
}

impl<B: Backend> Run<'_, B> {
    fn epoch(
        &mut self,
        epoch: usize,
        batches: usize,
        model: &mut Model<B>,
        optimizer: &mut Optimizer<B>,
    ) -> Result<EpochReport> {
        let timer = Instant::now();
        let (b, s, bs) = (self.backend, self.data.seq_len, self.hp.batch_size);
        if self.train_batches.len() != batches {
            // The graphs refer to the batches' buffers: drop them first.
            b.clear_graphs();
            self.graphs = vec![None; batches];
            self.train_batches.clear();
            for i in 0..batches {
                let ids = &self.data.train_ids[i * bs * s..(i + 1) * bs * s];
                let labels = &self.data.train_labels[i * bs..(i + 1) * bs];
                self.batcher.fill(ids, labels, &mut self.host);
                self.train_batches
                    .push(model.resident_batch(b, &self.host)?);
            }
        }
        b.fill(&mut self.stats, 2, 0.0)?;
        // The first epoch is the warm-up: it runs uncaptured (and uploads the batches).
        let captured = epoch > 1;
        for i in 0..batches {
            let batch = &mut self.train_batches[i];
            model.swap_batch(batch);
            let result = self.step_on_batch(i, captured, model, optimizer);
            model.swap_batch(&mut self.train_batches[i]);
            result?;
        }
        let train_stats = b.download(&self.stats)?;
        let examples = batches * bs;
        let train_loss = finite_loss(f64::from(train_stats[0]) / examples as f64, epoch)?;
        let dev_accuracy = self.evaluate(model)?;
        Ok(EpochReport {
            epoch,
            train_loss,
            train_accuracy: f64::from(train_stats[1]) / examples as f64,
            dev_accuracy,
            epoch_seconds: timer.elapsed().as_secs_f64(),
            examples,
        })
    }

    /// One training step on training batch `i` (already swapped into `model`): replayed from
    /// its graph when `captured` and the backend captures, else run op by op. Both run the
    /// same kernels with the same arguments, so the results are the same.
    fn step_on_batch(
        &mut self,
        i: usize,
        captured: bool,
        model: &mut Model<B>,
        optimizer: &mut Optimizer<B>,
    ) -> Result<()> {
        let (b, hp) = (self.backend, self.hp);
        let seed_base = self.seed ^ DROPOUT_STREAM;
        let mut bufs = StepBuffers {
            step: &mut self.step,
            lr: &self.lr,
            stats: &mut self.stats,
        };
        if captured && self.capture && self.graphs[i].is_none() {
            let mut body = || {
                train_step(b, model, optimizer, hp, seed_base, &mut bufs).map_err(|err| match err {
                    Error::Kernel(kernel) => kernel,
                    other => kernels::Error::InvalidShape {
                        op: "captured training step",
                        reason: other.to_string(),
                    },
                })
            };
            match b.capture_graph(&mut body)? {
                Some(id) => self.graphs[i] = Some(id),
                None => self.capture = false,
            }
        }
        match self.graphs[i] {
            Some(id) if captured && self.capture => b.replay_graph(id).map_err(Into::into),
            _ => train_step(b, model, optimizer, hp, seed_base, &mut bufs),
        }
    }

    /// Validation accuracy, in batches of the model's capacity (no dropout); the batches are
    /// uploaded once, in the first call.
    fn evaluate(&mut self, model: &mut Model<B>) -> Result<f64> {
        let (b, s) = (self.backend, self.data.seq_len);
        let cap = model.dims.capacity;
        let n = self.data.dev_len();
        if self.dev_batches.is_empty() {
            for start in (0..n).step_by(cap) {
                let end = (start + cap).min(n);
                let ids = &self.data.dev_ids[start * s..end * s];
                self.batcher
                    .fill(ids, &self.data.dev_labels[start..end], &mut self.host);
                self.dev_batches.push(model.resident_batch(b, &self.host)?);
            }
        }
        b.fill(&mut self.stats, 2, 0.0)?;
        for batch in &mut self.dev_batches {
            model.swap_batch(batch);
            let result = model.forward(b, None, &mut self.stats);
            model.swap_batch(batch);
            result?;
        }
        let stats = b.download(&self.stats)?;
        Ok(f64::from(stats[1]) / n as f64)
    }

    /// Accuracy on `ids`/`labels` (the test set, scored once), in batches of the model's
    /// capacity (no dropout), each uploaded as it is scored.
    fn accuracy(&mut self, model: &mut Model<B>, ids: &[u32], labels: &[u32]) -> Result<f64> {
        let (b, s) = (self.backend, self.data.seq_len);
        let cap = model.dims.capacity;
        let n = labels.len();
        b.fill(&mut self.stats, 2, 0.0)?;
        for start in (0..n).step_by(cap) {
            let end = (start + cap).min(n);
            let batch_ids = &ids[start * s..end * s];
            self.batcher
                .fill(batch_ids, &labels[start..end], &mut self.host);
            model.upload(b, &self.host)?;
            model.forward(b, None, &mut self.stats)?;
        }
        let stats = b.download(&self.stats)?;
        Ok(f64::from(stats[1]) / n as f64)
    }
}

#[cfg(test)]
mod tests;
