//! Fuzz targets for tunefleet, run by `cargo fuzz` (libFuzzer): the spec files `tunectl create`
//! reads, every request of both gRPC services on a scratch coordinator, and the config files of
//! both daemons.
//!
//! Place in the workspace: a crate of its own workspace under `coordinator/fuzz/`, outside the
//! root workspace; it depends on `coordinator`, `tunectl`, `agent` (only for its config parser)
//! and `proto`, and nothing depends on it. Each target in `fuzz_targets/` is one line that calls
//! [`targets`]; the logic lives here so that `tests/seeds.rs` can replay the seed corpus under
//! plain `cargo test`. [`harness`] holds the shared runtime and the timeout that turns a hang into
//! a crash, [`scratch`] the in-process coordinators, [`seeds`] the seed inputs.
//!
//! What counts as a failure: a panic anywhere in the process (libFuzzer's panic hook aborts, so a
//! panic in a background task counts too), a call that does not answer within
//! [`harness::call_timeout`], an `INTERNAL` or `UNKNOWN` status, an error message longer than
//! [`harness::MAX_STATUS_MESSAGE_BYTES`], and the target's own checks (a valid spec must give a
//! trial whose parameters lie in its space).
//!
//! ```no_run
//! tunefleet_fuzz::targets::config_toml::run(b"version = 1\n");
//! ```
#![forbid(unsafe_code)]
// Requests are built with `..Default::default()` even when every field is set, so fields added to
// the proto (an agent secret, say) leave the targets compiling.
#![allow(clippy::needless_update)]

pub mod harness;
pub mod invariants;
pub mod pick;
pub mod scratch;
pub mod seeds;
pub mod targets;

/// How far an input got, for the seed tests (the fuzz targets ignore it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    /// It did not parse or decode.
    Rejected,
    /// It was parsed and refused.
    Refused,
    /// It was served (accepted, answered).
    Served,
}

impl Reached {
    /// `Served` or `Refused`.
    pub fn from_served(served: bool) -> Self {
        if served { Self::Served } else { Self::Refused }
    }
}
