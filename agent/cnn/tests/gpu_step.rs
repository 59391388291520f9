//! One whole training step of the study's model through `cnn` (forward with dropout, backward,
//! RMSProp with global-norm clipping) on the GPU and on the CPU from the same seed and batch:
//! the statistics and every parameter afterwards must agree within f32 tolerance.
//! Written by the cuda engineer. Without a usable GPU it prints `skipped: <reason>` and passes,
//! unless `REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

use cnn::HyperParams;
use cnn::model::batch::{Batcher, HostBatch};
use cnn::model::{Dims, Model};
use cnn::optim::Optimizer;
use kernels::Backend;
use kernels::cpu::CpuBackend;
use kernels::cuda::CudaBackend;

const VOCAB: usize = 3000;
const SEQ_LEN: usize = 56;
const BATCH: usize = 50;

fn batch() -> HostBatch {
    let mut state = 12_345u64;
    let mut next = |bound: usize| {
        state = state.wrapping_add(kernels::rng::GOLDEN_GAMMA);
        (kernels::rng::mix64(state, 0) % bound as u64) as u32
    };
    let ids: Vec<u32> = (0..BATCH * SEQ_LEN).map(|_| next(VOCAB)).collect();
    let labels: Vec<u32> = (0..BATCH).map(|_| next(2)).collect();
    let mut host = HostBatch::default();
    Batcher::new(VOCAB).fill(&ids, &labels, &mut host);
    host
}

/// Two steps on `b` (so the second sees non-zero optimizer state); returns the statistics and
/// every parameter tensor.
fn two_steps<B: Backend>(b: &B) -> Vec<Vec<f32>> {
    let hp = HyperParams::study_default();
    let dims = Dims {
        vocab: VOCAB,
        embed_dim: hp.embed_dim,
        seq_len: SEQ_LEN,
        classes: 2,
        filter_sizes: hp.filter_sizes,
        maps: hp.num_feature_maps,
        capacity: BATCH,
    };
    let mut model = Model::new(b, dims, 7).expect("model");
    let mut optimizer = Optimizer::new(b, &model, &hp).expect("optimizer");
    let mut stats = b.alloc(2).expect("alloc");
    model.upload(b, &batch()).expect("upload");
    for step in 0..2u64 {
        model
            .forward(b, Some((hp.dropout as f32, 100 + step)), &mut stats)
            .expect("forward");
        model.backward(b).expect("backward");
        optimizer.step(b, &mut model).expect("optimizer step");
    }
    let mut out = vec![b.download(&stats).expect("download")];
    out.push(b.download(&model.weights.embedding).expect("download"));
    for tensor in &model.weights.dense {
        out.push(b.download(tensor).expect("download"));
    }
    out
}

#[test]
fn a_training_step_on_the_gpu_matches_the_cpu() {
    let gpu = match CudaBackend::new(0) {
        Ok(gpu) => gpu,
        Err(err) => {
            let required = std::env::var("REQUIRE_CUDA").is_ok_and(|v| v == "1");
            assert!(!required, "REQUIRE_CUDA=1 but the GPU is unusable: {err}");
            println!("skipped: {err}");
            return;
        }
    };
    let cpu_out = two_steps(&CpuBackend::new());
    let gpu_out = two_steps(&gpu);
    // A near-tie in a max over time can send one filter's gradient to another position, and the
    // first RMSProp step (mean square starting at 0) moves a weight by ±lr·3.16 whatever the
    // gradient's size, so its sign decides: a few elements may legitimately differ. A wrong
    // kernel changes far more than 1% of a tensor.
    for (i, (c, g)) in cpu_out.iter().zip(&gpu_out).enumerate() {
        assert_eq!(c.len(), g.len(), "tensor {i}: lengths differ");
        let (atol, rtol) = if i == 0 { (1e-3, 1e-4) } else { (2e-6, 1e-4) };
        let mut bad = 0usize;
        let mut worst = (0usize, 0.0f32);
        for (j, (a, e)) in g.iter().zip(c).enumerate() {
            assert!(a.is_finite(), "tensor {i} element {j} is {a}");
            let excess = (a - e).abs() - (atol + rtol * e.abs());
            if excess > 0.0 {
                bad += 1;
                if excess > worst.1 {
                    worst = (j, excess);
                }
            }
        }
        let allowed = if i == 0 { 0 } else { c.len() / 100 };
        assert!(
            bad <= allowed,
            "tensor {i}: {bad} of {} elements differ (worst at {}: gpu {} cpu {})",
            c.len(),
            worst.0,
            g[worst.0],
            c[worst.0]
        );
    }
}

/// The harness itself on machines without a GPU: the CPU against itself must agree exactly.
#[test]
fn the_step_harness_runs_on_the_cpu() {
    let first = two_steps(&CpuBackend::new());
    let second = two_steps(&CpuBackend::new());
    assert_eq!(
        first.len(),
        10,
        "stats, embedding and 8 dense tensors expected"
    );
    assert!(
        first[0][0].is_finite() && first[0][0] > 0.0,
        "loss sum {}",
        first[0][0]
    );
    assert_eq!(first, second, "the CPU step is not deterministic");
}

/// Issue 15: training with the step captured as a CUDA graph (replayed from the second epoch)
/// gives the same epochs as training uncaptured, bit for bit (the same kernels with the same
/// arguments), and the captured run launches one graph a step instead of the kernels.
#[test]
fn a_captured_training_step_replays_like_the_uncaptured_one() {
    let open = || match CudaBackend::new(0) {
        Ok(gpu) => Some(gpu),
        Err(err) => {
            let required = std::env::var("REQUIRE_CUDA").is_ok_and(|v| v == "1");
            assert!(!required, "REQUIRE_CUDA=1 but the GPU is unusable: {err}");
            println!("skipped: {err}");
            None
        }
    };
    let (Some(graphed), Some(plain)) = (open(), open()) else {
        return;
    };
    graphed.set_graphs(true);
    plain.set_graphs(false);
    let data = cnn::data::mr_embedded().expect("MR").truncated(500, 100);
    let hp = HyperParams::study_default()
        .with_overrides([("epochs", 3.0)])
        .expect("hyperparameters");
    let batches = (500 / hp.batch_size) as u64;
    let run = |gpu: &CudaBackend| {
        let mut reports = Vec::new();
        cnn::train(gpu, &data, &hp, 4, |r| {
            reports.push((
                r.train_loss.to_bits(),
                r.train_accuracy.to_bits(),
                r.dev_accuracy,
            ));
            cnn::Control::Continue
        })
        .expect("training");
        reports
    };
    assert_eq!(run(&graphed), run(&plain));
    assert_eq!(graphed.counters().graph_launches, 2 * batches);
    assert_eq!(plain.counters().graph_launches, 0);
}
