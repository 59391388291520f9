//! Group commit: one writer thread owns the store's writes, takes every batch of changes waiting
//! at a moment and commits them in one transaction (one fsync for many requests), then tells
//! each submitter that its changes are durable.
//!
//! The service applies a change to memory and submits it while it holds the experiment's lock,
//! so the writer sees changes in the order memory saw them; a request is answered once its
//! [`Ticket`] resolves. A dropped ticket does not cancel the write, which is what makes request
//! handling cancel-safe: memory and store never part because a client went away.
//!
//! A failed transaction is retried change set by change set, so one bad request fails alone.
//! Any failure leaves memory ahead of the store, so the writer then refuses every later write
//! ([`Writer::check`]) and resolves [`Writer::failure`]: the daemon then stops with an error, so
//! that its supervisor restarts it and it reloads from the store.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Change, ExperimentStore};
use crate::{Error, Result};

/// Requests taken into one transaction at most.
const MAX_BATCH_REQUESTS: usize = 4096;

struct Request {
    changes: Vec<Change>,
    done: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

struct Shared {
    failure: Mutex<String>,
    /// Whether a write failed: read by [`Writer::check`], awaited by [`Writer::failure`].
    failed: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            failure: Mutex::new(String::new()),
            failed: tokio::sync::watch::Sender::new(false),
        })
    }

    fn failure_message(&self) -> String {
        self.failure.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The handle the service submits through. Cloning shares the writer.
#[derive(Clone)]
pub struct Writer {
    mode: Mode,
    shared: Arc<Shared>,
}

#[derive(Clone)]
enum Mode {
    /// A writer thread, fed by a channel.
    Thread(mpsc::Sender<Request>),
    /// Commits inside `submit` (tests with an in-memory store, where no thread is wanted).
    Inline(Arc<dyn ExperimentStore>),
}

/// Resolves when the submitted changes are durable.
#[must_use = "a request is answered once its changes are durable"]
pub struct Ticket {
    state: TicketState,
}

enum TicketState {
    Ready(std::result::Result<(), String>),
    Waiting(oneshot::Receiver<std::result::Result<(), String>>),
}

impl Ticket {
    /// Waits until the changes are durable.
    ///
    /// # Errors
    /// `Error::Store` when they could not be written.
    pub async fn durable(self) -> Result<()> {
        let outcome = match self.state {
            TicketState::Ready(outcome) => outcome,
            TicketState::Waiting(receiver) => receiver
                .await
                .unwrap_or_else(|_| Err("the store writer stopped".into())),
        };
        outcome.map_err(|message| Error::store("commit changes", StoreFailure(message)))
    }
}

/// A store failure's message, as an error source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);

impl Writer {
    /// Starts the writer thread over `store`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn spawn(
        store: Arc<dyn ExperimentStore>,
        commit_seconds: Option<prometheus::Histogram>,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Request>();
        let shared = Shared::new();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run(
                    store.as_ref(),
                    &receiver,
                    &thread_shared,
                    commit_seconds.as_ref(),
                );
            })
            .map_err(|e| Error::io("spawn the store writer thread", e))?;
        Ok(Self {
            mode: Mode::Thread(sender),
            shared,
        })
    }

    /// A writer that commits inside [`Writer::submit`], for tests over an in-memory store.
    pub fn inline(store: Arc<dyn ExperimentStore>) -> Self {
        Self {
            mode: Mode::Inline(store),
            shared: Shared::new(),
        }
    }

    /// Fails when an earlier write failed: memory is then ahead of the store, and nothing more
    /// may be written until a restart reloads the store.
    ///
    /// # Errors
    /// `Error::Store` naming the earlier failure.
    pub fn check(&self) -> Result<()> {
        if *self.shared.failed.borrow() {
            let message = self.shared.failure_message();
            return Err(Error::store(
                "write (an earlier write failed; restart the coordinator to reload its store)",
                StoreFailure(message),
            ));
        }
        Ok(())
    }

    /// Resolves with the failure's message once a write has failed (at once if one has).
    pub fn failure(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut failed = self.shared.failed.subscribe();
        let shared = Arc::clone(&self.shared);
        async move {
            // The sender lives in `shared`, which this future holds: `wait_for` cannot fail.
            let _ = failed.wait_for(|failed| *failed).await;
            shared.failure_message()
        }
    }

    /// Resolves once everything submitted before it is durable (a graceful shutdown waits for it).
    pub fn barrier(&self) -> Ticket {
        match &self.mode {
            Mode::Inline(_) => Ticket {
                state: TicketState::Ready(Ok(())),
            },
            Mode::Thread(sender) => {
                let (done, receiver) = oneshot::channel();
                let request = Request {
                    changes: Vec::new(),
                    done: Some(done),
                };
                match sender.send(request) {
                    Ok(()) => Ticket {
                        state: TicketState::Waiting(receiver),
                    },
                    Err(_) => Ticket {
                        state: TicketState::Ready(Err("the store writer stopped".into())),
                    },
                }
            }
        }
    }

    /// Queues changes for the next transaction. Call it while holding the lock under which the
    /// changes were applied to memory, so the store sees them in the same order.
    pub fn submit(&self, changes: Vec<Change>) -> Ticket {
        if changes.is_empty() {
            return Ticket {
                state: TicketState::Ready(Ok(())),
            };
        }
        match &self.mode {
            Mode::Inline(store) => {
                let outcome = store.commit(&changes).map_err(|e| {
                    let message = crate::display_chain(&e);
                    fail(&self.shared, &message);
                    message
                });
                Ticket {
                    state: TicketState::Ready(outcome),
                }
            }
            Mode::Thread(sender) => {
                let (done, receiver) = oneshot::channel();
                let request = Request {
                    changes,
                    done: Some(done),
                };
                match sender.send(request) {
                    Ok(()) => Ticket {
                        state: TicketState::Waiting(receiver),
                    },
                    Err(_) => {
                        fail(&self.shared, "the store writer stopped");
                        Ticket {
                            state: TicketState::Ready(Err("the store writer stopped".into())),
                        }
                    }
                }
            }
        }
    }
}

