//! The durable store: one SQLite file (WAL, `synchronous = FULL`) under the data directory, its
//! WAL checkpointed by a thread of its own ([`super::checkpoint`]) rather than inside commits.
//!
//! Specs, parameters and capabilities are JSON columns; states and numbers are plain columns so
//! the file can be inspected with `sqlite3`. The schema version is SQLite's `user_version`, and
//! `MIGRATIONS` upgrades older files step by step. [`SqliteStore::open`] first takes the data
//! dir's exclusive [`DataDirLock`] and holds it as long as the store lives.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::checkpoint::{self, Checkpointer};
use super::lock::DataDirLock;
use super::{Change, ExperimentStore, Snapshot};
use crate::service::model::{AgentRecord, EpochRecord, ExperimentRecord, LeaseRecord, TrialRecord};
use crate::{Error, Result};

/// The file name inside the data directory.
pub const DB_FILE_NAME: &str = "coordinator.sqlite3";

/// Schema migrations; entry `i` upgrades `user_version` i to i + 1.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE experiments (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    created_unix REAL NOT NULL,
    exhausted INTEGER NOT NULL
);
CREATE TABLE trials (
    id TEXT PRIMARY KEY NOT NULL,
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    number INTEGER NOT NULL,
    params_json TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    attempts INTEGER NOT NULL,
    agent_id TEXT,
    lease_id TEXT,
    lease_agent_id TEXT,
    lease_deadline_unix REAL,
    epochs_run INTEGER NOT NULL,
    best_epoch INTEGER NOT NULL,
    wall_seconds REAL NOT NULL,
    device_seconds REAL NOT NULL,
    cost_dollars REAL NOT NULL,
    failure_reason TEXT NOT NULL,
    instance_type TEXT NOT NULL,
    created_unix REAL NOT NULL,
    finished_unix REAL,
    stop_requested INTEGER NOT NULL,
    UNIQUE (experiment_id, number)
);
CREATE TABLE epoch_reports (
    trial_id TEXT NOT NULL REFERENCES trials(id),
    attempt INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    value REAL NOT NULL,
    train_loss REAL NOT NULL,
    train_accuracy REAL NOT NULL,
    epoch_seconds REAL NOT NULL,
    PRIMARY KEY (trial_id, attempt, epoch)
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY NOT NULL,
    capabilities_json TEXT NOT NULL,
    registered_unix REAL NOT NULL,
    last_seen_unix REAL NOT NULL
);
",
    // 2: attempts never decrease (interruptions are counted apart), and the latest attempt's
    // lease is kept after it ends so a late completion can be matched to it.
    r"
ALTER TABLE trials ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN last_lease_id TEXT;
",
    // 3: agents are bound to their leases by a secret (its SHA-256 survives restarts); a failed
    // experiment keeps its reason.
    r"
ALTER TABLE agents ADD COLUMN secret_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE experiments ADD COLUMN failure_reason TEXT NOT NULL DEFAULT '';
",
    // 4: an experiment whose trials keep failing the same way is paused with its reason; the
    // time of its last resume bounds the failures that count towards the next pause.
    r"
ALTER TABLE experiments ADD COLUMN paused_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE experiments ADD COLUMN resumed_unix REAL NOT NULL DEFAULT 0;
",
    // 5: a trial keeps the extra metrics of its last completion (the text CNN's test_accuracy).
    r"
ALTER TABLE trials ADD COLUMN metrics_json TEXT NOT NULL DEFAULT '{}';
",
    // 6: warm start: trials added from elsewhere are marked imported, and an experiment keeps
    // the configurations queued to run before its suggestions.
    r"
ALTER TABLE trials ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;
ALTER TABLE experiments ADD COLUMN queued_json TEXT NOT NULL DEFAULT '[]';
",
];

/// An `ExperimentStore` on a SQLite file.
pub struct SqliteStore {
    // Declared first, so it stops before the writing connection closes (the last connection's
    // close then checkpoints what is left and removes the WAL); `None` for `open_file`.
    _checkpointer: Option<Checkpointer>,
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The WAL file the writer truncates past `wal_reset_bytes` (`None` for `open_file`).
    wal_path: Option<PathBuf>,
    wal_reset_bytes: u64,
    // Declared last, so it is released after the connection is closed; `None` for
    // `open_file`, which opens a file without claiming its directory.
    _lock: Option<DataDirLock>,
}

