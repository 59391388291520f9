//! The threads that compute BO suggestions, apart from tokio's and at a lower priority.
//!
//! A GP fit takes a whole core for up to seconds. On tokio's blocking pool it competed with the
//! runtime's workers at equal priority, so on a 2-core machine a heartbeat could wait a
//! scheduler slice behind it (p99 14 ms with 1,000 agents). These threads raise their own nice
//! value by [`SUGGEST_NICE`] once, when they start (Linux applies `setpriority` to the calling
//! thread; a coordinator started under `nice` keeps the gap, capped at 19), so the scheduler
//! runs request handlers first and fits take what is left: the suggester stays busy while agents
//! wait, but never ahead of them.
//!
//! The tuner spreads parts of a round over cores with rayon (candidate scoring, acquisition
//! refinements, the fit's restarts). Each job runs inside the pool's own rayon pool, whose
//! threads lower their priority the same way, so that work never outranks a request either.
//!
//! Jobs queue in order. [`SuggestPool::run`] answers twice: when the job starts (so a time
//! budget counts computing, not queueing) and with its result. A job that panics answers
//! nothing and its thread goes on.
//!
//! ```
//! let pool = coordinator::service::suggest_pool::SuggestPool::new(1);
//! let job = pool.run(|| 6 * 7);
//! let answer = tokio::runtime::Runtime::new().expect("runtime").block_on(async {
//!     job.started.await.expect("started");
//!     job.done.await.expect("done")
//! });
//! assert_eq!(answer, 42);
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How much higher the nice value of suggestion threads is than the thread that starts them
/// (capped at 19, the lowest priority): 0 → 10 by default, 15 → 19 under `nice -n 15`.
pub const SUGGEST_NICE: i32 = 10;

/// The nice value a suggestion thread takes when its starter runs at `caller`: never a higher
/// priority than the caller's.
pub fn suggest_nice(caller: i32) -> i32 {
    caller.saturating_add(SUGGEST_NICE).clamp(caller, 19)
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of low-priority threads running suggestion jobs in order.
pub struct SuggestPool {
    jobs: Mutex<Sender<Job>>,
    threads: usize,
}

/// The rayon pool jobs run in: one low-priority thread a core. `None` (logged) when it cannot be
/// built; jobs then use rayon's global pool.
fn low_priority_rayon_pool() -> Option<Arc<rayon::ThreadPool>> {
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|index| format!("tunefleet-suggest-rayon-{index}"))
        .start_handler(|_| lower_priority())
        .build();
    match built {
        Ok(pool) => Some(Arc::new(pool)),
        Err(error) => {
            tracing::error!(%error, "cannot start the suggestion threads' rayon pool");
            None
        }
    }
}

/// The two answers of a job.
pub struct Running<T> {
    /// Sent when a thread starts the job.
    pub started: oneshot::Receiver<()>,
    /// The job's result; closed without one if the job panicked.
    pub done: oneshot::Receiver<T>,
}

impl SuggestPool {
    /// Starts `threads` (at least one) threads, named `tunefleet-suggest-N`. They end when the
    /// pool is dropped and the queue is empty.
    pub fn new(threads: usize) -> Self {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = threads.max(1);
        let rayon_pool = low_priority_rayon_pool();
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            let rayon_pool = rayon_pool.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tunefleet-suggest-{index}"))
                .spawn(move || work(&receiver, rayon_pool.as_deref()));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a suggestion thread");
            }
        }
        Self {
            jobs: Mutex::new(sender),
            threads,
        }
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job`.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Running<T> {
        let (started_tx, started) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let wrapped: Job = Box::new(move || {
            let _ = started_tx.send(());
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                let _ = done_tx.send(value);
            }
        });
        let sender = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // Only fails when every thread is gone; the receivers then see closed channels.
        let _ = sender.send(wrapped);
        Running { started, done }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, rayon_pool: Option<&rayon::ThreadPool>) {
    lower_priority();
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        match (job, rayon_pool) {
            (Ok(job), Some(pool)) => pool.install(job),
            (Ok(job), None) => job(),
            (Err(_), _) => return,
        }
    }
}

/// Lowers the calling thread's priority by [`SUGGEST_NICE`] ([`suggest_nice`]), best effort.
fn lower_priority() {
    // On Linux, PRIO_PROCESS with no pid names the calling thread, not the whole process.
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(None, suggest_nice(current_nice())) {
        tracing::warn!(%error, "cannot lower the priority of a suggestion thread");
    }
}

/// The calling thread's nice value (Linux), for tests and diagnostics.
#[cfg(target_os = "linux")]
pub fn current_nice() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_at_a_lower_priority_than_the_caller() {
        let pool = SuggestPool::new(1);
        let caller = current_nice();
        let job = pool.run(current_nice);
        job.started.await.expect("started");
        let nice = job.done.await.expect("done");
        assert_eq!(nice, (caller + SUGGEST_NICE).min(19), "caller at {caller}");
        assert!(
            nice > caller || caller == 19,
            "a lower priority than the caller's"
        );
        assert_eq!(current_nice(), caller, "the caller's priority is unchanged");
    }

    #[tokio::test]
    async fn a_jobs_parallel_work_runs_at_the_same_lower_priority() {
        let pool = SuggestPool::new(1);
        let caller = current_nice();
        let job = pool.run(|| {
            // Every thread of the rayon pool the job runs in, and the pool's size.
            (
                rayon::broadcast(|_| current_nice()),
                rayon::current_num_threads(),
            )
        });
        let (nices, threads) = job.done.await.expect("done");
        assert_eq!(nices.len(), threads);
        let expected = (caller + SUGGEST_NICE).min(19);
        assert!(
            nices.iter().all(|n| *n == expected),
            "{nices:?}, caller at {caller}"
        );
    }

    #[test]
    fn suggestion_threads_never_outrank_their_starter() {
        assert_eq!(suggest_nice(0), 10);
        assert_eq!(suggest_nice(15), 19, "under nice 15");
        assert_eq!(suggest_nice(19), 19);
        assert_eq!(
            suggest_nice(-5),
            5,
            "a daemon given a higher priority keeps the gap"
        );
    }

    #[tokio::test]
    async fn at_most_threads_jobs_run_at_once_and_all_finish() {
        let pool = SuggestPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..6)
            .map(|i| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        let mut results = Vec::new();
        for job in jobs {
            results.push(job.done.await.expect("done"));
        }
        assert_eq!(results, (0..6).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_job_answers_nothing_and_the_thread_goes_on() {
        let pool = SuggestPool::new(1);
        let bad = pool.run(|| -> u32 { panic!("boom") });
        bad.started.await.expect("it started");
        assert!(bad.done.await.is_err(), "no answer from a panicked job");
        let good = pool.run(|| 7u32);
        assert_eq!(good.done.await.expect("the thread survived"), 7);
    }
}
