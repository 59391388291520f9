//! Shared test bodies: every `Backend` op checked against the f64 oracle on seeded random inputs.
//!
//! Each `check_*` function is generic over `B: Backend`, so `tests/oracle.rs` instantiates it
//! for `CpuBackend` and `tests/parity.rs` for `CudaBackend` (STYLE.md §9.3). Inputs are never
//! zero, shapes include 1, sizes around 128/256 (block sizes ±1) and one realistic batch of the
//! study's model. Index outputs must match exactly wherever the oracle sees no near-tie.
#![allow(dead_code)]
// The oracle and the checks index by the formulas' subscripts on purpose.
#![allow(clippy::needless_range_loop)]

pub mod oracle;

use kernels::{Backend, ConvShape, Error, LinearShape, RmsProp, RmsState};

/// SplitMix64, for reproducible inputs without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        kernels::rng::mix64(self.0, 0)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// `n` values uniform in `[-scale, scale]`, each at least `scale / 100` away from zero.
pub fn random_f32(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = (rng.unit() * 2.0 - 1.0) as f32 * scale;
            if v.abs() < scale / 100.0 {
                scale / 50.0
            } else {
                v
            }
        })
        .collect()
}

/// `n` indices uniform in `[0, bound)`.
pub fn random_idx(rng: &mut Rng, n: usize, bound: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(bound) as u32).collect()
}

/// Widens to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Panics unless `|actual - expected| <= atol + rtol * |expected|` everywhere, naming the
/// worst element (by excess over its tolerance).
pub fn assert_close(name: &str, actual: &[f32], expected: &[f64], atol: f64, rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{name}: lengths differ");
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let diff = (f64::from(a) - e).abs();
        let excess = diff - (atol + rtol * e.abs());
        let bad = excess > 0.0 || !f64::from(a).is_finite();
        if bad && worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        let diff = (f64::from(actual[i]) - expected[i]).abs();
        panic!(
            "{name}: max excess at index {i}: got {} expected {} (diff {diff:e}, atol {atol:e}, \
             rtol {rtol:e}, {} elements)",
            actual[i],
            expected[i],
            actual.len()
        );
    }
}

/// The default f32 tolerances of STYLE.md §9.3, with atol scaled by √k for a k-term sum.
pub fn tol_for_sum(k: usize) -> (f64, f64) {
    (1e-5 * (k.max(1) as f64).sqrt(), 1e-4)
}

fn up<B: Backend>(b: &B, v: &[f32]) -> B::Buf {
    b.upload(v).expect("upload")
}

fn up_idx<B: Backend>(b: &B, v: &[u32]) -> B::IdxBuf {
    b.upload_idx(v).expect("upload_idx")
}

fn down<B: Backend>(b: &B, v: &B::Buf) -> Vec<f32> {
    b.download(v).expect("download")
}

/// Embedding gather on `(vocab, embed_dim, n_tokens)` cases; the output buffer is one row
/// longer than needed and that row must stay untouched.
pub fn check_embedding_gather<B: Backend>(b: &B) {
    let mut rng = Rng::new(1);
    for (vocab, e, n) in [(1, 1, 1), (7, 3, 5), (100, 129, 257), (1000, 300, 50 * 56)] {
        let table = random_f32(&mut rng, vocab * e, 0.1);
        let ids = random_idx(&mut rng, n, vocab);
        let mut out = up(b, &vec![7.0; (n + 1) * e]);
        b.embedding_gather(&up(b, &table), vocab, e, &up_idx(b, &ids), n, &mut out)
            .expect("embedding_gather");
        let mut expected = oracle::embedding_gather(&f64s(&table), e, &ids);
        expected.extend(std::iter::repeat_n(7.0, e));
        assert_close("embedding_gather", &down(b, &out), &expected, 0.0, 0.0);
    }
}