impl SqliteStore {
    /// Takes the exclusive lock on `data_dir` (`coordinator.lock`), then opens (creating if
    /// needed) `coordinator.sqlite3` in it and migrates it. The lock is held until the store is
    /// dropped.
    ///
    /// # Errors
    /// `DataDirLocked` when another coordinator holds the directory; otherwise when the
    /// directory cannot be created, the file is not a SQLite database, or its schema is newer
    /// than this build.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("create data directory '{}'", data_dir.display()), e))?;
        let lock = DataDirLock::acquire(data_dir)?;
        let mut store = Self::open_file(&data_dir.join(DB_FILE_NAME))?;
        store
            .conn
            .get_mut()
            .expect("sqlite connection lock is never poisoned")
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| Error::store("turn off automatic WAL checkpoints", e))?;
        store._checkpointer = Some(Checkpointer::start(&store.path)?);
        store.wal_path = Some(wal_path(&store.path));
        store._lock = Some(lock);
        Ok(store)
    }

    /// Opens a database file directly, without taking its directory's lock (for tools and
    /// tests; the daemon uses [`SqliteStore::open`]).
    ///
    /// # Errors
    /// As [`SqliteStore::open`], less the lock.
    pub fn open_file(path: &Path) -> Result<Self> {
        let what = || format!("open database '{}'", path.display());
        let mut conn = Connection::open(path).map_err(|e| Error::store(what(), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::store(what(), e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| Error::store(what(), e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| Error::store(what(), e))?;
        migrate(&mut conn).map_err(|e| Error::store(what(), e))?;
        Ok(Self {
            _checkpointer: None,
            conn: Mutex::new(conn),
            path: path.to_owned(),
            wal_path: None,
            wal_reset_bytes: checkpoint::WAL_RESET_BYTES,
            _lock: None,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("schema version {found} is newer than this coordinator's {supported}")]
    TooNew { found: usize, supported: usize },
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let stored: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let version = usize::try_from(stored).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(MigrateError::TooNew {
            found: version,
            supported: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).expect("few migrations"),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Errors decoding a stored row.
#[derive(Debug, thiserror::Error)]
enum RowError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("bad json in column '{column}': {source}")]
    Json {
        column: &'static str,
        source: serde_json::Error,
    },
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialize to json")
}

/// A unit enum as its serde name (`"running"`), for text columns.
fn to_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("store enums serialize") {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    }
}

fn from_json<T: DeserializeOwned>(column: &'static str, text: &str) -> Result<T, RowError> {
    serde_json::from_str(text).map_err(|source| RowError::Json { column, source })
}

fn from_text<T: DeserializeOwned>(column: &'static str, text: String) -> Result<T, RowError> {
    serde_json::from_value(serde_json::Value::String(text))
        .map_err(|source| RowError::Json { column, source })
}

fn put(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::PutExperiment(e) => {
            tx.prepare_cached(
                "INSERT INTO experiments (id, name, state, spec_json, created_unix, exhausted,
                     failure_reason, paused_reason, resumed_unix, queued_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, state = ?3, spec_json = ?4,
                     created_unix = ?5, exhausted = ?6, failure_reason = ?7,
                     paused_reason = ?8, resumed_unix = ?9, queued_json = ?10",
            )?
            .execute(params![
                e.id.0,
                e.spec.name,
                to_text(&e.state),
                to_json(&e.spec),
                e.created_unix,
                e.exhausted,
                e.failure_reason,
                e.paused_reason,
                e.resumed_unix,
                to_json(&e.queued)
            ])?;
        }
        Change::PutTrial(t) => put_trial(tx, t)?,
        Change::AddEpoch(e) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO epoch_reports
                 (trial_id, attempt, epoch, value, train_loss, train_accuracy, epoch_seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                e.trial_id.0,
                e.attempt,
                e.epoch,
                e.value,
                e.train_loss,
                e.train_accuracy,
                e.epoch_seconds
            ])?;
        }
        Change::PutAgent(a) => {
            tx.prepare_cached(
                "INSERT INTO agents (id, capabilities_json, registered_unix, last_seen_unix,
                     secret_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET capabilities_json = ?2, registered_unix = ?3,
                     last_seen_unix = ?4, secret_sha256 = ?5",
            )?
            .execute(params![
                a.id.0,
                to_json(&a.capabilities),
                a.registered_unix,
                a.last_seen_unix,
                a.secret_sha256
            ])?;
        }
        Change::DeleteAgent(id) => {
            tx.prepare_cached("DELETE FROM agents WHERE id = ?1")?
                .execute(params![id.0])?;
        }
    }
    Ok(())
}

