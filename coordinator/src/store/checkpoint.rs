//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so that one
//! commit also copies the WAL into the database file and syncs it: every request waiting on that
//! group commit pays for it (measured as the report p99 under load, `docs/BENCHMARKS.md` §5). The
//! store turns the automatic checkpoint off on its writing connection, and this thread, on a
//! connection of its own, runs a passive checkpoint every [`INTERVAL`]. A passive checkpoint never
//! blocks the writer (WAL mode lets both run at once); once it has copied every frame, the
//! writer's next transaction starts the WAL from its beginning again, so the file stays small.
//!
//! Under a steady stream of commits that moment never comes: each passive checkpoint finishes
//! behind frames appended meanwhile, so the WAL only grows. With 16 agent slots reporting trials
//! of no duration it grew by about 36 MB a second (2.2 GB in a minute beside a 40 MB database)
//! until the disk was full. So the writer itself, between two transactions, truncates a WAL
//! past [`WAL_RESET_BYTES`] ([`truncate_if_large`]); it is then the only writer, so that
//! checkpoint catches up, and the passive ones have already copied all but the newest frames.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Error, Result};

/// How often the WAL is copied into the database file.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The checkpoint thread; it stops (after one last checkpoint) when this is dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts checkpointing it.
    ///
    /// # Errors
    /// When the connection cannot be opened or the thread cannot be spawned.
    pub fn start(path: &Path) -> Result<Self> {
        let path: PathBuf = path.to_owned();
        let conn = Connection::open(&path).map_err(|e| {
            Error::store(format!("open '{}' for WAL checkpoints", path.display()), e)
        })?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &path, &stopped))
            .map_err(|e| Error::io("spawn the WAL checkpoint thread", e))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, path: &Path, stopped: &mpsc::Receiver<()>) {
    loop {
        let last = !matches!(
            stopped.recv_timeout(INTERVAL),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(
                database = %path.display(),
                error = %e,
                "WAL checkpoint failed; the next one retries"
            );
        }
        if last {
            return;
        }
    }
}

/// The WAL size past which the writer truncates it.
pub const WAL_RESET_BYTES: u64 = 64 << 20;

/// On the writing connection, between transactions: when the WAL at `wal` is larger than
/// `limit` bytes ([`WAL_RESET_BYTES`] in the daemon), copies its frames into the database file
/// and truncates it. A checkpoint that cannot finish now (a reader holds an older snapshot, or
/// the checkpoint thread is at work) is left to the next commit; a failed one is logged, and
/// never fails the commit before it.
pub fn truncate_if_large(conn: &Connection, wal: &Path, limit: u64) {
    let Ok(size) = std::fs::metadata(wal).map(|m| m.len()) else {
        return;
    };
    if size <= limit {
        return;
    }
    // (busy, frames in the WAL, frames checkpointed); busy = 1 when it could not finish.
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => tracing::debug!(wal_bytes = size, "WAL truncated"),
        Ok(_) => tracing::debug!(
            wal_bytes = size,
            "WAL truncation deferred: the WAL is in use"
        ),
        Err(e) => tracing::warn!(
            wal = %wal.display(),
            wal_bytes = size,
            error = %e,
            "WAL truncation failed; the next commit retries"
        ),
    }
}

/// One passive checkpoint: copies what it can without waiting for the writer.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::store::tests_support::{sample_experiment, sample_trial};
    use crate::store::{Change, ExperimentStore, SqliteStore};

    #[test]
    fn committed_pages_reach_the_database_file_without_closing_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open");
        let file = store.path().to_owned();
        let before = std::fs::metadata(&file).expect("database file").len();
        let mut changes = vec![Change::PutExperiment(sample_experiment())];
        for number in 0..2000 {
            let mut trial = sample_trial();
            trial.id = format!("trial-{number}").as_str().into();
            trial.number = number;
            trial.failure_reason = "x".repeat(200);
            changes.push(Change::PutTrial(trial));
        }
        store.commit(&changes).expect("commit");
        // Only the checkpoint thread copies WAL frames into the file while the store is open.
        let deadline = Instant::now() + super::INTERVAL * 20;
        loop {
            let now = std::fs::metadata(&file).expect("database file").len();
            if now > before + 400_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {now} bytes (was {before}): no checkpoint ran"
            );
            std::thread::sleep(super::INTERVAL / 10);
        }
        drop(store);
        let reopened = SqliteStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.load().expect("load").trials.len(), 2000);
    }
}