/// Embedding gradient compaction; some rows receive no token and must come out zero.
pub fn check_embedding_grad_rows<B: Backend>(b: &B) {
    let mut rng = Rng::new(2);
    for (n, e, rows) in [(1, 1, 1), (5, 3, 7), (257, 129, 100), (50 * 56, 300, 700)] {
        let grad = random_f32(&mut rng, n * e, 1.0);
        let slots = random_idx(&mut rng, n, rows);
        let mut out = up(b, &vec![3.0; rows * e]);
        b.embedding_grad_rows(&up(b, &grad), &up_idx(b, &slots), n, e, rows, &mut out)
            .expect("embedding_grad_rows");
        let expected = oracle::embedding_grad_rows(&f64s(&grad), &slots, e, rows);
        let (atol, rtol) = tol_for_sum(n / rows + 1);
        assert_close("embedding_grad_rows", &down(b, &out), &expected, atol, rtol);
    }
}

/// Conv shapes: 1s, odd sizes around block sizes, and the study's width-5 branch.
pub fn conv_shapes() -> Vec<ConvShape> {
    let mk = |batch, seq_len, embed_dim, width, num_filters| ConvShape {
        batch,
        seq_len,
        embed_dim,
        width,
        num_filters,
        pooled_cols: 3 * num_filters,
        pooled_offset: num_filters,
    };
    vec![
        mk(1, 1, 1, 1, 1),
        mk(2, 7, 3, 3, 5),
        mk(3, 9, 33, 4, 17),
        mk(5, 12, 16, 5, 129),
        mk(9, 20, 40, 2, 127),
        mk(50, 56, 300, 5, 100),
    ]
}

/// Random conv inputs `(x, w, bias)` at the scales of training.
pub fn conv_inputs(rng: &mut Rng, s: &ConvShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = random_f32(rng, s.batch * s.seq_len * s.embed_dim, 1.0);
    let w = random_f32(rng, s.num_filters * s.width * s.embed_dim, 0.1);
    let bias = random_f32(rng, s.num_filters, 0.1);
    (x, w, bias)
}

/// Fused conv + ReLU + max-pool forward against the oracle: values, argmax (exact where the
/// top two positions differ by more than the tie margin) and untouched foreign columns.
pub fn check_conv_pool_fwd<B: Backend>(b: &B) {
    let mut rng = Rng::new(3);
    for s in conv_shapes() {
        let (x, w, bias) = conv_inputs(&mut rng, &s);
        let sentinel = vec![-5.0f32; s.batch * s.pooled_cols];
        let mut pooled = up(b, &sentinel);
        let mut argmax = b.alloc_idx(s.batch * s.num_filters).expect("alloc_idx");
        b.conv_pool_fwd(
            &s,
            &up(b, &x),
            &up(b, &w),
            &up(b, &bias),
            &mut pooled,
            &mut argmax,
        )
        .expect("conv_pool_fwd");
        let got = down(b, &pooled);
        let got_arg = b.download_idx(&argmax).expect("download_idx");
        let z = oracle::conv_z(&s, &f64s(&x), &f64s(&w), &f64s(&bias));
        let (values, _) = oracle::conv_pool_fwd(&s, &f64s(&x), &f64s(&w), &f64s(&bias));
        let mut expected: Vec<f64> = sentinel.iter().map(|&v| f64::from(v)).collect();
        for bi in 0..s.batch {
            for f in 0..s.num_filters {
                expected[bi * s.pooled_cols + s.pooled_offset + f] = values[bi * s.num_filters + f];
            }
        }
        let (atol, rtol) = tol_for_sum(s.width * s.embed_dim);
        assert_close(
            &format!("conv_pool_fwd pooled {s:?}"),
            &got,
            &expected,
            atol,
            rtol,
        );
        check_argmax(&s, &z, &got_arg, 50.0 * atol);
    }
}

fn check_argmax(s: &ConvShape, z: &[f64], got: &[u32], margin: f64) {
    let p = s.positions();
    for bf in 0..s.batch * s.num_filters {
        let (bi, f) = (bf / s.num_filters, bf % s.num_filters);
        let col: Vec<f64> = (0..p)
            .map(|t| z[(bi * p + t) * s.num_filters + f])
            .collect();
        let best = (0..p).fold(0, |m, t| if col[t] > col[m] { t } else { m });
        let runner_up = (0..p)
            .filter(|&t| t != best)
            .map(|t| col[t])
            .fold(f64::NEG_INFINITY, f64::max);
        let g = got[bf] as usize;
        assert!(g < p, "argmax {g} out of range at {bf} ({s:?})");
        if col[best] - runner_up > margin {
            assert_eq!(g, best, "argmax at (b {bi}, f {f}) of {s:?}");
        } else {
            assert!(
                col[g] >= col[best] - margin,
                "argmax {g} not near the max at {bf} ({s:?})"
            );
        }
    }
}

