//! Several convolution branches over one input, for [`crate::Backend::conv_pool_fwd_branches`]
//! and [`crate::Backend::conv_pool_bwd_branches`]: the text CNN's filter widths (3/4/5 by
//! default, any widths allowed) read the same embedded batch and write disjoint columns of one
//! pooled matrix, so a device can run them all in one launch.

use crate::{Backend, ConvShape, Error, Result};

/// One branch of [`crate::Backend::conv_pool_fwd_branches`]: its shape, weights and bias, and
/// where its argmax positions go.
pub struct ConvFwdBranch<'a, B: Backend + ?Sized> {
    /// The branch's shape; `batch`, `seq_len`, `embed_dim` and `pooled_cols` are the same for
    /// every branch of a call.
    pub shape: ConvShape,
    /// `[num_filters, width, embed_dim]`.
    pub w: &'a B::Buf,
    /// `[num_filters]`.
    pub bias: &'a B::Buf,
    /// `[batch, num_filters]`, overwritten.
    pub argmax: &'a mut B::IdxBuf,
}

/// One branch of [`crate::Backend::conv_pool_bwd_branches`]: its shape, forward argmax and
/// weights, and its weight and bias gradients.
pub struct ConvBwdBranch<'a, B: Backend + ?Sized> {
    /// As in [`ConvFwdBranch::shape`].
    pub shape: ConvShape,
    /// The forward pass's argmax positions, `[batch, num_filters]`.
    pub argmax: &'a B::IdxBuf,
    /// `[num_filters, width, embed_dim]`.
    pub w: &'a B::Buf,
    /// Gradient of `w`, overwritten.
    pub grad_w: &'a mut B::Buf,
    /// Gradient of the bias, overwritten.
    pub grad_b: &'a mut B::Buf,
}

/// Checks that `shapes` is not empty and that every shape reads the same input and writes the
/// same pooled matrix (same batch, sequence length, embedding width and pooled columns), with
/// disjoint pooled columns. Returns the first shape.
///
/// # Errors
/// [`Error::InvalidShape`] naming `op` and the first branch that differs.
pub fn check_branch_shapes(op: &'static str, shapes: &[ConvShape]) -> Result<ConvShape> {
    let Some(&first) = shapes.first() else {
        return Err(Error::InvalidShape {
            op,
            reason: "no convolution branches".into(),
        });
    };
    for (i, s) in shapes.iter().enumerate() {
        let same = s.batch == first.batch
            && s.seq_len == first.seq_len
            && s.embed_dim == first.embed_dim
            && s.pooled_cols == first.pooled_cols;
        if !same {
            return Err(Error::InvalidShape {
                op,
                reason: format!(
                    "branch {i} ({s:?}) does not share branch 0's input and output ({first:?})"
                ),
            });
        }
        for (k, other) in shapes.iter().enumerate().take(i) {
            let disjoint = s.pooled_offset + s.num_filters <= other.pooled_offset
                || other.pooled_offset + other.num_filters <= s.pooled_offset;
            if !disjoint {
                return Err(Error::InvalidShape {
                    op,
                    reason: format!("branches {k} and {i} write overlapping pooled columns"),
                });
            }
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(width: usize, offset: usize) -> ConvShape {
        ConvShape {
            batch: 2,
            seq_len: 9,
            embed_dim: 4,
            width,
            num_filters: 3,
            pooled_cols: 9,
            pooled_offset: offset,
        }
    }

    #[test]
    fn branches_must_share_their_input_and_not_overlap() {
        let good = [shape(3, 0), shape(4, 3), shape(5, 6)];
        assert_eq!(check_branch_shapes("t", &good).unwrap(), good[0]);
        assert!(check_branch_shapes("t", &[]).is_err());
        let mut other_len = good;
        other_len[2].seq_len = 10;
        let err = check_branch_shapes("t", &other_len)
            .unwrap_err()
            .to_string();
        assert!(err.contains("branch 2"), "{err}");
        let overlap = [shape(3, 0), shape(4, 2)];
        let err = check_branch_shapes("t", &overlap).unwrap_err().to_string();
        assert!(err.contains("overlapping"), "{err}");
    }
}
