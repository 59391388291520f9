//! CUDA against the CPU backend (and the shared f64 oracle bodies of `common`), op by op and
//! for one whole training step of the text CNN (STYLE.md §9.3).
//!
//! Inputs are seeded random (never zeros). Sizes include 1, block sizes ±1, odd sizes and the
//! study's batch (B = 50, L = 56, E = 300, F = 100, widths 3/4/5). Overwrite outputs start
//! NaN-poisoned on both backends, so an element the GPU does not write fails; index outputs
//! must match exactly (argmax only where the f64 pre-activations have no near-tie).
//! Without a usable GPU every test prints `skipped: <reason>` and passes, unless
//! `REQUIRE_CUDA=1`, which makes that a failure.
#![cfg(feature = "cuda")]

mod common;

use common::{Rng, f64s, random_f32, random_idx, tol_for_sum};
use kernels::cpu::CpuBackend;
use kernels::cuda::CudaBackend;
use kernels::{Backend, ConvShape, Error, LinearShape, RmsProp};

#[path = "parity/branches.rs"]
mod branches;
#[path = "parity/graphs.rs"]
mod graphs;
#[path = "parity/head.rs"]
mod head;
#[path = "parity/ops.rs"]
mod ops;
#[path = "parity/step.rs"]
mod step;

use ops::{Op, conv_fwd};

/// The GPU, or `None` after printing why the test is skipped.
fn gpu() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(backend) => Some(backend),
        Err(err) => {
            let required = std::env::var("REQUIRE_CUDA").is_ok_and(|v| v == "1");
            assert!(!required, "REQUIRE_CUDA=1 but the GPU is unusable: {err}");
            println!("skipped: {err}");
            None
        }
    }
}

/// Lengths around the usual block sizes (128, 256) plus 1, an odd size and a large one.
const LENS: [usize; 9] = [1, 127, 128, 129, 255, 256, 257, 1001, 150_001];

/// Runs `body` on both backends with the same seed and returns both outputs.
fn both<T>(other: &dyn AnyBackend, body: impl Fn(&dyn AnyBackend) -> T) -> (T, T) {
    let cpu = CpuBackend::new();
    (body(&Cpu(&cpu)), body(other))
}

/// Compares a GPU result with the CPU's at the given tolerance (NaN anywhere fails).
fn close(name: &str, gpu: &[f32], cpu: &[f32], (atol, rtol): (f64, f64)) {
    common::assert_close(name, gpu, &f64s(cpu), atol, rtol);
}

/// Object-safe wrapper so one closure body drives both backends through host vectors.
trait AnyBackend {
    fn run(&self, op: &Op<'_>) -> Vec<Vec<f32>>;
    fn run_idx(&self, op: &Op<'_>) -> (Vec<Vec<f32>>, Vec<Vec<u32>>);
}

struct Cpu<'a>(&'a CpuBackend);
struct Gpu<'a>(&'a CudaBackend);

impl AnyBackend for Cpu<'_> {
    fn run(&self, op: &Op<'_>) -> Vec<Vec<f32>> {
        op.execute(self.0).0
    }
    fn run_idx(&self, op: &Op<'_>) -> (Vec<Vec<f32>>, Vec<Vec<u32>>) {
        op.execute(self.0)
    }
}

impl AnyBackend for Gpu<'_> {
    fn run(&self, op: &Op<'_>) -> Vec<Vec<f32>> {
        op.execute(self.0).0
    }
    fn run_idx(&self, op: &Op<'_>) -> (Vec<Vec<f32>>, Vec<Vec<u32>>) {
        op.execute(self.0)
    }
}

// ---------------------------------------------------------------- the oracle bodies on CUDA

macro_rules! oracle_on_gpu {
    ($($name:ident => $check:path),* $(,)?) => {$(
        #[test]
        fn $name() {
            if let Some(g) = gpu() {
                $check(&g);
            }
        }
    )*};
}