/// Conv backward against the oracle on random `pooled` (a third of it zero: the ReLU gate),
/// random argmax; `grad_x` starts non-zero to check it accumulates.
pub fn check_conv_pool_bwd<B: Backend>(b: &B) {
    let mut rng = Rng::new(4);
    for s in conv_shapes() {
        let (x, w, _) = conv_inputs(&mut rng, &s);
        let cols = s.batch * s.pooled_cols;
        let pooled: Vec<f32> = random_f32(&mut rng, cols, 1.0)
            .iter()
            .map(|v| v.max(0.0))
            .collect();
        let grad_pooled = random_f32(&mut rng, cols, 1.0);
        let argmax = random_idx(&mut rng, s.batch * s.num_filters, s.positions());
        let gx0 = random_f32(&mut rng, x.len(), 1.0);
        let k = s.width * s.embed_dim;
        let mut gw = up(b, &vec![9.0; s.num_filters * k]);
        let mut gb = up(b, &vec![9.0; s.num_filters]);
        let mut gx = up(b, &gx0);
        b.conv_pool_bwd(
            &s,
            &up(b, &grad_pooled),
            &up(b, &pooled),
            &up_idx(b, &argmax),
            &up(b, &x),
            &up(b, &w),
            &mut gw,
            &mut gb,
            &mut gx,
        )
        .expect("conv_pool_bwd");
        let branch = |v: &[f32]| -> Vec<f64> {
            (0..s.batch * s.num_filters)
                .map(|i| {
                    f64::from(
                        v[(i / s.num_filters) * s.pooled_cols
                            + s.pooled_offset
                            + i % s.num_filters],
                    )
                })
                .collect()
        };
        let (ew, eb, ex) = oracle::conv_pool_bwd(
            &s,
            &branch(&grad_pooled),
            &branch(&pooled),
            &argmax,
            &f64s(&x),
            &f64s(&w),
        );
        let ex: Vec<f64> = ex
            .iter()
            .zip(&gx0)
            .map(|(d, &g0)| d + f64::from(g0))
            .collect();
        let (atol, rtol) = tol_for_sum(s.batch);
        assert_close(
            &format!("conv grad_w {s:?}"),
            &down(b, &gw),
            &ew,
            atol,
            rtol,
        );
        assert_close(
            &format!("conv grad_b {s:?}"),
            &down(b, &gb),
            &eb,
            atol,
            rtol,
        );
        let (atol, rtol) = tol_for_sum(s.num_filters);
        assert_close(
            &format!("conv grad_x {s:?}"),
            &down(b, &gx),
            &ex,
            atol,
            rtol,
        );
    }
}

/// Dropout masks and outputs against the oracle (the zero pattern must match exactly).
pub fn check_dropout<B: Backend>(b: &B) {
    let mut rng = Rng::new(5);
    for len in [1, 255, 256, 257, 1000, 50 * 300] {
        for p in [0.0f32, 0.3, 0.5] {
            let x = random_f32(&mut rng, len, 1.0);
            let (mut out, mut mask) = (b.alloc(len).expect("alloc"), b.alloc(len).expect("alloc"));
            b.dropout_fwd(&up(b, &x), len, p, 1234 + len as u64, &mut out, &mut mask)
                .expect("dropout_fwd");
            let (eo, em) = oracle::dropout(&f64s(&x), p, 1234 + len as u64);
            let got_mask = down(b, &mask);
            for (i, (g, e)) in got_mask.iter().zip(&em).enumerate() {
                assert_eq!(
                    *g == 0.0,
                    *e == 0.0,
                    "dropout zero pattern at {i} (len {len}, p {p})"
                );
            }
            assert_close("dropout mask", &got_mask, &em, 0.0, 1e-6);
            assert_close("dropout out", &down(b, &out), &eo, 0.0, 1e-6);
        }
    }
}

