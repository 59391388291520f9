//! Harness for tunefleet's end-to-end tests: real `coordinator` and `agent` processes on
//! loopback. [`cluster`] is the general harness; [`prometheus`] runs a real Prometheus.
#![forbid(unsafe_code)]

pub mod agents;
pub mod cluster;
pub mod prometheus;
