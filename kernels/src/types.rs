//! The shapes, hyperparameters and descriptions the [`crate::Backend`] operations take.

use crate::Backend;

/// Shape of one convolution branch with its fused ReLU and max-over-time pooling.
///
/// Input `x` is `[batch, seq_len, embed_dim]`, weights `w` are `[num_filters, width, embed_dim]`,
/// bias `b` is `[num_filters]`. The convolution is "valid" over time: it has
/// `positions() = seq_len - width + 1` outputs per filter, so `width <= seq_len`. The pooled
/// output is a `[batch, pooled_cols]` matrix shared by all branches; this branch owns columns
/// `pooled_offset .. pooled_offset + num_filters`. `argmax` is `[batch, num_filters]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Sentences in the batch.
    pub batch: usize,
    /// Tokens a sentence (padded).
    pub seq_len: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Filter width in tokens.
    pub width: usize,
    /// Feature maps of this branch.
    pub num_filters: usize,
    /// Columns of the shared pooled matrix (all branches together).
    pub pooled_cols: usize,
    /// First column of this branch in the pooled matrix.
    pub pooled_offset: usize,
}

impl ConvShape {
    /// Output positions over time, `seq_len - width + 1`.
    pub fn positions(&self) -> usize {
        self.seq_len + 1 - self.width
    }
}

/// Shape of a fully connected layer: `x [batch, in_features]`, `w [out_features, in_features]`,
/// `b [out_features]`, `out [batch, out_features]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows of `x`.
    pub batch: usize,
    /// Columns of `x`.
    pub in_features: usize,
    /// Columns of `out`.
    pub out_features: usize,
}

/// Hyperparameters of one RMSProp step with global-norm gradient clipping.
///
/// With `norm = sqrt(grad_norm_sq[0])` and `scale = max_grad_norm / norm` when
/// `max_grad_norm > 0 && norm > max_grad_norm`, else `scale = 1`, each element does
/// `g = scale * grad; n = decay * n + (1 - decay) * g²` and then
/// - plain: `w -= lr * g / (sqrt(n) + eps)`;
/// - centered: `a = decay * a + (1 - decay) * g; w -= lr * g / (sqrt(max(n - a², 0)) + eps)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the running averages (0.9 in the study).
    pub decay: f32,
    /// Added to the denominator (1e-8 in the study).
    pub eps: f32,
    /// Clip threshold for the global gradient norm; 0 disables clipping.
    pub max_grad_norm: f32,
    /// Use the centered form (keeps a running mean of the gradient too).
    pub centered: bool,
}

/// Optimizer state of one parameter tensor: the running mean square, and for the centered form
/// the running mean.
#[derive(Debug)]
pub struct RmsState<'a, B: Backend + ?Sized> {
    /// Running mean of g², same length as the parameter.
    pub mean_square: &'a mut B::Buf,
    /// Running mean of g (centered form only).
    pub mean: Option<&'a mut B::Buf>,
}

/// One dense parameter of [`Backend::rmsprop_many`]: weights, gradient, state and length.
pub struct RmsTensor<'a, B: Backend + ?Sized> {
    /// The weights, updated in place.
    pub w: &'a mut B::Buf,
    /// Their gradient.
    pub grad: &'a B::Buf,
    /// Their running averages.
    pub state: RmsState<'a, B>,
    /// Elements to update.
    pub len: usize,
}

/// Where a CUDA device was found, as reported by [`crate::probe_cuda`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total device memory.
    pub memory_bytes: u64,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Ordinal of the device.
    pub ordinal: usize,
}
