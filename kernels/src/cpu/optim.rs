//! RMSProp with global-norm clipping: the dense step and the lazy sparse step on embedding rows.
//!
//! RMSProp as in Tieleman and Hinton (2012), "Lecture 6.5 — RMSProp", with the centered variant of
//! Graves (2013), "Generating sequences with recurrent neural networks", eq. 38–41 (without
//! momentum). The formulas are on [`crate::RmsProp`].

use rayon::prelude::*;

use super::{indices_below, need, shape_ok};
use crate::cpu::CpuBackend;
use crate::{Result, RmsProp, RmsState};

/// Elements a rayon task updates.
const CHUNK: usize = 1 << 14;

/// The clipping factor from the squared global norm.
fn clip_scale(params: &RmsProp, norm_sq: f32) -> f32 {
    let norm = norm_sq.sqrt();
    if params.max_grad_norm > 0.0 && norm > params.max_grad_norm {
        params.max_grad_norm / norm
    } else {
        1.0
    }
}

/// One plain step of one element with the already clipped gradient `g`.
#[inline]
fn plain_step(p: &RmsProp, g: f32, w: &mut f32, n: &mut f32) {
    *n = p.decay * *n + (1.0 - p.decay) * g * g;
    *w -= p.lr * g / (n.sqrt() + p.eps);
}

/// One centered step of one element with the already clipped gradient `g`.
#[inline]
fn centered_step(p: &RmsProp, g: f32, w: &mut f32, n: &mut f32, a: &mut f32) {
    *n = p.decay * *n + (1.0 - p.decay) * g * g;
    *a = p.decay * *a + (1.0 - p.decay) * g;
    *w -= p.lr * g / ((*n - *a * *a).max(0.0).sqrt() + p.eps);
}

/// Applies one step to equally long slices (the running mean only when centered).
fn step_slice(
    p: &RmsProp,
    scale: f32,
    w: &mut [f32],
    g: &[f32],
    n: &mut [f32],
    a: Option<&mut [f32]>,
) {
    match a {
        Some(a) => {
            for (((wi, gi), ni), ai) in w.iter_mut().zip(g).zip(n.iter_mut()).zip(a.iter_mut()) {
                centered_step(p, scale * gi, wi, ni, ai);
            }
        }
        None => {
            for ((wi, gi), ni) in w.iter_mut().zip(g).zip(n.iter_mut()) {
                plain_step(p, scale * gi, wi, ni);
            }
        }
    }
}

fn check_params(op: &'static str, p: &RmsProp) -> Result<()> {
    shape_ok(op, (0.0..1.0).contains(&p.decay) && p.eps >= 0.0, || {
        format!(
            "decay {} must be in [0, 1) and eps {} non-negative",
            p.decay, p.eps
        )
    })
}

/// See [`crate::Backend::rmsprop`].
pub(crate) fn rmsprop(
    params: &RmsProp,
    w: &mut [f32],
    grad: &[f32],
    mean_square: &mut [f32],
    mean: Option<&mut Vec<f32>>,
    len: usize,
    grad_norm_sq: &[f32],
) -> Result<()> {
    const OP: &str = "rmsprop";
    check_params(OP, params)?;
    need(OP, "w", w.len(), len)?;
    need(OP, "grad", grad.len(), len)?;
    need(OP, "mean_square", mean_square.len(), len)?;
    need(OP, "grad_norm_sq", grad_norm_sq.len(), 1)?;
    if params.centered {
        need(OP, "mean", mean.as_deref().map_or(0, Vec::len), len)?;
    }
    let scale = clip_scale(params, grad_norm_sq[0]);
    let w_chunks = w[..len].par_chunks_mut(CHUNK);
    let g_chunks = grad[..len].par_chunks(CHUNK);
    let n_chunks = mean_square[..len].par_chunks_mut(CHUNK);
    match mean.filter(|_| params.centered) {
        Some(mean) => w_chunks
            .zip(g_chunks)
            .zip(n_chunks)
            .zip(mean[..len].par_chunks_mut(CHUNK))
            .for_each(|(((w, g), n), a)| step_slice(params, scale, w, g, n, Some(a))),
        None => w_chunks
            .zip(g_chunks)
            .zip(n_chunks)
            .for_each(|((w, g), n)| step_slice(params, scale, w, g, n, None)),
    }
    Ok(())
}

/// The batch's compacted embedding gradient and where its rows go.
pub(crate) struct SparseRows<'a> {
    pub(crate) grad_rows: &'a [f32],
    pub(crate) rows: &'a [u32],
    pub(crate) n_rows: usize,
    pub(crate) embed_dim: usize,
    pub(crate) step: u32,
}

