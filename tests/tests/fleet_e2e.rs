//! End to end: 200 simulated agents (the load benchmark's simulator, `bench/load`) against a
//! real coordinator over real gRPC, with the coordinator SIGKILLed in the middle of the run (three
//! times) and restarted on the same data dir and port once the agents have noticed it is gone.
//! The agents retry with backoff and register again when the coordinator has forgotten them. Afterwards every call the coordinator acknowledged must be
//! in its store, and each trial must have finished once:
//! - every acknowledged completion's trial is terminal, with the value sent;
//! - every acknowledged epoch report is stored (the SQLite file, read-only, holds every attempt's
//!   reports; `ListTrials` shows the finishing attempt's);
//! - no trial has two acknowledged completions;
//! - the succeeded trials are exactly the trials with an acknowledged successful completion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use integration_tests::agents;
use integration_tests::cluster::{Cluster, wait_for};
use load_bench::agent::{AgentConfig, Progress};
use load_bench::fleet::{Fleet, FleetConfig, channels};
use load_bench::objective::branin_spec;
use load_bench::retry::RetryPolicy;
use load_bench::stats::{AckedCompletion, AckedEpoch, AgentStats, Refusal};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

const AGENTS: usize = 200;
/// The whole run, crashes and restarts included.
const RUN: Duration = Duration::from_secs(30);
/// When the coordinator is killed, after the start of the run: three times, each crash another
/// chance to land between a commit and its answer.
const CRASHES_AT: [Duration; 3] = [
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(22),
];
/// Completions wanted before each crash and after the last restart.
const PROGRESS_STEP: u64 = 50;
/// Failed calls (retried by the agents) to see while the coordinator is down, before restarting.
const OUTAGE_FAILURES: u64 = 100;

fn fleet_config() -> FleetConfig {
    FleetConfig {
        agents: AGENTS,
        agent: AgentConfig {
            epochs: 3,
            work_per_epoch: Duration::from_millis(20),
            work_jitter: 0.0,
            lease_wait: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(20),
            retry: RetryPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(500),
                give_up_after: Duration::from_secs(30),
                max_tries: 1000,
            },
            keep_acks: true,
            max_run: Duration::from_secs(80),
            heartbeat_lockstep: false,
        },
        idle_probe_period: None,
    }
}

async fn wait_for_completions(progress: &Progress, at_least: u64, what: &str) -> Result<()> {
    wait_for(what, Duration::from_secs(30), || async {
        Ok((progress.completions() >= at_least).then_some(()))
    })
    .await
}

/// Every trial of the experiments, with epochs, by id (retried while the coordinator warms up).
async fn stored_trials(
    client: &ExperimentServiceClient<Channel>,
    ids: &[String],
) -> Result<HashMap<String, pb::Trial>> {
    let mut trials = HashMap::new();
    for id in ids {
        let listed = wait_for(
            &format!("ListTrials of {id}"),
            Duration::from_secs(20),
            || {
                let mut client = client.clone();
                async move { Ok(agents::trials(&mut client, id).await.ok()) }
            },
        )
        .await?;
        trials.extend(listed.into_iter().map(|t| (t.id.clone(), t)));
    }
    Ok(trials)
}

