//! The fused head ([`Backend::head_fwd`]: dropout, linear, softmax cross-entropy) against the
//! same backend's three separate calls, bit for bit, and against the CPU within tolerance; the
//! linear backward with dropout's fused in ([`Backend::linear_bwd_masked`]) likewise.

use super::close;
use super::common::{Rng, random_f32, random_idx, tol_for_sum};
use kernels::cpu::CpuBackend;
use kernels::{Backend, HeadDropout, HeadInputs, HeadOutputs, LinearGrads, LinearShape};

/// dropped, mask, logits, grad_logits, stats.
type HeadResult = Vec<Vec<f32>>;

fn run<B: Backend>(
    b: &B,
    s: LinearShape,
    h: &[Vec<f32>],
    labels: &[u32],
    train: bool,
    fused: bool,
) -> HeadResult {
    let up = |v: &[f32]| b.upload(v).expect("upload");
    let nan = |n: usize| up(&vec![f32::NAN; n]);
    let (pooled, w, bias) = (up(&h[0]), up(&h[1]), up(&h[2]));
    let labels = b.upload_idx(labels).expect("upload_idx");
    let step = b.upload_idx(&[23]).expect("upload_idx");
    let len = s.batch * s.in_features;
    let (mut dropped, mut mask) = (nan(len), nan(len));
    let (mut logits, mut grad) = (nan(s.batch * s.out_features), nan(s.batch * s.out_features));
    let mut stats = up(&[0.25, 3.0]);
    let (p, seed_base) = (0.5, 0xabcd);
    if fused {
        let inputs = HeadInputs {
            shape: s,
            pooled: &pooled,
            w: &w,
            b: &bias,
            labels: &labels,
            dropout: train.then_some(HeadDropout {
                drop_prob: p,
                seed_base,
                step: &step,
            }),
        };
        let out = HeadOutputs {
            dropped: &mut dropped,
            mask: &mut mask,
            logits: &mut logits,
            grad_logits: Some(&mut grad),
            stats: &mut stats,
        };
        b.head_fwd(&inputs, out).expect("head_fwd");
    } else {
        if train {
            b.dropout_fwd_at(&pooled, len, p, seed_base, &step, &mut dropped, &mut mask)
                .expect("dropout_fwd_at");
        }
        let features = if train { &dropped } else { &pooled };
        b.linear_fwd(&s, features, &w, &bias, &mut logits)
            .expect("linear_fwd");
        b.softmax_xent(
            &logits,
            &labels,
            s.batch,
            s.out_features,
            Some(&mut grad),
            &mut stats,
        )
        .expect("softmax_xent");
    }
    [&dropped, &mask, &logits, &grad, &stats]
        .iter()
        .map(|v| b.download(v).expect("download"))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// On `g`, the fused head equals the separate calls bit for bit and the CPU within tolerance.
pub fn check_head<G: Backend>(g: &G) {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1615);
    let shapes = [(50, 300, 2), (250, 300, 2), (7, 33, 5), (1, 1, 1)];
    for (batch, in_features, classes) in shapes {
        let s = LinearShape {
            batch,
            in_features,
            out_features: classes,
        };
        let h = vec![
            random_f32(&mut rng, batch * in_features, 1.0),
            random_f32(&mut rng, classes * in_features, 0.1),
            random_f32(&mut rng, classes, 0.1),
        ];
        let labels = random_idx(&mut rng, batch, classes);
        for train in [true, false] {
            let fused = run(g, s, &h, &labels, train, true);
            let apart = run(g, s, &h, &labels, train, false);
            let cpu_out = run(&cpu, s, &h, &labels, train, false);
            for (i, name) in ["dropped", "mask", "logits", "grad_logits", "stats"]
                .iter()
                .enumerate()
            {
                assert_eq!(
                    bits(&fused[i]),
                    bits(&apart[i]),
                    "head {name} {s:?} train {train}"
                );
                if train || i >= 2 {
                    let tol = tol_for_sum(in_features);
                    close(
                        &format!("head {name} {s:?} train {train}"),
                        &fused[i],
                        &cpu_out[i],
                        tol,
                    );
                }
            }
        }
    }
}

/// On `g`, the linear backward with the dropout mask fused in equals `linear_bwd` then `mul` on
/// the same backend bit for bit, and the CPU within tolerance.
pub fn check_linear_bwd_masked<G: Backend>(g: &G) {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1616);
    for (batch, in_features, classes) in [(50, 300, 2), (7, 33, 5), (1, 1, 1)] {
        let s = LinearShape {
            batch,
            in_features,
            out_features: classes,
        };
        let grad_out = random_f32(&mut rng, batch * classes, 0.1);
        let x = random_f32(&mut rng, batch * in_features, 1.0);
        let w = random_f32(&mut rng, classes * in_features, 0.1);
        let mask: Vec<f32> = (0..batch * in_features)
            .map(|i| if i % 3 == 0 { 0.0 } else { 2.0 })
            .collect();
        let on = |bk: &dyn MaskedRunner, fused: bool| bk.run(s, &grad_out, &x, &w, &mask, fused);
        let (fused, apart) = (on(&Runner(g), true), on(&Runner(g), false));
        let reference = on(&Runner(&cpu), false);
        for (i, name) in ["grad_x", "grad_w", "grad_b"].iter().enumerate() {
            assert_eq!(bits(&fused[i]), bits(&apart[i]), "masked {name} {s:?}");
            close(
                &format!("masked {name} {s:?}"),
                &fused[i],
                &reference[i],
                tol_for_sum(batch.max(classes)),
            );
        }
    }
}

/// Runs the masked backward fused or apart on one backend.
trait MaskedRunner {
    fn run(
        &self,
        s: LinearShape,
        go: &[f32],
        x: &[f32],
        w: &[f32],
        mask: &[f32],
        fused: bool,
    ) -> Vec<Vec<f32>>;
}

struct Runner<'a, B: Backend>(&'a B);

impl<B: Backend> MaskedRunner for Runner<'_, B> {
    fn run(
        &self,
        s: LinearShape,
        go: &[f32],
        x: &[f32],
        w: &[f32],
        mask: &[f32],
        fused: bool,
    ) -> Vec<Vec<f32>> {
        let b = self.0;
        let up = |v: &[f32]| b.upload(v).expect("upload");
        let nan = |n: usize| up(&vec![f32::NAN; n]);
        let (go, x, w, mask) = (up(go), up(x), up(w), up(mask));
        let len = s.batch * s.in_features;
        let (mut gx, mut gw, mut gb, mut scratch) = (
            nan(len),
            nan(s.out_features * s.in_features),
            nan(s.out_features),
            nan(len),
        );
        if fused {
            let grads = LinearGrads {
                grad_x: &mut gx,
                grad_w: &mut gw,
                grad_b: &mut gb,
            };
            b.linear_bwd_masked(&s, &go, &x, &w, &mask, &mut scratch, grads)
                .expect("linear_bwd_masked");
        } else {
            b.linear_bwd(&s, &go, &x, &w, &mut scratch, &mut gw, &mut gb)
                .expect("linear_bwd");
            b.mul(&scratch, &mask, len, &mut gx).expect("mul");
        }
        [&gx, &gw, &gb]
            .iter()
            .map(|v| b.download(v).expect("download"))
            .collect()
    }
}
