//! The operations the parity tests run, as data: one enum variant an op with its host inputs,
//! executed on any backend with NaN-poisoned overwrite outputs, returning host vectors.

use kernels::{Backend, ConvShape, LinearShape, RmsProp, RmsState};

/// What every overwrite output starts as: an element a backend does not write stays NaN.
pub const POISON: f32 = f32::NAN;

/// One operation with its host inputs; outputs come back as host vectors.
pub enum Op<'a> {
    Fill {
        len: usize,
        value: f32,
    },
    Mul {
        a: &'a [f32],
        b: &'a [f32],
    },
    Dropout {
        x: &'a [f32],
        p: f32,
        seed: u64,
    },
    Gather {
        table: &'a [f32],
        vocab: usize,
        e: usize,
        ids: &'a [u32],
    },
    GradRows {
        grad: &'a [f32],
        slots: &'a [u32],
        e: usize,
        rows: usize,
    },
    ConvFwd {
        s: ConvShape,
        x: &'a [f32],
        w: &'a [f32],
        bias: &'a [f32],
    },
    ConvBwd {
        s: ConvShape,
        gp: &'a [f32],
        pooled: &'a [f32],
        argmax: &'a [u32],
        x: &'a [f32],
        w: &'a [f32],
        gx0: &'a [f32],
    },
    LinFwd {
        s: LinearShape,
        x: &'a [f32],
        w: &'a [f32],
        b: &'a [f32],
    },
    LinBwd {
        s: LinearShape,
        go: &'a [f32],
        x: &'a [f32],
        w: &'a [f32],
    },
    Xent {
        logits: &'a [f32],
        labels: &'a [u32],
        classes: usize,
        grad: bool,
        stats0: [f32; 2],
    },
    /// `sum_squares_many` over several tensors, `acc` poisoned first (it must be overwritten).
    SumSqMany {
        xs: &'a [Vec<f32>],
    },
    SumSq {
        x: &'a [f32],
        acc0: f32,
    },
    Rms {
        p: RmsProp,
        w: &'a [f32],
        g: &'a [f32],
        n: &'a [f32],
        a: &'a [f32],
        norm_sq: f32,
    },
    /// `rmsprop_many` over tensors `(w, g, n, a)`; outputs every tensor's w, n, a in order.
    RmsMany {
        p: RmsProp,
        tensors: &'a [[Vec<f32>; 4]],
        norm_sq: f32,
    },
    RmsRows {
        p: RmsProp,
        table: &'a [f32],
        g: &'a [f32],
        rows: &'a [u32],
        e: usize,
        n: &'a [f32],
        a: &'a [f32],
        last: &'a [u32],
        step: u32,
        norm_sq: f32,
    },
}

fn poisoned<B: Backend>(b: &B, len: usize) -> B::Buf {
    b.upload(&vec![POISON; len]).expect("upload")
}

