//! The head of the text CNN for [`crate::Backend::head_fwd`]: dropout, the linear layer and
//! softmax cross-entropy, which a device can run in one launch, and the gradients of
//! [`crate::Backend::linear_bwd_masked`], the linear layer's backward with dropout's.

use crate::{Backend, LinearShape};

/// Dropout of the head's features, seeded from the device step counter as
/// [`crate::Backend::dropout_fwd_at`] seeds it.
pub struct HeadDropout<'a, B: Backend + ?Sized> {
    /// Drop probability in `[0, 1)`.
    pub drop_prob: f32,
    /// The run's dropout stream; the seed is `rng::mix64(seed_base, step[0])`.
    pub seed_base: u64,
    /// The device step counter.
    pub step: &'a B::IdxBuf,
}

/// The inputs of [`crate::Backend::head_fwd`].
pub struct HeadInputs<'a, B: Backend + ?Sized> {
    /// `batch`, `in_features` (the pooled columns) and `out_features` (the classes).
    pub shape: LinearShape,
    /// `[batch, in_features]`.
    pub pooled: &'a B::Buf,
    /// `[classes, in_features]`.
    pub w: &'a B::Buf,
    /// `[classes]`.
    pub b: &'a B::Buf,
    /// `[batch]`.
    pub labels: &'a B::IdxBuf,
    /// Dropout when training; `None` evaluates on `pooled` itself.
    pub dropout: Option<HeadDropout<'a, B>>,
}

/// The outputs of [`crate::Backend::head_fwd`].
pub struct HeadOutputs<'a, B: Backend + ?Sized> {
    /// The dropped features (overwritten when training).
    pub dropped: &'a mut B::Buf,
    /// The dropout mask (overwritten when training).
    pub mask: &'a mut B::Buf,
    /// `[batch, classes]`, overwritten.
    pub logits: &'a mut B::Buf,
    /// The gradient of the batch-mean loss, overwritten when given.
    pub grad_logits: Option<&'a mut B::Buf>,
    /// `[loss sum, correct]`, accumulated.
    pub stats: &'a mut B::Buf,
}

/// The gradients [`crate::Backend::linear_bwd_masked`] overwrites.
pub struct LinearGrads<'a, B: Backend + ?Sized> {
    /// `[batch, in_features]`: the gradient of the layer's input times the dropout mask.
    pub grad_x: &'a mut B::Buf,
    /// `[out_features, in_features]`.
    pub grad_w: &'a mut B::Buf,
    /// `[out_features]`.
    pub grad_b: &'a mut B::Buf,
}
