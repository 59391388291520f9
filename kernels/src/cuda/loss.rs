//! Launchers of `loss.cu`: softmax cross-entropy with loss and accuracy kept on the device, and
//! the fused head (dropout, linear, softmax cross-entropy).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::module::Kernel;
use super::{CudaBackend, driver_error, to_u32};
use crate::{Error, HeadInputs, HeadOutputs, Result};

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

/// See [`crate::Backend::head_fwd`]: dropout, linear and softmax cross-entropy in one launch.
pub(super) fn head_fwd(
    be: &CudaBackend,
    inputs: &HeadInputs<'_, CudaBackend>,
    out: HeadOutputs<'_, CudaBackend>,
) -> Result<()> {
    const OP: &str = "head_fwd";
    let s = inputs.shape;
    if s.out_features == 0 || s.in_features == 0 {
        return Err(Error::InvalidShape {
            op: OP,
            reason: format!("in_features and classes must be positive: {s:?}"),
        });
    }
    let len = s.batch * s.in_features;
    be.check(OP, "pooled", inputs.pooled, len)?;
    be.check(OP, "w", inputs.w, s.out_features * s.in_features)?;
    be.check(OP, "b", inputs.b, s.out_features)?;
    be.check(OP, "labels", inputs.labels, s.batch)?;
    be.check(OP, "logits", out.logits, s.batch * s.out_features)?;
    be.check(OP, "stats", out.stats, 2)?;
    let dims = [
        to_u32(OP, "batch", s.batch)?,
        to_u32(OP, "in_features", s.in_features)?,
        to_u32(OP, "classes", s.out_features)?,
    ];
    to_u32(OP, "batch * in_features", len)?;
    to_u32(OP, "batch * classes", s.batch * s.out_features)?;
    let (drop_prob, seed_base) = match &inputs.dropout {
        Some(d) => {
            if !(0.0..1.0).contains(&d.drop_prob) {
                return Err(Error::InvalidShape {
                    op: OP,
                    reason: format!("drop probability {} is outside [0, 1)", d.drop_prob),
                });
            }
            be.check(OP, "step", d.step, 1)?;
            be.check(OP, "dropped", out.dropped, len)?;
            be.check(OP, "mask", out.mask, len)?;
            (d.drop_prob, d.seed_base)
        }
        None => (0.0, 0),
    };
    if let Some(grad) = out.grad_logits.as_deref() {
        be.check(OP, "grad_logits", grad, s.batch * s.out_features)?;
    }
    if s.batch == 0 {
        return Ok(());
    }
    let keep_scale = super::elementwise::keep_scale(drop_prob);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let null = 0u64;
    let mut builder = be.stream.launch_builder(be.function(Kernel::HeadFwd)?);
    builder
        .arg(inputs.pooled)
        .arg(inputs.w)
        .arg(inputs.b)
        .arg(inputs.labels)
        .arg(&mut *out.dropped)
        .arg(&mut *out.mask)
        .arg(&mut *out.logits);
    let write_grad: i32 = match out.grad_logits {
        Some(grad) => {
            builder.arg(grad);
            1
        }
        None => {
            builder.arg(&null);
            0
        }
    };
    builder
        .arg(&mut *out.stats)
        .arg(&dims[0])
        .arg(&dims[1])
        .arg(&dims[2])
        .arg(&drop_prob)
        .arg(&keep_scale)
        .arg(&seed_base);
    match &inputs.dropout {
        Some(d) => builder.arg(d.step),
        None => builder.arg(&null),
    };
    builder.arg(&write_grad);
    // SAFETY: the arguments match `head_fwd_f32(const float* pooled, const float* w, const
    // float* b, const unsigned* labels, float* dropped, float* mask, float* logits, float* grad,
    // float* stats, unsigned batch, in_features, classes, float drop_prob, float keep_scale,
    // unsigned long long seed_base, const unsigned* step, int write_grad)` in order and type. A
    // null step (no dropout) means dropped and mask are never touched; a null grad comes with
    // write_grad 0 and is never touched. The single block of 256 threads the kernel requires
    // indexes pooled, dropped and mask below batch * in_features, w below classes *
    // in_features, logits and grad below batch * classes, labels below batch, b below classes
    // (all checked above); labels >= classes are never used as an index; stats holds 2.
    unsafe { builder.launch(cfg) }.map_err(driver_error(OP))?;
    be.count_launch();
    Ok(())
}
