//! End to end (issue 4): real `coordinator` and CPU `agent` processes on loopback run studies to
//! completion; an agent SIGKILLed mid-trial, the coordinator SIGKILLed mid-study, SIGTERM on an
//! agent, out-of-range parameters and a duplicated epoch report each end with a clear outcome,
//! nothing lost and nothing counted twice.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents::{self, start_agent};
use integration_tests::cluster::{Cluster, binary, wait_for};
use proto::v1 as pb;

/// A short lease so a killed agent's trial comes back quickly.
fn fast_lease_cluster() -> Result<Cluster> {
    Cluster::builder()
        .config_line("lease_timeout_secs = 2")
        .config_line("heartbeat_interval_secs = 1")
        .config_line("lease_check_interval_secs = 1")
        .start()
}

fn state(trial: &pb::Trial) -> pb::TrialState {
    trial.state()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_two_cpu_agents_finish_a_tiny_textcnn_study_with_epochs_time_and_cost() -> Result<()>
{
    let cluster = Cluster::builder().start()?;
    let _a = start_agent(&cluster, "agent-a", &[])?;
    let _b = start_agent(&cluster, "agent-b", &[])?;
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(&mut client, agents::tiny_textcnn_spec("tiny-textcnn", 4, 2)).await?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(90)).await?;
    ensure!(
        done.state() == pb::ExperimentState::Completed,
        "experiment ended {:?}",
        done.state()
    );
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(trials.len() == 4, "expected 4 trials, got {}", trials.len());
    for trial in &trials {
        ensure!(
            state(trial) == pb::TrialState::Succeeded,
            "trial {} is {:?}: {}",
            trial.number,
            state(trial),
            trial.failure_reason
        );
        ensure!(
            trial.epochs_run == 2 && trial.epochs.len() == 2,
            "trial {} ran {} epochs",
            trial.number,
            trial.epochs_run
        );
        ensure!(
            trial.wall_seconds > 0.0,
            "trial {} has no wall time",
            trial.number
        );
        ensure!(
            trial.cost_dollars > 0.0,
            "trial {} has no cost",
            trial.number
        );
        let value = trial.value.context("succeeded trial without a value")?;
        ensure!(
            (0.0..=1.0).contains(&value),
            "accuracy {value} out of range"
        );
    }
    let cost: f64 = trials.iter().map(|t| t.cost_dollars).sum();
    ensure!(
        (done.cost_dollars - cost).abs() < 1e-9,
        "experiment cost {} != sum of trials {cost}",
        done.cost_dollars
    );
    ensure!(
        done.epochs_reported == 8,
        "epochs reported {}",
        done.epochs_reported
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_trial_its_trial_is_leased_again_and_counted_once() -> Result<()> {
    let cluster = fast_lease_cluster()?;
    let mut victim = start_agent(&cluster, "agent-victim", &[])?;
    let victim_id = victim.ready_field("agent_id")?;
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(
        &mut client,
        agents::slow_function_spec("killed-agent", 1, 1, 10, 0.2),
    )
    .await?;
    wait_for(
        "the victim to report an epoch",
        Duration::from_secs(30),
        || async {
            let trials = agents::trials(&mut agents::experiments(&cluster).await?, &id).await?;
            Ok(trials
                .first()
                .filter(|t| t.agent_id == victim_id && !t.epochs.is_empty())
                .map(|_| ()))
        },
    )
    .await?;
    victim.kill();
    let survivor = start_agent(&cluster, "agent-survivor", &[])?;
    let survivor_id = survivor.ready_field("agent_id")?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(60)).await?;
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(
        trials.len() == 1,
        "one trial expected, got {}",
        trials.len()
    );
    let trial = &trials[0];
    ensure!(
        state(trial) == pb::TrialState::Succeeded,
        "trial is {:?}: {}",
        state(trial),
        trial.failure_reason
    );
    ensure!(
        trial.agent_id == survivor_id,
        "completed by {} not the survivor {survivor_id}",
        trial.agent_id
    );
    ensure!(trial.attempts == 2, "attempts {}", trial.attempts);
    ensure!(
        trial.epochs_run == 10 && trial.epochs.len() == 10,
        "epochs {} / {}",
        trial.epochs_run,
        trial.epochs.len()
    );
    ensure!(
        done.trials_succeeded == 1 && done.trials_created == 1,
        "counted {} of {}",
        done.trials_succeeded,
        done.trials_created
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_coordinator_killed_mid_study_restarts_and_no_result_is_lost() -> Result<()> {
    let mut cluster = fast_lease_cluster()?;
    let a = start_agent(&cluster, "agent-a", &[])?;
    let _b = start_agent(&cluster, "agent-b", &[])?;
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(
        &mut client,
        agents::slow_function_spec("coordinator-restart", 6, 2, 4, 0.15),
    )
    .await?;
    let before: BTreeMap<String, f64> = wait_for(
        "a finished trial and a running one",
        Duration::from_secs(60),
        || async {
            let trials = agents::trials(&mut agents::experiments(&cluster).await?, &id).await?;
            let finished: BTreeMap<String, f64> = trials
                .iter()
                .filter(|t| state(t) == pb::TrialState::Succeeded)
                .filter_map(|t| t.value.map(|v| (t.id.clone(), v)))
                .collect();
            let running = trials
                .iter()
                .any(|t| state(t) == pb::TrialState::Running && !t.epochs.is_empty());
            Ok((!finished.is_empty() && running).then_some(finished))
        },
    )
    .await?;
    cluster.kill_coordinator();
    wait_for(
        "an agent to notice the coordinator is gone",
        Duration::from_secs(30),
        || async {
            let log = a.log();
            Ok((log.contains("heartbeat failed")
                || log.contains("unreachable")
                || log.contains("will retry"))
            .then_some(()))
        },
    )
    .await?;
    cluster.start_coordinator()?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(90)).await?;
    let mut client = agents::experiments(&cluster).await?;
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(
        done.trials_succeeded == 6,
        "succeeded {} of 6",
        done.trials_succeeded
    );
    for (trial_id, value) in &before {
        let after = trials
            .iter()
            .find(|t| &t.id == trial_id)
            .context("a finished trial disappeared")?;
        ensure!(
            state(after) == pb::TrialState::Succeeded && after.value == Some(*value),
            "trial {trial_id} changed"
        );
    }
    for trial in &trials {
        ensure!(
            trial.epochs_run == 4 && trial.epochs.len() == 4,
            "trial {} has {} epochs",
            trial.number,
            trial.epochs.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigterm_interrupts_the_trial_which_another_agent_finishes() -> Result<()> {
    let cluster = fast_lease_cluster()?;
    let mut first = start_agent(&cluster, "agent-first", &[])?;
    let first_id = first.ready_field("agent_id")?;
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(
        &mut client,
        agents::slow_function_spec("sigterm", 1, 1, 50, 0.1),
    )
    .await?;
    wait_for(
        "the first agent to report an epoch",
        Duration::from_secs(30),
        || async {
            let trials = agents::trials(&mut agents::experiments(&cluster).await?, &id).await?;
            Ok(trials
                .first()
                .filter(|t| t.agent_id == first_id && !t.epochs.is_empty())
                .map(|_| ()))
        },
    )
    .await?;
    ensure!(
        first.terminate(Duration::from_secs(15))?,
        "agent did not exit 0 on SIGTERM; log:\n{}",
        first.log()
    );
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(
        state(&trials[0]) == pb::TrialState::Pending,
        "interrupted trial is {:?}",
        state(&trials[0])
    );
    let _second = start_agent(&cluster, "agent-second", &[])?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(60)).await?;
    ensure!(
        done.trials_succeeded == 1,
        "succeeded {}",
        done.trials_succeeded
    );
    Ok(())
}

/// Out-of-range textcnn parameters used to reach the agent and fail each trial there; the
/// coordinator now refuses the spec at creation, naming the parameter and the model's range, so
/// no trial is created for the agent to fail (the agent's own check stays, for version skew;
/// `agent/src/textcnn.rs` tests it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_out_of_range_params_are_refused_before_any_trial() -> Result<()> {
    let cluster = Cluster::builder().start()?;
    let _agent = start_agent(&cluster, "agent-a", &[])?;
    let mut spec = agents::tiny_textcnn_spec("bad-params", 1, 1);
    let workload = spec.workload.as_mut().context("workload")?;
    workload
        .fixed_params
        .insert("dropout".to_string(), agents::float(1.5));
    spec.parameters.retain(|p| p.name != "dropout");
    let mut client = agents::experiments(&cluster).await?;
    let refused = client
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await
        .err()
        .context("a dropout of 1.5 must be refused")?;
    ensure!(
        refused.code() == tonic::Code::InvalidArgument
            && refused.message().contains("fixed_params 'dropout' is 1.5")
            && refused.message().contains("from 0 to 0.99"),
        "unclear refusal: {refused:?}"
    );
    let toml = cluster.dir().join("bad-params.toml");
    std::fs::write(
        &toml,
        "name = \"bad-params\"\ndirection = \"maximize\"\nbudget = 1\n\n[[parameters]]\nname = \"batch_size\"\n\
         type = \"int\"\nlow = 0\nhigh = 100\n\n[workload]\nkind = \"textcnn\"\n\
         dataset = \"mr\"\n",
    )?;
    let output = cluster.tunectl(&["create", toml.to_str().context("utf-8 path")?])?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(
        !output.status.success()
            && stderr.trim().lines().count() == 1
            && stderr.contains("'batch_size' is searched from 0 to 100"),
        "tunectl create: {stderr}"
    );
    let listed = client
        .list_experiments(pb::ListExperimentsRequest::default())
        .await?
        .into_inner();
    ensure!(
        listed.experiments.is_empty(),
        "nothing was created: {listed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_second_report_of_an_epoch_is_not_double_counted() -> Result<()> {
    use proto::v1::agent_service_client::AgentServiceClient;
    let cluster = Cluster::builder().start()?;
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(
        &mut client,
        agents::slow_function_spec("duplicate-epoch", 1, 1, 1, 0.0),
    )
    .await?;
    let mut agent = AgentServiceClient::new(cluster.channel().await?);
    let capabilities = pb::AgentCapabilities {
        workloads: vec!["function".into()],
        slots: 1,
        ..Default::default()
    };
    let registered = agent
        .register_agent(pb::RegisterAgentRequest {
            capabilities: Some(capabilities),
            ..Default::default()
        })
        .await?
        .into_inner();
    let (agent_id, secret) = (registered.agent_id, registered.agent_secret);
    let lease = wait_for("a lease", Duration::from_secs(30), || {
        let mut agent = agent.clone();
        let agent_id = agent_id.clone();
        let agent_secret = secret.clone();
        async move {
            let response = agent
                .lease_trial(pb::LeaseTrialRequest {
                    agent_id,
                    agent_secret,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(match response.outcome {
                Some(pb::lease_trial_response::Outcome::Lease(lease)) => Some(lease),
                _ => None,
            })
        }
    })
    .await?;
    let report = pb::EpochReport {
        epoch: 1,
        value: 0.25,
        train_loss: 0.25,
        train_accuracy: 0.0,
        epoch_seconds: 0.01,
    };
    for _ in 0..2 {
        let request = pb::ReportEpochRequest {
            lease_id: lease.lease_id.clone(),
            report: Some(report),
            agent_secret: secret.clone(),
        };
        agent.report_epoch(request).await?;
    }
    let complete = pb::CompleteTrialRequest {
        lease_id: lease.lease_id.clone(),
        outcome: pb::TrialOutcome::Succeeded as i32,
        value: Some(0.25),
        epochs_run: 1,
        best_epoch: 1,
        wall_seconds: 0.01,
        agent_secret: secret.clone(),
        ..Default::default()
    };
    agent.complete_trial(complete.clone()).await?;
    let again = agent.complete_trial(complete).await;
    let done = agents::experiment(&mut client, &id).await?;
    let trials = agents::trials(&mut client, &id).await?;
    ensure!(
        done.epochs_reported == 1,
        "epochs counted {} times",
        done.epochs_reported
    );
    ensure!(
        trials[0].epochs.len() == 1,
        "epochs stored {}",
        trials[0].epochs.len()
    );
    ensure!(
        done.trials_succeeded == 1,
        "succeeded {}",
        done.trials_succeeded
    );
    ensure!(
        again.is_err() || done.trials_succeeded == 1,
        "a second completion was counted"
    );
    Ok(())
}

#[test]
fn agent_gpu_without_cuda_is_a_one_line_error_not_a_panic() -> Result<()> {
    let mut child = Command::new(binary("agent")?)
        .args([
            "--coordinator",
            "http://127.0.0.1:9",
            "--gpu",
            "0",
            "--metrics-listen-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            // A usable GPU: the agent is waiting for the (absent) coordinator, as it should.
            child.kill()?;
            child.wait()?;
            eprintln!("skipped: a CUDA device is present");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "agent --gpu 0 exited 0 without a device"
    );
    ensure!(
        output.status.code() != Some(101),
        "agent panicked: {stderr}"
    );
    ensure!(
        stderr.contains("cuda") && !stderr.contains("panicked"),
        "unclear error: {stderr}"
    );
    ensure!(
        stderr.trim().lines().count() == 1,
        "expected one line: {stderr}"
    );
    ensure!(output.stdout.is_empty(), "no readiness line expected");
    Ok(())
}
