//! End-to-end tests: one binary (being written).

mod agent_e2e;
mod coordinator_e2e;
mod observability_deploy;
mod observability_configs;
mod observability_prometheus;
