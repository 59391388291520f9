//! The per-step device scalars ([`kernels::StepScalars`]: the step counter and the learning
//! rate a captured step reads from device memory) against the host-argument operations, and
//! CUDA graph capture and replay.

use super::common::{Rng, random_f32, random_idx};
use kernels::cpu::CpuBackend;
use kernels::cuda::CudaBackend;
use kernels::{Backend, RmsProp, RmsState, RmsTensor, StepScalars};

/// Runs one backend's updates on (weights, mean squares, table, table mean squares) and the
/// table's last steps.
type Updater<'a> = dyn Fn(&mut Vec<Vec<f32>>, &mut Vec<u32>) + 'a;

/// On `g`: `advance_step` counts, and the device-scalar dropout and RMSProp equal the CPU's
/// host-argument forms (dropout bit for bit; RMSProp within rounding).
pub fn check_step_scalars<G: Backend>(g: &G) {
    let cpu = CpuBackend::new();
    let mut step = g.upload_idx(&[6]).expect("upload_idx");
    g.advance_step(&mut step).expect("advance_step");
    assert_eq!(g.download_idx(&step).expect("download"), vec![7]);
    let mut rng = Rng::new(1515);
    let n = 3001;
    let x = random_f32(&mut rng, n, 1.0);
    let (base, p) = (0xfeed_u64, 0.5f32);
    let (mut out, mut mask) = (g.alloc(n).expect("alloc"), g.alloc(n).expect("alloc"));
    let xg = g.upload(&x).expect("upload");
    g.dropout_fwd_at(&xg, n, p, base, &step, &mut out, &mut mask)
        .expect("dropout_fwd_at");
    let (mut out_c, mut mask_c) = (cpu.alloc(n).expect("alloc"), cpu.alloc(n).expect("alloc"));
    let seed = kernels::rng::mix64(base, 7);
    cpu.dropout_fwd(&x, n, p, seed, &mut out_c, &mut mask_c)
        .expect("dropout_fwd");
    let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(g.download(&mask).expect("download")), bits(mask_c));
    assert_eq!(bits(g.download(&out).expect("download")), bits(out_c));

    // RMSProp: the device learning rate (0.003) and step (7) against host arguments.
    let params = RmsProp {
        lr: 99.0, // ignored by the device-scalar forms
        decay: 0.9,
        eps: 1e-8,
        max_grad_norm: 0.5,
        centered: false,
    };
    let host_params = RmsProp {
        lr: 0.003,
        ..params
    };
    let (vocab, e, len) = (40, 9, 257);
    let w = random_f32(&mut rng, len, 0.1);
    let grad = random_f32(&mut rng, len, 1.0);
    let table = random_f32(&mut rng, vocab * e, 0.1);
    let rows: Vec<u32> = (0..vocab as u32).filter(|r| r % 3 != 1).collect();
    let grad_rows = random_f32(&mut rng, rows.len() * e, 1.0);
    let last = random_idx(&mut rng, vocab, 6);
    let norm_sq = [2.0f32];
    let lr = g.upload(&[0.003]).expect("upload");
    let scalars = StepScalars {
        step: &step,
        lr: &lr,
    };
    let run = |b: &Updater<'_>| {
        let mut outs = vec![
            w.clone(),
            vec![0.0; len],
            table.clone(),
            vec![0.0; vocab * e],
        ];
        let mut last_out = last.clone();
        b(&mut outs, &mut last_out);
        (outs, last_out)
    };
    let on_gpu = run(&|outs, last_out| {
        let up = |v: &[f32]| g.upload(v).expect("upload");
        let (mut wg, mut ng, mut tg, mut tn) =
            (up(&outs[0]), up(&outs[1]), up(&outs[2]), up(&outs[3]));
        let (gg, ns, rg) = (up(&grad), up(&norm_sq), up(&grad_rows));
        let mut tensors = [RmsTensor {
            w: &mut wg,
            grad: &gg,
            state: RmsState {
                mean_square: &mut ng,
                mean: None,
            },
            len,
        }];
        g.rmsprop_many_at(&params, &mut tensors, &ns, &scalars)
            .expect("rmsprop_many_at");
        let rows_g = g.upload_idx(&rows).expect("upload_idx");
        let mut last_g = g.upload_idx(last_out).expect("upload_idx");
        let state = RmsState {
            mean_square: &mut tn,
            mean: None,
        };
        g.rmsprop_rows_at(
            &params,
            &mut tg,
            &rg,
            &rows_g,
            rows.len(),
            e,
            state,
            &mut last_g,
            &ns,
            &scalars,
        )
        .expect("rmsprop_rows_at");
        for (o, buf) in outs.iter_mut().zip([&wg, &ng, &tg, &tn]) {
            *o = g.download(buf).expect("download");
        }
        *last_out = g.download_idx(&last_g).expect("download");
    });
    let on_cpu = run(&|outs, last_out| {
        let (o0, rest) = outs.split_at_mut(1);
        let (o1, rest) = rest.split_at_mut(1);
        let (o2, o3) = rest.split_at_mut(1);
        let mut tensors = [RmsTensor {
            w: &mut o0[0],
            grad: &grad,
            state: RmsState {
                mean_square: &mut o1[0],
                mean: None,
            },
            len,
        }];
        cpu.rmsprop_many(&host_params, &mut tensors, &norm_sq.to_vec())
            .expect("rmsprop_many");
        let state = RmsState {
            mean_square: &mut o3[0],
            mean: None,
        };
        cpu.rmsprop_rows(
            &host_params,
            &mut o2[0],
            &grad_rows,
            &rows,
            rows.len(),
            e,
            state,
            last_out,
            7,
            &norm_sq.to_vec(),
        )
        .expect("rmsprop_rows");
    });
    assert_eq!(on_gpu.1, on_cpu.1, "last_step");
    for (i, (a, c)) in on_gpu.0.iter().zip(&on_cpu.0).enumerate() {
        super::close(&format!("rmsprop at step, tensor {i}"), a, c, (1e-6, 1e-5));
    }
}

/// A graph replays what was captured (here: the step counter advanced twice) once per replay,
/// capture itself runs nothing, and switched off the backend captures nothing.
pub fn check_capture_and_replay(g: &CudaBackend) {
    let mut step = g.alloc_idx(1).expect("alloc_idx");
    let before = g.counters();
    let mut body = || {
        g.advance_step(&mut step)?;
        g.advance_step(&mut step)
    };
    let id = g
        .capture_graph(&mut body)
        .expect("capture")
        .expect("graphs are on");
    assert_eq!(
        g.download_idx(&step).expect("download"),
        vec![0],
        "capture ran the body"
    );
    for _ in 0..3 {
        g.replay_graph(id).expect("replay");
    }
    assert_eq!(g.download_idx(&step).expect("download"), vec![6]);
    let after = g.counters();
    assert_eq!(after.graph_launches - before.graph_launches, 3);
    assert_eq!(
        after.launches, before.launches,
        "replays are not kernel launches"
    );
    g.clear_graphs();
    assert!(g.replay_graph(id).is_err(), "a cleared graph still replays");
    g.set_graphs(false);
    let mut never = || -> kernels::Result<()> { panic!("capture ran the body while switched off") };
    assert_eq!(g.capture_graph(&mut never).expect("capture"), None);
    g.set_graphs(true);
}
