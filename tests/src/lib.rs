//! Harness for tunefleet's end-to-end tests: real `coordinator` and `agent` processes on
//! loopback. [`cluster`] is the general harness; [`prometheus`] runs a real Prometheus;
//! [`process`] reads the process table for the tests of process-level faults.
#![forbid(unsafe_code)]

pub mod agents;
pub mod cluster;
pub mod process;
pub mod prometheus;