/// See [`crate::Backend::rmsprop_rows`].
///
/// Why this equals the dense update to rounding: a row absent from the batch has a zero
/// gradient, so the dense step leaves its weights unchanged (`w -= lr * 0 / ..`) and only sets
/// `n = decay * n` (and `a = decay * a`). After `k` such steps the row holds `decay^k * n`, which
/// is what the lazy decay applies just before the row's next real step. Only the rounding of
/// `decay^k` against `k` products differs.
pub(crate) fn rmsprop_rows(
    params: &RmsProp,
    table: &mut [f32],
    sparse: &SparseRows<'_>,
    state: RmsState<'_, CpuBackend>,
    last_step: &mut [u32],
    grad_norm_sq: &[f32],
) -> Result<()> {
    const OP: &str = "rmsprop_rows";
    check_params(OP, params)?;
    let SparseRows {
        grad_rows,
        rows,
        n_rows,
        embed_dim: e,
        step,
    } = *sparse;
    need(OP, "grad_rows", grad_rows.len(), n_rows * e)?;
    need(OP, "rows", rows.len(), n_rows)?;
    need(OP, "grad_norm_sq", grad_norm_sq.len(), 1)?;
    shape_ok(OP, e > 0 && step > 0, || {
        format!("embed_dim {e} and step {step} must be positive")
    })?;
    let mut vocab = (table.len() / e)
        .min(state.mean_square.len() / e)
        .min(last_step.len());
    let mut mean = state.mean.filter(|_| params.centered);
    if params.centered {
        vocab = vocab.min(mean.as_deref().map_or(0, |m| m.len() / e));
    }
    let rows = &rows[..n_rows];
    indices_below(OP, rows, vocab)?;
    check_rows_fresh(OP, rows, last_step, step)?;

    let scale = clip_scale(params, grad_norm_sq[0]);
    for (slot, &row) in rows.iter().enumerate() {
        let r = row as usize;
        let missed = step - last_step[r] - 1;
        let decay_missed = params.decay.powi(missed.min(i32::MAX as u32) as i32);
        let span = r * e..(r + 1) * e;
        let n = &mut state.mean_square[span.clone()];
        n.iter_mut().for_each(|v| *v *= decay_missed);
        let mut a = mean.as_deref_mut().map(|m| &mut m[span.clone()]);
        if let Some(a) = a.as_deref_mut() {
            a.iter_mut().for_each(|v| *v *= decay_missed);
        }
        let g = &grad_rows[slot * e..(slot + 1) * e];
        step_slice(params, scale, &mut table[span], g, n, a);
        last_step[r] = step;
    }
    Ok(())
}

/// Rows must be distinct and not yet updated at `step`.
fn check_rows_fresh(op: &'static str, rows: &[u32], last_step: &[u32], step: u32) -> Result<()> {
    if let Some(&row) = rows.iter().find(|&&r| last_step[r as usize] >= step) {
        return Err(crate::Error::InvalidShape {
            op,
            reason: format!(
                "row {row} was already updated at step {}",
                last_step[row as usize]
            ),
        });
    }
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    match sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(crate::Error::InvalidShape {
            op,
            reason: format!("row {} appears twice", pair[0]),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(centered: bool) -> RmsProp {
        RmsProp {
            lr: 0.01,
            decay: 0.9,
            eps: 1e-8,
            max_grad_norm: 0.0,
            centered,
        }
    }

    /// Three dense steps where the row's gradient is zero at step 2 equal the lazy form.
    #[test]
    fn lazy_rows_equal_dense_steps() {
        for centered in [false, true] {
            let p = params(centered);
            let (mut w_dense, mut n_dense, mut a_dense) =
                (vec![0.5, -0.5], vec![0.0; 2], vec![0.0; 2]);
            let grads = [[0.3, -0.2], [0.0, 0.0], [0.1, 0.4]];
            for g in &grads {
                let mean = centered.then_some(&mut a_dense);
                rmsprop(&p, &mut w_dense, g, &mut n_dense, mean, 2, &[0.0]).unwrap();
            }
            let (mut table, mut n, mut a) = (vec![0.5, -0.5], vec![0.0; 2], vec![0.0; 2]);
            let mut last = vec![0u32];
            for (step, g) in [(1u32, &grads[0]), (3, &grads[2])] {
                let sparse = SparseRows {
                    grad_rows: g,
                    rows: &[0],
                    n_rows: 1,
                    embed_dim: 2,
                    step,
                };
                let state = RmsState {
                    mean_square: &mut n,
                    mean: centered.then_some(&mut a),
                };
                rmsprop_rows(&p, &mut table, &sparse, state, &mut last, &[0.0]).unwrap();
            }
            for (x, y) in table.iter().zip(&w_dense).chain(n.iter().zip(&n_dense)) {
                assert!((x - y).abs() < 1e-6, "{x} vs {y} (centered {centered})");
            }
            assert_eq!(last, vec![3]);
        }
    }

    #[test]
    fn clipping_scales_the_gradient() {
        let p = RmsProp {
            max_grad_norm: 1.0,
            ..params(false)
        };
        assert_eq!(clip_scale(&p, 4.0), 0.5);
        assert_eq!(clip_scale(&p, 0.25), 1.0);
    }
}