oracle_on_gpu! {
    oracle_embedding_gather => common::check_embedding_gather,
    oracle_embedding_grad_rows => common::check_embedding_grad_rows,
    oracle_conv_pool_fwd => common::check_conv_pool_fwd,
    oracle_conv_pool_bwd => common::check_conv_pool_bwd,
    oracle_dropout => common::check_dropout,
    oracle_mul => common::check_mul,
    oracle_linear => common::check_linear,
    oracle_softmax_xent => common::check_softmax_xent,
    oracle_sum_squares => common::check_sum_squares,
    oracle_rmsprop => common::check_rmsprop,
    oracle_rmsprop_rows => common::check_rmsprop_rows,
    oracle_short_buffers_are_errors => common::check_short_buffers_are_errors,
}

// ---------------------------------------------------------------- CUDA against the CPU

#[test]
fn fill_mul_and_dropout_match_the_cpu() {
    if let Some(g) = gpu() {
        fill_mul_and_dropout_match_the_cpu_body(&Gpu(&g));
    }
}

fn fill_mul_and_dropout_match_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(101);
    for len in LENS {
        let (cpu, gpu) = both(g, |b| b.run(&Op::Fill { len, value: 0.37 }));
        assert!(gpu[0][len].is_nan(), "fill wrote past len {len}");
        close("fill", &gpu[0][..len], &cpu[0][..len], (0.0, 0.0));
        let (a, y) = (
            random_f32(&mut rng, len, 1.0),
            random_f32(&mut rng, len, 2.0),
        );
        let (cpu, gpu) = both(g, |b| b.run(&Op::Mul { a: &a, b: &y }));
        close("mul", &gpu[0], &cpu[0], (0.0, 1e-6));
        for p in [0.0f32, 0.5, 0.9] {
            let seed = 77 + len as u64;
            let (cpu, gpu) = both(g, |b| b.run(&Op::Dropout { x: &a, p, seed }));
            // The mask is integer arithmetic and one exact product: bit for bit.
            assert_eq!(
                bits(&gpu[1]),
                bits(&cpu[1]),
                "dropout mask, len {len}, p {p}"
            );
            assert_eq!(
                bits(&gpu[0]),
                bits(&cpu[0]),
                "dropout out, len {len}, p {p}"
            );
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn embedding_ops_match_the_cpu() {
    if let Some(g) = gpu() {
        embedding_ops_match_the_cpu_body(&Gpu(&g));
    }
}

fn embedding_ops_match_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(102);
    for (vocab, e, tokens, rows) in [
        (1, 1, 1, 1),
        (10, 127, 129, 9),
        (60, 256, 255, 60),
        (301, 33, 257, 128),
        (5000, 300, 50 * 56, 900),
        (80, 513, 300, 7),
    ] {
        let table = random_f32(&mut rng, vocab * e, 0.1);
        let ids = random_idx(&mut rng, tokens, vocab);
        let (cpu, gpu) = both(g, |b| {
            b.run(&Op::Gather {
                table: &table,
                vocab,
                e,
                ids: &ids,
            })
        });
        close("embedding_gather", &gpu[0], &cpu[0], (0.0, 0.0));
        let grad = random_f32(&mut rng, tokens * e, 1.0);
        // Every row gets at least one token when tokens >= rows, so none is trivially zero;
        // past that, 64% of the tokens go to row 0, as MR's pad `</s>` does.
        let slots: Vec<u32> = (0..tokens)
            .map(|t| {
                if t < rows {
                    t as u32
                } else if rng.below(100) < 64 {
                    0
                } else {
                    rng.below(rows) as u32
                }
            })
            .collect();
        let (cpu, gpu) = both(g, |b| {
            b.run(&Op::GradRows {
                grad: &grad,
                slots: &slots,
                e,
                rows,
            })
        });
        // No atomics: the device sums each row in token order, as the CPU does, so the
        // result is the CPU's bit for bit (issue 15: a seed gives the same trial twice).
        assert_eq!(
            bits(&gpu[0]),
            bits(&cpu[0]),
            "embedding_grad_rows not bitwise the CPU's: vocab {vocab}, e {e}, tokens {tokens}, rows {rows}"
        );
        let again = g.run(&Op::GradRows {
            grad: &grad,
            slots: &slots,
            e,
            rows,
        });
        assert_eq!(
            bits(&again[0]),
            bits(&gpu[0]),
            "embedding_grad_rows differs between runs"
        );
    }
}

/// Shapes for the convolution: 1s, more positions than one 64-position tile, filter counts
/// around the 32-filter tile, a width wider than one staged group of filter rows, and the
/// study's three branches.
fn conv_cases() -> Vec<ConvShape> {
    let mk = |batch, seq_len, embed_dim, width, num_filters, offset| ConvShape {
        batch,
        seq_len,
        embed_dim,
        width,
        num_filters,
        pooled_cols: num_filters + 2 * offset,
        pooled_offset: offset,
    };
    let study = |width, branch: usize| ConvShape {
        pooled_cols: 300,
        pooled_offset: 100 * branch,
        ..mk(50, 56, 300, width, 100, 0)
    };
    vec![
        mk(1, 1, 1, 1, 1, 0),
        mk(2, 7, 3, 3, 5, 1),
        mk(3, 70, 33, 4, 33, 2),
        mk(2, 131, 20, 3, 31, 0),
        mk(4, 20, 129, 5, 127, 3),
        mk(3, 16, 64, 2, 129, 1),
        mk(2, 30, 40, 12, 40, 0),
        study(3, 0),
        study(4, 1),
        study(5, 2),
    ]
}

#[test]
fn conv_forward_matches_the_cpu() {
    if let Some(g) = gpu() {
        conv_forward_matches_the_cpu_body(&Gpu(&g));
    }
}

fn conv_forward_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(103);
    for s in conv_cases() {
        let (x, w, bias) = common::conv_inputs(&mut rng, &s);
        let (cpu, gpu) = both(g, |b| {
            b.run_idx(&Op::ConvFwd {
                s,
                x: &x,
                w: &w,
                bias: &bias,
            })
        });
        let tol = tol_for_sum(s.width * s.embed_dim);
        close(&format!("conv pooled {s:?}"), &gpu.0[0], &cpu.0[0], tol);
        let z = common::oracle::conv_z(&s, &f64s(&x), &f64s(&w), &f64s(&bias));
        let p = s.positions();
        for (i, (&ga, &ca)) in gpu.1[0].iter().zip(&cpu.1[0]).enumerate() {
            assert!(
                (ga as usize) < p,
                "argmax {ga} out of range at {i} of {s:?}"
            );
            if ga != ca {
                let f = i % s.num_filters;
                let at = |t: u32| z[((i / s.num_filters) * p + t as usize) * s.num_filters + f];
                assert!(
                    (at(ga) - at(ca)).abs() <= 50.0 * tol.0,
                    "argmax {ga} vs cpu {ca} at {i} of {s:?} without a near-tie"
                );
            }
        }
    }
}