/// Element-wise product.
pub fn check_mul<B: Backend>(b: &B) {
    let mut rng = Rng::new(6);
    for len in [1, 257, 5000] {
        let (x, y) = (
            random_f32(&mut rng, len, 1.0),
            random_f32(&mut rng, len, 2.0),
        );
        let mut out = b.alloc(len).expect("alloc");
        b.mul(&up(b, &x), &up(b, &y), len, &mut out).expect("mul");
        let e: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(a, c)| f64::from(*a) * f64::from(*c))
            .collect();
        assert_close("mul", &down(b, &out), &e, 0.0, 1e-6);
    }
}

/// Linear shapes: 1s, the study's classifier, odd sizes.
pub fn linear_shapes() -> Vec<LinearShape> {
    let mk = |batch, in_features, out_features| LinearShape {
        batch,
        in_features,
        out_features,
    };
    vec![mk(1, 1, 1), mk(3, 5, 2), mk(50, 300, 2), mk(257, 33, 7)]
}

/// Linear forward and backward against the oracle.
pub fn check_linear<B: Backend>(b: &B) {
    let mut rng = Rng::new(7);
    for s in linear_shapes() {
        let x = random_f32(&mut rng, s.batch * s.in_features, 1.0);
        let w = random_f32(&mut rng, s.out_features * s.in_features, 0.1);
        let bias = random_f32(&mut rng, s.out_features, 0.1);
        let go = random_f32(&mut rng, s.batch * s.out_features, 1.0);
        let (xb, wb) = (up(b, &x), up(b, &w));
        let mut out = up(b, &vec![5.0; s.batch * s.out_features]);
        b.linear_fwd(&s, &xb, &wb, &up(b, &bias), &mut out)
            .expect("linear_fwd");
        let e = oracle::linear_fwd(&s, &f64s(&x), &f64s(&w), &f64s(&bias));
        let (atol, rtol) = tol_for_sum(s.in_features);
        assert_close(&format!("linear_fwd {s:?}"), &down(b, &out), &e, atol, rtol);

        let mut gx = up(b, &vec![5.0; x.len()]);
        let mut gw = up(b, &vec![5.0; w.len()]);
        let mut gb = up(b, &vec![5.0; bias.len()]);
        b.linear_bwd(&s, &up(b, &go), &xb, &wb, &mut gx, &mut gw, &mut gb)
            .expect("linear_bwd");
        let (ex, ew, eb) = oracle::linear_bwd(&s, &f64s(&go), &f64s(&x), &f64s(&w));
        let (atol, rtol) = tol_for_sum(s.out_features);
        assert_close("linear grad_x", &down(b, &gx), &ex, atol, rtol);
        let (atol, rtol) = tol_for_sum(s.batch);
        assert_close("linear grad_w", &down(b, &gw), &ew, atol, rtol);
        assert_close("linear grad_b", &down(b, &gb), &eb, atol, rtol);
    }
}

/// Softmax cross-entropy: accumulated statistics and the gradient, with and without it.
pub fn check_softmax_xent<B: Backend>(b: &B) {
    let mut rng = Rng::new(8);
    for (batch, classes) in [(1, 2), (50, 2), (257, 5), (3, 1)] {
        let logits = random_f32(&mut rng, batch * classes, 3.0);
        let labels = random_idx(&mut rng, batch, classes);
        let (lb, yb) = (up(b, &logits), up_idx(b, &labels));
        let (loss, correct, grad) = oracle::softmax_xent(&f64s(&logits), &labels, classes);
        let mut stats = up(b, &[1.5, 2.0]);
        let mut g = up(b, &vec![4.0; batch * classes]);
        b.softmax_xent(&lb, &yb, batch, classes, Some(&mut g), &mut stats)
            .expect("softmax_xent");
        let (atol, rtol) = tol_for_sum(batch);
        let expected = [1.5 + loss, 2.0 + correct as f64];
        assert_close(
            "softmax_xent stats",
            &down(b, &stats),
            &expected,
            atol,
            rtol,
        );
        assert_close("softmax_xent grad", &down(b, &g), &grad, 1e-6, 1e-4);
        b.softmax_xent(&lb, &yb, batch, classes, None, &mut stats)
            .expect("softmax_xent");
        let twice = [1.5 + 2.0 * loss, 2.0 + 2.0 * correct as f64];
        assert_close(
            "softmax_xent stats twice",
            &down(b, &stats),
            &twice,
            atol,
            rtol,
        );
    }
}

