//! End-to-end tests: one binary (being written).
