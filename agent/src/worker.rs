//! One dedicated OS thread per slot that owns the slot's trainer (and its CUDA context).
//!
//! The async side hands it a [`TrialJob`] with a shared [`TrialControl`] and gets
//! [`WorkerEvent`]s back on a tokio channel: one per epoch, then one [`Finished`]. The control
//! is read at each epoch boundary, so stop, interrupt and abandon all take effect there.
//!
//! At each boundary the thread waits (at most [`EPOCH_ACK_TIMEOUT`]) until the async side
//! [acknowledges](TrialControl::acknowledge) the epoch, that is, until the coordinator has
//! answered its report. An early stop decided on epoch `e` therefore ends the trial after `e`
//! epochs, not `e + 1`; on a small model an extra epoch would cost as much as the stop saves.
//! When the coordinator cannot be reached the wait times out and training goes on.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::error::{Error, Result};
use crate::trainer::{EpochControl, EpochMetrics, TrainOutcome, Trainer, TrialFailure, TrialJob};

/// What the async side asks of a running trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Signal {
    /// Keep training.
    Run = 0,
    /// The coordinator asked to stop (report `STOPPED`).
    Stop = 1,
    /// The agent is shutting down (report `INTERRUPTED`).
    Interrupt = 2,
    /// The lease is gone (report nothing).
    Abandon = 3,
}

/// The longest the training thread waits at an epoch boundary for the coordinator's answer.
pub const EPOCH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The signal of one trial, shared between the async side and the training thread, and the last
/// epoch the async side has acknowledged.
#[derive(Debug, Default)]
pub struct TrialControl {
    signal: AtomicU8,
    acknowledged: Mutex<u32>,
    changed: Condvar,
}

impl TrialControl {
    /// A control that says run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises a signal: the first of stop or interrupt sticks, abandon overrides everything.
    pub fn request(&self, signal: Signal) {
        if signal == Signal::Abandon {
            self.signal.store(Signal::Abandon as u8, Ordering::SeqCst);
        } else {
            let _ = self.signal.compare_exchange(
                Signal::Run as u8,
                signal as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        let _guard = self.lock_acknowledged();
        self.changed.notify_all();
    }

    /// Records that the async side handled the report of `epoch` (and any earlier one).
    pub fn acknowledge(&self, epoch: u32) {
        let mut acknowledged = self.lock_acknowledged();
        *acknowledged = (*acknowledged).max(epoch);
        self.changed.notify_all();
    }

    /// Blocks until `epoch` is acknowledged, a signal other than run is raised, or `timeout`
    /// passes. Returns whether the epoch was acknowledged or a signal raised.
    pub fn wait_acknowledged(&self, epoch: u32, timeout: Duration) -> bool {
        let guard = self.lock_acknowledged();
        let (_guard, waited) = self
            .changed
            .wait_timeout_while(guard, timeout, |acknowledged| {
                *acknowledged < epoch && self.get() == Signal::Run
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !waited.timed_out()
    }

    fn lock_acknowledged(&self) -> std::sync::MutexGuard<'_, u32> {
        self.acknowledged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current signal.
    pub fn get(&self) -> Signal {
        match self.signal.load(Ordering::SeqCst) {
            1 => Signal::Stop,
            2 => Signal::Interrupt,
            3 => Signal::Abandon,
            _ => Signal::Run,
        }
    }
}

/// The end of a trial on the training thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// What training produced.
    pub result: Result<TrainOutcome, TrialFailure>,
    /// Seconds from job start to end, data loading included.
    pub wall_seconds: f64,
}

/// Messages from the training thread.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// An epoch finished.
    Epoch(EpochMetrics),
    /// The trial ended.
    Finished(Finished),
}

struct WorkerJob {
    job: TrialJob,
    control: Arc<TrialControl>,
    events: UnboundedSender<WorkerEvent>,
}

/// Builds a slot's trainer on its own thread.
pub type TrainerFactory = Box<dyn FnOnce() -> Result<Box<dyn Trainer>, String> + Send>;

/// A slot's training thread.
pub struct SlotWorker {
    slot: usize,
    jobs: mpsc::Sender<WorkerJob>,
    thread: JoinHandle<()>,
}

impl SlotWorker {
    /// Starts the thread and builds its trainer there; returns once the trainer exists.
    ///
    /// # Errors
    /// [`Error::Worker`] when the thread cannot start or the trainer cannot be built.
    pub fn spawn(slot: usize, factory: TrainerFactory) -> Result<Self> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<WorkerJob>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("train-slot-{slot}"))
            .spawn(move || thread_main(factory, jobs_rx, ready_tx))
            .map_err(|error| Error::Worker {
                slot,
                reason: format!("failed to start thread: {error}"),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                slot,
                jobs: jobs_tx,
                thread,
            }),
            Ok(Err(reason)) => Err(Error::Worker { slot, reason }),
            Err(_) => Err(Error::Worker {
                slot,
                reason: "thread exited while building its trainer".to_string(),
            }),
        }
    }

    /// Hands a trial to the thread; events arrive on the returned receiver.
    ///
    /// # Errors
    /// [`Error::Worker`] when the thread is gone.
    pub fn submit(
        &self,
        job: TrialJob,
        control: Arc<TrialControl>,
    ) -> Result<UnboundedReceiver<WorkerEvent>> {
        let (events, receiver) = unbounded_channel();
        self.jobs
            .send(WorkerJob {
                job,
                control,
                events,
            })
            .map_err(|_| Error::Worker {
                slot: self.slot,
                reason: "training thread has exited".to_string(),
            })?;
        Ok(receiver)
    }

    /// Closes the job queue and waits for the thread (call off the async runtime's threads).
    pub fn join(self) {
        drop(self.jobs);
        if self.thread.join().is_err() {
            tracing::error!(slot = self.slot, "training thread panicked");
        }
    }
}

