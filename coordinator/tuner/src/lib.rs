//! Bayesian optimization for tunefleet (skeleton; being written).
#![forbid(unsafe_code)]