fn put_trial(tx: &rusqlite::Transaction<'_>, t: &TrialRecord) -> rusqlite::Result<()> {
    let lease = t.lease.as_ref();
    tx.prepare_cached(
        "INSERT INTO trials (id, experiment_id, number, params_json, state, value, attempts, agent_id,
             lease_id, lease_agent_id, lease_deadline_unix, epochs_run, best_epoch, wall_seconds,
             device_seconds, cost_dollars, failure_reason, instance_type, created_unix,
             finished_unix, stop_requested, interruptions, last_lease_id, metrics_json, imported)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25)
         ON CONFLICT(id) DO UPDATE SET params_json = ?4, state = ?5, value = ?6, attempts = ?7,
             agent_id = ?8, lease_id = ?9, lease_agent_id = ?10, lease_deadline_unix = ?11,
             epochs_run = ?12, best_epoch = ?13, wall_seconds = ?14, device_seconds = ?15,
             cost_dollars = ?16, failure_reason = ?17, instance_type = ?18, finished_unix = ?20,
             stop_requested = ?21, interruptions = ?22, last_lease_id = ?23, metrics_json = ?24",
    )?
    .execute(params![
            t.id.0,
            t.experiment_id.0,
            t.number,
            to_json(&t.params),
            to_text(&t.state),
            t.value,
            t.attempts,
            t.agent_id.as_ref().map(|a| a.0.clone()),
            lease.map(|l| l.lease_id.0.clone()),
            lease.map(|l| l.agent_id.0.clone()),
            lease.map(|l| l.deadline_unix),
            t.epochs_run,
            t.best_epoch,
            t.wall_seconds,
            t.device_seconds,
            t.cost_dollars,
            t.failure_reason,
            t.instance_type,
            t.created_unix,
            t.finished_unix,
            t.stop_requested,
            t.interruptions,
            t.last_lease_id.as_ref().map(|l| l.0.clone()),
            to_json(&t.metrics),
            t.imported,
    ])?;
    Ok(())
}

fn experiment_from_row(row: &Row<'_>) -> Result<ExperimentRecord, RowError> {
    Ok(ExperimentRecord {
        id: row.get::<_, String>(0)?.as_str().into(),
        state: from_text("state", row.get(1)?)?,
        spec: from_json("spec_json", &row.get::<_, String>(2)?)?,
        created_unix: row.get(3)?,
        exhausted: row.get(4)?,
        failure_reason: row.get(5)?,
        paused_reason: row.get(6)?,
        resumed_unix: row.get(7)?,
        queued: from_json("queued_json", &row.get::<_, String>(8)?)?,
    })
}

fn trial_from_row(row: &Row<'_>) -> Result<TrialRecord, RowError> {
    let lease_id: Option<String> = row.get(8)?;
    let lease_agent: Option<String> = row.get(9)?;
    let lease_deadline: Option<f64> = row.get(10)?;
    let lease = match (lease_id, lease_agent, lease_deadline) {
        (Some(lease_id), Some(agent_id), Some(deadline_unix)) => Some(LeaseRecord {
            lease_id: lease_id.as_str().into(),
            agent_id: agent_id.as_str().into(),
            deadline_unix,
        }),
        _ => None,
    };
    Ok(TrialRecord {
        id: row.get::<_, String>(0)?.as_str().into(),
        experiment_id: row.get::<_, String>(1)?.as_str().into(),
        number: row.get(2)?,
        params: from_json("params_json", &row.get::<_, String>(3)?)?,
        state: from_text("state", row.get(4)?)?,
        value: row.get(5)?,
        attempts: row.get(6)?,
        agent_id: row.get::<_, Option<String>>(7)?.map(|a| a.as_str().into()),
        lease,
        epochs_run: row.get(11)?,
        best_epoch: row.get(12)?,
        wall_seconds: row.get(13)?,
        device_seconds: row.get(14)?,
        cost_dollars: row.get(15)?,
        failure_reason: row.get(16)?,
        instance_type: row.get(17)?,
        created_unix: row.get(18)?,
        finished_unix: row.get(19)?,
        stop_requested: row.get(20)?,
        interruptions: row.get(21)?,
        last_lease_id: row.get::<_, Option<String>>(22)?.map(|l| l.as_str().into()),
        metrics: from_json("metrics_json", &row.get::<_, String>(23)?)?,
        imported: row.get(24)?,
    })
}

