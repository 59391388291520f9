//! `agent train`: trains one configuration of the text CNN locally, outside any cluster.
//!
//! Prints one line an epoch and a final summary on stdout (JSON lines with `--json`), which is
//! also the CPU benchmark entry point:
//! `agent train --cpu --threads 2 --params embed_dim=300 --epochs 1 --json`.

use std::path::PathBuf;

use anyhow::Context;
use cnn::{Control, Dataset, EpochReport, HyperParams, TrainSummary};
use kernels::Backend;
use serde::Serialize;

/// Options of `agent train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainOptions {
    /// Train on the CPU backend (the default when no GPU is named).
    #[arg(long, conflicts_with = "gpu")]
    pub cpu: bool,
    /// Train on CUDA device N.
    #[arg(long, value_name = "N")]
    pub gpu: Option<usize>,
    /// Hyperparameters over the study's defaults, e.g. `embed_dim=300,learning_rate=0.0005`.
    #[arg(long, value_name = "NAME=VALUE,...", default_value = "")]
    pub params: String,
    /// Shortcut for `--params epochs=N`.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// A labelled training file (`label<TAB>text` or `label text` lines) instead of the
    /// embedded MR data.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// A validation file for `--data` (else a seeded tenth of `--data` is split off).
    #[arg(long, value_name = "FILE", requires = "data")]
    pub dev_data: Option<PathBuf>,
    /// A held-out test file for `--data`: the final model is scored on it once.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub test_data: Option<PathBuf>,
    /// Seed of the initialization and dropout (and of the split of a `--data` file).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use only the first N training sentences (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_train: usize,
    /// Use only the first N validation sentences (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_dev: usize,
    /// CPU threads (default: rayon's, one a core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The final line of a run.
#[derive(Debug, Serialize)]
struct SummaryLine<'a> {
    summary: &'a TrainSummary,
    backend: String,
    params: &'a HyperParams,
    train_sentences: usize,
    dev_sentences: usize,
    test_sentences: usize,
    /// Peak resident memory of the process (Linux `VmHWM`), when known.
    peak_rss_bytes: Option<u64>,
}