#[test]
fn conv_backward_matches_the_cpu() {
    if let Some(g) = gpu() {
        conv_backward_matches_the_cpu_body(&Gpu(&g));
    }
}

fn conv_backward_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(104);
    let cpu = CpuBackend::new();
    for s in conv_cases() {
        let (x, w, bias) = common::conv_inputs(&mut rng, &s);
        // A real forward gives realistic gates (about half the ReLUs closed) and argmax.
        let (fwd, idx) = conv_fwd(&cpu, &s, &x, &w, &bias);
        let pooled: Vec<f32> = fwd[0]
            .iter()
            .map(|v| if v.is_nan() { 0.5 } else { *v })
            .collect();
        let gp = random_f32(&mut rng, pooled.len(), 1.0);
        let gx0 = random_f32(&mut rng, x.len(), 1.0);
        let op = Op::ConvBwd {
            s,
            gp: &gp,
            pooled: &pooled,
            argmax: &idx[0],
            x: &x,
            w: &w,
            gx0: &gx0,
        };
        let (cpu_out, gpu_out) = both(g, |b| b.run(&op));
        close(
            &format!("conv grad_w {s:?}"),
            &gpu_out[0],
            &cpu_out[0],
            tol_for_sum(s.batch),
        );
        close(
            &format!("conv grad_b {s:?}"),
            &gpu_out[1],
            &cpu_out[1],
            tol_for_sum(s.batch),
        );
        close(
            &format!("conv grad_x {s:?}"),
            &gpu_out[2],
            &cpu_out[2],
            tol_for_sum(s.num_filters),
        );
    }
}

