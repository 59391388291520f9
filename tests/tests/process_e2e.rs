//! End to end: process-level faults.
//!
//! - A second coordinator on a running one's data dir exits non-zero with one line naming the
//!   dir and the holder's pid, and the first keeps answering (two coordinators on one dir
//!   leased the same trial twice and mixed both completions in the store).
//! - `tunectl local` stopped with SIGTERM stops its coordinator and agents and exits 143;
//!   killed with SIGKILL, its children notice their parent died and stop by themselves (they
//!   went on training at 90% CPU each).
//! - A coordinator paused (SIGSTOP) for longer than the lease timeout keeps its leases when it
//!   resumes: its first sweep forgives the pause instead of expiring every lease, which handed a
//!   training trial to an idle agent (a second attempt).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use integration_tests::agents;
use integration_tests::cluster::{Cluster, binary, wait_for};
use integration_tests::process::{self, ProcessInfo};
use proto::v1 as pb;

/// Polls `child` until it exits, failing after `timeout`.
async fn wait_exit(
    child: &mut Child,
    what: &str,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    wait_for(what, timeout, || {
        let status = child.try_wait().context("cannot wait for the child");
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_coordinator_on_the_same_data_dir_exits_naming_the_holder() -> Result<()> {
    let mut cluster = Cluster::builder().start()?;
    let first_pid = cluster.coordinator()?.pid();
    let data_dir = cluster.dir().join("data");
    let mut second = Command::new(binary("coordinator")?)
        .args([
            "--listen-addr",
            "127.0.0.1:0",
            "--metrics-listen-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the second coordinator")?;
    let status = wait_exit(
        &mut second,
        "the second coordinator to exit",
        Duration::from_secs(30),
    )
    .await?;
    let mut stderr = String::new();
    std::io::Read::read_to_string(
        &mut second.stderr.take().context("stderr is piped")?,
        &mut stderr,
    )?;
    ensure!(!status.success(), "the second coordinator exited {status}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    ensure!(
        errors.len() == 1,
        "expected one error line, stderr:\n{stderr}"
    );
    ensure!(
        errors[0].contains(&format!("data dir '{}'", data_dir.display()))
            && errors[0].contains(&format!("pid {first_pid}")),
        "the error names neither the data dir nor pid {first_pid}: {}",
        errors[0]
    );
    // The first one still answers, from the same store.
    let mut client = agents::experiments(&cluster).await?;
    client
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .context("the first coordinator stopped answering")?;
    ensure!(
        std::fs::read_to_string(data_dir.join("coordinator.lock"))?
            .contains(&format!("pid={first_pid}")),
        "the lock file does not name the first coordinator"
    );
    Ok(())
}

/// A `tunectl local` run with its stderr lines, and its coordinator and agents once training.
struct LocalRun {
    tunectl: Child,
    stderr: mpsc::Receiver<String>,
    children: Vec<ProcessInfo>,
    _dir: tempfile::TempDir,
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        let _ = self.tunectl.kill();
        let _ = self.tunectl.wait();
    }
}

/// Starts `tunectl local` with two CPU agents and a budget it cannot finish during the test,
/// and waits until the experiment exists and the three daemons run.
async fn start_local() -> Result<LocalRun> {
    let dir = tempfile::tempdir()?;
    let mut tunectl = Command::new(binary("tunectl")?)
        .args([
            "local",
            "--agents",
            "2",
            "--budget",
            "500",
            "--max-train",
            "200",
        ])
        .args(["--max-dev", "100", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("AGENT_CPU_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start tunectl local")?;
    let stderr = tunectl.stderr.take().context("stderr is piped")?;
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::io::Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let mut run = LocalRun {
        tunectl,
        stderr: lines,
        children: Vec::new(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        match run.stderr.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with("experiment ") && line.ends_with(" created") => break,
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = run.tunectl.try_wait()? {
                    bail!(
                        "tunectl local exited ({status}) early:\n{}",
                        seen.join("\n")
                    );
                }
            }
            Err(_) => bail!(
                "tunectl local created no experiment in 90 s:\n{}",
                seen.join("\n")
            ),
        }
    }
    let pid = run.tunectl.id();
    run.children = wait_for(
        "tunectl's coordinator and two agents",
        Duration::from_secs(10),
        || async {
            let daemons: Vec<ProcessInfo> = process::children_of(pid)?
                .into_iter()
                .filter(|p| p.name == "coordinator" || p.name == "agent")
                .collect();
            Ok((daemons.len() == 3).then_some(daemons))
        },
    )
    .await?;
    Ok(run)
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunectl_local_stops_its_cluster_on_sigterm_and_exits_143() -> Result<()> {
    let mut run = start_local().await?;
    signal(run.tunectl.id(), "TERM")?;
    let status = wait_exit(
        &mut run.tunectl,
        "tunectl to exit after SIGTERM",
        Duration::from_secs(60),
    )
    .await?;
    // tunectl has exited, but the reader thread may not have passed on its last lines yet.
    let mut said: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !said.iter().any(|l| l.contains("interrupted by SIGTERM")) && Instant::now() < deadline {
        match run.stderr.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => said.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    ensure!(
        status.code() == Some(143),
        "tunectl exited {status}, not 143:\n{}",
        said.join("\n")
    );
    ensure!(
        said.iter().any(|l| l.contains("interrupted by SIGTERM")),
        "no interruption message:\n{}",
        said.join("\n")
    );
    process::wait_until_gone(&run.children, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunectl_local_killed_with_sigkill_leaves_no_daemon_behind() -> Result<()> {
    let mut run = start_local().await?;
    signal(run.tunectl.id(), "KILL")?;
    wait_exit(&mut run.tunectl, "tunectl to die", Duration::from_secs(10)).await?;
    // The parent watch polls every 500 ms; a drain that hangs (an agent retrying its reports to
    // the coordinator that stopped too) is cut off after 10 s.
    process::wait_until_gone(&run.children, Duration::from_secs(20)).await
}

/// `tunectl local` that fails, while starting (its agent refuses an unknown instance type) or
/// afterwards (the coordinator refuses the experiment), keeps its temporary data dir, says
/// where in a `logs kept in DIR` line, and the logs there are the daemons' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunectl_local_keeps_its_logs_when_it_fails_and_says_where() -> Result<()> {
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["--instance-type", "no-such-instance"],
            "agent-0.log",
            "no-such-instance",
        ),
        (&["--budget", "0"], "coordinator.log", "coordinator ready"),
    ];
    for (args, log, logged) in cases {
        let tmp = tempfile::tempdir()?;
        let stderr_path = tmp.path().join("stderr");
        let mut tunectl = Command::new(binary("tunectl")?)
            .args(["local", "--agents", "1"])
            .args(args)
            // The temporary data dir goes under TMPDIR, so the test can find and remove it.
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .context("cannot start tunectl local")?;
        let status = wait_exit(
            &mut tunectl,
            "tunectl local to fail",
            Duration::from_secs(90),
        )
        .await?;
        let stderr = std::fs::read_to_string(&stderr_path)?;
        ensure!(
            !status.success(),
            "tunectl local {args:?} succeeded:\n{stderr}"
        );
        let kept = stderr
            .lines()
            .find_map(|line| line.strip_prefix("logs kept in "))
            .with_context(|| {
                format!("tunectl local {args:?} did not say where its logs are:\n{stderr}")
            })?;
        let dir = std::path::Path::new(kept);
        ensure!(
            dir.starts_with(tmp.path()) && dir.is_dir(),
            "'{kept}' is not a kept dir under TMPDIR"
        );
        let text = std::fs::read_to_string(dir.join(log))
            .with_context(|| format!("no {log} in {kept}"))?;
        ensure!(
            text.contains(logged),
            "{log} does not mention '{logged}':\n{text}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_paused_past_the_lease_timeout_keeps_its_leases() -> Result<()> {
    let mut cluster = Cluster::builder()
        .config_line("lease_timeout_secs = 2")
        .config_line("heartbeat_interval_secs = 1")
        .config_line("lease_check_interval_secs = 1")
        .start()?;
    // Two agents: one trains the trial, the other waits, and would take the trial at once were
    // its lease expired. Their retries back off to at most 0.5 s, so that after the pause they
    // call again within the 2 s lease timeout, as agents do within the default 60 s.
    let mut fleet = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let mut command = agents::agent_command(&cluster, &[])?;
        command.env("AGENT_RETRY_MAX_BACKOFF_SECS", "0.5");
        fleet.push(integration_tests::cluster::Daemon::spawn(
            name,
            command,
            cluster.dir(),
            Duration::from_secs(30),
        )?);
    }
    let spec = cluster.dir().join("paused.toml");
    std::fs::write(
        &spec,
        "name = \"paused\"\nmetric = \"value\"\ndirection = \"minimize\"\nstrategy = \"random\"\n\
         budget = 1\nparallelism = 1\n[[parameters]]\nname = \"x\"\ntype = \"float\"\n\
         low = 0.0\nhigh = 1.0\n[workload]\nkind = \"function\"\ndataset = \"quadratic\"\n\
         [workload.fixed_params]\nepochs = 10\nepoch_seconds = 0.5\n",
    )?;
    let created = cluster.tunectl(&["create", &spec.display().to_string()])?;
    ensure!(created.status.success(), "{created:?}");
    let id = String::from_utf8(created.stdout)?.trim().to_owned();
    let mut client = agents::experiments(&cluster).await?;
    wait_for("the trial to be leased", Duration::from_secs(30), || {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            let trials = agents::trials(&mut client, &id).await?;
            Ok(trials
                .iter()
                .any(|t| matches!(t.state(), pb::TrialState::Leased | pb::TrialState::Running))
                .then_some(()))
        }
    })
    .await?;
    // Paused for 12 s, past the 2 s lease timeout and the agents' 10 s request timeout. The sleep is the fault itself: the process
    // must stay stopped this long.
    let pid = cluster.coordinator()?.pid();
    signal(pid, "STOP")?;
    std::thread::sleep(Duration::from_secs(12));
    signal(pid, "CONT")?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(60)).await?;
    let trials = agents::trials(&mut client, &id).await?;
    let log = cluster.coordinator_log();
    ensure!(
        done.state() == pb::ExperimentState::Completed
            && trials.len() == 1
            && trials[0].attempts == 1
            && trials[0].state() == pb::TrialState::Succeeded,
        "the trial must finish in its first attempt: {trials:?}\n{log}"
    );
    ensure!(
        log.contains("the coordinator did not run for a while"),
        "the pause was not noticed:\n{log}"
    );
    Ok(())
}
