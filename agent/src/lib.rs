//! The tunefleet agent (skeleton; being written).
#![forbid(unsafe_code)]

pub mod metrics;
pub mod train_cmd;
