//! Process table helpers for the tests of process-level faults: the children of a pid (read
//! from `/proc/<pid>/stat`, so they are found even after they are reparented), and waits with a
//! deadline until such processes are gone. A process counts as gone once it exited, even when
//! no one reaped it yet (a zombie), and a reused pid is told apart by its start time.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use integration_tests::process;
//! let children = process::children_of(std::process::id())?;
//! process::wait_until_gone(&children, std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::wait_for;

/// One process, as `/proc` described it when it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The pid.
    pub pid: u32,
    /// The parent's pid.
    pub parent_pid: u32,
    /// The executable's name (`comm`, at most 15 bytes).
    pub name: String,
    /// One-letter state (`R`, `S`, `Z`...).
    pub state: char,
    /// Start time in clock ticks after boot, which tells a reused pid apart.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ...`, with the start time the 22nd field.
fn parse_stat(text: &str) -> Option<ProcessInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    Some(ProcessInfo {
        pid,
        name,
        state: fields.first()?.chars().next()?,
        parent_pid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The process `pid` now, or `None` when there is none.
pub fn info(pid: u32) -> Option<ProcessInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every process whose parent is `parent_pid` now.
///
/// # Errors
/// When `/proc` cannot be read.
pub fn children_of(parent_pid: u32) -> Result<Vec<ProcessInfo>> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot read /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(process) = info(pid)
            && process.parent_pid == parent_pid
        {
            children.push(process);
        }
    }
    Ok(children)
}

/// Whether `process` still runs: the same pid and start time, and not a zombie.
pub fn is_running(process: &ProcessInfo) -> bool {
    info(process.pid).is_some_and(|now| {
        now.start_ticks == process.start_ticks && !matches!(now.state, 'Z' | 'X')
    })
}

/// Waits until none of `processes` runs.
///
/// # Errors
/// Naming those still running at the deadline.
pub async fn wait_until_gone(processes: &[ProcessInfo], timeout: Duration) -> Result<()> {
    let waited = wait_for("the processes to exit", timeout, || async {
        Ok(processes.iter().all(|p| !is_running(p)).then_some(()))
    })
    .await;
    if waited.is_err() {
        let left: Vec<String> = processes
            .iter()
            .filter(|p| is_running(p))
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        bail!("still running after {timeout:?}: {}", left.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 10";
        let info = parse_stat(line).expect("parses");
        assert_eq!(
            (info.pid, info.parent_pid, info.name.as_str(), info.state),
            (4242, 17, "my (odd) name", 'S')
        );
        assert_eq!(info.start_ticks, 987_654);
        let me = super::info(std::process::id()).expect("this process");
        assert!(is_running(&me));
    }
}
