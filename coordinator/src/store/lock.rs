//! The data directory's exclusive lock: `coordinator.lock` beside `coordinator.sqlite3`, held
//! with [`std::fs::File::try_lock`] (an `flock(2)` on Linux) for as long as the store lives.
//!
//! Two coordinators on one data dir would both lease the same trial as attempt 1 and accept both
//! completions, so the second one must refuse to start. The kernel releases the lock when the
//! holder's file is closed, which includes every way a process can die (SIGKILL too), so a
//! stale lock file never blocks a restart. The file holds the holder's pid and start time, for
//! the second coordinator's error and for operators; its content is informational only, the
//! lock is what counts. `flock` is not reliable on every network file system: keep the data dir
//! on a local disk (or a block volume, as the Kubernetes StatefulSet does).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let held = coordinator::store::lock::DataDirLock::acquire(dir.path()).unwrap();
//! assert!(coordinator::store::lock::DataDirLock::acquire(dir.path()).is_err());
//! drop(held);
//! assert!(coordinator::store::lock::DataDirLock::acquire(dir.path()).is_ok());
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside the data directory.
pub const LOCK_FILE_NAME: &str = "coordinator.lock";

/// An exclusive lock on a data directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    // Never read: holding the open file is what holds the lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (which must exist) without waiting, and writes this
    /// process's pid and start time into the lock file.
    ///
    /// # Errors
    /// `DataDirLocked` naming the directory and the holder's pid when another process holds it;
    /// `Io` when the lock file cannot be opened, locked or written.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(LOCK_FILE_NAME);
        // No truncation on open: the file may hold the current holder's pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("open lock file '{}'", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::DataDirLocked {
                    data_dir: data_dir.to_owned(),
                    holder_pid: read_holder_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock '{}'", path.display()), e));
            }
        }
        write_holder(&mut file)
            .map_err(|e| Error::io(format!("write lock file '{}'", path.display()), e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file's content: `pid=N` and `started_unix_secs=T` lines.
fn holder_text(pid: u32, started_unix_secs: u64) -> String {
    format!("pid={pid}\nstarted_unix_secs={started_unix_secs}\n")
}

fn write_holder(file: &mut File) -> std::io::Result<()> {
    let started_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(holder_text(std::process::id(), started_unix_secs).as_bytes())?;
    file.sync_all()
}

/// The holder's pid from the lock file, when it can be read (the holder may be between
/// truncating and writing it).
fn read_holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    parse_holder_pid(&text)
}

fn parse_holder_pid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("pid="))
        .and_then(|pid| pid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_dir_and_the_holder_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = DataDirLock::acquire(dir.path()).expect("first lock");
        let text = std::fs::read_to_string(held.path()).expect("reads lock file");
        assert_eq!(parse_holder_pid(&text), Some(std::process::id()), "{text}");
        assert!(text.contains("started_unix_secs="), "{text}");
        let err = DataDirLock::acquire(dir.path()).expect_err("second lock refused");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string())
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).expect("free again once dropped");
    }

    #[test]
    fn holder_text_round_trips_and_garbage_has_no_pid() {
        assert_eq!(parse_holder_pid(&holder_text(42, 7)), Some(42));
        assert_eq!(parse_holder_pid(""), None);
        assert_eq!(parse_holder_pid("pid=abc\n"), None);
    }
}