/// Every stored epoch report, `(trial, attempt, epoch) -> value`, read from the SQLite file.
fn stored_epochs(cluster: &Cluster) -> Result<HashMap<(String, u32, u32), f64>> {
    let path = cluster.sqlite_path();
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = rusqlite::Connection::open_with_flags(&path, flags)
        .with_context(|| format!("cannot open {} read-only", path.display()))?;
    let query = "SELECT trial_id, attempt, epoch, value FROM epoch_reports";
    let mut statement = db
        .prepare(query)
        .with_context(|| format!("bad query {query}"))?;
    let rows = statement.query_map([], |row| {
        Ok(((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .with_context(|| format!("cannot read {query}"))
}

/// Problems with acknowledged completions: missing, not terminal, another value, twice.
fn check_completions(
    acked: &[AckedCompletion],
    trials: &HashMap<String, pb::Trial>,
    problems: &mut Vec<String>,
) {
    let mut by_trial: BTreeMap<&str, Vec<&AckedCompletion>> = BTreeMap::new();
    for completion in acked {
        by_trial
            .entry(&completion.trial_id)
            .or_default()
            .push(completion);
    }
    for (trial_id, completions) in &by_trial {
        if completions.len() > 1 {
            let leases: Vec<&str> = completions.iter().map(|c| c.lease_id.as_str()).collect();
            problems.push(format!(
                "trial {trial_id} finished {} times (acknowledged completions under leases {leases:?})",
                completions.len()
            ));
        }
    }
    for completion in acked {
        let Some(trial) = trials.get(&completion.trial_id) else {
            problems.push(format!(
                "acknowledged trial {} is not stored",
                completion.trial_id
            ));
            continue;
        };
        let expected = if completion.succeeded {
            vec![pb::TrialState::Succeeded]
        } else {
            vec![pb::TrialState::EarlyStopped, pb::TrialState::Cancelled]
        };
        if !expected.contains(&trial.state()) {
            problems.push(format!(
                "trial {} was acknowledged as {} (lease {}, attempt {}) but is {:?} (attempts {})",
                trial.id,
                if completion.succeeded {
                    "succeeded"
                } else {
                    "stopped"
                },
                completion.lease_id,
                completion.attempt,
                trial.state(),
                trial.attempts
            ));
        } else if trial.value != Some(completion.value) {
            problems.push(format!(
                "trial {} was acknowledged with value {} but stores {:?}",
                trial.id, completion.value, trial.value
            ));
        }
    }
}

/// Problems with acknowledged epoch reports: missing from the store or from `ListTrials`.
fn check_epochs(
    acked: &[AckedEpoch],
    completions: &[AckedCompletion],
    trials: &HashMap<String, pb::Trial>,
    stored: &HashMap<(String, u32, u32), f64>,
    problems: &mut Vec<String>,
) {
    let mut missing = Vec::new();
    for epoch in acked {
        let key = (epoch.trial_id.clone(), epoch.attempt, epoch.epoch);
        if stored.get(&key) != Some(&epoch.value) {
            missing.push(format!(
                "{} attempt {} epoch {} = {} (stored: {:?})",
                epoch.trial_id,
                epoch.attempt,
                epoch.epoch,
                epoch.value,
                stored.get(&key)
            ));
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} acknowledged epoch reports are not stored, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    // The finishing attempt's reports are what ListTrials shows for a finished trial.
    let finishing: BTreeSet<&str> = completions.iter().map(|c| c.lease_id.as_str()).collect();
    let mut not_listed = Vec::new();
    for epoch in acked
        .iter()
        .filter(|e| finishing.contains(e.lease_id.as_str()))
    {
        let listed = trials.get(&epoch.trial_id).is_some_and(|trial| {
            trial
                .epochs
                .iter()
                .any(|e| e.epoch == epoch.epoch && e.value == epoch.value)
        });
        if !listed {
            not_listed.push(format!("{} epoch {}", epoch.trial_id, epoch.epoch));
        }
    }
    if !not_listed.is_empty() {
        problems.push(format!(
            "{} acknowledged epoch reports of finished attempts are missing from ListTrials, e.g. {:?}",
            not_listed.len(),
            &not_listed[..not_listed.len().min(5)]
        ));
    }
}

/// Succeeded trials must be exactly those with an acknowledged successful completion.
fn check_succeeded_count(
    acked: &[AckedCompletion],
    refusals: &[Refusal],
    trials: &HashMap<String, pb::Trial>,
    problems: &mut Vec<String>,
) {
    let acked_ids: BTreeSet<&str> = acked
        .iter()
        .filter(|c| c.succeeded)
        .map(|c| c.trial_id.as_str())
        .collect();
    let succeeded: BTreeSet<&str> = trials
        .values()
        .filter(|t| t.state() == pb::TrialState::Succeeded)
        .map(|t| t.id.as_str())
        .collect();
    if acked_ids.len() != succeeded.len() {
        let unacknowledged: Vec<&str> = succeeded.difference(&acked_ids).copied().collect();
        let refused: Vec<String> = unacknowledged
            .iter()
            .take(5)
            .flat_map(|id| refusals.iter().filter(move |r| r.trial_id == *id))
            .map(|r| {
                format!(
                    "{} {:?} refused {:?} after {} tries: {}",
                    r.trial_id, r.rpc, r.code, r.after_tries, r.message
                )
            })
            .collect();
        problems.push(format!(
            "{} trials succeeded but {} successful completions were acknowledged; succeeded \
             without an acknowledgement: {:?}; what the agents were told: {refused:?}",
            succeeded.len(),
            acked_ids.len(),
            &unacknowledged[..unacknowledged.len().min(5)]
        ));
    }
}

fn check(
    stats: &AgentStats,
    trials: &HashMap<String, pb::Trial>,
    stored: &HashMap<(String, u32, u32), f64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    check_completions(&stats.acked_completions, trials, &mut problems);
    let completions = &stats.acked_completions;
    check_epochs(
        &stats.acked_epochs,
        completions,
        trials,
        stored,
        &mut problems,
    );
    check_succeeded_count(completions, &stats.refusals, trials, &mut problems);
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_survives_a_coordinator_crash() -> Result<()> {
    let mut cluster = Cluster::builder()
        .config_line("lease_timeout_secs = 10")
        .config_line("heartbeat_interval_secs = 1")
        .config_line("lease_check_interval_secs = 1")
        .start()?;
    let url = cluster.grpc_url()?;
    let experiments = ExperimentServiceClient::new(channels(&url, 1)?.remove(0));
    let random = branin_spec("fleet-random", pb::Strategy::Random, 100_000, 190, 0, 7);
    let bo = branin_spec("fleet-bo", pb::Strategy::Bo, 60, 10, 5, 8);
    let mut ids = Vec::new();
    for spec in [random, bo] {
        ids.push(agents::create(&mut experiments.clone(), spec).await?);
    }

    let started = Instant::now();
    let agent_channels = channels(&url, 8)?;
    let fleet = Fleet::start(&agent_channels, &agent_channels[0], fleet_config());
    let progress = fleet.progress();
    progress.set_recording(true);
    let mut outages = Vec::new();
    for crash_at in CRASHES_AT {
        let wanted = progress.completions() + PROGRESS_STEP;
        wait_for_completions(progress, wanted, "completions before a crash").await?;
        tokio::time::sleep_until((started + crash_at).into()).await;
        cluster.kill_coordinator();
        let killed = Instant::now();
        let failures = progress.transient_errors() + OUTAGE_FAILURES;
        wait_for(
            "the agents to notice the outage",
            Duration::from_secs(10),
            || async { Ok((progress.transient_errors() >= failures).then_some(())) },
        )
        .await?;
        let restarted = tokio::task::block_in_place(|| cluster.start_coordinator());
        restarted.context("restarting the coordinator on the same data dir and port")?;
        outages.push(killed.elapsed());
    }
    let wanted = progress.completions() + PROGRESS_STEP;
    wait_for_completions(progress, wanted, "completions after the last restart").await?;
    tokio::time::sleep_until((started + RUN).into()).await;
    let outcome = fleet.stop(Duration::from_secs(45)).await;
    let stats = outcome.stats;
    eprintln!(
        "fleet_e2e: {} completions, {} epoch reports acknowledged; outages {outages:.1?}; \
         leases {} (lost while healthy {}, abandoned {}, refused {}); {} retries, {} re-registrations",
        stats.acked_completions.len(),
        stats.acked_epochs.len(),
        stats.leases,
        stats.lost_while_healthy,
        stats.abandoned,
        stats.refused,
        stats.retries,
        stats.reregistrations
    );
    if outcome.stragglers > 0 {
        bail!("{} agents did not stop within 45 s", outcome.stragglers);
    }

    let trials = stored_trials(&experiments, &ids).await?;
    let stored = stored_epochs(&cluster)?;
    let problems = check(&stats, &trials, &stored);
    if !problems.is_empty() {
        bail!(
            "{} problems after coordinator crashes under {AGENTS} agents:\n- {}\n\
             the coordinator's log about the first trials named:\n{}",
            problems.len(),
            problems.join("\n- "),
            log_about_trials(&cluster.coordinator_log(), &problems)
        );
    }
    Ok(())
}

/// Removes ANSI colour sequences (`ESC [ ... m`) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The log lines (all runs of the coordinator: the log is appended) mentioning the first three
/// trial ids that appear in `problems`.
fn log_about_trials(log: &str, problems: &[String]) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for problem in problems {
        let words = problem.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
        for word in words.filter(|w| w.starts_with("trial-")) {
            if !ids.contains(&word) && ids.len() < 3 {
                ids.push(word);
            }
        }
    }
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!("{id}:\n"));
        let lines = log.lines().filter(|line| line.contains(id)).take(12);
        for line in lines {
            text.push_str(&format!("  {}\n", strip_ansi(line)));
        }
    }
    text
}
