//! Harness for tunefleet's end-to-end tests (skeleton; being written).
#![forbid(unsafe_code)]
