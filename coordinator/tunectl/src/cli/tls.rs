//! TLS and the bearer token for `tunectl`'s connection: an `https://` coordinator URL turns TLS
//! on. The coordinator's certificate is checked against `--ca-file` (PEM), or the system's trust
//! store without one; `--cert-file` and `--key-file` are the client certificate a coordinator
//! with mutual TLS asks for. The token comes from `--token` / `TUNEFLEET_TOKEN` or, kept out of
//! the command line, from `--token-file` / `TUNEFLEET_TOKEN_FILE`.

use std::path::Path;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::ConnectOptions;

/// The client TLS config `options` ask for: `None` for an `http://` URL.
///
/// # Errors
/// When a file cannot be read or holds no PEM certificate or key, when only one of
/// `--cert-file` and `--key-file` is given, or when TLS files come with an `http://` URL.
pub fn client_config(options: &ConnectOptions) -> anyhow::Result<Option<ClientTlsConfig>> {
    let identity = match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => Some(Identity::from_pem(
            read_certificates("--cert-file", cert)?,
            read_private_key("--key-file", key)?,
        )),
        (None, None) => None,
        _ => bail!("--cert-file and --key-file go together: give both or neither"),
    };
    if !options.coordinator.starts_with("https://") {
        if options.ca_file.is_some() || identity.is_some() {
            bail!(
                "--ca-file, --cert-file and --key-file need an https:// coordinator url, got '{}'",
                options.coordinator
            );
        }
        return Ok(None);
    }
    let mut config = match &options.ca_file {
        Some(path) => ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_certificates("--ca-file", path)?)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(identity) = identity {
        config = config.identity(identity);
    }
    Ok(Some(config))
}

/// The bearer token: `--token`, or the trimmed contents of `--token-file`; not both.
///
/// # Errors
/// When both are given, or the file cannot be read or is empty.
pub fn token(options: &ConnectOptions) -> anyhow::Result<Option<String>> {
    match (&options.token, &options.token_file) {
        (Some(_), Some(_)) => {
            bail!("give --token (TUNEFLEET_TOKEN) or --token-file (TUNEFLEET_TOKEN_FILE), not both")
        }
        (Some(token), None) => Ok(Some(token.clone())),
        (None, Some(path)) => {
            let text = coordinator::files::read_small_text(path)
                .with_context(|| format!("cannot read --token-file '{}'", path.display()))?;
            let token = text.trim();
            if token.is_empty() {
                bail!("--token-file '{}' is empty", path.display());
            }
            Ok(Some(token.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn read_certificates(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = coordinator::files::read_small(path)
        .with_context(|| format!("cannot read {flag} '{}'", path.display()))?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.with_context(|| format!("{flag} '{}' is not valid PEM", path.display()))?;
        count += 1;
    }
    if count == 0 {
        bail!(
            "{flag} '{}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(pem)
}

fn read_private_key(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = coordinator::files::read_small(path)
        .with_context(|| format!("cannot read {flag} '{}'", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "{flag} '{}' holds no usable PEM private key",
            path.display()
        )
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBAA==\n-----END PRIVATE KEY-----\n";

    fn options(url: &str, dir: &Path) -> ConnectOptions {
        let mut options = ConnectOptions::plain(url);
        options.ca_file = Some(dir.join("ca.pem"));
        options
    }

    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in [
            ("ca.pem", CERT),
            ("client.pem", CERT),
            ("client-key.pem", KEY),
            ("garbage.pem", "hello\n"),
            ("token", "s3cret\n"),
            ("empty", "\n"),
        ] {
            std::fs::write(dir.path().join(name), text).expect("writes");
        }
        dir
    }

    fn refusal(options: &ConnectOptions) -> String {
        format!("{:#}", client_config(options).expect_err("refused"))
    }

    #[test]
    fn https_turns_tls_on_and_http_refuses_tls_files() {
        let dir = dir();
        let mut https = options("https://coordinator:50051", dir.path());
        https.cert_file = Some(dir.path().join("client.pem"));
        https.key_file = Some(dir.path().join("client-key.pem"));
        assert!(client_config(&https).expect("loads").is_some());
        let system_roots = ConnectOptions::plain("https://coordinator:50051");
        assert!(client_config(&system_roots).expect("loads").is_some());
        let plain = ConnectOptions::plain("http://127.0.0.1:50051");
        assert!(client_config(&plain).expect("loads").is_none());
        let message = refusal(&options("http://127.0.0.1:50051", dir.path()));
        assert!(message.contains("need an https://"), "{message}");
    }

    #[test]
    fn bad_files_and_half_an_identity_are_refused_by_name() {
        let dir = dir();
        let garbage = dir.path().join("garbage.pem");
        let mut bad_ca = options("https://c:1", dir.path());
        bad_ca.ca_file = Some(garbage.clone());
        let message = refusal(&bad_ca);
        assert!(
            message.contains("--ca-file") && message.contains(&garbage.display().to_string()),
            "{message}"
        );
        let mut bad_key = options("https://c:1", dir.path());
        bad_key.cert_file = Some(dir.path().join("client.pem"));
        bad_key.key_file = Some(garbage);
        assert!(refusal(&bad_key).contains("--key-file"));
        let mut half = options("https://c:1", dir.path());
        half.cert_file = Some(dir.path().join("client.pem"));
        assert!(refusal(&half).contains("give both or neither"));
        let mut missing = options("https://c:1", dir.path());
        missing.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(refusal(&missing).contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn the_token_comes_from_the_flag_or_a_file_not_both() {
        let dir = dir();
        let mut options = ConnectOptions::plain("http://c:1");
        assert_eq!(token(&options).expect("none"), None);
        options.token_file = Some(dir.path().join("token"));
        assert_eq!(token(&options).expect("read").as_deref(), Some("s3cret"));
        options.token = Some("other".into());
        assert!(format!("{:#}", token(&options).expect_err("both")).contains("not both"));
        options.token = None;
        options.token_file = Some(dir.path().join("empty"));
        assert!(format!("{:#}", token(&options).expect_err("empty")).contains("is empty"));
    }
}
