//! A plain-loop f64 oracle of every `Backend` operation, written from the formulas on the trait.
//!
//! No blocking, no fusion, no parallelism: each function is the docstring's formula as nested
//! loops, so it can be read against `kernels/src/lib.rs` line by line. The convolution is also
//! available unfused (convolution, then ReLU, then max over time) to show the fused op equals
//! the chain.

use kernels::{ConvShape, LinearShape, RmsProp};

/// `out[t, e] = table[ids[t], e]`.
pub fn embedding_gather(table: &[f64], embed_dim: usize, ids: &[u32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(ids.len() * embed_dim);
    for &id in ids {
        out.extend_from_slice(&table[id as usize * embed_dim..(id as usize + 1) * embed_dim]);
    }
    out
}

/// `grad_rows[r, e] = Σ_{t: slots[t] = r} grad_out[t, e]`.
pub fn embedding_grad_rows(
    grad_out: &[f64],
    slots: &[u32],
    embed_dim: usize,
    n_rows: usize,
) -> Vec<f64> {
    let mut rows = vec![0.0; n_rows * embed_dim];
    for (t, &slot) in slots.iter().enumerate() {
        for e in 0..embed_dim {
            rows[slot as usize * embed_dim + e] += grad_out[t * embed_dim + e];
        }
    }
    rows
}

/// The convolution with bias, `z[b, t, f]`, as a `[batch, positions, num_filters]` array.
pub fn conv_z(s: &ConvShape, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
    let p = s.positions();
    let mut z = vec![0.0; s.batch * p * s.num_filters];
    for b in 0..s.batch {
        for t in 0..p {
            for f in 0..s.num_filters {
                let mut acc = bias[f];
                for j in 0..s.width {
                    for e in 0..s.embed_dim {
                        let xv = x[(b * s.seq_len + t + j) * s.embed_dim + e];
                        acc += xv * w[(f * s.width + j) * s.embed_dim + e];
                    }
                }
                z[(b * p + t) * s.num_filters + f] = acc;
            }
        }
    }
    z
}

/// Element-wise `max(0, v)`.
pub fn relu(z: &[f64]) -> Vec<f64> {
    z.iter().map(|&v| v.max(0.0)).collect()
}

/// Max over time of a `[batch, positions, F]` array: `[batch, F]` values and first argmax.
pub fn max_over_time(
    batch: usize,
    positions: usize,
    num_filters: usize,
    a: &[f64],
) -> (Vec<f64>, Vec<u32>) {
    let mut values = vec![f64::NEG_INFINITY; batch * num_filters];
    let mut arg = vec![0u32; batch * num_filters];
    for b in 0..batch {
        for t in 0..positions {
            for f in 0..num_filters {
                let v = a[(b * positions + t) * num_filters + f];
                if v > values[b * num_filters + f] {
                    values[b * num_filters + f] = v;
                    arg[b * num_filters + f] = t as u32;
                }
            }
        }
    }
    (values, arg)
}

/// The unfused chain: pooled values `max_t relu(z)` as `[batch, F]`, and the first argmax of
/// `z` (the trait's definition, which differs from relu's argmax only when every `z <= 0`).
pub fn conv_pool_fwd(s: &ConvShape, x: &[f64], w: &[f64], bias: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let z = conv_z(s, x, w, bias);
    let (pooled, _) = max_over_time(s.batch, s.positions(), s.num_filters, &relu(&z));
    let (_, argmax) = max_over_time(s.batch, s.positions(), s.num_filters, &z);
    (pooled, argmax)
}

/// Gradients of the pooled conv output: `(grad_w, grad_b, grad_x)`; `grad_pooled` and `pooled`
/// are `[batch, F]` (this branch's columns only).
pub fn conv_pool_bwd(
    s: &ConvShape,
    grad_pooled: &[f64],
    pooled: &[f64],
    argmax: &[u32],
    x: &[f64],
    w: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = s.width * s.embed_dim;
    let mut gw = vec![0.0; s.num_filters * k];
    let mut gb = vec![0.0; s.num_filters];
    let mut gx = vec![0.0; s.batch * s.seq_len * s.embed_dim];
    for b in 0..s.batch {
        for f in 0..s.num_filters {
            let i = b * s.num_filters + f;
            let g = if pooled[i] > 0.0 { grad_pooled[i] } else { 0.0 };
            gb[f] += g;
            let start = (b * s.seq_len + argmax[i] as usize) * s.embed_dim;
            for q in 0..k {
                gw[f * k + q] += g * x[start + q];
                gx[start + q] += g * w[f * k + q];
            }
        }
    }
    (gw, gb, gx)
}

/// `out[n, o] = b[o] + Σ_i x[n, i] w[o, i]`.
pub fn linear_fwd(s: &LinearShape, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; s.batch * s.out_features];
    for n in 0..s.batch {
        for o in 0..s.out_features {
            let mut acc = b[o];
            for i in 0..s.in_features {
                acc += x[n * s.in_features + i] * w[o * s.in_features + i];
            }
            out[n * s.out_features + o] = acc;
        }
    }
    out
}

