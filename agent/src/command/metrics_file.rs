//! The per-trial metrics file (`TUNEFLEET_METRICS_FILE`): a path in a fresh directory that the
//! command may append its epoch lines to, read from where the last read stopped.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::epoch_line::MAX_LINE_BYTES;

/// Most bytes read from the file at one poll.
const READ_CHUNK_BYTES: u64 = 1024 * 1024;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A trial's metrics file and how much of it was read.
#[derive(Debug, Default)]
pub struct MetricsFile {
    dir: Option<PathBuf>,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl MetricsFile {
    /// Makes a fresh directory for the trial's file (the file itself is the command's to write).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn create(trial_id: &str) -> std::io::Result<Self> {
        let safe_id: String = trial_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "tunefleet-trial-{safe_id}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            path: dir.join("metrics.jsonl"),
            dir: Some(dir),
            offset: 0,
            partial: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The complete lines appended since the last call (none while the file does not exist).
    pub fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let length = file.metadata().map_or(0, |meta| meta.len());
        if length < self.offset {
            // Truncated or replaced: read it again from the start.
            self.offset = 0;
            self.partial.clear();
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut chunk = Vec::new();
        let read = file
            .take(READ_CHUNK_BYTES)
            .read_to_end(&mut chunk)
            .unwrap_or(0);
        self.offset += read as u64;
        self.partial.extend_from_slice(&chunk[..read]);
        let mut lines = Vec::new();
        while let Some(newline) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=newline).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        if self.partial.len() > MAX_LINE_BYTES {
            lines.push(String::from_utf8_lossy(&self.partial).to_string());
            self.partial.clear();
        }
        lines
    }

    /// Removes the directory and the file (best effort).
    pub fn remove(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_read_once_and_partial_lines_wait_for_their_end() {
        let mut file = MetricsFile::create("trial-1").expect("creates");
        assert!(file.new_lines().is_empty(), "no file yet");
        let mut out = std::fs::File::create(file.path()).expect("the command writes");
        out.write_all(b"{\"epoch\": 1}\n{\"epo").expect("writes");
        assert_eq!(file.new_lines(), ["{\"epoch\": 1}"]);
        out.write_all(b"ch\": 2}\n").expect("writes");
        assert_eq!(file.new_lines(), ["{\"epoch\": 2}"]);
        assert!(file.new_lines().is_empty());
        let dir = file.path().parent().expect("a dir").to_path_buf();
        file.remove();
        assert!(!dir.exists());
    }
}
