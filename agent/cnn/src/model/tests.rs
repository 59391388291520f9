//! Gradient check of the whole model at tiny sizes: the backward pass on `CpuBackend` against
//! central finite differences of an f64 re-implementation of the forward pass (STYLE.md §9.2).
// Finite differences perturb parameters by index on purpose.
#![allow(clippy::needless_range_loop)]

use super::*;
use crate::model::batch::Batcher;
use kernels::cpu::CpuBackend;

const DIMS: Dims = Dims {
    vocab: 9,
    embed_dim: 3,
    seq_len: 6,
    classes: 3,
    filter_sizes: [1, 2, 3],
    maps: 2,
    capacity: 4,
};
const DROP: f32 = 0.3;
const DROP_SEED: u64 = 99;

/// All parameters in f64: the embedding, then the dense tensors in `dense_lens` order.
struct Params64 {
    embedding: Vec<f64>,
    dense: Vec<Vec<f64>>,
}

/// Per (sentence, branch, filter): the conv values over time, and the features after ReLU/max.
fn features(p: &Params64, ids: &[u32]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (d, n) = (DIMS, ids.len() / DIMS.seq_len);
    let mut columns = Vec::new();
    let mut feats = vec![0.0; n * d.features()];
    for b in 0..n {
        for (i, &width) in d.filter_sizes.iter().enumerate() {
            let (w, bias) = (&p.dense[i], &p.dense[3 + i]);
            for f in 0..d.maps {
                let z: Vec<f64> = (0..d.seq_len + 1 - width)
                    .map(|t| {
                        let mut acc = bias[f];
                        for j in 0..width {
                            let id = ids[b * d.seq_len + t + j] as usize;
                            for e in 0..d.embed_dim {
                                acc += p.embedding[id * d.embed_dim + e]
                                    * w[(f * width + j) * d.embed_dim + e];
                            }
                        }
                        acc
                    })
                    .collect();
                feats[b * d.features() + i * d.maps + f] = z.iter().fold(0.0f64, |m, &v| m.max(v));
                columns.push(z);
            }
        }
    }
    (columns, feats)
}

/// The batch-mean loss with the same dropout mask as the backend.
fn loss(p: &Params64, ids: &[u32], labels: &[u32]) -> f64 {
    let d = DIMS;
    let (_, feats) = features(p, ids);
    let scale = 1.0 / (1.0 - f64::from(DROP));
    let mut total = 0.0;
    for (b, &label) in labels.iter().enumerate() {
        let logits: Vec<f64> = (0..d.classes)
            .map(|c| {
                let mut acc = p.dense[7][c];
                for k in 0..d.features() {
                    let idx = b * d.features() + k;
                    let keep = kernels::rng::dropout_uniform(DROP_SEED, idx as u64) >= DROP;
                    let x = if keep { feats[idx] * scale } else { 0.0 };
                    acc += x * p.dense[6][c * d.features() + k];
                }
                acc
            })
            .collect();
        let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let log_sum = logits.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
        total += log_sum - logits[label as usize];
    }
    total / labels.len() as f64
}

/// Whether every max over time has a clear winner away from the ReLU kink.
fn clean(p: &Params64, ids: &[u32]) -> bool {
    features(p, ids).0.iter().all(|z| {
        let mut sorted = z.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        sorted[0].abs() > 1e-3 && (sorted.len() == 1 || sorted[0] - sorted[1] > 1e-3)
    })
}

fn random(seed: u64, len: usize, scale: f64) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((kernels::rng::dropout_uniform(seed, i as u64) as f64 * 2.0 - 1.0) * scale) as f32
        })
        .collect()
}

#[test]
fn model_gradients_match_finite_differences() {
    let cpu = CpuBackend::new();
    let labels = [0u32, 2, 1, 2];
    let ids: Vec<u32> = (0..24).map(|i| ((i * 7 + i / 5) % 9) as u32).collect();
    let mut model = Model::new(&cpu, DIMS, 1).unwrap();
    // Larger weights than the init, so every gradient is well above rounding; pick a seed
    // whose inputs have no max-pool ties or ReLU kinks.
    let mut p64 = None;
    for seed in 0..200u64 {
        let embedding = random(seed * 10, DIMS.vocab * DIMS.embed_dim, 1.0);
        let dense: Vec<Vec<f32>> = DIMS
            .dense_lens()
            .iter()
            .enumerate()
            .map(|(i, &l)| random(seed * 10 + 1 + i as u64, l, 0.5))
            .collect();
        let candidate = Params64 {
            embedding: embedding.iter().map(|&v| f64::from(v)).collect(),
            dense: dense
                .iter()
                .map(|t| t.iter().map(|&v| f64::from(v)).collect())
                .collect(),
        };
        if clean(&candidate, &ids) {
            cpu.write(&mut model.weights.embedding, &embedding).unwrap();
            for (buf, host) in model.weights.dense.iter_mut().zip(&dense) {
                cpu.write(buf, host).unwrap();
            }
            p64 = Some(candidate);
            break;
        }
    }
    let mut p64 = p64.expect("a tie-free seed");
    let mut host = HostBatch::default();
    Batcher::new(DIMS.vocab).fill(&ids, &labels, &mut host);
    model.upload(&cpu, &host).unwrap();
    let mut stats = cpu.alloc(2).unwrap();
    model
        .forward(&cpu, Some((DROP, DROP_SEED)), &mut stats)
        .unwrap();
    model.backward(&cpu).unwrap();
    let mean_loss = f64::from(stats[0]) / 4.0;
    assert!(
        (mean_loss - loss(&p64, &ids, &labels)).abs() < 1e-5,
        "forward agrees with the f64 model"
    );

    let e = DIMS.embed_dim;
    let mut embedding_grad = vec![0.0f64; DIMS.vocab * e];
    for (slot, &row) in host.rows.iter().enumerate() {
        for k in 0..e {
            embedding_grad[row as usize * e + k] = f64::from(model.grads.rows[slot * e + k]);
        }
    }
    let h = 1e-5;
    let check = |name: &str, analytic: f64, plus: f64, minus: f64| {
        let numeric = (plus - minus) / (2.0 * h);
        let err = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
        assert!(
            err < 1e-6,
            "{name}: analytic {analytic} numeric {numeric} (err {err:e})"
        );
    };
    for i in 0..p64.embedding.len() {
        let x = p64.embedding[i];
        p64.embedding[i] = x + h;
        let plus = loss(&p64, &ids, &labels);
        p64.embedding[i] = x - h;
        let minus = loss(&p64, &ids, &labels);
        p64.embedding[i] = x;
        check(&format!("embedding[{i}]"), embedding_grad[i], plus, minus);
    }
    for t in 0..p64.dense.len() {
        for i in 0..p64.dense[t].len() {
            let x = p64.dense[t][i];
            p64.dense[t][i] = x + h;
            let plus = loss(&p64, &ids, &labels);
            p64.dense[t][i] = x - h;
            let minus = loss(&p64, &ids, &labels);
            p64.dense[t][i] = x;
            check(
                &format!("dense[{t}][{i}]"),
                f64::from(model.grads.dense[t][i]),
                plus,
                minus,
            );
        }
    }
}

#[test]
fn upload_rejects_ids_outside_the_vocabulary() {
    let cpu = CpuBackend::new();
    let mut model = Model::new(&cpu, DIMS, 1).unwrap();
    let mut host = HostBatch::default();
    Batcher::new(20).fill(&[9; 6], &[0], &mut host);
    let err = model.upload(&cpu, &host).unwrap_err();
    assert!(
        err.to_string().contains("index 9 out of range 0..9"),
        "{err}"
    );
}