fn thread_main(
    factory: TrainerFactory,
    jobs: mpsc::Receiver<WorkerJob>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut trainer = match factory() {
        Ok(trainer) => trainer,
        Err(reason) => {
            let _ = ready.send(Err(reason));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(work) = jobs.recv() {
        let finished = run_job(trainer.as_mut(), &work);
        let _ = work.events.send(WorkerEvent::Finished(finished));
    }
}

fn run_job(trainer: &mut dyn Trainer, work: &WorkerJob) -> Finished {
    let started = Instant::now();
    let mut on_epoch = |metrics: &EpochMetrics| {
        if work
            .events
            .send(WorkerEvent::Epoch(metrics.clone()))
            .is_ok()
            && !work
                .control
                .wait_acknowledged(metrics.epoch, EPOCH_ACK_TIMEOUT)
        {
            tracing::warn!(
                epoch = metrics.epoch,
                "no answer to the epoch report in time, training on"
            );
        }
        if work.control.get() == Signal::Run {
            EpochControl::Continue
        } else {
            EpochControl::Stop
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let stop_requested = || work.control.get() != Signal::Run;
        trainer.train_controlled(&work.job, &mut on_epoch, &stop_requested)
    }))
    .unwrap_or_else(|panic| {
        Err(TrialFailure::new(format!(
            "trainer panicked: {}",
            panic_message(&panic)
        )))
    });
    Finished {
        result,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::FunctionTrainer;
    use proto::v1::Workload;

    struct Panicky;
    impl Trainer for Panicky {
        fn train(
            &mut self,
            _: &TrialJob,
            _: &mut dyn FnMut(&EpochMetrics) -> EpochControl,
        ) -> Result<TrainOutcome, TrialFailure> {
            panic!("boom")
        }
    }

    fn quadratic_job(epochs: i64) -> TrialJob {
        let lease = proto::v1::Lease {
            workload: Some(Workload {
                kind: "function".into(),
                dataset: "quadratic".into(),
                fixed_params: [(
                    "epochs".to_string(),
                    proto::v1::ParameterValue {
                        kind: Some(proto::v1::parameter_value::Kind::IntValue(epochs)),
                    },
                )]
                .into(),
                ..Workload::default()
            }),
            ..proto::v1::Lease::default()
        };
        TrialJob::from_lease(&lease)
    }

    /// Receives a trial's events, acknowledging each epoch as the slot does.
    async fn collect(
        mut events: UnboundedReceiver<WorkerEvent>,
        control: &TrialControl,
    ) -> (Vec<u32>, Finished) {
        let mut epochs = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Epoch(metrics) => {
                    epochs.push(metrics.epoch);
                    control.acknowledge(metrics.epoch);
                }
                WorkerEvent::Finished(finished) => return (epochs, finished),
            }
        }
        panic!("worker closed its channel without finishing");
    }

    #[tokio::test]
    async fn runs_jobs_and_stops_at_the_first_boundary_after_a_signal() {
        let worker = SlotWorker::spawn(
            0,
            Box::new(|| Ok(Box::new(FunctionTrainer) as Box<dyn Trainer>)),
        )
        .expect("spawn");
        let control = Arc::new(TrialControl::new());
        let events = worker
            .submit(quadratic_job(3), control.clone())
            .expect("submit");
        let (epochs, finished) = collect(events, &control).await;
        assert_eq!(epochs, vec![1, 2, 3]);
        assert!(!finished.result.expect("ok").stopped);
        let stopped = Arc::new(TrialControl::new());
        stopped.request(Signal::Interrupt);
        stopped.request(Signal::Stop);
        assert_eq!(stopped.get(), Signal::Interrupt, "first signal sticks");
        let events = worker
            .submit(quadratic_job(3), stopped.clone())
            .expect("submit");
        let (epochs, finished) = collect(events, &stopped).await;
        assert_eq!(epochs, vec![1]);
        assert!(finished.result.expect("ok").stopped);
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .expect("join");
    }

    #[tokio::test]
    async fn a_panicking_trainer_fails_the_trial_and_keeps_the_thread() {
        let worker = SlotWorker::spawn(1, Box::new(|| Ok(Box::new(Panicky) as Box<dyn Trainer>)))
            .expect("spawn");
        for _ in 0..2 {
            let control = Arc::new(TrialControl::new());
            let events = worker
                .submit(quadratic_job(1), control.clone())
                .expect("submit");
            let (_, finished) = collect(events, &control).await;
            let failure = finished.result.expect_err("panicked");
            assert!(failure.reason.contains("boom"), "{failure}");
        }
    }

    #[test]
    fn a_failing_factory_is_an_error() {
        let err = SlotWorker::spawn(2, Box::new(|| Err("no device".to_string())))
            .err()
            .expect("fails");
        assert!(err.to_string().contains("no device"), "{err}");
    }

    #[tokio::test]
    async fn a_stop_given_in_answer_to_an_epoch_ends_the_trial_at_that_epoch() {
        let worker = SlotWorker::spawn(
            3,
            Box::new(|| Ok(Box::new(FunctionTrainer) as Box<dyn Trainer>)),
        )
        .expect("spawn");
        let control = Arc::new(TrialControl::new());
        let mut events = worker
            .submit(quadratic_job(5), control.clone())
            .expect("submit");
        let mut epochs = Vec::new();
        let finished = loop {
            match events.recv().await.expect("event") {
                WorkerEvent::Epoch(metrics) => {
                    epochs.push(metrics.epoch);
                    // The coordinator's answer takes a while; the thread must wait for it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if metrics.epoch == 2 {
                        control.request(Signal::Stop);
                    }
                    control.acknowledge(metrics.epoch);
                }
                WorkerEvent::Finished(finished) => break finished,
            }
        };
        assert_eq!(epochs, vec![1, 2]);
        assert!(finished.result.expect("ok").stopped);
    }

    #[test]
    fn an_unanswered_epoch_times_out_and_a_signal_wakes_the_wait() {
        let control = Arc::new(TrialControl::new());
        assert!(!control.wait_acknowledged(1, Duration::from_millis(20)));
        control.acknowledge(2);
        assert!(control.wait_acknowledged(1, Duration::from_secs(5)));
        let waiting = Arc::new(TrialControl::new());
        let signaller = Arc::clone(&waiting);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            signaller.request(Signal::Interrupt);
        });
        let started = Instant::now();
        assert!(waiting.wait_acknowledged(1, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().expect("join");
    }

    #[test]
    fn abandon_overrides_everything() {
        let control = TrialControl::new();
        control.request(Signal::Stop);
        control.request(Signal::Abandon);
        assert_eq!(control.get(), Signal::Abandon);
    }
}
