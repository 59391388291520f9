//! `spec_toml`: bytes → UTF-8 → the spec-file parser of `tunectl create` → the wire spec → the
//! coordinator's own checks → `CreateExperiment` on a scratch coordinator over a real SQLite
//! file. A spec both accept must give a trial at once: it is leased, its parameters must lie in
//! the spec's space, and it is completed and the experiment stopped, so no trial of this input
//! is left for the next one to lease.
//!
//! The SQLite world is reused across inputs (a fresh store per input cost more than the input
//! itself, see `docs/RELIABILITY.md`) and rebuilt every [`MAX_USES`] inputs or once its
//! experiments may have created [`MAX_TRIALS`] trials.

use std::sync::Mutex;

use coordinator::grpc::convert::params_from_pb;
use coordinator::service::limits;
use coordinator::service::model::ExperimentSpec;
use proto::v1 as pb;
use proto::v1::agent_service_server::AgentService as _;
use proto::v1::experiment_service_server::ExperimentService as _;
use tonic::Code;
use tunectl::cli::spec::SpecFile;

use super::lock;
use crate::harness::{check_status, describe};
use crate::scratch::{Recycled, Scratch, fuzz_settings};
use crate::{Reached, invariants};

/// Inputs one world serves.
pub const MAX_USES: u64 = 2_000;
/// Trials one world's experiments may create (a bound on memory and file size).
pub const MAX_TRIALS: u64 = 100_000;

/// The first lease of a new experiment waits for its first suggestion round, so it may take this
/// many call timeouts.
pub const FIRST_LEASE_CALLS: u32 = 5;

struct World {
    scratch: Scratch,
    agent_id: String,
}

static WORLD: Mutex<Recycled<World>> = Mutex::new(Recycled::new());

fn build() -> World {
    let scratch = Scratch::sqlite(fuzz_settings());
    let agent_id = scratch.register(&[]);
    World { scratch, agent_id }
}

/// Runs one input.
pub fn run(data: &[u8]) -> Reached {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reached::Rejected;
    };
    let Ok(file) = SpecFile::parse(text) else {
        return Reached::Rejected;
    };
    let wire = file.to_pb();
    let what = || format!("spec {}", describe(data, 4000));
    // What CreateExperiment checks first, on its own: it must not panic, and a refusal here must
    // be a refusal there.
    let checked = ExperimentSpec::try_from(wire.clone()).and_then(|s| limits::check_spec(&s));
    let trials = u64::from(wire.parallelism.max(1).min(wire.budget_trials));
    let mut recycled = lock(&WORLD);
    recycled.add_use();
    recycled.add_weight(2 * trials);
    let world = recycled.get(MAX_USES, MAX_TRIALS, build);
    let created = world.scratch.create(wire);
    let experiment_id = match created {
        Err(status) => {
            check_status(&what, &status);
            assert_eq!(status.code(), Code::InvalidArgument, "{}", what());
            return Reached::Refused;
        }
        Ok(id) => id,
    };
    assert!(
        checked.is_ok(),
        "{}: created although its checks refuse it: {checked:?}",
        what()
    );
    lease_check_and_finish(world, &file, &experiment_id, &what);
    Reached::Served
}

fn lease_check_and_finish(
    world: &World,
    file: &SpecFile,
    experiment_id: &str,
    what: &dyn Fn() -> String,
) {
    let leasing = || format!("the first lease of {}", what());
    let lease = world
        .scratch
        .lease(&world.agent_id, 1, FIRST_LEASE_CALLS, &leasing)
        .pop()
        .expect("lease returns the one trial asked for");
    assert_eq!(
        lease.experiment_id,
        experiment_id,
        "{}: leased a trial of another experiment",
        what()
    );
    let space = tuner::space::Space::new(file.parameters.clone()).expect("tunectl checked it");
    let params = params_from_pb(&lease.params).expect("the coordinator sends whole values");
    if let Err(error) = space.validate(&params) {
        panic!("{}: leased parameters outside the space: {error}", what());
    }
    let complete = pb::CompleteTrialRequest {
        lease_id: lease.lease_id.clone(),
        agent_secret: world.scratch.secret_of(&lease.lease_id),
        outcome: pb::TrialOutcome::Succeeded as i32,
        value: Some(0.5),
        ..Default::default()
    };
    crate::rpc!(what, world.scratch.agents, complete_trial, complete)
        .unwrap_or_else(|| panic!("{}: its first completion was refused", what()));
    let stop = pb::StopExperimentRequest {
        experiment_id: experiment_id.to_owned(),
    };
    let stopped = crate::rpc!(what, world.scratch.experiments, stop_experiment, stop)
        .unwrap_or_else(|| panic!("{}: stop was refused", what()));
    if let Some(experiment) = &stopped.experiment {
        invariants::experiment(what, experiment);
    }
}
