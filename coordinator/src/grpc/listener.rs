//! The gRPC listener's connection limits: a cap on open connections, TCP keepalive, and an idle
//! timeout for connections that never send a request.
//!
//! 1,100 idle unauthenticated TCP connections once used up the coordinator's 1,024 file
//! descriptors and blocked real RPCs for 10 s. Now [`LimitedIncoming`] accepts connections
//! while fewer than `max_connections` are open (a semaphore permit each) and closes the others
//! at once, counting them in `tunefleet_coordinator_grpc_connections_rejected_total`; accept
//! errors (such as running out of file descriptors) back off instead of spinning. Each accepted
//! [`LimitedConnection`] gets TCP keepalive and TCP_NODELAY, and is closed if no gRPC request
//! arrives within `idle_timeout` of the accept (`..._idle_closed_total`): [`mark_requested`],
//! a server layer, tells the connection its first request came. HTTP/2 keepalive and the
//! per-connection stream cap are set on the server in [`super::serve_with_limits`].
//!
//! With TLS, tonic wraps each accepted [`LimitedConnection`] in a rustls stream, so the cap and
//! the idle timeout apply unchanged (requests still carry the [`ConnectionInfo`], beside
//! tonic's `TlsConnectInfo`); the timeout also bounds the TLS handshake, since it counts from
//! the accept.
//!
//! ```
//! let limits = coordinator::grpc::listener::ConnectionLimits::default();
//! assert_eq!(limits.max_connections, 4096);
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpIncoming};
use tonic::{Request, Status};

use crate::metrics::Metrics;

/// How long accepting pauses after an accept error (e.g. `EMFILE`).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How often a warning about rejected connections or accept errors is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The limits on the gRPC listener's connections (config fields in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed at once (`max_connections`).
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (RPCs) a connection may open
    /// (`max_concurrent_streams_per_connection`).
    pub max_concurrent_streams: u32,
    /// HTTP/2 PING period on every connection (`http2_keepalive_interval_secs`).
    pub http2_keepalive_interval: Duration,
    /// A connection whose PING is not answered within this is closed
    /// (`http2_keepalive_timeout_secs`).
    pub http2_keepalive_timeout: Duration,
    /// Idle time before the kernel's TCP keepalive probes start (`tcp_keepalive_secs`).
    pub tcp_keepalive: Duration,
    /// A connection that sends no request within this of its accept is closed
    /// (`connection_idle_timeout_secs`).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// The config's defaults: room for a fleet of 1,000 agents (one connection each) plus
    /// clients, four times over.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_concurrent_streams: 256,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Logs a warning at most every [`WARN_EVERY`], with how many events it stands for.
struct RateLimitedWarning {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarning {
    fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    /// The number of events to report now (this one included), or `None` to stay quiet.
    fn due(&mut self) -> Option<u64> {
        self.suppressed += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < WARN_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The accepted connections of a listener, within [`ConnectionLimits`].
pub struct LimitedIncoming {
    incoming: TcpIncoming,
    permits: Arc<Semaphore>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    backoff: Option<Pin<Box<Sleep>>>,
    rejected_warning: RateLimitedWarning,
    accept_warning: RateLimitedWarning,
}

impl LimitedIncoming {
    /// Accepts on `listener` within `limits`.
    pub fn new(listener: TcpListener, limits: ConnectionLimits, metrics: Arc<Metrics>) -> Self {
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(limits.tcp_keepalive));
        Self {
            incoming,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics,
            backoff: None,
            rejected_warning: RateLimitedWarning::new(),
            accept_warning: RateLimitedWarning::new(),
        }
    }

    fn reject(&mut self, stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        // Counted before the close, so a peer that sees the close also sees the count.
        self.metrics.grpc_connections_rejected_total.inc();
        drop(stream);
        if let Some(rejected) = self.rejected_warning.due() {
            tracing::warn!(
                max_connections = self.limits.max_connections,
                rejected,
                last_peer = ?peer,
                "connection limit reached, closing new connections"
            );
        }
    }
}

impl Stream for LimitedIncoming {
    type Item = io::Result<LimitedConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            match ready!(Pin::new(&mut self.incoming).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(error)) => {
                    if let Some(errors) = self.accept_warning.due() {
                        tracing::warn!(%error, errors, "failed to accept a grpc connection");
                    }
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                }
                Some(Ok(stream)) => match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => {
                        let connection = LimitedConnection::new(
                            stream,
                            permit,
                            self.limits.idle_timeout,
                            Arc::clone(&self.metrics),
                        );
                        return Poll::Ready(Some(Ok(connection)));
                    }
                    Err(_) => self.reject(stream),
                },
            }
        }
    }
}

/// What a request learns about its connection (a request extension), and how it tells the
/// connection that a request came.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    requested: Arc<AtomicBool>,
}

