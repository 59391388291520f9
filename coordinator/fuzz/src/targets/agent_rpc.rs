//! `agent_rpc`: byte 0 picks an `AgentService` method (or a lease-expiry sweep), bytes 1 and 2
//! whether its agent id and its lease ids are real ones ([`crate::pick`]), the rest is the
//! request, decoded with `prost` and handed to the real tonic adapter
//! (`coordinator::grpc::AgentGrpc`) of a scratch coordinator over the in-memory store. A
//! `LeaseTrial` wait is cut to 50 ms so no call can block. Any refusal is fine except
//! `INTERNAL`, `UNKNOWN` or a long message; a heartbeat answers every lease it names.
//!
//! The world holds two running experiments (random search, and BO with median stopping), two
//! agents and four leases; leases granted while fuzzing join the pool. Leases last 2 s, so the
//! sweep expires some of them between inputs. It is rebuilt every [`MAX_USES`] decoded inputs.

use std::sync::Mutex;
use std::time::Duration;

use prost::Message;
use proto::v1 as pb;
use proto::v1::agent_service_server::AgentService as _;

use super::lock;
use crate::Reached;
use crate::harness::{describe, within};
use crate::pick::Picks;
use crate::scratch::{Recycled, Scratch, fuzz_settings, push_bounded};
use crate::seeds::{BRANIN_BO_MEDIAN, BRANIN_RANDOM, spec_pb};

/// The methods, in the order byte 0 picks them.
pub const METHODS: [&str; 7] = [
    "RegisterAgent",
    "LeaseTrial",
    "Heartbeat",
    "ReportEpoch",
    "CompleteTrial",
    "UnregisterAgent",
    "Sweep",
];
/// Inputs one world serves.
pub const MAX_USES: u64 = 2_000;
/// The longest `LeaseTrial` wait sent, in seconds.
pub const MAX_WAIT_SECONDS: f64 = 0.05;
/// The most ids kept in each pool.
const MAX_IDS: usize = 32;

struct World {
    scratch: Scratch,
    agent_ids: Vec<String>,
    lease_ids: Vec<String>,
    fixed_agents: usize,
    fixed_leases: usize,
}

static WORLD: Mutex<Recycled<World>> = Mutex::new(Recycled::new());

fn build() -> World {
    let settings = coordinator::service::Settings {
        lease_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_secs(1),
        ..fuzz_settings()
    };
    let scratch = Scratch::memory(settings);
    for text in [BRANIN_RANDOM, BRANIN_BO_MEDIAN] {
        scratch.create(spec_pb(text)).expect("a seed spec is valid");
    }
    let agent_ids = vec![scratch.register(&[]), scratch.register(&["function"])];
    let mut lease_ids = Vec::new();
    for agent_id in &agent_ids {
        let leases = scratch.lease(agent_id, 2, 5, &|| "setup: lease 2 trials".into());
        lease_ids.extend(leases.into_iter().map(|l| l.lease_id));
    }
    World {
        scratch,
        fixed_agents: agent_ids.len(),
        fixed_leases: lease_ids.len(),
        agent_ids,
        lease_ids,
    }
}

/// A `LeaseTrial` wait that cannot block: a positive wait is cut to [`MAX_WAIT_SECONDS`]; zero,
/// negative and non-finite waits go through as sent.
pub fn clamp_wait(seconds: f64) -> f64 {
    if seconds > MAX_WAIT_SECONDS {
        MAX_WAIT_SECONDS
    } else {
        seconds
    }
}

