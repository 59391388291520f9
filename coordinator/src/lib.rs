//! The tunefleet coordinator (skeleton; being written).
#![forbid(unsafe_code)]

pub mod ask_tell;
pub mod local;
pub mod metrics;
pub mod scenario;
