//! The floating-point work and the fewest bytes one training step and one epoch of the text CNN
//! must move: the floor that measured epoch times are compared with (METHOD.md, "Two numbers").
//!
//! FLOPs count a multiply-add as 2. The forward convolution dominates:
//! `Σ_w 2·B·(L − w + 1)·F·w·E` a step. The backward needs the argmax positions only
//! (`2·B·F·w·E` each for the weight and the data gradient). Bytes assume a perfectly fused step:
//! every parameter, gradient-free optimizer state and touched embedding row read once and
//! written once, the batch's ids read once; activations stay on chip.

use serde::Serialize;

/// Sizes of the default configuration on a dataset.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Training sentences.
    pub train: usize,
    /// Validation sentences.
    pub dev: usize,
    /// Padded sentence length.
    pub seq_len: usize,
    /// Vocabulary entries.
    pub vocab: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Filter widths.
    pub widths: [usize; 3],
    /// Feature maps a width.
    pub maps: usize,
    /// Classes.
    pub classes: usize,
    /// Sentences a batch.
    pub batch: usize,
}

/// The counts, and the floor times at the given device rates.
#[derive(Debug, Serialize)]
pub struct Floor {
    /// FLOPs of one training step (forward, backward, update).
    pub step_flops: f64,
    /// Bytes one training step must move at least.
    pub step_bytes: f64,
    /// FLOPs of one epoch: every training step plus the validation forward passes.
    pub epoch_flops: f64,
    /// Bytes of one epoch.
    pub epoch_bytes: f64,
    /// Epoch time at the FP32 rate, seconds.
    pub epoch_compute_seconds: f64,
    /// Epoch time at the memory bandwidth, seconds.
    pub epoch_memory_seconds: f64,
    /// The larger of the two: no implementation runs an epoch much faster.
    pub epoch_floor_seconds: f64,
    /// FP32 rate used, TFLOP/s.
    pub fp32_tflops: f64,
    /// Memory bandwidth used, TB/s.
    pub memory_tbps: f64,
}

fn conv_forward_flops(c: &Config, sentences: usize) -> f64 {
    c.widths
        .iter()
        .map(|&w| 2.0 * (sentences * (c.seq_len + 1 - w) * c.maps * w * c.embed_dim) as f64)
        .sum()
}

fn dense_params(c: &Config) -> usize {
    let conv: usize = c
        .widths
        .iter()
        .map(|w| c.maps * w * c.embed_dim + c.maps)
        .sum();
    conv + 3 * c.maps * c.classes + c.classes
}

/// Counts one step and one epoch; `fp32_tflops` and `memory_tbps` are the device's rates.
pub fn floor(
    c: &Config,
    distinct_ids_per_batch: usize,
    fp32_tflops: f64,
    memory_tbps: f64,
) -> Floor {
    let features = 3 * c.maps;
    let backward_conv: f64 = c
        .widths
        .iter()
        .map(|&w| 4.0 * (c.batch * c.maps * w * c.embed_dim) as f64)
        .sum();
    let linear = 6.0 * (c.batch * features * c.classes) as f64;
    let params = dense_params(c);
    let rows = distinct_ids_per_batch * c.embed_dim;
    // RMSProp with clipping: about 10 FLOPs an element; the norm 2.
    let update = 12.0 * (params + rows) as f64;
    let step_flops = conv_forward_flops(c, c.batch) + backward_conv + linear + update;
    // Parameters and their mean squares, read and written: 4 accesses of 4 bytes.
    let step_bytes = 16.0 * (params + rows) as f64 + 4.0 * (c.batch * (c.seq_len + 1)) as f64;
    let steps = c.train.div_ceil(c.batch) as f64;
    let eval_flops = conv_forward_flops(c, c.dev) + 2.0 * (c.dev * features * c.classes) as f64;
    let eval_bytes = 4.0 * (params + c.dev * c.seq_len * (1 + c.embed_dim)) as f64;
    let epoch_flops = steps * step_flops + eval_flops;
    let epoch_bytes = steps * step_bytes + eval_bytes;
    let epoch_compute_seconds = epoch_flops / (fp32_tflops * 1e12);
    let epoch_memory_seconds = epoch_bytes / (memory_tbps * 1e12);
    Floor {
        step_flops,
        step_bytes,
        epoch_flops,
        epoch_bytes,
        epoch_compute_seconds,
        epoch_memory_seconds,
        epoch_floor_seconds: epoch_compute_seconds.max(epoch_memory_seconds),
        fp32_tflops,
        memory_tbps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_configuration_is_compute_bound() {
        let c = Config {
            train: 9662,
            dev: 1000,
            seq_len: 56,
            vocab: 18_000,
            embed_dim: 300,
            widths: [3, 4, 5],
            maps: 100,
            classes: 2,
            batch: 50,
        };
        let f = floor(&c, 1000, 67.0, 3.35);
        // Forward convolutions alone: 2·50·(54·3 + 53·4 + 52·5)·100·300 = 1.902e9.
        assert!((conv_forward_flops(&c, 50) - 1.902e9).abs() < 1e6);
        assert!(
            f.step_flops > 1.9e9 && f.step_flops < 2.1e9,
            "{}",
            f.step_flops
        );
        assert!(f.epoch_compute_seconds > f.epoch_memory_seconds);
        assert_eq!(f.epoch_floor_seconds, f.epoch_compute_seconds);
    }
}
