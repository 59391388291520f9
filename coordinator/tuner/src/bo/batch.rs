//! The state of one batch being filled, point by point: the GP conditioned on the liar's
//! fantasies, and q-LogEI's joint set with the GP its oldest members are folded into. Each
//! chosen point enters both, so the next point is chosen knowing about it.

use super::{Picked, QEI_CANDIDATE_STRIDE, REFINE_ITERATIONS, joint_set_start, pick};
use crate::acquisition::ei::LogEi;
use crate::acquisition::qei::QEi;
use crate::choice::Fixed;
use crate::design::Seen;
use crate::error::Result;
use crate::gp::Gp;
use crate::lattice::Lattice;
use crate::optimize::maximize;
use crate::rng::Rng;
use crate::space::Space;
use crate::{BatchStrategy, SuggestConfig};

/// What every point of a batch is chosen with: the fitted model, the space and the settings.
pub(super) struct Basis<'a> {
    /// The GP fitted to the real results.
    pub gp: &'a Gp,
    pub space: &'a Space,
    pub lattice: &'a Lattice,
    pub cfg: &'a SuggestConfig,
    /// The EI incumbent, standardized.
    pub best: f64,
    /// The liar's fantasy value, warped.
    pub lie: f64,
}

/// One batch being filled (see the module doc).
pub(super) struct Batch<'a> {
    basis: Basis<'a>,
    /// The GP conditioned on the lies so far ...
    fantasy: Option<Gp>,
    /// ... and the fantasy points not yet in it.
    unconditioned: Vec<Vec<f64>>,
    /// The pending points, then those chosen so far, oldest first.
    joint_x: Vec<Vec<f64>>,
    /// q-LogEI's GP, conditioned on lies for the first `folded` of `joint_x`, so that at most
    /// [`super::MAX_JOINT_SET`] remain in its joint set.
    qei_base: Option<Gp>,
    folded: usize,
}

impl<'a> Batch<'a> {
    /// An empty batch, with `pending_x` (encoded) running already.
    pub(super) fn new(basis: Basis<'a>, pending_x: &[Vec<f64>]) -> Batch<'a> {
        Batch {
            basis,
            fantasy: None,
            unconditioned: pending_x.to_vec(),
            joint_x: pending_x.to_vec(),
            qei_base: None,
            folded: 0,
        }
    }

    /// Adds a chosen point (encoded) to the batch.
    pub(super) fn push(&mut self, x: Vec<f64>) {
        self.unconditioned.push(x.clone());
        self.joint_x.push(x);
    }

    /// The best unseen point among `points` (refined), with the coordinates in `fixed` held:
    /// q-LogEI's when it is the strategy and has a joint set it can factor, otherwise the
    /// liar's LogEI. `None` when every candidate decodes to an assignment already seen.
    ///
    /// # Errors
    /// When conditioning a GP on the lies fails.
    pub(super) fn choose(
        &mut self,
        points: Vec<Vec<f64>>,
        fixed: &[(usize, f64)],
        seen: &mut Seen,
        rng: &mut Rng,
    ) -> Result<Option<Picked>> {
        if self.basis.cfg.batch == BatchStrategy::McQei
            && !self.joint_x.is_empty()
            && let Some(picked) = self.choose_by_qei(&points, fixed, seen, rng)?
        {
            return Ok(Some(picked));
        }
        self.choose_by_liar(points, fixed, seen)
    }

    /// q-LogEI's pick, from every [`QEI_CANDIDATE_STRIDE`]-th of `points`. `None` when the
    /// joint set's covariance cannot be factored (an error, never a silently dropped
    /// covariance, which leaves the point to the liar), when no candidate scores finite, or when
    /// every one was seen.
    fn choose_by_qei(
        &mut self,
        points: &[Vec<f64>],
        fixed: &[(usize, f64)],
        seen: &mut Seen,
        rng: &mut Rng,
    ) -> Result<Option<Picked>> {
        let fold_to = joint_set_start(self.joint_x.len(), self.folded);
        if fold_to > self.folded {
            let lies = vec![self.basis.lie; fold_to - self.folded];
            let base = self.qei_base.as_ref().unwrap_or(self.basis.gp);
            self.qei_base = Some(base.extended(&self.joint_x[self.folded..fold_to], &lies)?);
            self.folded = fold_to;
        }
        let set = self.joint_x[self.folded..].to_vec();
        let qei_gp = self.qei_base.as_ref().unwrap_or(self.basis.gp);
        let Ok(acquisition) = QEi::new(
            qei_gp,
            self.basis.best,
            set,
            self.basis.cfg.mc_samples,
            rng.next_u64(),
        ) else {
            return Ok(None);
        };
        let acquisition = Fixed {
            inner: &acquisition,
            fixed,
        };
        // Every QEI_CANDIDATE_STRIDE-th candidate: the same mix, fewer of them.
        let thinned = points
            .iter()
            .step_by(QEI_CANDIDATE_STRIDE)
            .cloned()
            .collect();
        let scored = maximize(
            self.basis.lattice,
            &acquisition,
            thinned,
            self.basis.cfg.refine_starts,
            REFINE_ITERATIONS / 3,
        );
        // Log q-EI is finite wherever the joint samples are (`maximize` drops the rest).
        if scored.is_empty() {
            return Ok(None);
        }
        Ok(pick(self.basis.space, &acquisition, scored, seen))
    }

    /// The liar's pick: LogEI of the GP conditioned on a lie at every pending and chosen point.
    fn choose_by_liar(
        &mut self,
        points: Vec<Vec<f64>>,
        fixed: &[(usize, f64)],
        seen: &mut Seen,
    ) -> Result<Option<Picked>> {
        if !self.unconditioned.is_empty() {
            let lies = vec![self.basis.lie; self.unconditioned.len()];
            let base = self.fantasy.as_ref().unwrap_or(self.basis.gp);
            self.fantasy = Some(base.extended(&self.unconditioned, &lies)?);
            self.unconditioned.clear();
        }
        let gp_now = self.fantasy.as_ref().unwrap_or(self.basis.gp);
        let acquisition = LogEi::new(gp_now, self.basis.best);
        let acquisition = Fixed {
            inner: &acquisition,
            fixed,
        };
        let scored = maximize(
            self.basis.lattice,
            &acquisition,
            points,
            self.basis.cfg.refine_starts,
            REFINE_ITERATIONS,
        );
        Ok(pick(self.basis.space, &acquisition, scored, seen))
    }
}
