//! The training loop: fixed batch order, RMSProp, evaluation on the validation set each epoch.
//!
//! As the reference: the training sentences are taken in their (permuted) order in batches of
//! `batch_size`, the last partial batch is dropped, the order is the same every epoch; dropout
//! draws from a seed derived from the trial seed and the step; the learning rate halves after
//! epochs 50 and 100; the score is the validation accuracy after the final epoch.

use std::borrow::Cow;
use std::time::Instant;

use kernels::Backend;
use serde::{Deserialize, Serialize};

use crate::model::batch::{Batcher, HostBatch};
use crate::model::{Dims, Model, ResidentBatch};
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
/// [`Error::Data`] when there are fewer training sentences than a batch, [`Error::Diverged`]
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
    let batches = data.train_len() / hp.batch_size;
    if batches == 0 || data.dev_len() == 0 {
        return Err(Error::Data {
            reason: format!(
                "{} training sentences make no batch of {} (and {} validation sentences)",
                data.train_len(),
                hp.batch_size,
                data.dev_len()
            ),
        });
    }
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
        step: 0,
        train_batches: Vec::new(),
        dev_batches: Vec::new(),
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
        optimizer.set_learning_rate(learning_rate_at(hp.learning_rate, epoch));
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
    if data.test_len() > 0 {
        let (ids, labels) = (&data.test_ids, &data.test_labels);
        summary.test_accuracy = Some(run.accuracy(&mut model, ids, labels)?);
    }
    summary.wall_seconds = start.elapsed().as_secs_f64();
    Ok(summary)
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

/// One training step on the model's current batch.
fn train_step<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    optimizer: &mut Optimizer<B>,
    hp: &HyperParams,
    dropout_seed: u64,
    stats: &mut B::Buf,
) -> Result<()> {
    model.forward(b, Some((hp.dropout as f32, dropout_seed)), stats)?;
    model.backward(b)?;
    optimizer.step(b, model)
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
    step: u64,
    /// The training batches, uploaded once in the first epoch (the order is the same every
    /// epoch), so a step copies nothing from the host.
    train_batches: Vec<ResidentBatch<B>>,
    /// The validation batches, likewise.
    dev_batches: Vec<ResidentBatch<B>>,
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
        for i in 0..batches {
            self.step += 1;
            let dropout_seed = kernels::rng::mix64(self.seed ^ DROPOUT_STREAM, self.step);
            let batch = &mut self.train_batches[i];
            model.swap_batch(batch);
            let result = train_step(b, model, optimizer, self.hp, dropout_seed, &mut self.stats);
            model.swap_batch(batch);
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