/// Runs `agent train`.
///
/// # Errors
/// Bad parameters, an unreadable data file, an unavailable GPU, a training failure.
pub fn run(opts: &TrainOptions) -> anyhow::Result<()> {
    let mut hp = HyperParams::study_default()
        .with_override_str(&opts.params)
        .context("invalid --params")?;
    if let Some(epochs) = opts.epochs {
        hp = hp
            .with_overrides([("epochs", epochs as f64)])
            .context("invalid --epochs")?;
    }
    let data = match &opts.data {
        Some(path) => {
            let files = cnn::data::DataFiles {
                train: path.clone(),
                dev: opts.dev_data.clone(),
                test: opts.test_data.clone(),
            };
            cnn::data::files::load(&files, opts.seed)
                .with_context(|| format!("failed to load {}", path.display()))?
        }
        None => cnn::data::mr_embedded().context("failed to prepare MR")?,
    }
    .truncated(opts.max_train, opts.max_dev);
    if data.cut_sentences > 0 {
        eprintln!(
            "note: {} sentences longer than {} tokens were cut to it",
            data.cut_sentences,
            cnn::data::MAX_SEQ_LEN
        );
    }
    if let Some(ordinal) = opts.gpu {
        // The probe checks the driver and NVRTC libraries before any cudarc call, so a machine
        // without CUDA gets a clear error instead of cudarc's panic.
        kernels::probe_cuda(ordinal).with_context(|| format!("cannot train on GPU {ordinal}"))?;
        return train_on_gpu(ordinal, &data, &hp, opts);
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = opts.threads {
        pool = pool.num_threads(threads);
    }
    let pool = pool
        .build()
        .context("failed to build the cpu thread pool")?;
    pool.install(|| train_on(&kernels::cpu::CpuBackend::new(), &data, &hp, opts))
}

/// Trains on CUDA device `ordinal` with the hand-written kernels.
#[cfg(feature = "cuda")]
fn train_on_gpu(
    ordinal: usize,
    data: &Dataset,
    hp: &HyperParams,
    opts: &TrainOptions,
) -> anyhow::Result<()> {
    let backend = kernels::cuda::CudaBackend::new(ordinal)
        .with_context(|| format!("failed to open GPU {ordinal}"))?;
    train_on(&backend, data, hp, opts)
}

/// Without the `cuda` feature there is no GPU path; the probe above has already failed.
#[cfg(not(feature = "cuda"))]
fn train_on_gpu(
    ordinal: usize,
    _data: &Dataset,
    _hp: &HyperParams,
    _opts: &TrainOptions,
) -> anyhow::Result<()> {
    anyhow::bail!("GPU {ordinal} requested, but this binary was built without the `cuda` feature")
}

/// Trains on `backend`, printing each epoch and the summary.
///
/// # Errors
/// A training failure.
pub fn train_on<B: Backend>(
    backend: &B,
    data: &Dataset,
    hp: &HyperParams,
    opts: &TrainOptions,
) -> anyhow::Result<()> {
    let mut print_error = None;
    let summary = cnn::train(backend, data, hp, opts.seed, |report| {
        match print_epoch(report, opts.json) {
            Ok(()) => Control::Continue,
            Err(error) => {
                print_error = Some(error);
                Control::Stop
            }
        }
    })
    .context("training failed")?;
    if let Some(error) = print_error {
        return Err(error);
    }
    let line = SummaryLine {
        summary: &summary,
        backend: backend.name(),
        params: hp,
        train_sentences: data.train_len(),
        dev_sentences: data.dev_len(),
        test_sentences: data.test_len(),
        peak_rss_bytes: peak_rss_bytes(),
    };
    if opts.json {
        println!(
            "{}",
            serde_json::to_string(&line).context("failed to encode the summary")?
        );
    } else {
        println!(
            "final dev accuracy {:.4} (best {:.4} at epoch {}), {} epochs in {:.1} s on {}",
            summary.final_dev_accuracy,
            summary.best_dev_accuracy,
            summary.best_epoch,
            summary.epochs_run,
            summary.wall_seconds,
            line.backend
        );
        if let Some(test) = summary.test_accuracy {
            println!("test accuracy {test:.4} (final model, never used for selection)");
        }
    }
    Ok(())
}

fn print_epoch(report: &EpochReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("failed to encode an epoch")?
        );
    } else {
        println!(
            "epoch {:>3}: train loss {:.4} accuracy {:.4} | dev accuracy {:.4} | {:.2} s",
            report.epoch,
            report.train_loss,
            report.train_accuracy,
            report.dev_accuracy,
            report.epoch_seconds
        );
    }
    Ok(())
}

/// `VmHWM` from `/proc/self/status`, in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(params: &str) -> TrainOptions {
        TrainOptions {
            cpu: true,
            gpu: None,
            params: params.to_owned(),
            epochs: Some(1),
            data: None,
            dev_data: None,
            test_data: None,
            seed: 1,
            json: true,
            max_train: 200,
            max_dev: 100,
            threads: Some(1),
        }
    }

    #[test]
    fn trains_a_tiny_configuration_on_mr() {
        run(&opts("embed_dim=8,num_feature_maps=4")).unwrap();
    }

    #[test]
    fn unknown_parameters_and_missing_gpus_are_clear_errors() {
        let err = run(&opts("embed_dims=8")).unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid hyperparameter 'embed_dims'"),
            "{err:#}"
        );
        let gpu = TrainOptions {
            gpu: Some(0),
            cpu: false,
            ..opts("embed_dim=8")
        };
        let err = run(&gpu).unwrap_err();
        assert!(format!("{err:#}").contains("GPU 0"), "{err:#}");
    }
}
