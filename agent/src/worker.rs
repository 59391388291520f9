//! One dedicated OS thread per slot that owns the slot's trainer (and its CUDA context).
//!
//! The async side hands it a [`TrialJob`] with a shared [`TrialControl`] and gets
//! [`WorkerEvent`]s back on a tokio channel: one per epoch, then one [`Finished`]. The control
//! is read at each epoch boundary, so stop, interrupt and abandon all take effect there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

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

/// The signal of one trial, shared between the async side and the training thread.
#[derive(Debug, Default)]
pub struct TrialControl(AtomicU8);

impl TrialControl {
    /// A control that says run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises a signal: the first of stop or interrupt sticks, abandon overrides everything.
    pub fn request(&self, signal: Signal) {
        if signal == Signal::Abandon {
            self.0.store(Signal::Abandon as u8, Ordering::SeqCst);
        } else {
            let _ = self.0.compare_exchange(
                Signal::Run as u8,
                signal as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// The current signal.
    pub fn get(&self) -> Signal {
        match self.0.load(Ordering::SeqCst) {
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
        let _ = work.events.send(WorkerEvent::Epoch(metrics.clone()));
        if work.control.get() == Signal::Run {
            EpochControl::Continue
        } else {
            EpochControl::Stop
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trainer.train(&work.job, &mut on_epoch)
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

    async fn collect(mut events: UnboundedReceiver<WorkerEvent>) -> (Vec<u32>, Finished) {
        let mut epochs = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Epoch(metrics) => epochs.push(metrics.epoch),
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
        let (epochs, finished) =
            collect(worker.submit(quadratic_job(3), control).expect("submit")).await;
        assert_eq!(epochs, vec![1, 2, 3]);
        assert!(!finished.result.expect("ok").stopped);
        let stopped = Arc::new(TrialControl::new());
        stopped.request(Signal::Interrupt);
        stopped.request(Signal::Stop);
        assert_eq!(stopped.get(), Signal::Interrupt, "first signal sticks");
        let (epochs, finished) =
            collect(worker.submit(quadratic_job(3), stopped).expect("submit")).await;
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
            let (_, finished) = collect(
                worker
                    .submit(quadratic_job(1), Arc::new(TrialControl::new()))
                    .expect("submit"),
            )
            .await;
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

    #[test]
    fn abandon_overrides_everything() {
        let control = TrialControl::new();
        control.request(Signal::Stop);
        control.request(Signal::Abandon);
        assert_eq!(control.get(), Signal::Abandon);
    }
}
