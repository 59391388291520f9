//! A load benchmark of the tunefleet coordinator, and the agent simulator it is built on.
//!
//! A fleet of simulated agents ([`fleet`], [`agent`]), each a tokio task, speaks the real
//! AgentService RPCs over real gRPC to a real `coordinator` process ([`daemon`]): register, then
//! lease → heartbeat while holding the lease → report epochs → complete, until stopped. The
//! agents evaluate Branin themselves ([`objective`]). [`scenario`] runs the same scenario against
//! each coordinator binary in turn and [`report`] turns the figures ([`stats`], [`procfs`],
//! [`scrape`], and the disk's sync latency, [`disk`]) into JSON and markdown. The end-to-end test `tests/tests/fleet_e2e.rs` reuses the fleet to check
//! that every acknowledged call survives a coordinator crash.
//!
//! Place in the workspace (STYLE.md §1): a benchmark beside `bench/gpu`; it depends only on
//! `proto` and talks to the coordinator as a separate process, never linking it. Traffic goes to
//! 127.0.0.1 only, and every loop is bounded in count and time. Being a benchmark and test
//! harness, it reports errors with `anyhow` like `tests/src`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use load_bench::scenario::{Scenario, Target, run};
//! use std::time::Duration;
//! let scenario = Scenario {
//!     agents: 200, bo: 1, random: 1, seed_results: 20, duration: Duration::from_secs(10),
//!     epochs: 3, work_per_epoch: Duration::ZERO, work_jitter: 0.0, lease_wait: Duration::from_secs(5), lease_timeout_secs: None, heartbeat_secs: None,
//!     channels: 8, rpc_timeout: Duration::from_secs(60), seed_timeout: Duration::from_secs(120), keep_logs: None,
//!     heartbeat_lockstep: false,
//! };
//! let report = run(&Target::parse("target/release/coordinator"), &scenario).await?;
//! println!("{:.1} trials/s", report.completed_per_second);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod agent;
pub mod daemon;
pub mod disk;
#[cfg(test)]
mod fake;
pub mod fleet;
pub mod objective;
pub mod procfs;
pub mod report;
pub mod retry;
pub mod scenario;
pub mod scrape;
pub mod stats;
