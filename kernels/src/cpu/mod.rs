//! The CPU backend: the reference for every CUDA kernel and the production path of `agent --cpu`.
//!
//! (Skeleton: the implementation is being written.)

/// The rayon-parallel CPU backend.
#[derive(Debug, Default)]
pub struct CpuBackend {}

impl CpuBackend {
    /// A backend on rayon's global thread pool.
    pub fn new() -> Self {
        Self {}
    }
}