impl Op<'_> {
    pub fn execute<B: Backend>(&self, b: &B) -> (Vec<Vec<f32>>, Vec<Vec<u32>>) {
        let up = |v: &[f32]| b.upload(v).expect("upload");
        let up_idx = |v: &[u32]| b.upload_idx(v).expect("upload_idx");
        let down = |v: &B::Buf| b.download(v).expect("download");
        match *self {
            Op::Fill { len, value } => {
                let mut buf = poisoned(b, len + 1);
                b.fill(&mut buf, len, value).expect("fill");
                (vec![down(&buf)], vec![])
            }
            Op::Mul { a, b: y } => {
                let mut out = poisoned(b, a.len());
                b.mul(&up(a), &up(y), a.len(), &mut out).expect("mul");
                (vec![down(&out)], vec![])
            }
            Op::Dropout { x, p, seed } => {
                let (mut out, mut mask) = (poisoned(b, x.len()), poisoned(b, x.len()));
                b.dropout_fwd(&up(x), x.len(), p, seed, &mut out, &mut mask)
                    .expect("dropout");
                (vec![down(&out), down(&mask)], vec![])
            }
            Op::Gather {
                table,
                vocab,
                e,
                ids,
            } => {
                let mut out = poisoned(b, ids.len() * e);
                b.embedding_gather(&up(table), vocab, e, &up_idx(ids), ids.len(), &mut out)
                    .expect("embedding_gather");
                (vec![down(&out)], vec![])
            }
            Op::GradRows {
                grad,
                slots,
                e,
                rows,
            } => {
                let mut out = poisoned(b, rows * e);
                b.embedding_grad_rows(&up(grad), &up_idx(slots), slots.len(), e, rows, &mut out)
                    .expect("embedding_grad_rows");
                (vec![down(&out)], vec![])
            }
            Op::ConvFwd { s, x, w, bias } => conv_fwd(b, &s, x, w, bias),
            Op::ConvBwd {
                s,
                gp,
                pooled,
                argmax,
                x,
                w,
                gx0,
            } => {
                let k = s.num_filters * s.width * s.embed_dim;
                let (mut gw, mut gb, mut gx) =
                    (poisoned(b, k), poisoned(b, s.num_filters), up(gx0));
                b.conv_pool_bwd(
                    &s,
                    &up(gp),
                    &up(pooled),
                    &up_idx(argmax),
                    &up(x),
                    &up(w),
                    &mut gw,
                    &mut gb,
                    &mut gx,
                )
                .expect("conv_pool_bwd");
                (vec![down(&gw), down(&gb), down(&gx)], vec![])
            }
            Op::LinFwd { s, x, w, b: bias } => {
                let mut out = poisoned(b, s.batch * s.out_features);
                b.linear_fwd(&s, &up(x), &up(w), &up(bias), &mut out)
                    .expect("linear_fwd");
                (vec![down(&out)], vec![])
            }
            Op::LinBwd { s, go, x, w } => {
                let (mut gx, mut gw, mut gb) = (
                    poisoned(b, x.len()),
                    poisoned(b, w.len()),
                    poisoned(b, s.out_features),
                );
                b.linear_bwd(&s, &up(go), &up(x), &up(w), &mut gx, &mut gw, &mut gb)
                    .expect("linear_bwd");
                (vec![down(&gx), down(&gw), down(&gb)], vec![])
            }
            Op::Xent {
                logits,
                labels,
                classes,
                grad,
                stats0,
            } => {
                let mut stats = up(&stats0);
                let mut g = poisoned(b, logits.len());
                let grad_out = grad.then_some(&mut g);
                b.softmax_xent(
                    &up(logits),
                    &up_idx(labels),
                    labels.len(),
                    classes,
                    grad_out,
                    &mut stats,
                )
                .expect("softmax_xent");
                let mut outs = vec![down(&stats)];
                if grad {
                    outs.push(down(&g));
                }
                (outs, vec![])
            }
            Op::SumSqMany { xs } => {
                let mut acc = up(&[f32::NAN]);
                let bufs: Vec<_> = xs.iter().map(|x| up(x)).collect();
                let tensors: Vec<_> = bufs
                    .iter()
                    .zip(xs.iter())
                    .map(|(b, x)| (b, x.len()))
                    .collect();
                b.sum_squares_many(&tensors, &mut acc)
                    .expect("sum_squares_many");
                (vec![down(&acc)], vec![])
            }
            Op::SumSq { x, acc0 } => {
                let mut acc = up(&[acc0]);
                b.sum_squares(&up(x), x.len(), &mut acc)
                    .expect("sum_squares");
                (vec![down(&acc)], vec![])
            }
            Op::Rms {
                p,
                w,
                g,
                n,
                a,
                norm_sq,
            } => {
                let (mut wb, mut nb, mut ab) = (up(w), up(n), up(a));
                let state = RmsState {
                    mean_square: &mut nb,
                    mean: Some(&mut ab),
                };
                b.rmsprop(&p, &mut wb, &up(g), state, w.len(), &up(&[norm_sq]))
                    .expect("rmsprop");
                (vec![down(&wb), down(&nb), down(&ab)], vec![])
            }
            Op::RmsMany {
                p,
                tensors,
                norm_sq,
            } => {
                let mut bufs: Vec<[B::Buf; 4]> = tensors
                    .iter()
                    .map(|[w, g, n, a]| [up(w), up(g), up(n), up(a)])
                    .collect();
                let mut list = Vec::new();
                for ([w, g, n, a], t) in bufs.iter_mut().zip(tensors.iter()) {
                    list.push(kernels::RmsTensor {
                        w,
                        grad: &*g,
                        state: RmsState {
                            mean_square: n,
                            mean: p.centered.then_some(a),
                        },
                        len: t[0].len(),
                    });
                }
                b.rmsprop_many(&p, &mut list, &up(&[norm_sq]))
                    .expect("rmsprop_many");
                drop(list);
                let mut outs = Vec::new();
                for [w, _, n, a] in &bufs {
                    outs.extend([down(w), down(n), down(a)]);
                }
                (outs, vec![])
            }
            Op::RmsRows {
                p,
                table,
                g,
                rows,
                e,
                n,
                a,
                last,
                step,
                norm_sq,
            } => {
                let (mut tb, mut nb, mut ab, mut lb) = (up(table), up(n), up(a), up_idx(last));
                let state = RmsState {
                    mean_square: &mut nb,
                    mean: Some(&mut ab),
                };
                b.rmsprop_rows(
                    &p,
                    &mut tb,
                    &up(g),
                    &up_idx(rows),
                    rows.len(),
                    e,
                    state,
                    &mut lb,
                    step,
                    &up(&[norm_sq]),
                )
                .expect("rmsprop_rows");
                let last_after = b.download_idx(&lb).expect("download_idx");
                (vec![down(&tb), down(&nb), down(&ab)], vec![last_after])
            }
        }
    }
}

/// Conv forward with this branch's pooled columns poisoned and the others set to a sentinel
/// that must survive.
pub fn conv_fwd<B: Backend>(
    b: &B,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
) -> (Vec<Vec<f32>>, Vec<Vec<u32>>) {
    let mut init = vec![7.0f32; s.batch * s.pooled_cols];
    for row in init.chunks_mut(s.pooled_cols) {
        row[s.pooled_offset..s.pooled_offset + s.num_filters].fill(POISON);
    }
    let mut pooled = b.upload(&init).expect("upload");
    let mut argmax = b
        .upload_idx(&vec![u32::MAX; s.batch * s.num_filters])
        .expect("upload_idx");
    b.conv_pool_fwd(
        s,
        &b.upload(x).expect("upload"),
        &b.upload(w).expect("upload"),
        &b.upload(bias).expect("upload"),
        &mut pooled,
        &mut argmax,
    )
    .expect("conv_pool_fwd");
    (
        vec![b.download(&pooled).expect("download")],
        vec![b.download_idx(&argmax).expect("download_idx")],
    )
}
