//! One whole training step of the study's text CNN (B = 50, L = 56, E = 300, widths 3/4/5 x
//! 100 maps, 2 classes), composed from the backend operations exactly as `cnn` composes them
//! (the three convolution branches through the multi-branch calls),
//! run on the CPU and on the GPU from the same inputs: statistics, every gradient, the global
//! norm and every parameter after the RMSProp update must agree.

use super::close;
use super::common::{Rng, random_f32, random_idx, tol_for_sum};
use kernels::cpu::CpuBackend;
use kernels::{Backend, ConvBwdBranch, ConvFwdBranch, ConvShape, LinearShape, RmsProp, RmsState};

const VOCAB: usize = 2000;
const E: usize = 300;
const L: usize = 56;
const B: usize = 50;
const F: usize = 100;
const WIDTHS: [usize; 3] = [3, 4, 5];
const CLASSES: usize = 2;
const STEP: u32 = 4;

/// Host inputs of the step.
struct Inputs {
    table: Vec<f32>,
    dense: Vec<Vec<f32>>,
    ids: Vec<u32>,
    labels: Vec<u32>,
    slots: Vec<u32>,
    rows: Vec<u32>,
    mean_square_table: Vec<f32>,
    mean_square_dense: Vec<Vec<f32>>,
    last_step: Vec<u32>,
}

/// Host outputs: named tensors to compare, with the tolerance of each.
type Outputs = Vec<(String, Vec<f32>, (f64, f64))>;

fn conv_shape(i: usize) -> ConvShape {
    ConvShape {
        batch: B,
        seq_len: L,
        embed_dim: E,
        width: WIDTHS[i],
        num_filters: F,
        pooled_cols: 3 * F,
        pooled_offset: i * F,
    }
}

fn fc_shape() -> LinearShape {
    LinearShape {
        batch: B,
        in_features: 3 * F,
        out_features: CLASSES,
    }
}

fn dense_lens() -> Vec<usize> {
    let mut lens: Vec<usize> = WIDTHS.iter().map(|w| F * w * E).collect();
    lens.extend([F, F, F, CLASSES * 3 * F, CLASSES]);
    lens
}

fn inputs() -> Inputs {
    let mut rng = Rng::new(2014);
    let ids = random_idx(&mut rng, B * L, VOCAB);
    let (mut slots, mut rows, mut slot_of) = (Vec::new(), Vec::new(), vec![u32::MAX; VOCAB]);
    for &id in &ids {
        if slot_of[id as usize] == u32::MAX {
            slot_of[id as usize] = rows.len() as u32;
            rows.push(id);
        }
        slots.push(slot_of[id as usize]);
    }
    let positive = |rng: &mut Rng, n| {
        random_f32(rng, n, 0.01)
            .iter()
            .map(|v| v.abs() + 1e-3)
            .collect::<Vec<f32>>()
    };
    Inputs {
        table: random_f32(&mut rng, VOCAB * E, 0.1),
        dense: dense_lens()
            .iter()
            .map(|&n| random_f32(&mut rng, n, 0.1))
            .collect(),
        labels: random_idx(&mut rng, B, CLASSES),
        mean_square_table: positive(&mut rng, VOCAB * E),
        mean_square_dense: dense_lens()
            .iter()
            .map(|&n| positive(&mut rng, n))
            .collect(),
        last_step: (0..VOCAB)
            .map(|_| rng.below(STEP as usize) as u32)
            .collect(),
        ids,
        slots,
        rows,
    }
}

