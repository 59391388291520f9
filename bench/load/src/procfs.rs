//! What the benchmark reads about a process from `/proc` (Linux only): CPU time
//! (`/proc/PID/stat` fields 14 and 15, utime and stime, in clock ticks) and peak resident memory
//! (`VmHWM` in `/proc/PID/status`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Clock ticks per second of the `/proc` CPU counters (`getconf CLK_TCK`, 100 when that fails;
/// Linux fixes USER_HZ at 100 on x86-64).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of `pid` so far, in clock ticks.
///
/// # Errors
/// When the process is gone or the file has an unexpected shape.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("unexpected {path}: {text}"))
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' after the command name")?;
    // After the name come field 3 (state) onwards: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("only {} fields after the command name", fields.len());
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// Peak resident set size of `pid` (`VmHWM`), in bytes.
///
/// # Errors
/// When the process is gone or has no `VmHWM` line.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_kib_field(&text, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))
}

fn parse_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU use of a process over a window, in cores (1.0 = one core busy the whole time).
#[derive(Clone, Copy, Debug)]
pub struct CpuWindow {
    pid: u32,
    ticks_per_second: u64,
    start_ticks: u64,
    started: Instant,
}

impl CpuWindow {
    /// Opens a window now.
    ///
    /// # Errors
    /// When the process cannot be read.
    pub fn start(pid: u32) -> Result<Self> {
        Ok(Self {
            pid,
            ticks_per_second: clock_ticks_per_second(),
            start_ticks: cpu_ticks(pid)?,
            started: Instant::now(),
        })
    }

    /// Average cores used since the window opened, and the wall time it covers.
    ///
    /// # Errors
    /// When the process cannot be read.
    pub fn cores(&self) -> Result<(f64, Duration)> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.start_ticks);
        let wall = self.started.elapsed();
        let cpu_seconds = ticks as f64 / self.ticks_per_second as f64;
        Ok((cpu_seconds / wall.as_secs_f64().max(1e-9), wall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat =
            "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 100 0 0 0 750 250 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 1000);
    }

    #[test]
    fn vm_hwm_in_bytes() {
        let status =
            "Name:\tcoordinator\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(2048 * 1024));
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        assert!(peak_rss_bytes(pid).unwrap() > 0);
        let window = CpuWindow::start(pid).unwrap();
        assert!(window.cores().unwrap().0 >= 0.0);
    }
}
