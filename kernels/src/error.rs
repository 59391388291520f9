//! The error type of every backend operation.

/// Result of a backend operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer is shorter than the shape an operation was given.
    #[error("{op}: buffer '{buffer}' has {actual} elements, the shape needs {needed}")]
    BufferTooShort {
        /// The operation that checked.
        op: &'static str,
        /// Which argument.
        buffer: &'static str,
        /// Elements the shape needs.
        needed: usize,
        /// Elements the buffer has.
        actual: usize,
    },
    /// A shape argument is invalid (zero, or inconsistent with another).
    #[error("{op}: invalid shape: {reason}")]
    InvalidShape {
        /// The operation that checked.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An index (token id, label, row) is out of range.
    #[error("{op}: index {index} out of range 0..{bound}")]
    IndexOutOfRange {
        /// The operation that checked.
        op: &'static str,
        /// The offending index.
        index: u32,
        /// The exclusive upper bound.
        bound: usize,
    },
    /// CUDA cannot be used: no driver, no device, the ordinal is past the last device, or the
    /// crate was built without the `cuda` feature.
    #[error("cuda unavailable: {reason}")]
    CudaUnavailable {
        /// Which of the cases it was, for the user.
        reason: String,
    },
    /// NVRTC rejected a kernel source.
    #[error("failed to compile kernel module '{module}':\n{log}")]
    Compile {
        /// The `.cu` module name.
        module: &'static str,
        /// The NVRTC log.
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("cuda error in {op}: {message}")]
    Cuda {
        /// What was being done.
        op: &'static str,
        /// The driver's message.
        message: String,
    },
}
