//! End to end: the gRPC listener's connection limits (1,100 idle unauthenticated TCP
//! connections once used up the coordinator's file descriptors and blocked real RPCs for 10 s).
//!
//! With `max_connections = 50` and a 2 s idle timeout: 49 idle connections leave room for a
//! real client, whose RPC answers within 100 ms; connections past the cap are closed at once
//! and counted; the idle ones are closed after the idle timeout while the real client, which
//! sent requests, keeps its connection; then a fresh client gets through again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use integration_tests::cluster::{Cluster, wait_for};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const CAP: usize = 50;

/// A metric's value from the coordinator's `/metrics`, 0 when absent.
async fn metric(cluster: &Cluster, name: &str) -> Result<f64> {
    let text = reqwest::get(cluster.metrics_url()?)
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(Ok(0.0), str::parse)
        .with_context(|| format!("bad value of {name}"))?;
    Ok(value)
}

/// Opens `count` TCP connections that never send a byte.
async fn open_idle(addr: &str, count: usize) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await.context("cannot connect")?);
    }
    Ok(streams)
}

/// Waits until the coordinator closes every stream: reads (the server's HTTP/2 SETTINGS, for
/// an accepted connection) until EOF or an error.
async fn wait_closed(streams: &mut [TcpStream], what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for (index, stream) in streams.iter_mut().enumerate() {
        let mut buffer = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => bail!("{what} #{index} still open after {timeout:?}"),
            }
        }
    }
    Ok(())
}

/// Connects a fresh client and lists experiments, all within `limit`.
async fn fresh_rpc(
    cluster: &Cluster,
    limit: Duration,
) -> Result<ExperimentServiceClient<tonic::transport::Channel>> {
    let started = Instant::now();
    let answered = tokio::time::timeout(limit, async {
        let mut client = ExperimentServiceClient::new(cluster.channel().await?);
        client
            .list_experiments(pb::ListExperimentsRequest::default())
            .await
            .context("list experiments failed")?;
        anyhow::Ok(client)
    })
    .await;
    match answered {
        Ok(client) => client,
        Err(_) => bail!(
            "a fresh client's RPC did not answer within {limit:?} ({:?})",
            started.elapsed()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_real_clients() -> Result<()> {
    let cluster = Cluster::builder()
        .config_line(&format!("max_connections = {CAP}"))
        .config_line("connection_idle_timeout_secs = 2")
        .start()?;
    let addr = cluster.grpc_url()?.trim_start_matches("http://").to_owned();
    let mut idle = open_idle(&addr, CAP - 1).await?;
    wait_for(
        "the idle connections to be accepted",
        Duration::from_secs(10),
        || async {
            let open = metric(&cluster, "tunefleet_coordinator_grpc_connections_open").await?;
            Ok((open >= (CAP - 1) as f64).then_some(()))
        },
    )
    .await?;

    // The last slot is a real client's: its RPC answers at once.
    let mut real = fresh_rpc(&cluster, Duration::from_millis(100)).await?;

    // Past the cap: closed at once (well before the 2 s idle timeout could), and counted.
    let mut extra = open_idle(&addr, 20).await?;
    wait_closed(
        &mut extra,
        "connection past the cap",
        Duration::from_secs(1),
    )
    .await?;
    let rejected = metric(
        &cluster,
        "tunefleet_coordinator_grpc_connections_rejected_total",
    )
    .await?;
    ensure!(
        rejected >= 20.0,
        "{rejected} connections counted as rejected, expected 20"
    );

    // The idle ones are closed after the idle timeout; the real client keeps its connection.
    wait_closed(&mut idle, "idle connection", Duration::from_secs(10)).await?;
    let idle_closed = metric(
        &cluster,
        "tunefleet_coordinator_grpc_connections_idle_closed_total",
    )
    .await?;
    ensure!(
        idle_closed >= (CAP - 1) as f64,
        "{idle_closed} connections counted as closed idle, expected {}",
        CAP - 1
    );
    real.list_experiments(pb::ListExperimentsRequest::default())
        .await
        .context("the real client's connection was closed with the idle ones")?;
    fresh_rpc(&cluster, Duration::from_millis(100)).await?;
    Ok(())
}
