//! `CpuBackend` against the plain-loop f64 oracle, and the oracle's backward passes against
//! central finite differences in f64 (STYLE.md §9.2: `|g − ĝ| / max(1, |g|, |ĝ|) < 1e-6`).

mod common;

use common::{Rng, f64s, oracle, random_f32, random_idx};
use kernels::cpu::CpuBackend;
use kernels::{Backend, ConvShape, Error, LinearShape};

#[test]
fn cpu_embedding_gather_matches_oracle() {
    common::check_embedding_gather(&CpuBackend::new());
}

#[test]
fn cpu_embedding_grad_rows_matches_oracle() {
    common::check_embedding_grad_rows(&CpuBackend::new());
}

#[test]
fn cpu_conv_pool_fwd_matches_unfused_oracle() {
    common::check_conv_pool_fwd(&CpuBackend::new());
}

#[test]
fn cpu_conv_pool_bwd_matches_oracle() {
    common::check_conv_pool_bwd(&CpuBackend::new());
}

#[test]
fn cpu_dropout_and_mul_match_oracle() {
    common::check_dropout(&CpuBackend::new());
    common::check_mul(&CpuBackend::new());
}

#[test]
fn cpu_linear_matches_oracle() {
    common::check_linear(&CpuBackend::new());
}

#[test]
fn cpu_softmax_xent_and_sum_squares_match_oracle() {
    common::check_softmax_xent(&CpuBackend::new());
    common::check_sum_squares(&CpuBackend::new());
}

#[test]
fn cpu_rmsprop_matches_oracle() {
    common::check_rmsprop(&CpuBackend::new());
    common::check_rmsprop_rows(&CpuBackend::new());
}

#[test]
fn cpu_short_buffers_are_errors() {
    common::check_short_buffers_are_errors(&CpuBackend::new());
}

#[test]
fn cpu_rejects_out_of_range_indices() {
    let b = CpuBackend::new();
    let mut out = vec![0.0; 4];
    let err = b
        .embedding_gather(&vec![1.0; 6], 3, 2, &vec![0, 3], 2, &mut out)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::IndexOutOfRange {
                index: 3,
                bound: 3,
                ..
            }
        ),
        "{err}"
    );
    let mut stats = vec![0.0; 2];
    let err = b
        .softmax_xent(&vec![0.0; 4], &vec![1, 2], 2, 2, None, &mut stats)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::IndexOutOfRange {
                index: 2,
                bound: 2,
                ..
            }
        ),
        "{err}"
    );
    let mut rows = vec![0.0; 4];
    let err = b
        .embedding_grad_rows(&vec![1.0; 4], &vec![0, 2], 2, 2, 2, &mut rows)
        .unwrap_err();
    assert!(
        matches!(err, Error::IndexOutOfRange { index: 2, .. }),
        "{err}"
    );
}

/// Central differences of `f` at `x`, compared with `analytic` element by element.
fn fd_check(name: &str, f: impl Fn(&[f64]) -> f64, x: &[f64], analytic: &[f64]) {
    assert_eq!(x.len(), analytic.len(), "{name}: lengths");
    let h = 1e-5;
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let up = f(&xp);
        xp[i] = x[i] - h;
        let down = f(&xp);
        xp[i] = x[i];
        let numeric = (up - down) / (2.0 * h);
        let g = analytic[i];
        let err = (g - numeric).abs() / 1f64.max(g.abs()).max(numeric.abs());
        assert!(
            err < 1e-6,
            "{name}[{i}]: analytic {g} numeric {numeric} (rel err {err:e})"
        );
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embedding_gradient_matches_finite_differences() {
    let mut rng = Rng::new(20);
    let (vocab, e) = (6, 3);
    let table = f64s(&random_f32(&mut rng, vocab * e, 1.0));
    let ids = vec![4u32, 1, 4, 0, 5];
    let c = f64s(&random_f32(&mut rng, ids.len() * e, 1.0));
    // Slots: position of each id in the batch's distinct list [4, 1, 0, 5].
    let distinct = [4u32, 1, 0, 5];
    let slots: Vec<u32> = ids
        .iter()
        .map(|id| distinct.iter().position(|d| d == id).unwrap() as u32)
        .collect();
    let rows = oracle::embedding_grad_rows(&c, &slots, e, distinct.len());
    let mut analytic = vec![0.0; vocab * e];
    for (s, &r) in distinct.iter().enumerate() {
        analytic[r as usize * e..(r as usize + 1) * e].copy_from_slice(&rows[s * e..(s + 1) * e]);
    }
    let loss = |t: &[f64]| dot(&oracle::embedding_gather(t, e, &ids), &c);
    fd_check("embedding", loss, &table, &analytic);
}

/// Small conv inputs whose max over time has a clear winner and no pooled value near zero.
fn clean_conv_inputs(s: &ConvShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    for seed in 0..1000 {
        let mut rng = Rng::new(100 + seed);
        let (x, w, b) = common::conv_inputs(&mut rng, s);
        let (x, w, b) = (f64s(&x), f64s(&w), f64s(&b));
        let z = oracle::conv_z(s, &x, &w, &b);
        let p = s.positions();
        let clean = (0..s.batch * s.num_filters).all(|bf| {
            let (bi, f) = (bf / s.num_filters, bf % s.num_filters);
            let mut col: Vec<f64> = (0..p)
                .map(|t| z[(bi * p + t) * s.num_filters + f])
                .collect();
            col.sort_by(|a, c| c.total_cmp(a));
            col[0].abs() > 1e-3 && (p == 1 || col[0] - col[1] > 1e-3)
        });
        if clean {
            return (x, w, b);
        }
    }
    panic!("no tie-free conv input in 1000 seeds for {s:?}");
}

#[test]
fn conv_pool_gradient_matches_finite_differences() {
    let s = ConvShape {
        batch: 2,
        seq_len: 6,
        embed_dim: 3,
        width: 3,
        num_filters: 4,
        pooled_cols: 4,
        pooled_offset: 0,
    };
    let (x, w, b) = clean_conv_inputs(&s);
    let mut rng = Rng::new(21);
    let c = f64s(&random_f32(&mut rng, s.batch * s.num_filters, 1.0));
    let (pooled, argmax) = oracle::conv_pool_fwd(&s, &x, &w, &b);
    assert!(
        pooled.contains(&0.0) && pooled.iter().any(|&v| v > 0.0),
        "both gate states"
    );
    let (gw, gb, gx) = oracle::conv_pool_bwd(&s, &c, &pooled, &argmax, &x, &w);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&oracle::conv_pool_fwd(&s, x, w, b).0, &c);
    fd_check("conv grad_x", |v| loss(v, &w, &b), &x, &gx);
    fd_check("conv grad_w", |v| loss(&x, v, &b), &w, &gw);
    fd_check("conv grad_b", |v| loss(&x, &w, v), &b, &gb);
}

