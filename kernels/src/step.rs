//! What a training step needs to be captured once and replayed (a CUDA graph): the values that
//! change from step to step live in device memory, and the operations that use them read them
//! there ([`crate::Backend::advance_step`], [`crate::Backend::dropout_fwd_at`],
//! [`crate::Backend::rmsprop_many_at`], [`crate::Backend::rmsprop_rows_at`]).
//!
//! A replayed graph repeats the kernel arguments it was captured with, so a host value passed
//! as an argument would be frozen at its captured value. The step counter is advanced on the
//! device inside the step, so every replay sees the next step; the learning rate is written to
//! its device scalar between steps (once an epoch), outside any graph.

use crate::Backend;

/// The per-step scalars in device memory.
pub struct StepScalars<'a, B: Backend + ?Sized> {
    /// `[step]`: the 1-based number of the current training step, advanced by
    /// [`crate::Backend::advance_step`] at the start of each step.
    pub step: &'a B::IdxBuf,
    /// `[learning rate]`, used in place of [`crate::RmsProp::lr`].
    pub lr: &'a B::Buf,
}

/// Reads the first element of a device scalar (the default implementations' way to run the
/// device-scalar operations on a backend without graphs).
pub(crate) fn first<T: Copy>(values: Vec<T>, op: &'static str) -> crate::Result<T> {
    values.first().copied().ok_or(crate::Error::BufferTooShort {
        op,
        buffer: "scalar",
        needed: 1,
        actual: 0,
    })
}
