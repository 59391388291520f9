//! TLS for the gRPC listener (rustls through tonic): the coordinator's certificate and key, and
//! optionally a client CA that every client must present a certificate from (mutual TLS).
//!
//! The files are PEM. [`TlsFiles::load`] reads them once at startup and checks them before
//! anything else starts: each file must hold what its field promises (certificates, or one
//! private key), and the key must belong to the certificate. Errors name the field and the
//! file. Mutual TLS, when `tls_client_ca_file` is set, applies to every client on the gRPC
//! listener, agents and `tunectl` alike; health checks go over the same listener and need a
//! client certificate too (the `/metrics` listener is plain HTTP and unaffected).
//!
//! tonic runs the TLS handshake on each connection that [`super::listener::LimitedIncoming`]
//! accepted, so the connection cap holds, and a connection that never finishes its handshake
//! is closed by the same idle timeout as one that never sends a request.
//!
//! ```no_run
//! use coordinator::grpc::tls::TlsFiles;
//! let files = TlsFiles {
//!     cert_file: "/etc/tunefleet/tls/coordinator.pem".into(),
//!     key_file: "/etc/tunefleet/tls/coordinator-key.pem".into(),
//!     client_ca_file: Some("/etc/tunefleet/tls/ca.pem".into()),
//! };
//! let server_tls = files.load().expect("valid TLS files");
//! # let _ = server_tls;
//! ```

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::{Error, Result};

/// The TLS files of the gRPC listener (config fields in parentheses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The coordinator's certificate chain, leaf first (`tls_cert_file`).
    pub cert_file: PathBuf,
    /// The private key of that certificate (`tls_key_file`).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by a CA in this file
    /// (`tls_client_ca_file`).
    pub client_ca_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads and checks the files and builds tonic's server TLS config.
    ///
    /// # Errors
    /// `Io` naming the file when one cannot be read; `Config` naming the field and the file
    /// when one holds no PEM certificate or key, or the key does not match the certificate.
    pub fn load(&self) -> Result<ServerTlsConfig> {
        let cert = read_certificates("tls_cert_file", &self.cert_file)?;
        let key = read_private_key("tls_key_file", &self.key_file)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(path) = &self.client_ca_file {
            let ca = read_certificates("tls_client_ca_file", path)?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        // tonic builds the rustls config here: this is where a key that does not belong to the
        // certificate, or a CA file of undecodable certificates, is found.
        if let Err(error) = Server::builder().tls_config(config.clone()) {
            return Err(Error::Config(format!(
                "tls_cert_file '{}', tls_key_file '{}'{} do not make a TLS server: {}",
                self.cert_file.display(),
                self.key_file.display(),
                self.client_ca_file
                    .as_ref()
                    .map(|p| format!(" and tls_client_ca_file '{}'", p.display()))
                    .unwrap_or_default(),
                crate::display_chain(&error)
            )));
        }
        Ok(config)
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca_file.is_some()
    }
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>> {
    crate::files::read_small(path)
        .map_err(|e| Error::io(format!("read {field} '{}'", path.display()), e))
}

fn content_error(field: &str, path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!("{field} '{}': {what}", path.display()))
}

/// The file's bytes, once checked to hold at least one PEM certificate and nothing undecodable.
fn read_certificates(field: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read_file(field, path)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| content_error(field, path, format!("bad PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(content_error(
            field,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found",
        ));
    }
    Ok(pem)
}

/// The file's bytes, once checked to hold a PEM private key.
fn read_private_key(field: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read_file(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => content_error(
            field,
            path,
            "no PEM private key (-----BEGIN PRIVATE KEY----- or an RSA/EC key) found",
        ),
        other => content_error(field, path, format!("bad PEM: {other}")),
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        /// A CA, a server certificate for localhost signed by it, and a second, unrelated key.
        fn new() -> Pki {
            let dir = tempfile::tempdir().expect("temp dir");
            let ca_key = rcgen::KeyPair::generate().expect("ca key");
            let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("ca params");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
            let key = rcgen::KeyPair::generate().expect("server key");
            let params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .expect("server params");
            let cert = params.signed_by(&key, &ca).expect("server cert");
            let other_key = rcgen::KeyPair::generate().expect("other key");
            let write = |name: &str, text: String| {
                std::fs::write(dir.path().join(name), text).expect("writes a pem");
            };
            write("ca.pem", ca.pem());
            write("server.pem", cert.pem());
            write("server-key.pem", key.serialize_pem());
            write("other-key.pem", other_key.serialize_pem());
            write("garbage.pem", "not a pem file\n".to_string());
            Pki { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn files(&self, cert: &str, key: &str, ca: Option<&str>) -> TlsFiles {
            TlsFiles {
                cert_file: self.path(cert),
                key_file: self.path(key),
                client_ca_file: ca.map(|name| self.path(name)),
            }
        }

        fn refusal(&self, cert: &str, key: &str, ca: Option<&str>) -> String {
            let error = self.files(cert, key, ca).load().expect_err("refused");
            crate::display_chain(&error)
        }
    }

    #[test]
    fn a_matching_certificate_and_key_load_with_and_without_a_client_ca() {
        let pki = Pki::new();
        pki.files("server.pem", "server-key.pem", None)
            .load()
            .expect("server tls");
        let mutual = pki.files("server.pem", "server-key.pem", Some("ca.pem"));
        mutual.load().expect("mutual tls");
        assert!(mutual.mutual());
    }

    #[test]
    fn bad_files_are_refused_naming_the_field_and_the_file() {
        let pki = Pki::new();
        let garbage = pki.path("garbage.pem").display().to_string();
        let message = pki.refusal("garbage.pem", "server-key.pem", None);
        assert!(
            message.contains("tls_cert_file") && message.contains(&garbage),
            "{message}"
        );
        let message = pki.refusal("server.pem", "garbage.pem", None);
        assert!(
            message.contains("tls_key_file") && message.contains(&garbage),
            "{message}"
        );
        // A certificate where the key belongs.
        let message = pki.refusal("server.pem", "server.pem", None);
        assert!(message.contains("no PEM private key"), "{message}");
        let message = pki.refusal("server.pem", "server-key.pem", Some("garbage.pem"));
        assert!(
            message.contains("tls_client_ca_file") && message.contains(&garbage),
            "{message}"
        );
        let missing = pki.path("missing.pem").display().to_string();
        let message = pki.refusal("missing.pem", "server-key.pem", None);
        assert!(message.contains(&missing), "{message}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let pki = Pki::new();
        let message = pki.refusal("server.pem", "other-key.pem", None);
        assert!(
            message.contains("do not make a TLS server")
                && message.contains(&pki.path("other-key.pem").display().to_string()),
            "{message}"
        );
    }
}
