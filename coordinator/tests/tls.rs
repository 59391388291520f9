//! The real tonic server over TLS with mutual TLS (127.0.0.1:0, in-memory store), with test
//! certificates made in-process by rcgen: the connection limits of `grpc::listener` still hold
//! when tonic wraps each accepted connection in TLS.
//!
//! - A client that sent a request keeps its connection past the idle timeout (the request still
//!   marks its connection, through the TLS stream).
//! - A connection that never starts its handshake is closed by the idle timeout.
//! - Connections past `max_connections` are closed at once.
//! - Only a client with the CA and a certificate from it is answered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::grpc::ConnectionLimits;
use coordinator::grpc::tls::TlsFiles;
use coordinator::metrics::Metrics;
use coordinator::service::{Coordinator, Settings};
use coordinator::store::{ExperimentStore, MemoryStore};
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const IDLE_TIMEOUT: Duration = Duration::from_millis(800);

/// A CA with a server certificate for localhost and 127.0.0.1 and a client certificate, in PEM
/// files under a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::new()).expect("ca params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("ca key");
    rcgen::CertifiedIssuer::self_signed(params, key).expect("ca certificate")
}

fn leaf(
    names: &[&str],
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    purpose: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("leaf params");
    params.extended_key_usages = vec![purpose];
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("writes a pem");
        };
        let trusted = ca("test ca");
        let (server, server_key) = leaf(
            &["localhost", "127.0.0.1"],
            &trusted,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            &["client"],
            &trusted,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (rogue, rogue_key) = leaf(
            &["rogue"],
            &ca("another ca"),
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        write("ca.pem", &trusted.pem());
        write("server.pem", &server);
        write("server-key.pem", &server_key);
        write("client.pem", &client);
        write("client-key.pem", &client_key);
        write("rogue.pem", &rogue);
        write("rogue-key.pem", &rogue_key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("reads a pem")
    }

    fn identity(&self, name: &str) -> Identity {
        Identity::from_pem(
            self.read(&format!("{name}.pem")),
            self.read(&format!("{name}-key.pem")),
        )
    }

    /// A client TLS config trusting the test CA, with `identity`'s certificate.
    fn client(&self, identity: Option<&str>) -> ClientTlsConfig {
        let config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.read("ca.pem")));
        match identity {
            Some(name) => config.identity(self.identity(name)),
            None => config,
        }
    }
}

struct TlsServer {
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(pki: &Pki, limits: ConnectionLimits) -> TlsServer {
    let files = TlsFiles {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server-key.pem"),
        client_ca_file: Some(pki.path("ca.pem")),
    };
    let tls = files.load().expect("the test pki loads");
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn ExperimentStore> = Arc::new(MemoryStore::new());
    let coordinator = Coordinator::start(store, Settings::default(), Arc::clone(&metrics))
        .await
        .expect("coordinator starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds loopback");
    let addr = listener.local_addr().expect("has an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(coordinator::grpc::serve_with_limits(
        coordinator,
        Arc::clone(&metrics),
        listener,
        None,
        limits,
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));
    TlsServer {
        addr,
        metrics,
        _stop: stop,
    }
}

async fn connect(url: String, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Connects and lists experiments; the error, when the server does not answer.
async fn list(url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let channel = connect(url, tls).await?;
    let mut client = ExperimentServiceClient::new(channel);
    client
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

/// Polls `check` every 20 ms until it holds, failing after 5 s with `what`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after 5 s"));
    assert!(matches!(read, Ok(0) | Err(_)), "{what}: {read:?}");
}

#[tokio::test]
async fn only_clients_with_the_ca_and_a_certificate_from_it_are_answered() {
    let pki = Pki::new();
    let server = start(&pki, ConnectionLimits::default()).await;
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    list(https.clone(), Some(pki.client(Some("client"))))
        .await
        .expect("a client with the ca and a client certificate is answered");
    let by_name = pki.client(Some("client")).domain_name("localhost");
    list(https.clone(), Some(by_name))
        .await
        .expect("the certificate names localhost too");
    let refused = [
        (
            "no client certificate",
            https.clone(),
            Some(pki.client(None)),
        ),
        (
            "a client certificate from another ca",
            https.clone(),
            Some(pki.client(Some("rogue"))),
        ),
        (
            "the system roots instead of the ca",
            https.clone(),
            Some(
                ClientTlsConfig::new()
                    .with_native_roots()
                    .identity(pki.identity("client")),
            ),
        ),
        (
            "plain http",
            format!("http://127.0.0.1:{}", server.addr.port()),
            None,
        ),
    ];
    for (what, url, tls) in refused {
        let outcome = list(url, tls).await;
        assert!(outcome.is_err(), "{what} was answered");
    }
}

#[tokio::test]
async fn the_idle_timeout_and_the_connection_cap_hold_over_tls() {
    let pki = Pki::new();
    let limits = ConnectionLimits {
        max_connections: 2,
        idle_timeout: IDLE_TIMEOUT,
        ..ConnectionLimits::default()
    };
    let server = start(&pki, limits).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let channel = connect(url, Some(pki.client(Some("client"))))
        .await
        .expect("connects over tls");
    let mut client = ExperimentServiceClient::new(channel);
    client
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect("answered");
    // Past the idle timeout, the connection that sent a request is still open and answers.
    tokio::time::sleep(IDLE_TIMEOUT * 2).await;
    assert_eq!(server.metrics.grpc_connections_idle_closed_total.get(), 0);
    client
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect("a busy tls connection outlives the idle timeout");
    assert_eq!(server.metrics.grpc_connections_open.get(), 1);
    // A TCP connection that never sends a ClientHello takes the second slot ...
    let mut silent = TcpStream::connect(server.addr).await.expect("connects");
    let metrics = Arc::clone(&server.metrics);
    eventually("the silent connection to be accepted", || {
        metrics.grpc_connections_open.get() == 2
    })
    .await;
    // ... so a third is closed at once, and counted.
    let mut third = TcpStream::connect(server.addr).await.expect("connects");
    assert_closed(&mut third, "a connection past the cap").await;
    assert_eq!(server.metrics.grpc_connections_rejected_total.get(), 1);
    // The silent one is closed by the idle timeout, mid-handshake.
    assert_closed(&mut silent, "a connection that never handshakes").await;
    assert_eq!(server.metrics.grpc_connections_idle_closed_total.get(), 1);
    eventually("the silent connection's slot to be freed", || {
        metrics.grpc_connections_open.get() == 1
    })
    .await;
}
