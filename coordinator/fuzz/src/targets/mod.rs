//! One module per fuzz target, each with `run(data)`: what `fuzz_targets/<name>.rs` calls.

pub mod agent_rpc;
pub mod client_rpc;
pub mod config_toml;
pub mod spec_toml;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a target's world; a panic that poisoned it has already been reported.
fn lock<T>(world: &Mutex<T>) -> MutexGuard<'_, T> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}
