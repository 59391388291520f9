//! A real Prometheus server and `promtool` for the observability tests: finds the binaries that
//! `scripts/install-prometheus.sh` installs, runs the server on loopback against a generated
//! config, and reads its HTTP API (`/api/v1/query`, targets, rules, alerts).
//!
//! Without the binaries the tests print `skipped: prometheus not installed (run
//! scripts/install-prometheus.sh)` and pass, unless `REQUIRE_PROMETHEUS=1` (CI sets it).

mod api;
pub mod daemons;
pub mod queries;

pub use api::{Alert, RuleStatus, Sample, Target};
use api::{AlertsData, ApiResponse, QueryData, RulesData, TargetsData};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The message a test prints when it skips for want of Prometheus.
pub const SKIP_MESSAGE: &str =
    "skipped: prometheus not installed (run scripts/install-prometheus.sh)";

/// Paths of the `prometheus` and `promtool` binaries.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The server.
    pub prometheus: PathBuf,
    /// The checker.
    pub promtool: PathBuf,
}

impl Tools {
    /// Finds the binaries: `PROMETHEUS_BIN` / `PROMTOOL_BIN`, then `.tools/prometheus/usr/bin/`
    /// (where `scripts/install-prometheus.sh` puts them), then `PATH`.
    pub fn find() -> Option<Tools> {
        let local = queries::repo_root().join(".tools/prometheus/usr/bin");
        let prometheus = find_binary("PROMETHEUS_BIN", "prometheus", &local)?;
        let promtool = find_binary("PROMTOOL_BIN", "promtool", &local)?;
        Some(Tools {
            prometheus,
            promtool,
        })
    }

    /// [`Tools::find`], or `None` after printing [`SKIP_MESSAGE`].
    ///
    /// # Panics
    /// When the binaries are missing and `REQUIRE_PROMETHEUS=1`.
    pub fn find_or_skip() -> Option<Tools> {
        let tools = Tools::find();
        if tools.is_none() {
            assert!(
                std::env::var("REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
                "REQUIRE_PROMETHEUS=1 but prometheus/promtool were not found (run scripts/install-prometheus.sh)"
            );
            println!("{SKIP_MESSAGE}");
        }
        tools
    }

    /// Runs `promtool ARGS` (with `stdin` piped in when given) and fails, with its output, on a
    /// non-zero exit.
    pub fn promtool(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut command = Command::new(&self.promtool);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command
            .spawn()
            .with_context(|| format!("failed to run {}", self.promtool.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .context("failed to write to promtool's stdin")?;
        }
        let output = child
            .wait_with_output()
            .context("failed to wait for promtool")?;
        if !output.status.success() {
            bail!(
                "`promtool {}` failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }
}

fn find_binary(env_var: &str, name: &str, local_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var).map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let local = local_dir.join(name);
    if local.is_file() {
        return Some(local);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A Prometheus server on `127.0.0.1`, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    /// Writes `config` (and `files`, e.g. rule files it names, beside it) to a temporary folder
    /// and starts Prometheus on a free loopback port; returns once `/-/ready` answers.
    pub async fn start(tools: &Tools, config: &str, files: &[(&str, &str)]) -> Result<Server> {
        let dir =
            tempfile::tempdir().context("failed to create a temporary folder for prometheus")?;
        std::fs::write(dir.path().join("prometheus.yml"), config)
            .context("failed to write prometheus.yml")?;
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)
                .with_context(|| format!("failed to write {name}"))?;
        }
        // The port is chosen before Prometheus binds it, so another process may take it first:
        // try a few ports.
        let mut last_error = None;
        for _ in 0..3 {
            match Server::spawn(tools, dir.path()).await {
                Ok((child, url)) => {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .context("failed to build an HTTP client")?;
                    return Ok(Server {
                        child,
                        url,
                        dir,
                        http,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("prometheus did not start")))
    }

    async fn spawn(tools: &Tools, dir: &Path) -> Result<(Child, String)> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .context("failed to create prometheus.log")?;
        let log_err = log
            .try_clone()
            .context("failed to clone the log file handle")?;
        let mut child = Command::new(&tools.prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("failed to start {}", tools.prometheus.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().context("failed to poll prometheus")? {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                bail!("prometheus exited during startup ({status}):\n{log}");
            }
            let ready = client.get(format!("{url}/-/ready")).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok((child, url));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("prometheus did not become ready on {url} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prometheus's own log so far (warnings and errors), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GETs an API path with query parameters and returns its `data`, or the API's error.
    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<T> {
        let url = format!("{}{path}", self.url);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .with_context(|| format!("failed to GET {url}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .with_context(|| format!("failed to read the body of {url}"))?;
        let parsed: ApiResponse<T> = serde_json::from_str(&body)
            .with_context(|| format!("{path} answered {status} with an unexpected body: {body}"))?;
        match (parsed.status.as_str(), parsed.data) {
            ("success", Some(data)) => Ok(data),
            _ => bail!(
                "{path} failed ({status}): {}: {}",
                parsed.error_type.unwrap_or_default(),
                parsed.error.unwrap_or_default()
            ),
        }
    }

    /// Evaluates `expr` now through `/api/v1/query`; an invalid expression is an error
    /// carrying Prometheus's message.
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let data: QueryData = self.api("/api/v1/query", &[("query", expr)]).await?;
        data.into_samples()
    }

    /// The values of `label` on series matching `selector` (what Grafana's
    /// `label_values(selector, label)` lists).
    pub async fn label_values(&self, selector: &str, label: &str) -> Result<Vec<String>> {
        self.api(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector)],
        )
        .await
    }

    /// The active scrape targets.
    pub async fn targets(&self) -> Result<Vec<Target>> {
        let data: TargetsData = self.api("/api/v1/targets", &[("state", "active")]).await?;
        Ok(data.active_targets)
    }

    /// Every loaded rule, with its health.
    pub async fn rules(&self) -> Result<Vec<RuleStatus>> {
        let data: RulesData = self.api("/api/v1/rules", &[]).await?;
        Ok(data
            .groups
            .into_iter()
            .flat_map(|group| group.rules)
            .collect())
    }

    /// Alerts now pending or firing.
    pub async fn alerts(&self) -> Result<Vec<Alert>> {
        let data: AlertsData = self.api("/api/v1/alerts", &[]).await?;
        Ok(data.alerts)
    }

    /// Polls until every target of each job in `jobs` is up (and each job has one), or fails at
    /// the deadline listing the targets' states.
    pub async fn wait_for_targets_up(
        &self,
        jobs: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Target>> {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.targets().await?;
            let all_up = jobs.iter().all(|job| {
                let of_job: Vec<_> = targets
                    .iter()
                    .filter(|target| target.job() == *job)
                    .collect();
                !of_job.is_empty() && of_job.iter().all(|target| target.health == "up")
            });
            if all_up {
                return Ok(targets);
            }
            if Instant::now() > deadline {
                bail!(
                    "targets of {jobs:?} not all up after {timeout:?}: {targets:#?}\nprometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener
        .local_addr()
        .context("failed to read a bound address")?
        .port())
}
