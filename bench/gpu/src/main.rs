//! `gpu-bench`: times the text CNN on a GPU for `scripts/gpu-check.sh`.
//!
//! - `gpu-bench floor`: the FLOPs and bytes of one step and one epoch of the default
//!   configuration, and the epoch time they allow (no GPU needed).
//! - `gpu-bench single --gpu 0 --warmup 1 --epochs 3`: trains the default configuration on the
//!   embedded MR data and times each epoch with device events and the host clock.
//! - `gpu-bench shared --gpu 0 --slots 4 --epochs 2`: K trials at once on one GPU, each with its
//!   own backend (stream and buffers), as `agent --slots K` runs them; prints epochs a second.
//!
//! - `gpu-bench epoch-check --gpu 0`: one MR epoch on the GPU and on the CPU from the same
//!   seed; fails when train loss or dev accuracy differ by more than `--tolerance` (1e-3).
//! - `gpu-bench kernels --gpu 0 --steps 20`: device time of every backend operation over
//!   `--steps` training steps, and the kernel launches and host-to-device copies a step.
//!
//! Every mode prints one JSON line on stdout. Without a usable GPU (or built without `cuda`)
//! the GPU modes say what is missing and exit non-zero.

mod floor;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Times the text CNN on a GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints the FLOP/byte floor of the default configuration.
    Floor {
        /// FP32 rate of the device, TFLOP/s (H100 SXM datasheet: 67).
        #[arg(long, default_value_t = 67.0)]
        tflops: f64,
        /// Memory bandwidth, TB/s (H100 SXM datasheet: 3.35; H200: 4.8).
        #[arg(long, default_value_t = 3.35)]
        tbps: f64,
    },
    /// Trains one trial and times its epochs.
    Single(RunArgs),
    /// Trains `--slots` trials at once on one GPU.
    Shared(RunArgs),
    /// Prints the versions of the NVIDIA driver and of NVRTC as the backend probes them
    /// (never fails: a missing library is reported in the line).
    Versions,
    /// One MR epoch on the GPU and the CPU from the same seed, compared.
    EpochCheck(CheckArgs),
    /// Per-operation device times and launches a step over a few training steps.
    Kernels(KernelArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct CheckArgs {
    /// CUDA device.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Seed of both runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest allowed |GPU − CPU| of the train loss and of the dev accuracy.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
    /// Hyperparameters over the study's defaults, `name=value,...` (epochs is forced to 1).
    #[arg(long, default_value = "")]
    params: String,
}

#[derive(clap::Args, Debug, Clone)]
struct KernelArgs {
    /// CUDA device.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Steps before the measured ones (module load, first launches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Measured steps (once without events for the step time and counts, once profiled).
    #[arg(long, default_value_t = 20)]
    steps: usize,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// CUDA device.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    /// Epochs left out of the timings.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Trials at once (`shared` only).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Hyperparameters over the study's defaults, `name=value,...`.
    #[arg(long, default_value = "")]
    params: String,
    /// Seed of the first trial (trial i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Floor { tflops, tbps } => print_floor(tflops, tbps),
        Command::Single(args) => gpu::single(&args),
        Command::Shared(args) => gpu::shared(&args),
        Command::Versions => {
            println!("{}", check::versions());
            Ok(())
        }
        Command::EpochCheck(args) => check::epoch_check(&args),
        Command::Kernels(args) => check::kernels(&args),
    }
}

/// Mean distinct ids a batch of the training set holds (the embedding rows a step updates).
fn distinct_ids_per_batch(data: &cnn::Dataset, batch: usize) -> usize {
    let rows = data.train_ids.chunks(batch * data.seq_len);
    let count = rows.len().max(1);
    let total: usize = data
        .train_ids
        .chunks(batch * data.seq_len)
        .map(|chunk| {
            let mut ids = chunk.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        })
        .sum();
    total / count
}

fn print_floor(tflops: f64, tbps: f64) -> Result<()> {
    let data = cnn::data::mr_embedded().context("failed to prepare MR")?;
    let hp = cnn::HyperParams::study_default();
    let config = floor::Config {
        train: data.train_labels.len(),
        dev: data.dev_labels.len(),
        seq_len: data.seq_len,
        vocab: data.vocab_size(),
        embed_dim: hp.embed_dim,
        widths: hp.filter_sizes,
        maps: hp.num_feature_maps,
        classes: data.num_classes,
        batch: hp.batch_size,
    };
    let distinct = distinct_ids_per_batch(&data, hp.batch_size);
    let result = floor::floor(&config, distinct, tflops, tbps);
    let line = serde_json::json!({
        "mode": "floor",
        "train": config.train, "dev": config.dev, "seq_len": config.seq_len,
        "vocab": config.vocab, "distinct_ids_per_batch": distinct,
        "floor": result,
    });
    println!("{line}");
    Ok(())
}

#[cfg(feature = "cuda")]
mod check;
#[cfg(feature = "cuda")]
mod gpu;

#[cfg(not(feature = "cuda"))]
mod check {
    //! Without the `cuda` feature there is no GPU to check.
    use super::{CheckArgs, KernelArgs};

    pub fn versions() -> serde_json::Value {
        serde_json::json!({"mode": "versions", "cuda_feature": false})
    }

    pub fn epoch_check(_: &CheckArgs) -> anyhow::Result<()> {
        anyhow::bail!("gpu-bench was built without `--features cuda`: no GPU to check")
    }

    pub fn kernels(_: &KernelArgs) -> anyhow::Result<()> {
        anyhow::bail!("gpu-bench was built without `--features cuda`: no GPU to profile")
    }
}

#[cfg(not(feature = "cuda"))]
mod gpu {
    //! Without the `cuda` feature there is nothing to time.
    use super::RunArgs;

    pub fn single(_: &RunArgs) -> anyhow::Result<()> {
        anyhow::bail!("gpu-bench was built without `--features cuda`")
    }

    pub fn shared(args: &RunArgs) -> anyhow::Result<()> {
        single(args)
    }
}