/// Forward, backward, global norm and RMSProp on backend `b`.
fn run<Bk: Backend>(b: &Bk, h: &Inputs) -> Outputs {
    let up = |v: &[f32]| b.upload(v).expect("upload");
    let up_idx = |v: &[u32]| b.upload_idx(v).expect("upload_idx");
    let down = |v: &Bk::Buf| b.download(v).expect("download");
    let (mut table, mut dense): (Bk::Buf, Vec<Bk::Buf>) =
        (up(&h.table), h.dense.iter().map(|v| up(v)).collect());
    let (ids, labels, slots, rows) = (
        up_idx(&h.ids),
        up_idx(&h.labels),
        up_idx(&h.slots),
        up_idx(&h.rows),
    );
    let alloc = |n| b.alloc(n).expect("alloc");
    // Forward.
    let mut x = alloc(B * L * E);
    b.embedding_gather(&table, VOCAB, E, &ids, B * L, &mut x)
        .expect("gather");
    let mut pooled = alloc(B * 3 * F);
    let mut argmax: Vec<Bk::IdxBuf> = (0..3)
        .map(|_| b.alloc_idx(B * F).expect("alloc_idx"))
        .collect();
    {
        let (conv_w, rest) = dense.split_at(3);
        let mut branches: Vec<ConvFwdBranch<'_, Bk>> = argmax
            .iter_mut()
            .enumerate()
            .map(|(i, argmax)| ConvFwdBranch {
                shape: conv_shape(i),
                w: &conv_w[i],
                bias: &rest[i],
                argmax,
            })
            .collect();
        b.conv_pool_fwd_branches(&x, &mut branches, &mut pooled)
            .expect("conv fwd");
    }
    let (mut dropped, mut mask) = (alloc(B * 3 * F), alloc(B * 3 * F));
    b.dropout_fwd(&pooled, B * 3 * F, 0.5, 99, &mut dropped, &mut mask)
        .expect("dropout");
    let mut logits = alloc(B * CLASSES);
    b.linear_fwd(&fc_shape(), &dropped, &dense[6], &dense[7], &mut logits)
        .expect("linear fwd");
    let (mut grad_logits, mut stats) = (alloc(B * CLASSES), alloc(2));
    b.softmax_xent(
        &logits,
        &labels,
        B,
        CLASSES,
        Some(&mut grad_logits),
        &mut stats,
    )
    .expect("xent");
    // Backward.
    let mut grads: Vec<Bk::Buf> = dense_lens().iter().map(|&n| alloc(n)).collect();
    let mut grad_dropped = alloc(B * 3 * F);
    {
        let (gw, gb) = grads.split_at_mut(7);
        b.linear_bwd(
            &fc_shape(),
            &grad_logits,
            &dropped,
            &dense[6],
            &mut grad_dropped,
            &mut gw[6],
            &mut gb[0],
        )
        .expect("linear bwd");
    }
    let mut grad_pooled = alloc(B * 3 * F);
    b.mul(&grad_dropped, &mask, B * 3 * F, &mut grad_pooled)
        .expect("mul");
    let mut grad_x = alloc(B * L * E);
    {
        let (conv_w, conv_b) = grads.split_at_mut(3);
        let mut branches: Vec<ConvBwdBranch<'_, Bk>> = conv_w
            .iter_mut()
            .zip(conv_b.iter_mut())
            .enumerate()
            .map(|(i, (grad_w, grad_b))| ConvBwdBranch {
                shape: conv_shape(i),
                argmax: &argmax[i],
                w: &dense[i],
                grad_w,
                grad_b,
            })
            .collect();
        b.conv_pool_bwd_branches(&grad_pooled, &pooled, &x, &mut branches, &mut grad_x)
            .expect("conv bwd");
    }
    let mut grad_rows = alloc(h.rows.len() * E);
    b.embedding_grad_rows(&grad_x, &slots, B * L, E, h.rows.len(), &mut grad_rows)
        .expect("grad rows");
    // Global norm and update.
    let mut norm_sq = alloc(1);
    for (g, n) in grads.iter().zip(dense_lens()) {
        b.sum_squares(g, n, &mut norm_sq).expect("sum_squares");
    }
    b.sum_squares(&grad_rows, h.rows.len() * E, &mut norm_sq)
        .expect("sum_squares");
    let params = RmsProp {
        lr: 0.0005,
        decay: 0.9,
        eps: 1e-8,
        max_grad_norm: 1.0,
        centered: false,
    };
    let mut ms_dense: Vec<Bk::Buf> = h.mean_square_dense.iter().map(|v| up(v)).collect();
    for (i, n) in dense_lens().into_iter().enumerate() {
        let state = RmsState {
            mean_square: &mut ms_dense[i],
            mean: None,
        };
        b.rmsprop(&params, &mut dense[i], &grads[i], state, n, &norm_sq)
            .expect("rmsprop");
    }
    let (mut ms_table, mut last) = (up(&h.mean_square_table), up_idx(&h.last_step));
    let state = RmsState {
        mean_square: &mut ms_table,
        mean: None,
    };
    b.rmsprop_rows(
        &params,
        &mut table,
        &grad_rows,
        &rows,
        h.rows.len(),
        E,
        state,
        &mut last,
        STEP,
        &norm_sq,
    )
    .expect("rmsprop_rows");

    let tight = (1e-6, 1e-4);
    let mut out: Outputs = vec![
        ("stats".into(), down(&stats), tol_for_sum(B)),
        ("pooled".into(), down(&pooled), tol_for_sum(5 * E)),
        ("logits".into(), down(&logits), tol_for_sum(3 * F)),
        ("grad_x".into(), down(&grad_x), tol_for_sum(F)),
        ("grad_rows".into(), down(&grad_rows), tol_for_sum(L)),
        ("norm_sq".into(), down(&norm_sq), (1e-5, 1e-4)),
        ("table".into(), down(&table), tight),
        ("mean_square_table".into(), down(&ms_table), (1e-7, 1e-4)),
    ];
    for (i, g) in grads.iter().enumerate() {
        out.push((format!("grad dense[{i}]"), down(g), tol_for_sum(B)));
        out.push((format!("dense[{i}]"), down(&dense[i]), tight));
    }
    out
}

/// Runs the step on both backends and compares every output.
pub fn check_training_step<G: Backend>(gpu: &G) {
    let h = inputs();
    let cpu_out = run(&CpuBackend::new(), &h);
    let gpu_out = run(gpu, &h);
    for ((name, cpu_v, tol), (_, gpu_v, _)) in cpu_out.iter().zip(&gpu_out) {
        close(&format!("training step: {name}"), gpu_v, cpu_v, *tol);
    }
}
