//! End-to-end tests, one binary (STYLE.md §9.6): each module starts real daemons through
//! `integration_tests::cluster`. Build the binaries first (`cargo test --workspace` does).
//! `workload_tables_mirror` starts none: it checks the coordinator's tables against the agent.

mod agent_e2e;
mod choices_e2e;
mod command_e2e;
mod connections_e2e;
mod coordinator_e2e;
mod fleet_e2e;
mod import_e2e;
mod metrics_restart_e2e;
mod observability_configs;
mod observability_deploy;
mod observability_prometheus;
mod own_data_e2e;
mod pause_e2e;
mod process_e2e;
mod store_failure_e2e;
mod study_e2e;
mod tls_e2e;
mod workload_metrics_e2e;
mod workload_tables_mirror;