#[test]
fn fused_pooling_equals_the_unfused_chain() {
    // max_t relu(z) = relu(max_t z), and the oracle's values come from the unfused chain.
    let s = ConvShape {
        batch: 3,
        seq_len: 8,
        embed_dim: 4,
        width: 2,
        num_filters: 5,
        pooled_cols: 5,
        pooled_offset: 0,
    };
    let mut rng = Rng::new(22);
    let (x, w, b) = common::conv_inputs(&mut rng, &s);
    let z = oracle::conv_z(&s, &f64s(&x), &f64s(&w), &f64s(&b));
    let (max_z, _) = oracle::max_over_time(s.batch, s.positions(), s.num_filters, &z);
    let (chain, _) = oracle::conv_pool_fwd(&s, &f64s(&x), &f64s(&w), &f64s(&b));
    assert_eq!(oracle::relu(&max_z), chain);
}

#[test]
fn linear_gradient_matches_finite_differences() {
    let s = LinearShape {
        batch: 3,
        in_features: 4,
        out_features: 2,
    };
    let mut rng = Rng::new(23);
    let x = f64s(&random_f32(&mut rng, 12, 1.0));
    let w = f64s(&random_f32(&mut rng, 8, 1.0));
    let b = f64s(&random_f32(&mut rng, 2, 1.0));
    let c = f64s(&random_f32(&mut rng, 6, 1.0));
    let (gx, gw, gb) = oracle::linear_bwd(&s, &c, &x, &w);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&oracle::linear_fwd(&s, x, w, b), &c);
    fd_check("linear grad_x", |v| loss(v, &w, &b), &x, &gx);
    fd_check("linear grad_w", |v| loss(&x, v, &b), &w, &gw);
    fd_check("linear grad_b", |v| loss(&x, &w, v), &b, &gb);
}

#[test]
fn softmax_xent_gradient_matches_finite_differences() {
    let mut rng = Rng::new(24);
    let (batch, classes) = (4, 3);
    let logits = f64s(&random_f32(&mut rng, batch * classes, 3.0));
    let labels = random_idx(&mut rng, batch, classes);
    let (_, _, grad) = oracle::softmax_xent(&logits, &labels, classes);
    let mean_loss = |l: &[f64]| oracle::softmax_xent(l, &labels, classes).0 / batch as f64;
    fd_check("softmax_xent", mean_loss, &logits, &grad);
}

#[test]
fn dropout_and_sum_squares_gradients_match_finite_differences() {
    let mut rng = Rng::new(25);
    let x = f64s(&random_f32(&mut rng, 40, 1.0));
    let c = f64s(&random_f32(&mut rng, 40, 1.0));
    let (_, mask) = oracle::dropout(&x, 0.5, 77);
    let grad: Vec<f64> = c.iter().zip(&mask).map(|(a, m)| a * m).collect();
    fd_check(
        "dropout",
        |v| dot(&oracle::dropout(v, 0.5, 77).0, &c),
        &x,
        &grad,
    );
    let twice: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
    fd_check("sum_squares", |v| dot(v, v), &x, &twice);
}
