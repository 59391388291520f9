//! The real-data checks of `scripts/gpu-check.sh`: one MR epoch on the GPU against the CPU
//! from the same seed (`gpu-bench epoch-check`), and the device time of every backend
//! operation over a few training steps with the launches and copies a step (`gpu-bench kernels`).

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use cnn::model::batch::{Batcher, HostBatch};
use cnn::model::{Dims, Model};
use cnn::optim::Optimizer;
use cnn::{Control, EpochReport, HyperParams};
use kernels::Backend;
use kernels::cpu::CpuBackend;
use kernels::cuda::CudaBackend;

use super::{CheckArgs, KernelArgs};

/// The driver's and NVRTC's versions through the backend's probes (no cudarc call that could
/// panic), each as a version or the error that says what is missing.
pub fn versions() -> serde_json::Value {
    let driver = match kernels::cuda::libraries::driver() {
        Ok(version) => version.to_string(),
        Err(err) => format!("unavailable: {err}"),
    };
    let nvrtc = match kernels::cuda::libraries::nvrtc() {
        Ok((version, archs)) => format!("{version} (targets sm_{archs:?})"),
        Err(err) => format!("unavailable: {err}"),
    };
    serde_json::json!({"mode": "versions", "cuda_feature": true, "driver_cuda": driver, "nvrtc": nvrtc})
}

/// Opens the GPU, or says what is missing (driver, library, device) and fails.
fn open_gpu(ordinal: usize) -> Result<CudaBackend> {
    CudaBackend::new(ordinal).map_err(|err| anyhow!("no usable GPU {ordinal}: {err}"))
}

fn one_epoch<B: Backend>(
    backend: &B,
    data: &cnn::Dataset,
    hp: &HyperParams,
    seed: u64,
) -> Result<EpochReport> {
    let mut last = None;
    cnn::train(backend, data, hp, seed, |report| {
        last = Some(report.clone());
        Control::Stop
    })
    .map_err(|err| anyhow!("training on {} failed: {err}", backend.name()))?;
    last.ok_or_else(|| anyhow!("training on {} ran no epoch", backend.name()))
}

/// `gpu-bench epoch-check`: exits non-zero when the two backends disagree by more than the
/// tolerance on the train loss or the dev accuracy.
pub fn epoch_check(args: &CheckArgs) -> Result<()> {
    let gpu = open_gpu(args.gpu)?;
    let hp = HyperParams::study_default()
        .with_override_str(&args.params)
        .context("invalid --params")?
        .with_overrides([("epochs", 1.0)])
        .context("invalid epoch count")?;
    let data = cnn::data::mr_embedded().context("failed to prepare MR")?;
    let on_gpu = one_epoch(&gpu, &data, &hp, args.seed)?;
    let cpu = CpuBackend::new();
    let on_cpu = one_epoch(&cpu, &data, &hp, args.seed)?;
    let loss_diff = (on_gpu.train_loss - on_cpu.train_loss).abs();
    let accuracy_diff = (on_gpu.dev_accuracy - on_cpu.dev_accuracy).abs();
    // A hair over the tolerance, so that one sentence of 1,000 (exactly 1e-3) passes.
    let limit = args.tolerance * (1.0 + 1e-9);
    let pass = loss_diff <= limit && accuracy_diff <= limit;
    let line = serde_json::json!({
        "mode": "epoch-check",
        "device": gpu.name(),
        "seed": args.seed,
        "tolerance": args.tolerance,
        "gpu": on_gpu, "cpu": on_cpu,
        "train_loss_diff": loss_diff, "dev_accuracy_diff": accuracy_diff,
        "pass": pass,
    });
    println!("{line}");
    if !pass {
        bail!(
            "GPU and CPU disagree after one MR epoch (seed {}): train loss {} against {} \
             (|diff| {loss_diff:.3e}), dev accuracy {} against {} (|diff| {accuracy_diff:.3e}), \
             tolerance {}",
            args.seed,
            on_gpu.train_loss,
            on_cpu.train_loss,
            on_gpu.dev_accuracy,
            on_cpu.dev_accuracy,
            args.tolerance
        );
    }
    Ok(())
}

/// Totals of one operation over the profiled steps.
#[derive(Debug, Default, serde::Serialize)]
struct OpTotal {
    calls: usize,
    seconds: f64,
}

/// `gpu-bench kernels`: `--warmup` steps, then `--steps` profiled steps of the default
/// configuration on MR's first batches.
pub fn kernels(args: &KernelArgs) -> Result<()> {
    let gpu = open_gpu(args.gpu)?;
    let hp = HyperParams::study_default();
    let data = cnn::data::mr_embedded().context("failed to prepare MR")?;
    let batches = data.train_len() / hp.batch_size;
    if batches == 0 || args.steps == 0 {
        bail!(
            "no step to profile: {} batches, --steps {}",
            batches,
            args.steps
        );
    }
    let dims = Dims {
        vocab: data.vocab_size(),
        embed_dim: hp.embed_dim,
        seq_len: data.seq_len,
        classes: data.num_classes,
        filter_sizes: hp.filter_sizes,
        maps: hp.num_feature_maps,
        capacity: hp.batch_size,
    };
    let mut model = Model::new(&gpu, dims, 1).map_err(|err| anyhow!("model: {err}"))?;
    let mut optimizer =
        Optimizer::new(&gpu, &model, &hp).map_err(|err| anyhow!("optimizer: {err}"))?;
    let mut batcher = Batcher::new(dims.vocab);
    let mut host = HostBatch::default();
    let mut stats = gpu.alloc(2)?;
    let (bs, s) = (hp.batch_size, data.seq_len);
    let mut step = |i: usize| -> Result<()> {
        let b = i % batches;
        batcher.fill(
            &data.train_ids[b * bs * s..(b + 1) * bs * s],
            &data.train_labels[b * bs..(b + 1) * bs],
            &mut host,
        );
        model
            .upload(&gpu, &host)
            .map_err(|err| anyhow!("upload: {err}"))?;
        model
            .forward(&gpu, Some((hp.dropout as f32, i as u64)), &mut stats)
            .map_err(|err| anyhow!("forward: {err}"))?;
        model
            .backward(&gpu)
            .map_err(|err| anyhow!("backward: {err}"))?;
        optimizer
            .step(&gpu, &mut model)
            .map_err(|err| anyhow!("optimizer step: {err}"))?;
        Ok(())
    };
    for i in 0..args.warmup {
        step(i)?;
    }
    gpu.synchronize()?;
    let before = gpu.counters();
    let started = gpu.record_timing_event()?;
    for i in 0..args.steps {
        step(args.warmup + i)?;
    }
    let ended = gpu.record_timing_event()?;
    let after = gpu.counters();
    let unprofiled_seconds = CudaBackend::elapsed_seconds(&started, &ended)?;
    gpu.start_profile();
    for i in 0..args.steps {
        step(args.warmup + args.steps + i)?;
    }
    let mut per_op: BTreeMap<&str, OpTotal> = BTreeMap::new();
    for time in gpu.take_profile()? {
        let total = per_op.entry(time.op).or_default();
        total.calls += 1;
        total.seconds += time.seconds;
    }
    let steps = args.steps as f64;
    let line = serde_json::json!({
        "mode": "kernels",
        "device": gpu.name(),
        "steps": args.steps,
        "launches_per_step": (after.launches - before.launches) as f64 / steps,
        "copies_per_step": (after.copies - before.copies) as f64 / steps,
        "step_seconds": unprofiled_seconds / steps,
        "profiled_ops": per_op,
    });
    println!("{line}");
    Ok(())
}