/// Runs one input.
pub fn run(data: &[u8]) -> Reached {
    let mut picks = Picks::new(data);
    let method = picks.index(METHODS.len());
    let agent = picks.id_choice();
    let lease = picks.id_choice();
    let message = picks.message();
    let what = || format!("{} {}", METHODS[method], describe(data, 1000));
    let mut recycled = lock(&WORLD);
    let world = recycled.get(MAX_USES, u64::MAX, build);
    let agents = &world.scratch.agents;
    // A request naming a real agent or lease with no secret gets the real one, so the service
    // past the secret check is reached; a fuzzed secret is kept, so wrong ones are tried too.
    let scratch = &world.scratch;
    let fill = |secret: &mut String, id: &str| {
        if secret.is_empty() {
            *secret = scratch.secret_of(id);
        }
    };
    let served = match method {
        0 => {
            let Ok(mut request) = pb::RegisterAgentRequest::decode(message) else {
                return Reached::Rejected;
            };
            agent.apply(&mut request.agent_id, &world.agent_ids);
            fill(&mut request.agent_secret, &request.agent_id);
            let answer = crate::rpc!(&what, agents, register_agent, request);
            let served = answer.is_some();
            if let Some(answer) = answer {
                scratch.remember(answer.agent_id.clone(), answer.agent_secret);
                let fixed = world.fixed_agents;
                push_bounded(&mut world.agent_ids, answer.agent_id, fixed, MAX_IDS);
            }
            served
        }
        1 => {
            let Ok(mut request) = pb::LeaseTrialRequest::decode(message) else {
                return Reached::Rejected;
            };
            agent.apply(&mut request.agent_id, &world.agent_ids);
            fill(&mut request.agent_secret, &request.agent_id);
            request.wait_seconds = clamp_wait(request.wait_seconds);
            let secret = request.agent_secret.clone();
            let answer = crate::rpc!(&what, agents, lease_trial, request);
            let served = answer.is_some();
            if let Some(pb::lease_trial_response::Outcome::Lease(granted)) =
                answer.and_then(|a| a.outcome)
            {
                scratch.remember(granted.lease_id.clone(), secret);
                let fixed = world.fixed_leases;
                push_bounded(&mut world.lease_ids, granted.lease_id, fixed, MAX_IDS);
            }
            served
        }
        2 => {
            let Ok(mut request) = pb::HeartbeatRequest::decode(message) else {
                return Reached::Rejected;
            };
            agent.apply(&mut request.agent_id, &world.agent_ids);
            fill(&mut request.agent_secret, &request.agent_id);
            if request.lease_ids.is_empty() && lease.pick(&world.lease_ids).is_some() {
                request.lease_ids.push(String::new());
            }
            for (offset, lease_id) in request.lease_ids.iter_mut().enumerate() {
                lease.nth(offset).apply(lease_id, &world.lease_ids);
            }
            let asked = request.lease_ids.len();
            let answer = crate::rpc!(&what, agents, heartbeat, request);
            if let Some(answer) = &answer {
                assert_eq!(answer.leases.len(), asked, "{}", what());
            }
            answer.is_some()
        }
        3 => {
            let Ok(mut request) = pb::ReportEpochRequest::decode(message) else {
                return Reached::Rejected;
            };
            lease.apply(&mut request.lease_id, &world.lease_ids);
            fill(&mut request.agent_secret, &request.lease_id);
            crate::rpc!(&what, agents, report_epoch, request).is_some()
        }
        4 => {
            let Ok(mut request) = pb::CompleteTrialRequest::decode(message) else {
                return Reached::Rejected;
            };
            lease.apply(&mut request.lease_id, &world.lease_ids);
            fill(&mut request.agent_secret, &request.lease_id);
            crate::rpc!(&what, agents, complete_trial, request).is_some()
        }
        5 => {
            let Ok(mut request) = pb::UnregisterAgentRequest::decode(message) else {
                return Reached::Rejected;
            };
            agent.apply(&mut request.agent_id, &world.agent_ids);
            fill(&mut request.agent_secret, &request.agent_id);
            crate::rpc!(&what, agents, unregister_agent, request).is_some()
        }
        _ => {
            sweep(&world.scratch, &what);
            true
        }
    };
    recycled.add_use();
    Reached::from_served(served)
}

/// What the daemon's sweeper does every `lease_check_interval`: expire leases, forget agents.
fn sweep(scratch: &Scratch, what: &dyn Fn() -> String) {
    let coordinator = scratch.coordinator.clone();
    let swept = within(what, async move {
        let expired = coordinator.expire_leases().await;
        coordinator.prune_agents();
        expired
    });
    if let Err(error) = swept {
        panic!("{}: the sweep failed: {error}", what());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_cut_but_odd_ones_pass() {
        assert_eq!(clamp_wait(3600.0), MAX_WAIT_SECONDS);
        assert_eq!(clamp_wait(f64::INFINITY), MAX_WAIT_SECONDS);
        assert_eq!(clamp_wait(0.01), 0.01);
        assert!(clamp_wait(f64::NAN).is_nan());
        assert_eq!(clamp_wait(-1.0), -1.0);
    }
}