fn epoch_from_row(row: &Row<'_>) -> Result<EpochRecord, RowError> {
    Ok(EpochRecord {
        trial_id: row.get::<_, String>(0)?.as_str().into(),
        attempt: row.get(1)?,
        epoch: row.get(2)?,
        value: row.get(3)?,
        train_loss: row.get(4)?,
        train_accuracy: row.get(5)?,
        epoch_seconds: row.get(6)?,
    })
}

fn agent_from_row(row: &Row<'_>) -> Result<AgentRecord, RowError> {
    Ok(AgentRecord {
        id: row.get::<_, String>(0)?.as_str().into(),
        capabilities: from_json("capabilities_json", &row.get::<_, String>(1)?)?,
        registered_unix: row.get(2)?,
        last_seen_unix: row.get(3)?,
        secret_sha256: row.get(4)?,
    })
}

fn query_all<T>(
    conn: &Connection,
    sql: &str,
    decode: impl Fn(&Row<'_>) -> Result<T, RowError>,
) -> Result<Vec<T>, RowError> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

impl ExperimentStore for SqliteStore {
    fn load(&self) -> Result<Snapshot> {
        let conn = self
            .conn
            .lock()
            .expect("sqlite connection lock is never poisoned");
        let what = || format!("load '{}'", self.path.display());
        let load = || -> Result<Snapshot, RowError> {
            Ok(Snapshot {
                experiments: query_all(
                    &conn,
                    "SELECT id, state, spec_json, created_unix, exhausted, failure_reason,
                         paused_reason, resumed_unix, queued_json
                     FROM experiments
                     ORDER BY created_unix, rowid",
                    experiment_from_row,
                )?,
                trials: query_all(
                    &conn,
                    "SELECT id, experiment_id, number, params_json, state, value, attempts, agent_id,
                         lease_id, lease_agent_id, lease_deadline_unix, epochs_run, best_epoch,
                         wall_seconds, device_seconds, cost_dollars, failure_reason, instance_type,
                         created_unix, finished_unix, stop_requested, interruptions, last_lease_id,
                         metrics_json, imported
                     FROM trials ORDER BY experiment_id, number",
                    trial_from_row,
                )?,
                epochs: query_all(
                    &conn,
                    "SELECT trial_id, attempt, epoch, value, train_loss, train_accuracy, epoch_seconds
                     FROM epoch_reports ORDER BY trial_id, attempt, epoch",
                    epoch_from_row,
                )?,
                agents: query_all(
                    &conn,
                    "SELECT id, capabilities_json, registered_unix, last_seen_unix, secret_sha256
                     FROM agents",
                    agent_from_row,
                )?,
            })
        };
        load().map_err(|e| Error::store(what(), e))
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self
            .conn
            .lock()
            .expect("sqlite connection lock is never poisoned");
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for change in changes {
                put(&tx, change)?;
            }
            tx.commit()
        };
        write(&mut conn)
            .map_err(|e| Error::store(format!("commit {} changes", changes.len()), e))?;
        if let Some(wal) = &self.wal_path {
            checkpoint::truncate_if_large(&conn, wal, self.wal_reset_bytes);
        }
        Ok(())
    }
}

/// The WAL file of the database at `path` (SQLite's name: the path plus `-wal`).
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The schema version of a database file, for diagnostics.
///
/// # Errors
/// When the file cannot be opened.
pub fn schema_version(path: &Path) -> Result<Option<u32>> {
    let conn = Connection::open(path).map_err(|e| Error::store("open database", e))?;
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()
        .map_err(|e| Error::store("read schema version", e))
}

#[cfg(test)]
mod tests;
