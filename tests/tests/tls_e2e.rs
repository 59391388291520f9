//! End to end (issue 12): TLS with mutual TLS, on certificates made by the documented command,
//! `tunectl certs`.
//!
//! - A coordinator with its certificate, its key and a client CA, an agent with the CA and a
//!   client certificate, and `tunectl` over `https://` with `--ca-file` and a client
//!   certificate run a `function` experiment to the end; every process reads the bearer token
//!   from a file.
//! - Refused: a client without the CA (the system roots), plain HTTP, a client trusting another
//!   CA (a second `tunectl certs` run), a client certificate from that other CA, and no client
//!   certificate. Each refused client sends the right token, and the same client code with the
//!   right files is answered, so a refusal is the TLS layer's.
//! - A coordinator given a certificate without its key, a garbage PEM, or the key of another
//!   certificate exits non-zero with an error naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use integration_tests::agents;
use integration_tests::cluster::{Cluster, Daemon, START_TIMEOUT, binary, tunectl_ok, wait_for};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TOKEN: &str = "tls-e2e-token";

const SPEC: &str = r#"
name = "tls-e2e"
metric = "value"
direction = "minimize"
strategy = "random"
budget = 4
parallelism = 2
seed = 7
[[parameters]]
name = "x1"
type = "float"
low = -5.0
high = 10.0
[[parameters]]
name = "x2"
type = "float"
low = 0.0
high = 15.0
[workload]
kind = "function"
dataset = "branin"
"#;

