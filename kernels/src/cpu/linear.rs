//! The fully connected layer and its backward pass.
//!
//! The classifier is small (`[batch, 3*F] x [3*F, classes]`), so plain loops parallel over rows
//! are as fast as a product call here.

use rayon::prelude::*;

use super::{need, shape_ok};
use crate::{LinearShape, Result};

fn check(op: &'static str, s: &LinearShape) -> Result<()> {
    shape_ok(
        op,
        s.batch > 0 && s.in_features > 0 && s.out_features > 0,
        || format!("every dimension must be positive: {s:?}"),
    )
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out[n,o] = b[o] + Σ_i x[n,i] · w[o,i]`.
pub(crate) fn forward(
    s: &LinearShape,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [f32],
) -> Result<()> {
    const OP: &str = "linear_fwd";
    check(OP, s)?;
    need(OP, "x", x.len(), s.batch * s.in_features)?;
    need(OP, "w", w.len(), s.out_features * s.in_features)?;
    need(OP, "b", b.len(), s.out_features)?;
    need(OP, "out", out.len(), s.batch * s.out_features)?;
    out[..s.batch * s.out_features]
        .par_chunks_mut(s.out_features)
        .zip(x[..s.batch * s.in_features].par_chunks(s.in_features))
        .for_each(|(row, xn)| {
            for (o, value) in row.iter_mut().enumerate() {
                *value = b[o] + dot(xn, &w[o * s.in_features..(o + 1) * s.in_features]);
            }
        });
    Ok(())
}

/// Gradients of [`forward`] with respect to `x`, `w` and `b` (all overwrite).
pub(crate) fn backward(
    s: &LinearShape,
    grad_out: &[f32],
    x: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
    grad_w: &mut [f32],
    grad_b: &mut [f32],
) -> Result<()> {
    const OP: &str = "linear_bwd";
    check(OP, s)?;
    let (n_in, n_out) = (s.in_features, s.out_features);
    need(OP, "grad_out", grad_out.len(), s.batch * n_out)?;
    need(OP, "x", x.len(), s.batch * n_in)?;
    need(OP, "w", w.len(), n_out * n_in)?;
    need(OP, "grad_x", grad_x.len(), s.batch * n_in)?;
    need(OP, "grad_w", grad_w.len(), n_out * n_in)?;
    need(OP, "grad_b", grad_b.len(), n_out)?;

    grad_x[..s.batch * n_in]
        .par_chunks_mut(n_in)
        .zip(grad_out[..s.batch * n_out].par_chunks(n_out))
        .for_each(|(gx, go)| {
            gx.fill(0.0);
            for (o, &g) in go.iter().enumerate() {
                for (d, wv) in gx.iter_mut().zip(&w[o * n_in..(o + 1) * n_in]) {
                    *d += g * wv;
                }
            }
        });
    grad_w[..n_out * n_in]
        .par_chunks_mut(n_in)
        .zip(grad_b[..n_out].par_iter_mut())
        .enumerate()
        .for_each(|(o, (gw, gb))| {
            gw.fill(0.0);
            *gb = 0.0;
            for n in 0..s.batch {
                let g = grad_out[n * n_out + o];
                *gb += g;
                for (d, xv) in gw.iter_mut().zip(&x[n * n_in..(n + 1) * n_in]) {
                    *d += g * xv;
                }
            }
        });
    Ok(())
}