fn fail(shared: &Shared, message: &str) {
    if let Ok(mut failure) = shared.failure.lock()
        && failure.is_empty()
    {
        message.clone_into(&mut failure);
    }
    shared.failed.send_replace(true);
    tracing::error!(
        error = message,
        "store write failed; refusing further writes"
    );
}

/// The writer thread: blocks for one request, drains what else is waiting, commits once.
fn run(
    store: &dyn ExperimentStore,
    receiver: &mpsc::Receiver<Request>,
    shared: &Shared,
    commit_seconds: Option<&prometheus::Histogram>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let all: Vec<Change> = batch
            .iter()
            .flat_map(|r| r.changes.iter().cloned())
            .collect();
        let started = std::time::Instant::now();
        let committed = store.commit(&all);
        if let Some(histogram) = commit_seconds {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        match committed {
            Ok(()) => {
                for mut request in batch {
                    if let Some(done) = request.done.take() {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Err(error) => {
                // Find the bad request(s): commit one request at a time.
                tracing::warn!(error = %crate::display_chain(&error), requests = batch.len(), "group commit failed; retrying one request at a time");
                for mut request in batch {
                    let outcome = store.commit(&request.changes).map_err(|e| {
                        let message = crate::display_chain(&e);
                        fail(shared, &message);
                        message
                    });
                    if let Some(done) = request.done.take() {
                        let _ = done.send(outcome);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::tests_support::sample_changes;

    #[tokio::test]
    async fn every_ticket_resolves_once_durable() {
        let store = Arc::new(MemoryStore::new());
        let writer = Writer::spawn(store.clone(), None).expect("spawns");
        let (changes, expected) = sample_changes();
        let tickets: Vec<Ticket> = changes
            .into_iter()
            .map(|c| writer.submit(vec![c]))
            .collect();
        for ticket in tickets {
            ticket.durable().await.expect("durable");
        }
        assert_eq!(store.load().expect("loads"), expected);
    }

    #[tokio::test]
    async fn a_dropped_ticket_still_writes() {
        let store = Arc::new(MemoryStore::new());
        let writer = Writer::spawn(store.clone(), None).expect("spawns");
        let (changes, expected) = sample_changes();
        let last = changes.len() - 1;
        for (i, change) in changes.into_iter().enumerate() {
            let ticket = writer.submit(vec![change]);
            if i == last {
                ticket.durable().await.expect("durable");
            }
        }
        assert_eq!(store.load().expect("loads"), expected);
    }

    /// A store whose every commit fails, as a full disk's does.
    struct FullStore;

    impl ExperimentStore for FullStore {
        fn load(&self) -> Result<crate::store::Snapshot> {
            Ok(crate::store::Snapshot::default())
        }
        fn commit(&self, _: &[Change]) -> Result<()> {
            Err(Error::store(
                "commit",
                StoreFailure("database or disk is full".into()),
            ))
        }
    }

    #[tokio::test]
    async fn a_failed_write_resolves_failure_and_refuses_later_writes() {
        let writer = Writer::spawn(Arc::new(FullStore), None).expect("spawns");
        let failure = writer.failure();
        writer.check().expect("nothing has failed yet");
        let (changes, _) = sample_changes();
        let err = writer
            .submit(changes[..1].to_vec())
            .durable()
            .await
            .expect_err("the commit fails");
        assert!(err.to_string().contains("commit changes"), "{err}");
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), failure)
            .await
            .expect("failure resolves once a write failed");
        assert!(message.contains("database or disk is full"), "{message}");
        let refused = writer.check().expect_err("later writes are refused");
        assert!(refused.to_string().contains("restart"), "{refused}");
        // A waiter that comes after the failure is answered at once.
        let late = tokio::time::timeout(std::time::Duration::from_secs(10), writer.failure())
            .await
            .expect("resolves at once");
        assert_eq!(late, message);
    }
}
