//! The one-machine cluster behind `tunectl local` and `tunectl study --local`: the `coordinator`
//! binary (an embedded SQLite file in a data dir) and N `agent` binaries as child processes on
//! loopback, both found next to the running `tunectl`. Starting waits for each child's
//! readiness line; [`RunningCluster::finish`] sends SIGTERM (agents first, so running trials are
//! reported as interrupted), then kills what is left after a timeout. `tunectl` never links the
//! agent (STYLE.md §1): it only runs its binary.
//!
//! Each child gets `TUNEFLEET_EXIT_WITH_PARENT=<tunectl's pid>` ([`coordinator::parent`]), so
//! if `tunectl` dies without stopping them (SIGKILL, a crash) they notice within half a second
//! and shut down by themselves.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start the cluster's agents.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// Agents to start (with `gpu`: one a GPU, ordinals 0..N).
    pub agents: u32,
    /// GPU agents instead of CPU agents.
    pub gpu: bool,
    /// Instance type the agents price their trials as.
    pub instance_type: Option<String>,
    /// Trials an agent trains at once (0 or 1: one); several share one GPU.
    pub slots: u32,
    /// A config file every agent reads (`--config`), e.g. to declare commands.
    pub config: Option<PathBuf>,
}

/// A running cluster, its coordinator's URL, and the data dir its logs are in.
pub struct RunningCluster {
    cluster: LocalCluster,
    data: DataDir,
    /// `http://127.0.0.1:PORT` of the coordinator's gRPC server.
    pub url: String,
}

impl RunningCluster {
    /// Starts the coordinator on `data_dir` (a temporary dir when `None`) and the agents.
    ///
    /// # Errors
    /// When a binary is missing or a child does not become ready.
    pub fn start(data_dir: Option<PathBuf>, agents: &AgentOptions) -> anyhow::Result<Self> {
        let bin_dir = binary_dir()?;
        let data = DataDir::new(data_dir)?;
        let mut cluster = LocalCluster::default();
        let started = (|| {
            let coordinator = cluster.start_coordinator(&bin_dir, data.path())?;
            let url = format!("http://{}", coordinator.grpc);
            for index in 0..agents.agents.max(1) {
                cluster.start_agent(&bin_dir, data.path(), &url, index, agents)?;
            }
            anyhow::Ok(url)
        })();
        let url = match started {
            Ok(url) => url,
            Err(error) => {
                // The children that started are stopped; their logs say why one did not.
                drop(cluster);
                data.finish(false);
                return Err(error);
            }
        };
        let coordinator = url.trim_start_matches("http://");
        eprintln!(
            "started a coordinator on {} and {} agent(s); logs in {}",
            coordinator,
            agents.agents.max(1),
            data.path().display()
        );
        Ok(Self { cluster, data, url })
    }

    /// An error when the coordinator or every agent exited.
    ///
    /// # Errors
    /// Naming the child that is gone.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.cluster.check_alive()
    }

    /// Stops the children; removes a temporary data dir after a success, else keeps its logs.
    pub fn finish(mut self, success: bool) {
        self.cluster.shutdown();
        self.data.finish(success);
    }
}

fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to locate the tunectl binary")?;
    let dir = exe
        .parent()
        .context("the tunectl binary has no parent dir")?
        .to_path_buf();
    for name in ["coordinator", "agent"] {
        if !dir.join(name).is_file() {
            bail!(
                "the '{name}' binary is not next to tunectl in {}: build the workspace (cargo build --release --workspace)",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// The data dir: given by the user (kept), or temporary (removed after a successful run).
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    fn new(given: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, temporary) = match given {
            Some(path) => (path, false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                (
                    std::env::temp_dir()
                        .join(format!("tunefleet-local-{}-{stamp}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("failed to create the data dir {}", path.display()))?;
        Ok(Self { path, temporary })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn finish(&self, success: bool) {
        if self.temporary && success {
            if let Err(error) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: failed to remove {}: {error}", self.path.display());
            }
        } else if !success {
            eprintln!("logs kept in {}", self.path.display());
        }
    }
}

/// A child daemon and what its readiness line said.
struct Daemon {
    name: String,
    child: Child,
}

/// The coordinator's addresses.
struct CoordinatorAddrs {
    grpc: String,
}

/// The child processes.
#[derive(Default)]
struct LocalCluster {
    agents: Vec<Daemon>,
    coordinator: Option<Daemon>,
}

impl LocalCluster {
    fn start_coordinator(
        &mut self,
        bin_dir: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<CoordinatorAddrs> {
        let mut command = Command::new(bin_dir.join("coordinator"));
        command
            .args([
                "--listen-addr",
                "127.0.0.1:0",
                "--metrics-listen-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir);
        let (daemon, ready) =
            spawn_daemon("coordinator", command, &data_dir.join("coordinator.log"))?;
        self.coordinator = Some(daemon);
        let grpc = ready["grpc"]
            .as_str()
            .context("coordinator readiness line has no grpc address")?;
        Ok(CoordinatorAddrs {
            grpc: grpc.to_string(),
        })
    }

    fn start_agent(
        &mut self,
        bin_dir: &Path,
        data_dir: &Path,
        url: &str,
        index: u32,
        opts: &AgentOptions,
    ) -> anyhow::Result<()> {
        let name = format!("agent-{index}");
        let mut command = Command::new(bin_dir.join("agent"));
        command.args(["--coordinator", url, "--metrics-listen-addr", "127.0.0.1:0"]);
        if let Some(config) = &opts.config {
            command.arg("--config").arg(config);
        }
        if let Some(instance_type) = &opts.instance_type {
            command.args(["--instance-type", instance_type]);
        }
        let slots = opts.slots.max(1);
        command.args(["--slots", &slots.to_string()]);
        if opts.gpu {
            command.args(["--gpu", &index.to_string()]);
        } else {
            command.arg("--cpu");
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            // One rayon pool an agent, shared by its slots.
            let threads = (cores / opts.agents.max(1) as usize).max(1);
            command.env("AGENT_CPU_THREADS", threads.to_string());
        }
        let (daemon, _) = spawn_daemon(&name, command, &data_dir.join(format!("{name}.log")))?;
        self.agents.push(daemon);
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(coordinator) = self.coordinator.as_mut()
            && let Ok(Some(status)) = coordinator.child.try_wait()
        {
            bail!("the coordinator exited ({status}) during the run");
        }
        let alive = self
            .agents
            .iter_mut()
            .filter_map(|agent| matches!(agent.child.try_wait(), Ok(None)).then_some(()))
            .count();
        if alive == 0 {
            bail!("every agent exited during the run; see their logs in the data dir");
        }
        Ok(())
    }

    /// SIGTERM the agents (they report running trials as interrupted), then the coordinator.
    fn shutdown(&mut self) {
        for agent in &mut self.agents {
            terminate(agent);
        }
        for agent in &mut self.agents {
            wait_or_kill(agent, Duration::from_secs(15));
        }
        if let Some(coordinator) = self.coordinator.as_mut() {
            terminate(coordinator);
            wait_or_kill(coordinator, Duration::from_secs(10));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for daemon in self.agents.iter_mut().chain(self.coordinator.as_mut()) {
            if matches!(daemon.child.try_wait(), Ok(None)) {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
            }
        }
    }
}

/// Starts a daemon with stdout piped and stderr to `log`, and waits for its readiness line.
fn spawn_daemon(
    name: &str,
    mut command: Command,
    log: &Path,
) -> anyhow::Result<(Daemon, serde_json::Value)> {
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("failed to create {}", log.display()))?;
    command
        .env(
            coordinator::parent::EXIT_WITH_PARENT_ENV,
            std::process::id().to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file));
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    let stdout = child.stdout.take().context("child stdout is piped")?;
    let mut daemon = Daemon {
        name: name.to_string(),
        child,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(body) = line.strip_prefix(coordinator::READY_PREFIX) {
                sent = tx.send(body.trim().to_string()).is_ok();
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(body) => {
            let ready = serde_json::from_str(&body)
                .with_context(|| format!("{name} printed a bad readiness line: {body}"))?;
            Ok((daemon, ready))
        }
        Err(error) => {
            let _ = daemon.child.kill();
            let status = daemon.child.wait();
            match (error, status) {
                (std::sync::mpsc::RecvTimeoutError::Disconnected, Ok(status)) => bail!(
                    "{name} exited ({status}) before it was ready; see {}",
                    log.display()
                ),
                _ => bail!(
                    "{name} did not become ready within 60 s; see {}",
                    log.display()
                ),
            }
        }
    }
}

/// Sends SIGTERM through the `kill` utility (tunectl forbids unsafe code, so no libc call).
fn terminate(daemon: &mut Daemon) {
    if !matches!(daemon.child.try_wait(), Ok(None)) {
        return;
    }
    let pid = daemon.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        let _ = daemon.child.kill();
    }
}

fn wait_or_kill(daemon: &mut Daemon, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(daemon.child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "warning: {} did not stop within {timeout:?}, killing it",
        daemon.name
    );
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
}