/// Sum of squares accumulates into `acc[0]`.
pub fn check_sum_squares<B: Backend>(b: &B) {
    let mut rng = Rng::new(9);
    for len in [1, 255, 257, 100_001] {
        let x = random_f32(&mut rng, len, 1.0);
        let mut acc = up(b, &[0.5]);
        b.sum_squares(&up(b, &x), len, &mut acc)
            .expect("sum_squares");
        let e = 0.5 + f64s(&x).iter().map(|v| v * v).sum::<f64>();
        assert_close("sum_squares", &down(b, &acc), &[e], 1e-5, 1e-5);
    }
}

fn rms_params(centered: bool, max_grad_norm: f32) -> RmsProp {
    RmsProp {
        lr: 0.01,
        decay: 0.9,
        eps: 1e-8,
        max_grad_norm,
        centered,
    }
}

/// Dense RMSProp, plain and centered, with clipping off, inactive and active.
pub fn check_rmsprop<B: Backend>(b: &B) {
    let mut rng = Rng::new(10);
    for len in [1, 1000, 100_001] {
        for centered in [false, true] {
            for max_norm in [0.0f32, 1e6, 0.5] {
                let p = rms_params(centered, max_norm);
                let w = random_f32(&mut rng, len, 0.1);
                let g = random_f32(&mut rng, len, 1.0);
                let n: Vec<f32> = random_f32(&mut rng, len, 0.01)
                    .iter()
                    .map(|v| v.abs() + 1e-3)
                    .collect();
                let a = random_f32(&mut rng, len, 0.01);
                let norm_sq = f64s(&g).iter().map(|v| v * v).sum::<f64>();
                let (mut wb, mut nb, mut ab) = (up(b, &w), up(b, &n), up(b, &a));
                let state = RmsState {
                    mean_square: &mut nb,
                    mean: Some(&mut ab),
                };
                b.rmsprop(
                    &p,
                    &mut wb,
                    &up(b, &g),
                    state,
                    len,
                    &up(b, &[norm_sq as f32]),
                )
                .expect("rmsprop");
                let (ew, en, ea) =
                    oracle::rmsprop(&p, &f64s(&w), &f64s(&g), &f64s(&n), &f64s(&a), norm_sq);
                let label = format!("rmsprop len {len} centered {centered} clip {max_norm}");
                assert_close(&format!("{label} w"), &down(b, &wb), &ew, 1e-6, 1e-4);
                assert_close(&format!("{label} n"), &down(b, &nb), &en, 1e-7, 1e-4);
                let ea = if centered { ea } else { f64s(&a) };
                assert_close(&format!("{label} a"), &down(b, &ab), &ea, 1e-7, 1e-4);
            }
        }
    }
}