#[test]
fn linear_matches_the_cpu() {
    if let Some(g) = gpu() {
        linear_matches_the_cpu_body(&Gpu(&g));
    }
}

fn linear_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(105);
    let mk = |batch, in_features, out_features| LinearShape {
        batch,
        in_features,
        out_features,
    };
    for s in [
        mk(1, 1, 1),
        mk(50, 300, 2),
        mk(127, 129, 3),
        mk(257, 33, 7),
        mk(1, 1001, 1),
        mk(1000, 300, 2),
    ] {
        let x = random_f32(&mut rng, s.batch * s.in_features, 1.0);
        let w = random_f32(&mut rng, s.out_features * s.in_features, 0.1);
        let bias = random_f32(&mut rng, s.out_features, 0.1);
        let go = random_f32(&mut rng, s.batch * s.out_features, 1.0);
        let (cpu, gpu) = both(g, |b| {
            b.run(&Op::LinFwd {
                s,
                x: &x,
                w: &w,
                b: &bias,
            })
        });
        close(
            &format!("linear_fwd {s:?}"),
            &gpu[0],
            &cpu[0],
            tol_for_sum(s.in_features),
        );
        let (cpu, gpu) = both(g, |b| {
            b.run(&Op::LinBwd {
                s,
                go: &go,
                x: &x,
                w: &w,
            })
        });
        close(
            "linear grad_x",
            &gpu[0],
            &cpu[0],
            tol_for_sum(s.out_features),
        );
        close("linear grad_w", &gpu[1], &cpu[1], tol_for_sum(s.batch));
        close("linear grad_b", &gpu[2], &cpu[2], tol_for_sum(s.batch));
    }
}

#[test]
fn softmax_xent_matches_the_cpu() {
    if let Some(g) = gpu() {
        softmax_xent_matches_the_cpu_body(&Gpu(&g));
    }
}

fn softmax_xent_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(106);
    for (batch, classes) in [(1, 2), (50, 2), (127, 3), (257, 5), (1000, 2), (3, 1)] {
        let logits = random_f32(&mut rng, batch * classes, 3.0);
        let labels = random_idx(&mut rng, batch, classes);
        for grad in [true, false] {
            let op = Op::Xent {
                logits: &logits,
                labels: &labels,
                classes,
                grad,
                stats0: [0.25, 1.0],
            };
            let (cpu, gpu) = both(g, |b| b.run(&op));
            close(
                &format!("xent stats {batch}x{classes}"),
                &gpu[0],
                &cpu[0],
                tol_for_sum(batch),
            );
            if grad {
                close("xent grad", &gpu[1], &cpu[1], (1e-6, 1e-4));
            }
        }
    }
}

fn rms(centered: bool, max_grad_norm: f32) -> RmsProp {
    RmsProp {
        lr: 0.01,
        decay: 0.9,
        eps: 1e-8,
        max_grad_norm,
        centered,
    }
}

#[test]
fn optimizer_ops_match_the_cpu() {
    if let Some(g) = gpu() {
        optimizer_ops_match_the_cpu_body(&Gpu(&g));
    }
}

