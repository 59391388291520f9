//! Element-wise operations: dropout, product and the sum of squares for the gradient norm.

use rayon::prelude::*;

use super::{need, shape_ok};
use crate::Result;
use crate::rng::dropout_uniform;

/// Elements a rayon task handles in the element-wise loops.
const CHUNK: usize = 1 << 14;

/// See [`crate::Backend::dropout_fwd`].
pub(crate) fn dropout(
    x: &[f32],
    len: usize,
    drop_prob: f32,
    seed: u64,
    out: &mut [f32],
    mask: &mut [f32],
) -> Result<()> {
    const OP: &str = "dropout_fwd";
    shape_ok(OP, (0.0..1.0).contains(&drop_prob), || {
        format!("drop probability {drop_prob} must be in [0, 1)")
    })?;
    need(OP, "x", x.len(), len)?;
    need(OP, "out", out.len(), len)?;
    need(OP, "mask", mask.len(), len)?;
    let keep_scale = 1.0 / (1.0 - drop_prob);
    out[..len]
        .par_chunks_mut(CHUNK)
        .zip(mask[..len].par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, (o, m))| {
            let first = chunk * CHUNK;
            for (i, (ov, mv)) in o.iter_mut().zip(m.iter_mut()).enumerate() {
                let index = first + i;
                let keep = dropout_uniform(seed, index as u64) >= drop_prob;
                *mv = if keep { keep_scale } else { 0.0 };
                *ov = x[index] * *mv;
            }
        });
    Ok(())
}

/// `out[i] = a[i] · b[i]`.
pub(crate) fn mul(a: &[f32], b: &[f32], len: usize, out: &mut [f32]) -> Result<()> {
    const OP: &str = "mul";
    need(OP, "a", a.len(), len)?;
    need(OP, "b", b.len(), len)?;
    need(OP, "out", out.len(), len)?;
    for ((o, x), y) in out[..len].iter_mut().zip(&a[..len]).zip(&b[..len]) {
        *o = x * y;
    }
    Ok(())
}

/// `acc[0] += Σ x[i]²`, summed in f64 per chunk, the chunk sums added in order so the result
/// does not depend on how rayon split the work.
pub(crate) fn sum_squares(x: &[f32], len: usize, acc: &mut [f32]) -> Result<()> {
    const OP: &str = "sum_squares";
    need(OP, "x", x.len(), len)?;
    need(OP, "acc", acc.len(), 1)?;
    let partial: Vec<f64> = x[..len]
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
        .collect();
    acc[0] += partial.iter().sum::<f64>() as f32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_zero_keeps_everything_and_half_drops_about_half() {
        let x = vec![2.0f32; 1000];
        let (mut out, mut mask) = (vec![0.0; 1000], vec![0.0; 1000]);
        dropout(&x, 1000, 0.0, 7, &mut out, &mut mask).unwrap();
        assert!(out.iter().all(|&v| v == 2.0));
        dropout(&x, 1000, 0.5, 7, &mut out, &mut mask).unwrap();
        let kept = mask.iter().filter(|&&m| m == 2.0).count();
        assert!((400..600).contains(&kept), "{kept}");
        assert!(out.iter().all(|&v| v == 0.0 || v == 4.0));
        assert!(dropout(&x, 1000, 1.0, 7, &mut out, &mut mask).is_err());
    }

    #[test]
    fn sum_squares_accumulates() {
        let mut acc = vec![1.0];
        sum_squares(&[1.0, 2.0, 3.0], 3, &mut acc).unwrap();
        assert_eq!(acc, vec![15.0]);
    }
}