/// Sparse RMSProp on embedding rows with lazy decay, against decay^k then the dense oracle step.
pub fn check_rmsprop_rows<B: Backend>(b: &B) {
    let mut rng = Rng::new(11);
    let (vocab, e, step) = (50usize, 7usize, 9u32);
    for centered in [false, true] {
        let p = rms_params(centered, 0.5);
        let table = random_f32(&mut rng, vocab * e, 0.1);
        let n: Vec<f32> = random_f32(&mut rng, vocab * e, 0.01)
            .iter()
            .map(|v| v.abs() + 1e-3)
            .collect();
        let a = random_f32(&mut rng, vocab * e, 0.01);
        let last: Vec<u32> = (0..vocab)
            .map(|_| rng.below(step as usize) as u32)
            .collect();
        let mut rows: Vec<u32> = (0..vocab as u32).filter(|_| rng.unit() < 0.4).collect();
        rows.reverse();
        let grad = random_f32(&mut rng, rows.len() * e, 1.0);
        let norm_sq = f64s(&grad).iter().map(|v| v * v).sum::<f64>();
        let (mut tb, mut nb, mut ab, mut lb) =
            (up(b, &table), up(b, &n), up(b, &a), up_idx(b, &last));
        let state = RmsState {
            mean_square: &mut nb,
            mean: Some(&mut ab),
        };
        let (gb, rb, nsb) = (up(b, &grad), up_idx(b, &rows), up(b, &[norm_sq as f32]));
        b.rmsprop_rows(
            &p,
            &mut tb,
            &gb,
            &rb,
            rows.len(),
            e,
            state,
            &mut lb,
            step,
            &nsb,
        )
        .expect("rmsprop_rows");
        let (mut ew, mut en, mut ea) = (f64s(&table), f64s(&n), f64s(&a));
        let mut elast = last.clone();
        for (slot, &r) in rows.iter().enumerate() {
            let span = r as usize * e..(r as usize + 1) * e;
            let decay = f64::from(p.decay).powi((step - last[r as usize] - 1) as i32);
            let nr: Vec<f64> = en[span.clone()].iter().map(|v| v * decay).collect();
            let ar: Vec<f64> = ea[span.clone()]
                .iter()
                .map(|v| if centered { v * decay } else { *v })
                .collect();
            let g = f64s(&grad[slot * e..(slot + 1) * e]);
            let (w2, n2, a2) = oracle::rmsprop(&p, &ew[span.clone()], &g, &nr, &ar, norm_sq);
            ew[span.clone()].copy_from_slice(&w2);
            en[span.clone()].copy_from_slice(&n2);
            if centered {
                ea[span].copy_from_slice(&a2);
            }
            elast[r as usize] = step;
        }
        assert_close("rmsprop_rows table", &down(b, &tb), &ew, 1e-6, 1e-4);
        assert_close("rmsprop_rows n", &down(b, &nb), &en, 1e-7, 1e-4);
        assert_close("rmsprop_rows a", &down(b, &ab), &ea, 1e-7, 1e-4);
        assert_eq!(
            b.download_idx(&lb).expect("download_idx"),
            elast,
            "rmsprop_rows last_step"
        );
    }
}

/// Short buffers are `BufferTooShort` errors, raised before any output is written.
pub fn check_short_buffers_are_errors<B: Backend>(b: &B) {
    let s = ConvShape {
        batch: 2,
        seq_len: 5,
        embed_dim: 3,
        width: 2,
        num_filters: 4,
        pooled_cols: 4,
        pooled_offset: 0,
    };
    let x = up(b, &[1.0; 2 * 5 * 3 - 1]);
    let w = up(b, &[1.0; 4 * 2 * 3]);
    let bias = up(b, &[1.0; 4]);
    let mut pooled = up(b, &[7.0; 8]);
    let mut argmax = b.alloc_idx(8).expect("alloc_idx");
    let err = b
        .conv_pool_fwd(&s, &x, &w, &bias, &mut pooled, &mut argmax)
        .unwrap_err();
    assert!(
        matches!(err, Error::BufferTooShort { buffer: "x", .. }),
        "{err}"
    );
    assert_eq!(
        down(b, &pooled),
        vec![7.0; 8],
        "pooled written before the error"
    );
    let ls = LinearShape {
        batch: 2,
        in_features: 3,
        out_features: 2,
    };
    let mut out = b.alloc(4).expect("alloc");
    let err = b
        .linear_fwd(
            &ls,
            &up(b, &[1.0; 6]),
            &up(b, &[1.0; 5]),
            &up(b, &[0.0; 2]),
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::BufferTooShort { buffer: "w", .. }),
        "{err}"
    );
}

/// Every check above, in one call.
pub fn check_all<B: Backend>(b: &B) {
    check_embedding_gather(b);
    check_embedding_grad_rows(b);
    check_conv_pool_fwd(b);
    check_conv_pool_bwd(b);
    check_dropout(b);
    check_mul(b);
    check_linear(b);
    check_softmax_xent(b);
    check_sum_squares(b);
    check_rmsprop(b);
    check_rmsprop_rows(b);
    check_short_buffers_are_errors(b);
}
