//! A fleet of simulated agents sharing a few HTTP/2 connections, plus the idle probe: one more
//! registered agent that holds no lease and heartbeats every 100 ms, whose latency shows how long
//! an unrelated request waits while the coordinator is busy (for example fitting a GP).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use load_bench::fleet::{Fleet, FleetConfig, channels};
//! let channels = channels("http://127.0.0.1:50051", 9)?;
//! let fleet = Fleet::start(&channels[1..], &channels[0], FleetConfig::default());
//! fleet.progress().set_recording(true);
//! let outcome = fleet.stop(std::time::Duration::from_secs(30)).await;
//! println!("{} trials completed", outcome.stats.completed);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proto::v1 as pb;
use proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::agent::{AgentConfig, Progress, SimAgent};
use crate::stats::{AgentStats, RpcKind};

/// `count` lazily connected channels to `url`; each reconnects by itself after the coordinator
/// restarts.
///
/// # Errors
/// When `url` is not a valid URI.
pub fn channels(url: &str, count: usize) -> Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad coordinator url {url}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    Ok((0..count.max(1)).map(|_| endpoint.connect_lazy()).collect())
}

/// What a fleet runs.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Simulated agents.
    pub agents: usize,
    /// How each behaves.
    pub agent: AgentConfig,
    /// Heartbeat period of the idle probe agent; `None` runs no probe.
    pub idle_probe_period: Option<Duration>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            agents: 10,
            agent: AgentConfig::default(),
            idle_probe_period: Some(Duration::from_millis(100)),
        }
    }
}

/// Running agents; dropping it stops them (their stop channel closes).
pub struct Fleet {
    agents: Vec<JoinHandle<AgentStats>>,
    stop: watch::Sender<bool>,
    progress: Arc<Progress>,
}

/// What [`Fleet::stop`] returns.
#[derive(Debug)]
pub struct FleetOutcome {
    /// Every agent's figures, merged (the probe's as [`RpcKind::IdleHeartbeat`]).
    pub stats: AgentStats,
    /// Agents that had not ended by the join deadline and were aborted (their figures are lost).
    pub stragglers: usize,
}

impl Fleet {
    /// Spawns the agents (round robin over `channels`) and the probe. The probe gets a
    /// connection of its own (`probe_channel`) so that it waits for the coordinator, not for a
    /// stream slot on a connection the agents fill (hyper serves 200 streams per connection).
    ///
    /// # Panics
    /// When `channels` is empty.
    pub fn start(channels: &[Channel], probe_channel: &Channel, config: FleetConfig) -> Fleet {
        assert!(!channels.is_empty(), "a fleet needs at least one channel");
        let (stop, stop_rx) = watch::channel(false);
        let progress = Arc::new(Progress::default());
        let agent_config = Arc::new(config.agent.clone());
        let mut agents = Vec::with_capacity(config.agents + 1);
        for index in 0..config.agents {
            let agent = SimAgent::new(
                index,
                channels[index % channels.len()].clone(),
                Arc::clone(&agent_config),
                Arc::clone(&progress),
                stop_rx.clone(),
            );
            agents.push(tokio::spawn(agent.run()));
        }
        if let Some(period) = config.idle_probe_period {
            let probe = idle_probe(
                probe_channel.clone(),
                period,
                Arc::clone(&agent_config),
                Arc::clone(&progress),
                stop_rx,
            );
            agents.push(tokio::spawn(probe));
        }
        Fleet {
            agents,
            stop,
            progress,
        }
    }

    /// The live counters and the recording switch.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Stops recording, tells every agent to stop, and waits up to `join_timeout` for them.
    pub async fn stop(self, join_timeout: Duration) -> FleetOutcome {
        self.progress.set_recording(false);
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + join_timeout;
        let mut stats = AgentStats::default();
        let mut stragglers = 0;
        for mut agent in self.agents {
            match tokio::time::timeout_at(deadline, &mut agent).await {
                Ok(Ok(agent_stats)) => stats.merge(agent_stats),
                Ok(Err(_)) => stragglers += 1,
                Err(_) => {
                    agent.abort();
                    stragglers += 1;
                }
            }
        }
        FleetOutcome { stats, stragglers }
    }
}

/// The idle probe: registers, then sends a heartbeat with no leases every `period` until
/// stopped. The heartbeats are open loop (each is sent on its tick even while earlier ones wait
/// for an answer), so a coordinator that stalls for seconds shows every heartbeat it delayed,
/// not just one.
async fn idle_probe(
    channel: Channel,
    period: Duration,
    config: Arc<AgentConfig>,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> AgentStats {
    let mut stats = AgentStats::default();
    let client = AgentServiceClient::new(channel);
    let deadline = Instant::now() + config.max_run;
    let Some((agent_id, secret)) = register_probe(&client, &config, &mut stop).await else {
        return stats;
    };
    let max_ticks = (config.max_run.as_secs_f64() / period.as_secs_f64()).ceil() as u64;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..max_ticks {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        while let Some(Ok((latency, ok, recorded))) = in_flight.try_join_next() {
            if recorded {
                stats.record(RpcKind::IdleHeartbeat, latency, ok);
            }
        }
        if in_flight.len() >= MAX_PROBES_IN_FLIGHT {
            if progress.recording() {
                stats.idle_probes_skipped += 1;
            }
            continue;
        }
        let request = pb::HeartbeatRequest {
            agent_id: agent_id.clone(),
            agent_secret: secret.clone(),
            lease_ids: Vec::new(),
        };
        let mut client = client.clone();
        let timeout = config.rpc_timeout;
        let recorded = progress.recording();
        in_flight.spawn(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, client.heartbeat(request)).await;
            (started.elapsed(), matches!(result, Ok(Ok(_))), recorded)
        });
    }
    let drained = tokio::time::timeout(config.rpc_timeout, async {
        while let Some(joined) = in_flight.join_next().await {
            if let Ok((latency, ok, true)) = joined {
                stats.record(RpcKind::IdleHeartbeat, latency, ok);
            }
        }
    });
    let _ = drained.await;
    stats
}

/// Heartbeats of the probe waiting for an answer at most: under the 200 concurrent streams
/// hyper allows on the probe's connection by default, 15 s of heartbeats at 100 ms.
const MAX_PROBES_IN_FLIGHT: usize = 150;

async fn register_probe(
    client: &AgentServiceClient<Channel>,
    config: &AgentConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<(String, String)> {
    let capabilities = pb::AgentCapabilities {
        backend: pb::Backend::Cpu as i32,
        device_name: "load-bench idle probe".into(),
        device_ordinal: -1,
        slots: 1,
        hostname: "load-bench-probe".into(),
        workloads: vec!["none".into()],
        ..pb::AgentCapabilities::default()
    };
    for _ in 0..100 {
        let request = pb::RegisterAgentRequest {
            capabilities: Some(capabilities.clone()),
            agent_id: String::new(),
            agent_secret: String::new(),
        };
        let mut client = client.clone();
        let call = tokio::time::timeout(config.rpc_timeout, client.register_agent(request));
        if let Ok(Ok(registration)) = call.await {
            let registration = registration.into_inner();
            return Some((registration.agent_id, registration.agent_secret));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return None,
        }
    }
    None
}