/// Runs `command` to its end, failing if it takes longer than `timeout`.
async fn finish(mut command: Command, timeout: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the command")?;
    let deadline = Instant::now() + timeout;
    while child
        .try_wait()
        .context("cannot wait for the child")?
        .is_none()
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("{command:?} did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().context("cannot read the output")
}

/// `tunectl certs --out DIR --client NAME...`, the README's command.
async fn make_certs(out: &Path, clients: &[&str]) -> Result<()> {
    let mut command = Command::new(binary("tunectl")?);
    command.arg("certs").arg("--out").arg(out);
    for client in clients {
        command.args(["--client", client]);
    }
    let output = finish(command, Duration::from_secs(30)).await?;
    ensure!(
        output.status.success(),
        "tunectl certs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The PEM files of one `tunectl certs` run.
struct Pki(PathBuf);

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn ca(&self) -> Result<Certificate> {
        Ok(Certificate::from_pem(std::fs::read(self.path("ca.pem"))?))
    }

    fn identity(&self, name: &str) -> Result<Identity> {
        Ok(Identity::from_pem(
            std::fs::read(self.path(&format!("{name}.pem")))?,
            std::fs::read(self.path(&format!("{name}-key.pem")))?,
        ))
    }
}

/// The trusted CA's files, another CA's, and the token file, in one temp dir.
struct Files {
    _dir: tempfile::TempDir,
    trusted: Pki,
    other: Pki,
    token_file: PathBuf,
}

async fn files() -> Result<Files> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let trusted = Pki(dir.path().join("pki"));
    let other = Pki(dir.path().join("other-pki"));
    make_certs(&trusted.0, &["agent", "tunectl", "client"]).await?;
    make_certs(&other.0, &["rogue"]).await?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    Ok(Files {
        _dir: dir,
        trusted,
        other,
        token_file,
    })
}

/// An experiment client on `url` with `tls`, sending the token.
async fn client(
    url: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<ExperimentServiceClient<Channel>, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{e:?}"))?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(ExperimentServiceClient::new(channel))
}

/// Lists experiments with the bearer token; the error, when refused.
async fn list(url: &str, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let mut client = client(url, tls).await?;
    let mut request = tonic::Request::new(pb::ListExperimentsRequest::default());
    let bearer = format!("Bearer {TOKEN}").parse().expect("an ascii token");
    request.metadata_mut().insert("authorization", bearer);
    client
        .list_experiments(request)
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

fn trusting(pki: &Pki, identity: Option<(&Pki, &str)>) -> Result<ClientTlsConfig> {
    let config = ClientTlsConfig::new().ca_certificate(pki.ca()?);
    Ok(match identity {
        Some((issuer, name)) => config.identity(issuer.identity(name)?),
        None => config,
    })
}

fn start_tls_cluster(files: &Files) -> Result<Cluster> {
    let line = |field: &str, path: PathBuf| format!("{field} = {:?}", path.display().to_string());
    Cluster::builder()
        .https()
        .config_line(&line(
            "tls_cert_file",
            files.trusted.path("coordinator.pem"),
        ))
        .config_line(&line(
            "tls_key_file",
            files.trusted.path("coordinator-key.pem"),
        ))
        .config_line(&line("tls_client_ca_file", files.trusted.path("ca.pem")))
        .config_line(&line("auth_token_file", files.token_file.clone()))
        .start()
}

fn start_tls_agent(cluster: &Cluster, files: &Files) -> Result<Daemon> {
    let mut command = agents::agent_command(cluster, &[])?;
    command
        .env("AGENT_TLS_CA_FILE", files.trusted.path("ca.pem"))
        .env("AGENT_TLS_CERT_FILE", files.trusted.path("agent.pem"))
        .env("AGENT_TLS_KEY_FILE", files.trusted.path("agent-key.pem"))
        .env("AGENT_AUTH_TOKEN_FILE", &files.token_file);
    Daemon::spawn("agent", command, cluster.dir(), START_TIMEOUT)
}

/// `tunectl`'s TLS and token flags for the trusted CA and its `tunectl` certificate.
fn tunectl_tls_args(files: &Files) -> Vec<String> {
    let trusted = &files.trusted;
    vec![
        "--ca-file".into(),
        trusted.arg("ca.pem"),
        "--cert-file".into(),
        trusted.arg("tunectl.pem"),
        "--key-file".into(),
        trusted.arg("tunectl-key.pem"),
        "--token-file".into(),
        files.token_file.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_runs_an_experiment_and_refuses_clients_without_the_ca() -> Result<()> {
    let files = files().await?;
    let cluster = start_tls_cluster(&files)?;
    let url = cluster.grpc_url()?;
    ensure!(url.starts_with("https://"), "{url}");
    let _agent = start_tls_agent(&cluster, &files)?;

    let spec_path = cluster.dir().join("spec.toml");
    std::fs::write(&spec_path, SPEC)?;
    let mut args = tunectl_tls_args(&files);
    args.extend(["create".into(), spec_path.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = tunectl_ok(&cluster, &args)?.trim().to_owned();
    ensure!(!id.is_empty(), "tunectl create printed no id");

    let tls = trusting(&files.trusted, Some((&files.trusted, "client")))?;
    let mut experiments = client(&url, Some(tls.clone()))
        .await
        .map_err(anyhow::Error::msg)?;
    let finished = wait_for("the experiment to finish", Duration::from_secs(30), || {
        let mut experiments = experiments.clone();
        let id = id.clone();
        async move {
            let mut request = tonic::Request::new(pb::GetExperimentRequest { experiment_id: id });
            let bearer = format!("Bearer {TOKEN}").parse().expect("an ascii token");
            request.metadata_mut().insert("authorization", bearer);
            let experiment = experiments
                .get_experiment(request)
                .await?
                .into_inner()
                .experiment
                .context("no experiment in the answer")?;
            Ok((experiment.state() != pb::ExperimentState::Running).then_some(experiment))
        }
    })
    .await
    .with_context(|| format!("coordinator log:\n{}", cluster.coordinator_log()))?;
    ensure!(
        finished.state() == pb::ExperimentState::Completed,
        "the experiment ended {:?}",
        finished.state()
    );
    // 4 trials: one page.
    let mut request = tonic::Request::new(pb::ListTrialsRequest {
        experiment_id: id.clone(),
        ..Default::default()
    });
    let bearer = format!("Bearer {TOKEN}").parse().expect("an ascii token");
    request.metadata_mut().insert("authorization", bearer);
    let trials = experiments.list_trials(request).await?.into_inner().trials;
    ensure!(trials.len() == 4, "{} trials", trials.len());
    for trial in &trials {
        ensure!(
            trial.state() == pb::TrialState::Succeeded && trial.value.is_some_and(f64::is_finite),
            "trial {} ended {:?} with {:?}",
            trial.number,
            trial.state(),
            trial.value
        );
    }
    let mut args = tunectl_tls_args(&files);
    args.extend(["best".into(), id.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tunectl_ok(&cluster, &args)?;

    // The same client code with the right files is answered ...
    list(&url, Some(tls)).await.map_err(anyhow::Error::msg)?;
    // ... and with any one of them wrong, refused.
    let plain = url.replacen("https://", "http://", 1);
    let system_roots = ClientTlsConfig::new()
        .with_native_roots()
        .identity(files.trusted.identity("client")?);
    let refused = [
        ("no CA (the system roots)", url.as_str(), Some(system_roots)),
        ("plain http", plain.as_str(), None),
        (
            "another CA",
            url.as_str(),
            Some(trusting(&files.other, Some((&files.trusted, "client")))?),
        ),
        (
            "a client certificate from another CA",
            url.as_str(),
            Some(trusting(&files.trusted, Some((&files.other, "rogue")))?),
        ),
        (
            "no client certificate",
            url.as_str(),
            Some(trusting(&files.trusted, None)?),
        ),
    ];
    for (what, target, tls) in refused {
        match list(target, tls).await {
            Ok(()) => bail!("a client with {what} was answered"),
            // The TLS layer refused it, not the token check behind it.
            Err(error) => ensure!(!error.contains("Unauthenticated"), "{what}: {error}"),
        }
    }
    // tunectl without --ca-file does not trust the coordinator.
    let mut without_ca = tunectl_tls_args(&files);
    without_ca.drain(..2);
    without_ca.push("list".into());
    let without_ca: Vec<&str> = without_ca.iter().map(String::as_str).collect();
    let output = cluster.tunectl(&without_ca)?;
    ensure!(
        !output.status.success(),
        "tunectl without --ca-file listed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

/// Starts a coordinator on `config` and returns its stderr once it exited non-zero.
async fn refused_start(dir: &Path, config: &str) -> Result<String> {
    let config_path = dir.join("coordinator.toml");
    let data_dir = dir.join("data").display().to_string();
    let text = format!(
        "version = 1\nlisten_addr = \"127.0.0.1:0\"\nmetrics_listen_addr = \"127.0.0.1:0\"\ndata_dir = {data_dir:?}\n{config}"
    );
    std::fs::write(&config_path, text)?;
    let mut command = Command::new(binary("coordinator")?);
    command.arg("--config").arg(&config_path);
    let output = finish(command, Duration::from_secs(30)).await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        !output.status.success(),
        "the coordinator started with {config}: {stderr}"
    );
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_with_a_bad_tls_file_exits_naming_it() -> Result<()> {
    let files = files().await?;
    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n")?;
    let cert = files.trusted.arg("coordinator.pem");
    let key = files.trusted.arg("coordinator-key.pem");
    let other_key = files.other.arg("coordinator-key.pem");
    let garbage = garbage.display().to_string();
    let cases = [
        (
            format!("tls_cert_file = {cert:?}\n"),
            vec![cert.as_str(), "tls_key_file"],
        ),
        (
            format!("tls_cert_file = {garbage:?}\ntls_key_file = {key:?}\n"),
            vec![garbage.as_str(), "tls_cert_file"],
        ),
        (
            format!("tls_cert_file = {cert:?}\ntls_key_file = {garbage:?}\n"),
            vec![garbage.as_str(), "tls_key_file"],
        ),
        (
            format!("tls_cert_file = {cert:?}\ntls_key_file = {other_key:?}\n"),
            vec![cert.as_str(), other_key.as_str()],
        ),
    ];
    for (config, words) in cases {
        let stderr = refused_start(dir.path(), &config).await?;
        let error = stderr
            .lines()
            .find(|line| line.starts_with("error:"))
            .with_context(|| format!("no error line for {config}: {stderr}"))?;
        for word in words {
            ensure!(error.contains(word), "'{word}' is not in: {error}");
        }
    }
    ensure!(
        !dir.path().join("data").exists(),
        "a bad TLS file is found before the store is opened"
    );
    Ok(())
}