fn optimizer_ops_match_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(107);
    for len in LENS {
        let x = random_f32(&mut rng, len, 1.0);
        let (cpu, gpu) = both(g, |b| b.run(&Op::SumSq { x: &x, acc0: 0.5 }));
        close(
            &format!("sum_squares {len}"),
            &gpu[0],
            &cpu[0],
            tol_for_sum(len),
        );
        // The fused global norm over several tensors, one empty, with this one among them;
        // 17 tensors exceed one multi-tensor launch and take the fallback.
        for count in [1, 9, 17] {
            let xs: Vec<Vec<f32>> = (0..count)
                .map(|t| match t {
                    0 => x.clone(),
                    1 => Vec::new(),
                    _ => random_f32(&mut rng, 1 + 37 * t, 1.0),
                })
                .collect();
            let total: usize = xs.iter().map(Vec::len).sum();
            let (cpu, gpu) = both(g, |b| b.run(&Op::SumSqMany { xs: &xs }));
            close(
                &format!("sum_squares_many {count} tensors, first {len}"),
                &gpu[0],
                &cpu[0],
                tol_for_sum(total),
            );
        }
        let w = random_f32(&mut rng, len, 0.1);
        let n: Vec<f32> = random_f32(&mut rng, len, 0.01)
            .iter()
            .map(|v| v.abs() + 1e-3)
            .collect();
        let a = random_f32(&mut rng, len, 0.01);
        let norm_sq = x.iter().map(|v| v * v).sum::<f32>();
        for centered in [false, true] {
            for clip in [0.0f32, 1e6, 0.5] {
                let op = Op::Rms {
                    p: rms(centered, clip),
                    w: &w,
                    g: &x,
                    n: &n,
                    a: &a,
                    norm_sq,
                };
                let (cpu, gpu) = both(g, |b| b.run(&op));
                let label = format!("rmsprop len {len} centered {centered} clip {clip}");
                close(&format!("{label} w"), &gpu[0], &cpu[0], (1e-6, 1e-4));
                close(&format!("{label} n"), &gpu[1], &cpu[1], (1e-7, 1e-4));
                close(&format!("{label} a"), &gpu[2], &cpu[2], (1e-7, 1e-4));
            }
        }
    }
}

#[test]
fn rmsprop_many_matches_the_cpu() {
    if let Some(g) = gpu() {
        rmsprop_many_matches_the_cpu_body(&Gpu(&g));
    }
}

/// The fused update of several tensors (the text CNN's 8 dense ones; 17 take the fallback).
fn rmsprop_many_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(111);
    for count in [1usize, 8, 17] {
        let tensors: Vec<[Vec<f32>; 4]> = (0..count)
            .map(|t| {
                let len = [1, 255, 256, 257, 45_000, 100, 600, 2][t % 8];
                let n = random_f32(&mut rng, len, 0.01)
                    .iter()
                    .map(|v| v.abs() + 1e-3)
                    .collect();
                [
                    random_f32(&mut rng, len, 0.1),
                    random_f32(&mut rng, len, 1.0),
                    n,
                    random_f32(&mut rng, len, 0.01),
                ]
            })
            .collect();
        for centered in [false, true] {
            for clip in [0.0f32, 0.5] {
                let op = Op::RmsMany {
                    p: rms(centered, clip),
                    tensors: &tensors,
                    norm_sq: 7.0,
                };
                let (cpu, gpu) = both(g, |b| b.run(&op));
                assert_eq!(gpu.len(), 3 * count);
                for (i, (gv, cv)) in gpu.iter().zip(&cpu).enumerate() {
                    let label = format!(
                        "rmsprop_many {count} tensors centered {centered} clip {clip}: tensor {} {}",
                        i / 3,
                        ["w", "n", "a"][i % 3]
                    );
                    close(&label, gv, cv, (1e-6, 1e-4));
                }
            }
        }
    }
}

#[test]
fn rmsprop_rows_matches_the_cpu() {
    if let Some(g) = gpu() {
        rmsprop_rows_matches_the_cpu_body(&Gpu(&g));
    }
}

fn rmsprop_rows_matches_the_cpu_body(g: &dyn AnyBackend) {
    let mut rng = Rng::new(108);
    for (vocab, e) in [(1, 1), (300, 127), (300, 129), (2000, 300)] {
        let step = 12u32;
        let table = random_f32(&mut rng, vocab * e, 0.1);
        let n: Vec<f32> = random_f32(&mut rng, vocab * e, 0.01)
            .iter()
            .map(|v| v.abs() + 1e-3)
            .collect();
        let a = random_f32(&mut rng, vocab * e, 0.01);
        let last: Vec<u32> = (0..vocab)
            .map(|_| rng.below(step as usize) as u32)
            .collect();
        let mut rows: Vec<u32> = (0..vocab as u32).filter(|_| rng.unit() < 0.5).collect();
        if rows.is_empty() {
            rows.push(0);
        }
        rows.reverse();
        let grad = random_f32(&mut rng, rows.len() * e, 1.0);
        let norm_sq = grad.iter().map(|v| v * v).sum::<f32>();
        for centered in [false, true] {
            let p = rms(centered, 0.5);
            let op = Op::RmsRows {
                p,
                table: &table,
                g: &grad,
                rows: &rows,
                e,
                n: &n,
                a: &a,
                last: &last,
                step,
                norm_sq,
            };
            let (cpu, gpu) = both(g, |b| b.run_idx(&op));
            close("rmsprop_rows table", &gpu.0[0], &cpu.0[0], (1e-6, 1e-4));
            close("rmsprop_rows n", &gpu.0[1], &cpu.0[1], (1e-7, 1e-4));
            close("rmsprop_rows a", &gpu.0[2], &cpu.0[2], (1e-7, 1e-4));
            assert_eq!(gpu.1[0], cpu.1[0], "rmsprop_rows last_step");
        }
    }
}

