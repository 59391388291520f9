//! Embedding lookup and its gradient compacted to the rows a batch touched.

use rayon::prelude::*;

use super::{indices_below, need};
use crate::Result;

/// `out[t*E..(t+1)*E] = table[ids[t]*E..]` for `t < n_tokens`.
pub(crate) fn gather(
    table: &[f32],
    vocab: usize,
    embed_dim: usize,
    ids: &[u32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<()> {
    const OP: &str = "embedding_gather";
    need(OP, "table", table.len(), vocab * embed_dim)?;
    need(OP, "ids", ids.len(), n_tokens)?;
    need(OP, "out", out.len(), n_tokens * embed_dim)?;
    let ids = &ids[..n_tokens];
    indices_below(OP, ids, vocab)?;
    if embed_dim == 0 {
        return Ok(());
    }
    out[..n_tokens * embed_dim]
        .par_chunks_mut(embed_dim)
        .zip(ids.par_iter())
        .for_each(|(row, &id)| {
            let start = id as usize * embed_dim;
            row.copy_from_slice(&table[start..start + embed_dim]);
        });
    Ok(())
}

/// `grad_rows[r] = Σ_{t: slots[t] = r} grad_out[t]` for `r < n_rows` (overwrite).
///
/// Sequential: a batch has a few thousand tokens, and the sum over tokens runs in token order.
pub(crate) fn grad_rows(
    grad_out: &[f32],
    slots: &[u32],
    n_tokens: usize,
    embed_dim: usize,
    n_rows: usize,
    grad_rows: &mut [f32],
) -> Result<()> {
    const OP: &str = "embedding_grad_rows";
    need(OP, "grad_out", grad_out.len(), n_tokens * embed_dim)?;
    need(OP, "slots", slots.len(), n_tokens)?;
    need(OP, "grad_rows", grad_rows.len(), n_rows * embed_dim)?;
    let slots = &slots[..n_tokens];
    indices_below(OP, slots, n_rows)?;
    let out = &mut grad_rows[..n_rows * embed_dim];
    out.fill(0.0);
    for (t, &slot) in slots.iter().enumerate() {
        let src = &grad_out[t * embed_dim..(t + 1) * embed_dim];
        let dst = &mut out[slot as usize * embed_dim..(slot as usize + 1) * embed_dim];
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn gather_copies_rows_and_rejects_bad_ids() {
        let table = vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
        let mut out = vec![0.0; 6];
        gather(&table, 3, 2, &[2, 0, 2], 3, &mut out).unwrap();
        assert_eq!(out, vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
        let err = gather(&table, 3, 2, &[3], 1, &mut out).unwrap_err();
        assert!(matches!(err, Error::IndexOutOfRange { index: 3, .. }));
    }

    #[test]
    fn grad_rows_sums_tokens_of_each_slot() {
        let grad = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut rows = vec![9.0; 6];
        grad_rows(&grad, &[1, 0, 1], 3, 2, 3, &mut rows).unwrap();
        assert_eq!(rows, vec![3.0, 4.0, 6.0, 8.0, 0.0, 0.0]);
    }
}
