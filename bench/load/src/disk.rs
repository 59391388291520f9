//! How fast the disk under the coordinator's data directory makes a write durable, measured
//! beside each run: the report and completion latencies of a durable coordinator can be no
//! better than this (each answer waits for a group commit's `fdatasync`), and on a shared virtual
//! machine it changes from minute to minute, so a tail in the RPC table is read next to it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

/// Appended blocks a probe syncs.
pub const SYNCS: usize = 200;
/// Bytes appended before each sync (a group commit of a few dozen reports writes about this).
const BLOCK: usize = 8192;

/// `fdatasync` latency of appended blocks.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SyncLatency {
    /// Syncs measured.
    pub syncs: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// Appends `syncs` blocks of 8 KiB to a scratch file in `dir`, syncing the data after each, and
/// returns the latency of the syncs; the file is removed afterwards.
///
/// # Errors
/// When the scratch file cannot be created, written or synced.
pub fn probe(dir: &Path, syncs: usize) -> Result<SyncLatency> {
    let path = dir.join("load-bench-sync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5a_u8; BLOCK];
    let mut times = Vec::with_capacity(syncs);
    for _ in 0..syncs {
        file.write_all(&block)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let started = Instant::now();
        file.sync_data()
            .with_context(|| format!("cannot sync {}", path.display()))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(summarize(times))
}

fn summarize(mut times: Vec<f64>) -> SyncLatency {
    if times.is_empty() {
        return SyncLatency::default();
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    SyncLatency {
        syncs: times.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times[times.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_syncs_every_block_and_removes_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let latency = probe(dir.path(), 5).expect("probe");
        assert_eq!(latency.syncs, 5);
        assert!(latency.p50_ms >= 0.0 && latency.p50_ms <= latency.p99_ms);
        assert!(latency.p99_ms <= latency.max_ms);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn quantiles_come_from_the_sorted_times() {
        let times: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(times);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (51.0, 99.0, 100.0));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let error = probe(Path::new("/nonexistent/load-bench"), 1).expect_err("no directory");
        assert!(format!("{error:#}").contains("load-bench-sync-probe"));
    }
}
