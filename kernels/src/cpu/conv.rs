//! Convolution over time fused with bias, ReLU and max-over-time pooling, and its backward.
//!
//! The forward pass is one dense product per group of sentences. The input rows of output
//! position `t` of sentence `b` are the contiguous slice `x[(b*S + t)*E .. (b*S + t + width)*E]`,
//! so the im2col matrix is `x` itself read with row stride `E` and `width*E` columns: no copy.
//! Reading a group of `n` sentences as one long sequence gives `n*S - width + 1` rows, of which
//! the `width - 1` rows straddling two sentences are computed and ignored (under 8% extra work
//! at the study's sizes) in exchange for one large, well-shaped product `[rows, width*E] x
//! [width*E, F]` run by faer's packed SIMD kernels.
//!
//! Max pooling passes the gradient to one position a filter and sentence, so the backward pass
//! is a sum of `batch * F` scaled copies of `width*E` slices in each direction: cheap, no product.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{indices_below, need, shape_ok};
use crate::{ConvShape, Result};

/// Inputs of [`backward`] besides the shape.
pub(crate) struct BackwardInputs<'a> {
    pub(crate) grad_pooled: &'a [f32],
    pub(crate) pooled: &'a [f32],
    pub(crate) argmax: &'a [u32],
    pub(crate) x: &'a [f32],
    pub(crate) w: &'a [f32],
}

fn check_shape(op: &'static str, s: &ConvShape) -> Result<()> {
    shape_ok(
        op,
        s.batch > 0 && s.embed_dim > 0 && s.num_filters > 0,
        || format!("batch, embed_dim and num_filters must be positive: {s:?}"),
    )?;
    shape_ok(op, s.width >= 1 && s.width <= s.seq_len, || {
        format!("width {} must be in 1..={}", s.width, s.seq_len)
    })?;
    shape_ok(op, s.pooled_offset + s.num_filters <= s.pooled_cols, || {
        format!(
            "columns {}..{} exceed pooled_cols {}",
            s.pooled_offset,
            s.pooled_offset + s.num_filters,
            s.pooled_cols
        )
    })
}

/// Sentences handled by one rayon task: about two tasks a thread, at least a few sentences.
fn sentences_per_task(batch: usize) -> usize {
    let tasks = 2 * rayon::current_num_threads().max(1);
    batch.div_ceil(tasks).max(4).min(batch)
}

/// See [`crate::Backend::conv_pool_fwd`].
pub(crate) fn forward(
    shape: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    pooled: &mut [f32],
    argmax: &mut [u32],
) -> Result<()> {
    const OP: &str = "conv_pool_fwd";
    check_shape(OP, shape)?;
    let ConvShape {
        batch,
        seq_len,
        embed_dim,
        width,
        num_filters,
        pooled_cols,
        pooled_offset,
    } = *shape;
    let k = width * embed_dim;
    need(OP, "x", x.len(), batch * seq_len * embed_dim)?;
    need(OP, "w", w.len(), num_filters * k)?;
    need(OP, "bias", bias.len(), num_filters)?;
    need(OP, "pooled", pooled.len(), batch * pooled_cols)?;
    need(OP, "argmax", argmax.len(), batch * num_filters)?;

    let per_task = sentences_per_task(batch);
    let rhs = MatRef::from_row_major_slice(&w[..num_filters * k], num_filters, k).transpose();
    let bias = &bias[..num_filters];
    pooled[..batch * pooled_cols]
        .par_chunks_mut(per_task * pooled_cols)
        .zip(argmax[..batch * num_filters].par_chunks_mut(per_task * num_filters))
        .enumerate()
        .for_each(|(task, (pooled_rows, arg_rows))| {
            let first = task * per_task;
            let n = arg_rows.len() / num_filters;
            let rows = n * seq_len - width + 1;
            let xs = &x[first * seq_len * embed_dim..(first + n) * seq_len * embed_dim];
            let lhs = MatRef::from_row_major_slice_with_stride(xs, rows, k, embed_dim);
            let mut z = vec![0.0f32; rows * num_filters];
            let dst = MatMut::from_row_major_slice_mut(&mut z, rows, num_filters);
            matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
            for i in 0..n {
                let z_sentence = &z[i * seq_len * num_filters..];
                let out = &mut pooled_rows[i * pooled_cols + pooled_offset..][..num_filters];
                let arg = &mut arg_rows[i * num_filters..(i + 1) * num_filters];
                pool_sentence(z_sentence, shape.positions(), bias, out, arg);
            }
        });
    Ok(())
}

