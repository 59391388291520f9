//! The SQLite store: every record round-trips, a second store on one data dir is refused, corrupt
//! and newer files are clear errors, and version-3 files upgrade.

use super::*;
use crate::store::tests_support::sample_changes;

#[test]
fn round_trips_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("opens");
    let (changes, expected) = sample_changes();
    store.commit(&changes).expect("commits");
    // A duplicate epoch is ignored, not an error.
    store
        .commit(&changes[2..3])
        .expect("duplicate epoch ignored");
    drop(store);
    let reopened = SqliteStore::open(dir.path()).expect("reopens");
    assert_eq!(reopened.load().expect("loads"), expected);
    assert_eq!(
        schema_version(&dir.path().join(DB_FILE_NAME)).expect("reads"),
        Some(6)
    );
    // An imported trial keeps its mark.
    let mut imported = expected.trials[0].clone();
    imported.id = "trial-imported".into();
    imported.number = 99;
    imported.imported = true;
    reopened
        .commit(&[Change::PutTrial(imported.clone())])
        .expect("commits an imported trial");
    let loaded = reopened.load().expect("loads");
    assert_eq!(loaded.trials.iter().find(|t| t.imported), Some(&imported));
    let agent = expected.agents[0].id.clone();
    reopened
        .commit(&[Change::DeleteAgent(agent)])
        .expect("deletes the agent");
    let after = reopened.load().expect("loads");
    assert!(after.agents.is_empty(), "{:?}", after.agents);
    assert_eq!(
        after.trials.len(),
        expected.trials.len() + 1,
        "deleting an agent keeps its trials"
    );
}

#[test]
fn a_second_store_on_one_data_dir_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = SqliteStore::open(dir.path()).expect("opens");
    let err = SqliteStore::open(dir.path())
        .err()
        .expect("second open refused");
    assert!(
        matches!(&err, Error::DataDirLocked { holder_pid: Some(pid), .. } if *pid == std::process::id()),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    drop(first);
    SqliteStore::open(dir.path()).expect("reopens once the first is dropped");
}

#[test]
fn corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(DB_FILE_NAME),
        b"this is not a database, just text",
    )
    .expect("writes");
    let err = SqliteStore::open(dir.path())
        .err()
        .expect("refuses a corrupt file");
    let message = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(message.contains("coordinator.sqlite3"), "{message}");
}

#[test]
fn a_version_3_file_upgrades_and_its_experiments_are_not_paused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(DB_FILE_NAME);
    let mut conn = Connection::open(&path).expect("opens");
    for (index, sql) in MIGRATIONS.iter().take(3).enumerate() {
        conn.execute_batch(sql).expect("an old migration runs");
        conn.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).expect("small"),
        )
        .expect("sets version");
    }
    let old = crate::store::tests_support::sample_experiment();
    let tx = conn.transaction().expect("a transaction");
    tx.execute(
        "INSERT INTO experiments (id, name, state, spec_json, created_unix, exhausted,
             failure_reason) VALUES (?1, ?2, 'running', ?3, 1.5, 0, '')",
        params![old.id.0, old.spec.name, to_json(&old.spec)],
    )
    .expect("inserts a version-3 row");
    tx.commit().expect("commits");
    drop(conn);
    let store = SqliteStore::open(dir.path()).expect("upgrades");
    let loaded = store.load().expect("loads").experiments;
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].state,
        crate::service::model::ExperimentState::Running
    );
    assert!(loaded[0].paused_reason.is_empty());
    assert_eq!(loaded[0].resumed_unix, 0.0);
    assert!(
        loaded[0].queued.is_empty(),
        "nothing queued after the upgrade"
    );
    assert_eq!(schema_version(&path).expect("reads"), Some(6));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(DB_FILE_NAME);
    let conn = Connection::open(&path).expect("opens");
    conn.pragma_update(None, "user_version", 99)
        .expect("sets version");
    drop(conn);
    let err = SqliteStore::open(dir.path())
        .err()
        .expect("refuses newer schema");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("newer"), "{source}");
}

#[test]
fn the_wal_stays_bounded_under_a_steady_stream_of_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = SqliteStore::open(dir.path()).expect("opens");
    store.wal_reset_bytes = 256 << 10;
    let wal = wal_path(store.path());
    let (changes, _) = sample_changes();
    store.commit(&changes).expect("commits");
    let mut trial = changes
        .iter()
        .find_map(|c| match c {
            Change::PutTrial(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a sample trial");
    // Commits back to back, as a busy fleet's group commits come: the passive checkpoints every
    // 500 ms never find the WAL idle. About 6 MB of WAL frames in all.
    let mut largest = 0;
    for number in 0..1500 {
        trial.failure_reason = format!("{number:04}").repeat(100);
        store
            .commit(&[Change::PutTrial(trial.clone())])
            .expect("commits");
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    assert!(
        largest <= 2 * store.wal_reset_bytes,
        "the WAL reached {largest} bytes, past twice the {} it is truncated at",
        store.wal_reset_bytes
    );
    drop(store);
    let reopened = SqliteStore::open(dir.path()).expect("reopens");
    let loaded = reopened.load().expect("loads");
    let last = loaded
        .trials
        .iter()
        .find(|t| t.id == trial.id)
        .expect("the trial");
    assert_eq!(
        last.failure_reason,
        "1499".repeat(100),
        "the last commit is durable"
    );
}
