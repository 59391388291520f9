//! Softmax cross-entropy with its gradient and the running loss/accuracy statistics.

use super::{indices_below, need, shape_ok};
use crate::Result;

/// See [`crate::Backend::softmax_xent`]. Rows are independent and few (one a sentence), so this
/// runs on one thread; the loss sum is kept in f64 and added once.
pub(crate) fn softmax_xent(
    logits: &[f32],
    labels: &[u32],
    batch: usize,
    classes: usize,
    grad_logits: Option<&mut Vec<f32>>,
    stats: &mut [f32],
) -> Result<()> {
    const OP: &str = "softmax_xent";
    shape_ok(OP, batch > 0 && classes > 0, || {
        format!("batch {batch} and classes {classes} must be positive")
    })?;
    need(OP, "logits", logits.len(), batch * classes)?;
    need(OP, "labels", labels.len(), batch)?;
    need(OP, "stats", stats.len(), 2)?;
    if let Some(grad) = grad_logits.as_deref() {
        need(OP, "grad_logits", grad.len(), batch * classes)?;
    }
    let labels = &labels[..batch];
    indices_below(OP, labels, classes)?;

    let mut grad = grad_logits;
    let mut loss_sum = 0.0f64;
    let mut correct = 0u32;
    let inv_batch = 1.0 / batch as f32;
    for (n, &label) in labels.iter().enumerate() {
        let row = &logits[n * classes..(n + 1) * classes];
        let (best, max) = first_argmax(row);
        let sum_exp: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let log_sum = sum_exp.ln();
        loss_sum += f64::from(log_sum - (row[label as usize] - max));
        correct += u32::from(best == label as usize);
        if let Some(g) = grad.as_deref_mut() {
            let g_row = &mut g[n * classes..(n + 1) * classes];
            for (c, (gv, v)) in g_row.iter_mut().zip(row).enumerate() {
                let p = (v - max - log_sum).exp();
                let target = if c == label as usize { 1.0 } else { 0.0 };
                *gv = (p - target) * inv_batch;
            }
        }
    }
    stats[0] += loss_sum as f32;
    stats[1] += correct as f32;
    Ok(())
}

/// The first index of the maximum and the maximum.
fn first_argmax(row: &[f32]) -> (usize, f32) {
    let mut best = 0;
    for (c, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = c;
        }
    }
    (best, row[best])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_log_classes_and_a_tie_goes_to_the_first() {
        let mut stats = vec![0.0, 0.0];
        let mut grad = vec![0.0; 4];
        softmax_xent(
            &[1.0, 1.0, 2.0, 2.0],
            &[0, 1],
            2,
            2,
            Some(&mut grad),
            &mut stats,
        )
        .unwrap();
        assert!((stats[0] - 2.0 * 2f32.ln()).abs() < 1e-6);
        assert_eq!(stats[1], 1.0);
        assert_eq!(grad, vec![-0.25, 0.25, 0.25, -0.25]);
    }
}