/// The type of [`mark_requested`], for [`tonic::service::InterceptorLayer`].
pub type MarkRequested = fn(Request<()>) -> Result<Request<()>, Status>;

/// A server layer's interceptor: marks the request's connection as having sent a request, so
/// its idle timeout no longer applies. Never rejects anything.
///
/// # Errors
/// Never; the signature is tonic's interceptor's.
#[allow(clippy::result_large_err)]
pub fn mark_requested(request: Request<()>) -> Result<Request<()>, Status> {
    if let Some(info) = request.extensions().get::<ConnectionInfo>() {
        info.requested.store(true, Ordering::Release);
    }
    Ok(request)
}

/// An accepted connection: holds its permit, counts itself in the open-connections gauge, and
/// fails its reads once the idle timeout passes without a request.
pub struct LimitedConnection {
    stream: TcpStream,
    info: ConnectionInfo,
    idle_deadline: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl LimitedConnection {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.grpc_connections_open.inc();
        Self {
            info: ConnectionInfo {
                remote_addr: stream.peer_addr().ok(),
                requested: Arc::new(AtomicBool::new(false)),
            },
            stream,
            idle_deadline: Some(Box::pin(tokio::time::sleep(idle_timeout))),
            metrics,
            _permit: permit,
        }
    }

    /// An error once the idle deadline passed without a request; clears the deadline after
    /// the first request.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.idle_deadline.as_mut() else {
            return Ok(());
        };
        if self.info.requested.load(Ordering::Acquire) {
            self.idle_deadline = None;
            return Ok(());
        }
        if deadline.as_mut().poll(cx).is_ready() {
            self.idle_deadline = None;
            self.metrics.grpc_connections_idle_closed_total.inc();
            tracing::debug!(peer = ?self.info.remote_addr, "closing a connection that sent no request");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the connection idle timeout",
            ));
        }
        Ok(())
    }
}

impl Drop for LimitedConnection {
    fn drop(&mut self) {
        self.metrics.grpc_connections_open.dec();
    }
}

impl Connected for LimitedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_idle(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The soft limit on open files (`Max open files` in `/proc/self/limits`), when readable.
pub fn open_files_soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_soft_limit(&text)
}

fn parse_open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    }
}

/// Warns when `max_connections` cannot fit under the open-files soft limit (which the
/// coordinator cannot raise without unsafe code: set `LimitNOFILE=` in systemd, or the
/// container runtime's limit).
pub fn warn_if_files_limit_too_low(limits: &ConnectionLimits) {
    // The database, its WAL, listeners, the runtime: room for them besides the connections.
    const OTHER_FILES: u64 = 64;
    let Some(soft_limit) = open_files_soft_limit() else {
        return;
    };
    let needed = limits.max_connections as u64 + OTHER_FILES;
    if soft_limit < needed {
        tracing::warn!(
            soft_limit,
            max_connections = limits.max_connections,
            "the open-files limit is below max_connections + {OTHER_FILES}: raise it (systemd LimitNOFILE=, ulimit -n) or lower max_connections, or accepts fail before the cap applies"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_open_files_soft_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_soft_limit(unlimited), Some(u64::MAX));
        assert_eq!(parse_open_files_soft_limit("nothing"), None);
        assert!(open_files_soft_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_they_stand_for() {
        let mut warning = RateLimitedWarning::new();
        assert_eq!(warning.due(), Some(1));
        assert_eq!(warning.due(), None);
        assert_eq!(warning.due(), None);
        warning.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(warning.due(), Some(3));
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_idle_ones_time_out() {
        use tokio::io::AsyncReadExt;
        use tokio_stream::StreamExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let metrics = Arc::new(Metrics::new());
        let limits = ConnectionLimits {
            max_connections: 1,
            idle_timeout: Duration::from_millis(200),
            ..ConnectionLimits::default()
        };
        let mut incoming = LimitedIncoming::new(listener, limits, Arc::clone(&metrics));
        let _first = TcpStream::connect(addr).await.expect("connects");
        let mut accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert_eq!(metrics.grpc_connections_open.get(), 1);
        // Past the cap: accepted by the kernel, then closed by the coordinator.
        let mut second = TcpStream::connect(addr).await.expect("connects");
        let pending = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(pending.is_err(), "a connection past the cap was handed out");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut byte))
            .await
            .expect("closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(metrics.grpc_connections_rejected_total.get(), 1);
        // No request within the idle timeout: reads fail.
        let read = tokio::time::timeout(Duration::from_secs(5), accepted.read(&mut byte))
            .await
            .expect("the idle timeout fires");
        assert_eq!(read.expect_err("idle").kind(), io::ErrorKind::TimedOut);
        assert_eq!(metrics.grpc_connections_idle_closed_total.get(), 1);
        drop(accepted);
        assert_eq!(metrics.grpc_connections_open.get(), 0);
    }
}
