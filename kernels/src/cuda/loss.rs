//! Launcher of `loss.cu`: softmax cross-entropy with loss and accuracy kept on the device.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{Error, Result};

/// Must match `LOSS_THREADS` in `loss.cu`.
const THREADS: u32 = 256;

/// See [`crate::Backend::softmax_xent`].
pub(super) fn softmax_xent(
    be: &CudaBackend,
    logits: &CudaSlice<f32>,
    labels: &CudaSlice<u32>,
    batch: usize,
    classes: usize,
    grad_logits: Option<&mut CudaSlice<f32>>,
    stats: &mut CudaSlice<f32>,
) -> Result<()> {
    const OP: &str = "softmax_xent";
    if classes == 0 {
        return Err(Error::InvalidShape {
            op: OP,
            reason: "classes must be positive".to_string(),
        });
    }
    be.check(OP, "logits", logits, batch * classes)?;
    be.check(OP, "labels", labels, batch)?;
    be.check(OP, "stats", stats, 2)?;
    let batch_u32 = to_u32(OP, "batch", batch)?;
    let classes_u32 = to_u32(OP, "classes", classes)?;
    to_u32(OP, "batch * classes", batch * classes)?;
    if batch == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let function = be.function(Kernel::SoftmaxXent)?;
    let null_grad = 0u64;
    let mut builder = be.stream.launch_builder(function);
    builder.arg(logits).arg(labels);
    let write_grad: i32 = match grad_logits {
        Some(grad) => {
            be.check(OP, "grad_logits", grad, batch * classes)?;
            builder.arg(grad);
            1
        }
        None => {
            builder.arg(&null_grad);
            0
        }
    };
    builder
        .arg(&mut *stats)
        .arg(&batch_u32)
        .arg(&classes_u32)
        .arg(&write_grad);
    // SAFETY: the arguments match `softmax_xent_fwd_f32(const float* logits, const unsigned*
    // labels, float* grad, float* stats, unsigned batch, unsigned classes, int write_grad)` in
    // order and type (a null device pointer, 8 bytes, stands for an absent gradient, which the
    // kernel never touches since write_grad is 0). The single block of 256 threads the kernel
    // requires walks n < batch, c < classes, within logits, labels and grad (checked above);
    // labels >= classes are never used as an index; stats holds 2 elements.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
