//! End-to-end tests: one binary (being written).

mod observability_deploy;
mod observability_configs;
mod observability_prometheus;
