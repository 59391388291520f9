//! The owner of one experiment: its [`Live`] state behind a lock held only for in-memory work
//! (never across I/O or a GP fit), plus a few atomics the scheduler reads without locking.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::model::{ExperimentId, ExperimentState};
use super::state::Live;

/// One experiment and what the scheduler needs to know of it without taking its lock.
#[derive(Debug)]
pub struct ExperimentCell {
    /// The experiment's id.
    pub id: ExperimentId,
    live: Mutex<Live>,
    ready: AtomicUsize,
    leased: AtomicUsize,
    running: AtomicBool,
    paused: AtomicBool,
    parallelism: AtomicUsize,
    /// Leases handed out, for round-robin tie breaks.
    pub leases_granted: AtomicU64,
    /// The workload agents must accept, if any ([`super::model::AgentRecord::accepts`]).
    pub workload: Option<super::model::Workload>,
    /// Wakes the long polls of agents that lease only this experiment's trials; agents that
    /// take any experiment's wait on the service's own `Notify`. Kept apart so that a waiter
    /// restricted to one experiment never takes a wake-up meant for another.
    pub work: tokio::sync::Notify,
}

impl ExperimentCell {
    /// Wraps an experiment's live state.
    pub fn new(live: Live) -> Self {
        let cell = Self {
            id: live.record.id.clone(),
            workload: live.record.spec.workload.clone(),
            ready: AtomicUsize::new(0),
            leased: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            parallelism: AtomicUsize::new(1),
            leases_granted: AtomicU64::new(0),
            work: tokio::sync::Notify::new(),
            live: Mutex::new(live),
        };
        {
            let live = cell.lock();
            cell.publish(&live);
        }
        cell
    }

    /// Locks the live state. The lock is held for in-memory work only.
    pub fn lock(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock would leave half an update; the service never panics
        // under it, and if it did, serving what is there beats refusing every request.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes the counts the scheduler reads; call after every change, under the lock.
    pub fn publish(&self, live: &Live) {
        self.ready.store(live.ready_len(), Ordering::Release);
        self.leased.store(live.leased_len(), Ordering::Release);
        self.running.store(
            live.record.state == ExperimentState::Running,
            Ordering::Release,
        );
        self.paused.store(
            live.record.state == ExperimentState::Paused,
            Ordering::Release,
        );
        self.parallelism.store(
            live.record.spec.parallelism.max(1) as usize,
            Ordering::Release,
        );
    }

    /// Whether the experiment is running and has a trial ready to lease.
    pub fn has_ready(&self) -> bool {
        self.running.load(Ordering::Acquire) && self.ready.load(Ordering::Acquire) > 0
    }

    /// Leased trials as a share of the experiment's parallelism: the scheduler serves the
    /// experiment with the smallest share first.
    pub fn load(&self) -> f64 {
        self.leased.load(Ordering::Acquire) as f64
            / self.parallelism.load(Ordering::Acquire).max(1) as f64
    }

    /// Whether the experiment is paused ([`super::pause`]).
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Leased trials now.
    pub fn leased(&self) -> usize {
        self.leased.load(Ordering::Acquire)
    }
}