// ---------------------------------------------------------------- backends and errors

#[test]
fn a_buffer_of_another_backend_is_refused() {
    let (Some(first), Some(second)) = (gpu(), gpu()) else {
        return;
    };
    let x = first.upload(&[1.0, 2.0]).expect("upload");
    let mut out = second.alloc(2).expect("alloc");
    let err = second.mul(&x, &x, 2, &mut out).expect_err("foreign buffer");
    assert!(matches!(err, Error::InvalidShape { .. }), "{err}");
}

#[test]
fn backends_on_one_gpu_run_side_by_side() {
    if gpu().is_none() {
        return;
    }
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            std::thread::spawn(move || {
                let b = CudaBackend::new(0).expect("backend");
                let mut rng = Rng::new(200 + i);
                let x = random_f32(&mut rng, 100_000, 1.0);
                let mut acc = b.upload(&[0.0]).expect("upload");
                let xb = b.upload(&x).expect("upload");
                for _ in 0..20 {
                    b.sum_squares(&xb, x.len(), &mut acc).expect("sum_squares");
                }
                let got = b.download(&acc).expect("download")[0];
                let want = 20.0 * x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
                assert!(
                    (f64::from(got) - want).abs() <= 1e-4 * want,
                    "thread {i}: {got} vs {want}"
                );
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a backend thread panicked");
    }
}

#[test]
fn conv_branches_in_one_launch_match_per_branch_and_the_cpu() {
    if let Some(g) = gpu() {
        branches::check_conv_branches(&g);
    }
}

#[test]
fn step_scalars_in_device_memory_match_the_host_arguments() {
    if let Some(g) = gpu() {
        graphs::check_step_scalars(&g);
    }
}

#[test]
fn the_fused_head_matches_its_three_ops_and_the_cpu() {
    if let Some(g) = gpu() {
        head::check_head(&g);
        head::check_linear_bwd_masked(&g);
    }
}

#[test]
fn a_captured_graph_replays_its_work() {
    if let Some(g) = gpu() {
        graphs::check_capture_and_replay(&g);
    }
}

#[test]
fn a_whole_training_step_matches_the_cpu() {
    if let Some(g) = gpu() {
        step::check_training_step(&g);
    }
}

/// Runs every body above with the CPU in the GPU's place, so the harness itself (inputs,
/// poisoning, comparisons, the composed step) is exercised on machines without a GPU.
#[test]
fn the_harness_passes_cpu_against_cpu() {
    let cpu = CpuBackend::new();
    let bodies: [fn(&dyn AnyBackend); 9] = [
        fill_mul_and_dropout_match_the_cpu_body,
        embedding_ops_match_the_cpu_body,
        conv_forward_matches_the_cpu_body,
        conv_backward_matches_the_cpu_body,
        linear_matches_the_cpu_body,
        softmax_xent_matches_the_cpu_body,
        optimizer_ops_match_the_cpu_body,
        rmsprop_rows_matches_the_cpu_body,
        rmsprop_many_matches_the_cpu_body,
    ];
    for body in bodies {
        body(&Cpu(&cpu));
    }
    step::check_training_step(&cpu);
    branches::check_conv_branches(&cpu);
    graphs::check_step_scalars(&cpu);
    head::check_head(&cpu);
    head::check_linear_bwd_masked(&cpu);
}
