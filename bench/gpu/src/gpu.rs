//! The timed runs: one trial alone, and K trials sharing the GPU.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use cnn::{Control, Dataset, EpochReport, HyperParams};
use kernels::Backend;
use kernels::cuda::CudaBackend;
use serde::Serialize;

use super::RunArgs;

/// What one trial measured.
#[derive(Debug, Serialize)]
struct TrialTimes {
    seed: u64,
    /// Host-clock seconds of each epoch (as `cnn::train` reports them).
    epoch_seconds: Vec<f64>,
    /// Device seconds between the events recorded at consecutive epoch ends.
    device_epoch_seconds: Vec<f64>,
    dev_accuracy: Vec<f64>,
    train_loss: Vec<f64>,
}

fn hyper_params(args: &RunArgs) -> Result<HyperParams> {
    let hp = HyperParams::study_default()
        .with_override_str(&args.params)
        .context("invalid --params")?;
    let epochs = (args.warmup + args.epochs) as f64;
    hp.with_overrides([("epochs", epochs)])
        .context("invalid epoch count")
}

/// Trains one trial on `backend`, recording an event at the start and at every epoch end.
fn train_trial(
    backend: &CudaBackend,
    data: &Dataset,
    hp: &HyperParams,
    seed: u64,
) -> Result<TrialTimes> {
    let mut events = vec![backend.record_timing_event()?];
    let mut reports: Vec<EpochReport> = Vec::new();
    let mut event_error = None;
    cnn::train(backend, data, hp, seed, |report| {
        match backend.record_timing_event() {
            Ok(event) => events.push(event),
            Err(err) => event_error = Some(err),
        }
        reports.push(report.clone());
        Control::Continue
    })
    .map_err(|err| anyhow!("training failed: {err}"))?;
    if let Some(err) = event_error {
        return Err(anyhow!("recording an event failed: {err}"));
    }
    let mut device_epoch_seconds = Vec::new();
    for pair in events.windows(2) {
        device_epoch_seconds.push(CudaBackend::elapsed_seconds(&pair[0], &pair[1])?);
    }
    Ok(TrialTimes {
        seed,
        epoch_seconds: reports.iter().map(|r| r.epoch_seconds).collect(),
        device_epoch_seconds,
        dev_accuracy: reports.iter().map(|r| r.dev_accuracy).collect(),
        train_loss: reports.iter().map(|r| r.train_loss).collect(),
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// `gpu-bench single`: one trial with the training step as a CUDA graph, then the same trial
/// uncaptured on the same backend (losses and accuracies must agree exactly).
pub fn single(args: &RunArgs) -> Result<()> {
    let hp = hyper_params(args)?;
    let data = cnn::data::mr_embedded().context("failed to prepare MR")?;
    let backend = CudaBackend::new(args.gpu).context("cannot open the GPU")?;
    // The step as a CUDA graph (from the second epoch; unless TUNEFLEET_CUDA_GRAPH=0), then
    // the same trial uncaptured on the same backend, to time one against the other.
    let graphs = backend.graphs_enabled();
    let before = backend.counters();
    let times = train_trial(&backend, &data, &hp, args.seed)?;
    let graph_launches = backend.counters().graph_launches - before.graph_launches;
    backend.set_graphs(false);
    let uncaptured = train_trial(&backend, &data, &hp, args.seed)?;
    let timed = args.warmup.min(times.epoch_seconds.len());
    let medians = |t: &TrialTimes| {
        (
            median(&t.epoch_seconds[timed.min(t.epoch_seconds.len())..]),
            median(&t.device_epoch_seconds[timed.min(t.device_epoch_seconds.len())..]),
        )
    };
    let (host_s, device_s) = medians(&times);
    let (host_uncaptured_s, device_uncaptured_s) = medians(&uncaptured);
    let same =
        times.train_loss == uncaptured.train_loss && times.dev_accuracy == uncaptured.dev_accuracy;
    let line = serde_json::json!({
        "mode": "single",
        "device": backend.name(),
        "load_plan": backend.load_plan().to_string(),
        "warmup_epochs": args.warmup,
        "cuda_graph": graphs,
        "graph_launches": graph_launches,
        "median_epoch_seconds": host_s,
        "median_device_epoch_seconds": device_s,
        "uncaptured_median_epoch_seconds": host_uncaptured_s,
        "uncaptured_median_device_epoch_seconds": device_uncaptured_s,
        "graph_and_uncaptured_agree": same,
        "memory_used_bytes": backend.memory_used_bytes(),
        "trial": times,
        "uncaptured_trial": uncaptured,
    });
    println!("{line}");
    Ok(())
}

/// `gpu-bench shared`: every trial opens its backend (kernels loaded) before a common start.
pub fn shared(args: &RunArgs) -> Result<()> {
    let slots = args.slots.max(1);
    let hp = hyper_params(args)?;
    let data = Arc::new(cnn::data::mr_embedded().context("failed to prepare MR")?);
    let ready = Arc::new(Barrier::new(slots + 1));
    let mut handles = Vec::with_capacity(slots);
    for slot in 0..slots {
        let (data, ready, hp, args) = (data.clone(), ready.clone(), hp.clone(), args.clone());
        handles.push(std::thread::spawn(move || -> Result<TrialTimes> {
            let backend = CudaBackend::new(args.gpu);
            ready.wait();
            let backend = backend.context("cannot open the GPU")?;
            train_trial(&backend, &data, &hp, args.seed + slot as u64)
        }));
    }
    ready.wait();
    let start = Instant::now();
    let mut trials = Vec::with_capacity(slots);
    for handle in handles {
        let trial = handle
            .join()
            .map_err(|_| anyhow!("a trial thread panicked"))??;
        trials.push(trial);
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    let epochs_total = slots * (args.warmup + args.epochs);
    let line = serde_json::json!({
        "mode": "shared",
        "slots": slots,
        "wall_seconds": wall_seconds,
        "epochs_total": epochs_total,
        "epochs_per_second": epochs_total as f64 / wall_seconds,
        "trials": trials,
    });
    println!("{line}");
    Ok(())
}
