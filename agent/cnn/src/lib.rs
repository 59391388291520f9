//! The study's text CNN (skeleton; being written).
#![forbid(unsafe_code)]