/// Adds the bias, takes the first maximum over the positions and applies the ReLU.
fn pool_sentence(z: &[f32], positions: usize, bias: &[f32], out: &mut [f32], arg: &mut [u32]) {
    let num_filters = bias.len();
    for (f, (o, b)) in out.iter_mut().zip(bias).enumerate() {
        *o = z[f] + b;
        arg[f] = 0;
    }
    for t in 1..positions {
        let row = &z[t * num_filters..(t + 1) * num_filters];
        for f in 0..num_filters {
            let value = row[f] + bias[f];
            if value > out[f] {
                out[f] = value;
                arg[f] = t as u32;
            }
        }
    }
    for o in out.iter_mut() {
        *o = o.max(0.0);
    }
}

/// See [`crate::Backend::conv_pool_bwd`].
pub(crate) fn backward(
    shape: &ConvShape,
    inputs: &BackwardInputs<'_>,
    grad_w: &mut [f32],
    grad_b: &mut [f32],
    grad_x: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv_pool_bwd";
    check_shape(OP, shape)?;
    let s = *shape;
    let k = s.width * s.embed_dim;
    let sentence_len = s.seq_len * s.embed_dim;
    need(
        OP,
        "grad_pooled",
        inputs.grad_pooled.len(),
        s.batch * s.pooled_cols,
    )?;
    need(OP, "pooled", inputs.pooled.len(), s.batch * s.pooled_cols)?;
    need(OP, "argmax", inputs.argmax.len(), s.batch * s.num_filters)?;
    need(OP, "x", inputs.x.len(), s.batch * sentence_len)?;
    need(OP, "w", inputs.w.len(), s.num_filters * k)?;
    need(OP, "grad_w", grad_w.len(), s.num_filters * k)?;
    need(OP, "grad_b", grad_b.len(), s.num_filters)?;
    need(OP, "grad_x", grad_x.len(), s.batch * sentence_len)?;
    indices_below(OP, &inputs.argmax[..s.batch * s.num_filters], s.positions())?;

    // The ReLU gate: the pooled gradient where the pooled value is positive.
    let gate = |b: usize, f: usize| {
        let at = b * s.pooled_cols + s.pooled_offset + f;
        if inputs.pooled[at] > 0.0 {
            inputs.grad_pooled[at]
        } else {
            0.0
        }
    };
    let start_of = |b: usize, f: usize| {
        b * sentence_len + inputs.argmax[b * s.num_filters + f] as usize * s.embed_dim
    };

    grad_w[..s.num_filters * k]
        .par_chunks_mut(k)
        .zip(grad_b[..s.num_filters].par_iter_mut())
        .enumerate()
        .for_each(|(f, (gw, gb))| {
            gw.fill(0.0);
            *gb = 0.0;
            for b in 0..s.batch {
                let g = gate(b, f);
                if g == 0.0 {
                    continue;
                }
                *gb += g;
                axpy(g, &inputs.x[start_of(b, f)..][..k], gw);
            }
        });

    grad_x[..s.batch * sentence_len]
        .par_chunks_mut(sentence_len)
        .enumerate()
        .for_each(|(b, gx)| {
            for f in 0..s.num_filters {
                let g = gate(b, f);
                if g == 0.0 {
                    continue;
                }
                let start = start_of(b, f) - b * sentence_len;
                axpy(g, &inputs.w[f * k..(f + 1) * k], &mut gx[start..start + k]);
            }
        });
    Ok(())
}

/// `y += a * x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_one_single_filter_picks_the_first_maximum() {
        // x = [1, 3, 3, 2] over four positions, E = 1, w = 1, b = -1.
        let shape = ConvShape {
            batch: 1,
            seq_len: 4,
            embed_dim: 1,
            width: 1,
            num_filters: 1,
            pooled_cols: 2,
            pooled_offset: 1,
        };
        let mut pooled = vec![7.0, 7.0];
        let mut argmax = vec![9];
        forward(
            &shape,
            &[1.0, 3.0, 3.0, 2.0],
            &[1.0],
            &[-1.0],
            &mut pooled,
            &mut argmax,
        )
        .unwrap();
        assert_eq!(pooled, vec![7.0, 2.0]);
        assert_eq!(argmax, vec![1]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let shape = ConvShape {
            batch: 1,
            seq_len: 2,
            embed_dim: 1,
            width: 3,
            num_filters: 1,
            pooled_cols: 1,
            pooled_offset: 0,
        };
        let mut pooled = vec![0.0];
        let mut argmax = vec![0];
        assert!(
            forward(
                &shape,
                &[1.0; 2],
                &[1.0; 3],
                &[0.0],
                &mut pooled,
                &mut argmax
            )
            .is_err()
        );
    }
}
