//! TLS to the coordinator: an `https://` `coordinator_url` turns it on.
//!
//! The agent verifies the coordinator's certificate against the CA certificates in
//! `tls_ca_file` (PEM), or against the system's trust store when that is unset (a coordinator
//! with a certificate from a public or company CA). `tls_cert_file` and `tls_key_file` (both or
//! neither) are the agent's own certificate for a coordinator that requires mutual TLS.
//! `tls_domain` overrides the name the certificate must carry, which is otherwise the URL's
//! host. [`ClientTls::load`] reads the files once at startup; errors name the field and file.
//!
//! ```no_run
//! let tls = agent::tls::ClientTls {
//!     ca_file: Some("/etc/tunefleet/tls/ca.pem".into()),
//!     ..Default::default()
//! };
//! let config = tls.load().expect("a readable CA file");
//! # let _ = config;
//! ```

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// The agent's TLS settings (config fields in parentheses).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates the coordinator's certificate must chain to (`tls_ca_file`); the
    /// system trust store when `None`.
    pub ca_file: Option<PathBuf>,
    /// The agent's certificate, for mutual TLS (`tls_cert_file`).
    pub cert_file: Option<PathBuf>,
    /// The key of that certificate (`tls_key_file`).
    pub key_file: Option<PathBuf>,
    /// The name the coordinator's certificate must carry, instead of the URL's host
    /// (`tls_domain`).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Reads the files and builds tonic's client TLS config.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when one cannot be read; [`Error::Config`] naming the
    /// field and the file when it holds no PEM certificate or key, or when only one of the
    /// certificate and the key is set.
    pub fn load(&self) -> Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(path) => config.ca_certificate(Certificate::from_pem(read_certificates(
                "tls_ca_file",
                path,
            )?)),
            None => config.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let cert = read_certificates("tls_cert_file", cert)?;
                let key = read_private_key("tls_key_file", key)?;
                config = config.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "tls_cert_file and tls_key_file go together: set both or neither".into(),
                ));
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }

    /// A one-line description for the startup log.
    pub fn summary(&self) -> String {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "<none>".to_string(), |p| format!("'{}'", p.display()))
        };
        format!(
            "tls_ca_file={} tls_cert_file={} tls_key_file={} tls_domain={}",
            self.ca_file.as_ref().map_or_else(
                || "<system roots>".to_string(),
                |p| format!("'{}'", p.display())
            ),
            path(&self.cert_file),
            path(&self.key_file),
            self.domain.as_deref().unwrap_or("<url host>"),
        )
    }
}

/// An error with its causes, `a: b: c` (tonic's transport errors keep the reason in a cause).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn invalid(reason: String) -> Error {
    Error::Config { reason }
}

fn read_file(field: &str, path: &Path) -> Result<Vec<u8>> {
    crate::files::read_small(path).map_err(|source| Error::Io {
        what: format!("failed to read {field} '{}'", path.display()),
        source,
    })
}

/// The file's bytes, once checked to hold at least one PEM certificate and nothing undecodable.
fn read_certificates(field: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read_file(field, path)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| invalid(format!("{field} '{}': bad PEM: {e}", path.display())))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(format!(
            "{field} '{}': no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        )));
    }
    Ok(pem)
}

/// The file's bytes, once checked to hold a PEM private key.
fn read_private_key(field: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read_file(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(format!(
            "{field} '{}': no usable PEM private key: {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBAA==\n-----END PRIVATE KEY-----\n";

    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in [
            ("ca.pem", CERT),
            ("agent.pem", CERT),
            ("agent-key.pem", KEY),
            ("garbage.pem", "hello\n"),
        ] {
            std::fs::write(dir.path().join(name), text).expect("writes");
        }
        dir
    }

    fn settings(dir: &Path, ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> ClientTls {
        ClientTls {
            ca_file: ca.map(|n| dir.join(n)),
            cert_file: cert.map(|n| dir.join(n)),
            key_file: key.map(|n| dir.join(n)),
            domain: Some("coordinator.internal".into()),
        }
    }

    #[test]
    fn pem_files_load_and_the_summary_names_them() {
        let dir = files();
        let tls = settings(
            dir.path(),
            Some("ca.pem"),
            Some("agent.pem"),
            Some("agent-key.pem"),
        );
        tls.load().expect("loads");
        let summary = tls.summary();
        assert!(
            summary.contains("agent-key.pem") && summary.contains("coordinator.internal"),
            "{summary}"
        );
        let system = ClientTls::default();
        system.load().expect("the system roots need no file");
        assert!(system.summary().contains("<system roots>"));
    }

    #[test]
    fn bad_or_missing_files_are_named() {
        let dir = files();
        let garbage = dir.path().join("garbage.pem").display().to_string();
        let cases = [
            (Some("garbage.pem"), None, None, "tls_ca_file"),
            (
                Some("ca.pem"),
                Some("garbage.pem"),
                Some("agent-key.pem"),
                "tls_cert_file",
            ),
            (
                Some("ca.pem"),
                Some("agent.pem"),
                Some("garbage.pem"),
                "tls_key_file",
            ),
        ];
        for (ca, cert, key, field) in cases {
            let message = settings(dir.path(), ca, cert, key)
                .load()
                .expect_err("refused")
                .to_string();
            assert!(
                message.contains(field) && message.contains(&garbage),
                "{field}: {message}"
            );
        }
        let missing = settings(dir.path(), Some("missing.pem"), None, None)
            .load()
            .expect_err("refused")
            .to_string();
        assert!(missing.contains("missing.pem"), "{missing}");
        let half = settings(dir.path(), None, Some("agent.pem"), None)
            .load()
            .expect_err("refused")
            .to_string();
        assert!(half.contains("both or neither"), "{half}");
    }
}