/// `(grad_x, grad_w, grad_b)` of [`linear_fwd`].
pub fn linear_bwd(
    s: &LinearShape,
    grad_out: &[f64],
    x: &[f64],
    w: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (ni, no) = (s.in_features, s.out_features);
    let mut gx = vec![0.0; s.batch * ni];
    let mut gw = vec![0.0; no * ni];
    let mut gb = vec![0.0; no];
    for n in 0..s.batch {
        for o in 0..no {
            let g = grad_out[n * no + o];
            gb[o] += g;
            for i in 0..ni {
                gx[n * ni + i] += g * w[o * ni + i];
                gw[o * ni + i] += g * x[n * ni + i];
            }
        }
    }
    (gx, gw, gb)
}

/// `(loss sum, correct count, gradient of the batch-mean loss)`.
pub fn softmax_xent(logits: &[f64], labels: &[u32], classes: usize) -> (f64, usize, Vec<f64>) {
    let batch = labels.len();
    let mut loss = 0.0;
    let mut correct = 0;
    let mut grad = vec![0.0; batch * classes];
    for (n, &label) in labels.iter().enumerate() {
        let row = &logits[n * classes..(n + 1) * classes];
        let mut best = 0;
        for c in 1..classes {
            if row[c] > row[best] {
                best = c;
            }
        }
        let max = row[best];
        let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
        loss += log_sum - row[label as usize];
        correct += usize::from(best == label as usize);
        for c in 0..classes {
            let target = if c == label as usize { 1.0 } else { 0.0 };
            grad[n * classes + c] = ((row[c] - log_sum).exp() - target) / batch as f64;
        }
    }
    (loss, correct, grad)
}

/// `(out, mask)` of inverted dropout with the shared counter-based generator.
pub fn dropout(x: &[f64], drop_prob: f32, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let scale = 1.0 / (1.0 - f64::from(drop_prob));
    let mask: Vec<f64> = (0..x.len())
        .map(|i| {
            let keep = kernels::rng::dropout_uniform(seed, i as u64) >= drop_prob;
            if keep { scale } else { 0.0 }
        })
        .collect();
    let out = x.iter().zip(&mask).map(|(a, m)| a * m).collect();
    (out, mask)
}

/// One RMSProp step on f64 copies; returns `(w, n, a)`.
pub fn rmsprop(
    p: &RmsProp,
    w: &[f64],
    grad: &[f64],
    n: &[f64],
    a: &[f64],
    norm_sq: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lr, decay, eps) = (f64::from(p.lr), f64::from(p.decay), f64::from(p.eps));
    let norm = norm_sq.sqrt();
    let max_norm = f64::from(p.max_grad_norm);
    let scale = if max_norm > 0.0 && norm > max_norm {
        max_norm / norm
    } else {
        1.0
    };
    let (mut w2, mut n2, mut a2) = (w.to_vec(), n.to_vec(), a.to_vec());
    for i in 0..w.len() {
        let g = scale * grad[i];
        n2[i] = decay * n[i] + (1.0 - decay) * g * g;
        let denom = if p.centered {
            a2[i] = decay * a[i] + (1.0 - decay) * g;
            (n2[i] - a2[i] * a2[i]).max(0.0).sqrt()
        } else {
            n2[i].sqrt()
        };
        w2[i] -= lr * g / (denom + eps);
    }
    (w2, n2, a2)
}
