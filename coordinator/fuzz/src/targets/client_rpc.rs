//! `client_rpc`: byte 0 picks an `ExperimentService` method, byte 1 whether its experiment id is
//! a real one ([`crate::pick`]), the rest is the request, decoded with `prost` and handed to the
//! real tonic adapter (`coordinator::grpc::ExperimentGrpc`) of a scratch coordinator over the
//! in-memory store. Any refusal is fine except `INTERNAL`, `UNKNOWN` or a long message; every
//! experiment answered must add up ([`invariants::experiment`]).
//!
//! The world starts with three experiments (random, BO with median stopping, a grid with
//! successive halving) whose first trials were leased, reported and partly completed. It is
//! rebuilt every [`MAX_USES`] decoded inputs, or once the experiments created through it may have
//! created [`MAX_TRIALS`] trials.

use std::sync::Mutex;

use prost::Message;
use proto::v1 as pb;
use proto::v1::experiment_service_server::ExperimentService as _;

use super::lock;
use crate::harness::describe;
use crate::pick::Picks;
use crate::scratch::{Recycled, Scratch, fuzz_settings, push_bounded};
use crate::seeds::{BRANIN_BO_MEDIAN, BRANIN_RANDOM, GRID_MIXED, spec_pb};
use crate::{Reached, invariants};

/// The methods, in the order byte 0 picks them.
pub const METHODS: [&str; 6] = [
    "CreateExperiment",
    "GetExperiment",
    "ListExperiments",
    "StopExperiment",
    "ListTrials",
    "GetBestTrial",
];
/// Inputs one world serves.
pub const MAX_USES: u64 = 1_000;
/// Trials the experiments of one world may create.
pub const MAX_TRIALS: u64 = 100_000;
/// The most experiment ids kept for the choice byte.
const MAX_IDS: usize = 16;

struct World {
    scratch: Scratch,
    experiment_ids: Vec<String>,
    fixed: usize,
}

static WORLD: Mutex<Recycled<World>> = Mutex::new(Recycled::new());

fn build() -> World {
    let scratch = Scratch::memory(fuzz_settings());
    let experiment_ids: Vec<String> = [BRANIN_RANDOM, BRANIN_BO_MEDIAN, GRID_MIXED]
        .iter()
        .map(|text| scratch.create(spec_pb(text)).expect("a seed spec is valid"))
        .collect();
    let agent_id = scratch.register(&[]);
    let leases = scratch.lease(&agent_id, 6, 5, &|| "setup: lease 6 trials".into());
    for (i, lease) in leases.iter().enumerate() {
        let value = 0.1 * f64::from(u32::try_from(i).expect("few leases"));
        scratch.report_epoch(&lease.lease_id, 1, value);
        if i % 2 == 0 {
            scratch.complete(&lease.lease_id, 1, value);
        }
    }
    let fixed = experiment_ids.len();
    World {
        scratch,
        experiment_ids,
        fixed,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) -> Reached {
    let mut picks = Picks::new(data);
    let method = picks.index(METHODS.len());
    let choice = picks.id_choice();
    let message = picks.message();
    let what = || format!("{} {}", METHODS[method], describe(data, 1000));
    let mut recycled = lock(&WORLD);
    let world = recycled.get(MAX_USES, MAX_TRIALS, build);
    let ids = &world.experiment_ids;
    let experiments = &world.scratch.experiments;
    let mut weight = 0;
    let served = match method {
        0 => {
            let Ok(request) = pb::CreateExperimentRequest::decode(message) else {
                return Reached::Rejected;
            };
            weight = request.spec.as_ref().map_or(0, |s| {
                2 * u64::from(s.parallelism.max(1).min(s.budget_trials))
            });
            let created = crate::rpc!(&what, experiments, create_experiment, request);
            let served = created.is_some();
            if let Some(experiment) = created.and_then(|r| r.experiment) {
                invariants::experiment(&what, &experiment);
                push_bounded(
                    &mut world.experiment_ids,
                    experiment.id,
                    world.fixed,
                    MAX_IDS,
                );
            }
            served
        }
        1 => {
            let Ok(mut request) = pb::GetExperimentRequest::decode(message) else {
                return Reached::Rejected;
            };
            choice.apply(&mut request.experiment_id, ids);
            let answer = crate::rpc!(&what, experiments, get_experiment, request);
            let served = answer.is_some();
            if let Some(experiment) = answer.and_then(|r| r.experiment) {
                invariants::experiment(&what, &experiment);
            }
            served
        }
        2 => {
            let Ok(request) = pb::ListExperimentsRequest::decode(message) else {
                return Reached::Rejected;
            };
            let answer = crate::rpc!(&what, experiments, list_experiments, request);
            let served = answer.is_some();
            for experiment in answer.map(|r| r.experiments).unwrap_or_default() {
                invariants::experiment(&what, &experiment);
            }
            served
        }
        3 => {
            let Ok(mut request) = pb::StopExperimentRequest::decode(message) else {
                return Reached::Rejected;
            };
            choice.apply(&mut request.experiment_id, ids);
            let answer = crate::rpc!(&what, experiments, stop_experiment, request);
            let served = answer.is_some();
            if let Some(experiment) = answer.and_then(|r| r.experiment) {
                invariants::experiment(&what, &experiment);
            }
            served
        }
        4 => {
            let Ok(mut request) = pb::ListTrialsRequest::decode(message) else {
                return Reached::Rejected;
            };
            choice.apply(&mut request.experiment_id, ids);
            let asked = request.experiment_id.clone();
            let answer = crate::rpc!(&what, experiments, list_trials, request);
            let served = answer.is_some();
            for trial in answer.map(|r| r.trials).unwrap_or_default() {
                assert_eq!(trial.experiment_id, asked, "{}", what());
            }
            served
        }
        _ => {
            let Ok(mut request) = pb::GetBestTrialRequest::decode(message) else {
                return Reached::Rejected;
            };
            choice.apply(&mut request.experiment_id, ids);
            crate::rpc!(&what, experiments, get_best_trial, request).is_some()
        }
    };
    recycled.add_use();
    recycled.add_weight(weight);
    Reached::from_served(served)
}
