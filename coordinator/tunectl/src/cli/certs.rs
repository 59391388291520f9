//! `tunectl certs`: makes a private CA and the certificates a TLS cluster needs, in pure Rust
//! (rcgen), so no `openssl` command is required.
//!
//! Into `--out DIR` it writes `ca.pem` and `ca-key.pem` (the CA), `coordinator.pem` and
//! `coordinator-key.pem` (the coordinator's certificate for each `--host`, by default
//! `localhost` and `127.0.0.1`), and for each `--client NAME` a client certificate `NAME.pem`
//! and `NAME-key.pem` for mutual TLS. Keys are ECDSA P-256, written with mode 0600. Existing
//! files are left alone, and nothing is written, unless `--force` is given. The CA may sign
//! only end-entity certificates (path length 0); keep `ca-key.pem` off the cluster's machines.
//!
//! ```no_run
//! let options = tunectl::cli::certs::CertsOptions {
//!     out: "pki".into(),
//!     hosts: vec!["coordinator.internal".into()],
//!     clients: vec!["agent".into(), "tunectl".into()],
//!     days: 365,
//!     force: false,
//! };
//! tunectl::cli::certs::run(&options, &mut std::io::stdout()).expect("writes the files");
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The names the coordinator's certificate carries when no `--host` is given.
pub const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// File stems `--client` may not take, since the CA and the coordinator use them.
const RESERVED_NAMES: [&str; 4] = ["ca", "ca-key", "coordinator", "coordinator-key"];

/// Options of `tunectl certs`.
#[derive(clap::Args, Debug, Clone)]
pub struct CertsOptions {
    /// Directory to write the PEM files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A DNS name or IP address the coordinator is reached at; repeat for several (default:
    /// localhost and 127.0.0.1).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Also make a client certificate NAME.pem and NAME-key.pem, for mutual TLS; repeatable.
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Days the certificates are valid, from today.
    #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// One file to write.
#[derive(Debug)]
struct PemFile {
    name: String,
    contents: String,
    private: bool,
    what: String,
}

/// Makes the CA and certificates and writes them into `options.out`, listing each file on
/// `out`.
///
/// # Errors
/// When a host or client name is invalid, a file exists (without `--force`), or a file cannot
/// be written. Nothing is written when the names are invalid or a file exists.
pub fn run(options: &CertsOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let files = make(options)?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create --out '{}'", options.out.display()))?;
    let paths: Vec<PathBuf> = files.iter().map(|f| options.out.join(&f.name)).collect();
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| format!("'{}'", p.display()))
        .collect();
    if !existing.is_empty() && !options.force {
        bail!(
            "refusing to overwrite {} (give --force to replace them)",
            existing.join(", ")
        );
    }
    for (file, path) in files.iter().zip(&paths) {
        write_file(path, &file.contents, file.private)?;
        writeln!(out, "wrote {} ({})", path.display(), file.what)?;
    }
    Ok(())
}

/// The CA, the coordinator's certificate and the client certificates, as PEM files.
fn make(options: &CertsOptions) -> anyhow::Result<Vec<PemFile>> {
    let hosts: Vec<String> = if options.hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| (*h).to_string()).collect()
    } else {
        options.hosts.clone()
    };
    check_client_names(&options.clients)?;
    let (not_before, not_after) = validity(options.days)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tunefleet private CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)
        .context("cannot make the CA certificate")?;
    let mut files = vec![
        pem_file(
            "ca.pem",
            ca.pem(),
            "CA certificate: tls_ca_file, tls_client_ca_file, --ca-file",
        ),
        secret("ca-key.pem", ca_key_pem, "CA key: keep it off the cluster"),
    ];
    let server = server_params(&hosts, not_before, not_after)?;
    files.extend(leaf(
        "coordinator",
        server,
        &ca,
        "the coordinator's: tls_cert_file",
    )?);
    for name in &options.clients {
        let client = client_params(name, not_before, not_after);
        files.extend(leaf(name, client, &ca, "a client's, for mutual TLS")?);
    }
    Ok(files)
}

fn pem_file(name: &str, contents: String, what: &str) -> PemFile {
    PemFile {
        name: name.to_string(),
        contents,
        private: false,
        what: what.to_string(),
    }
}

fn secret(name: &str, contents: String, what: &str) -> PemFile {
    PemFile {
        private: true,
        ..pem_file(name, contents, what)
    }
}

/// `NAME.pem` and `NAME-key.pem`: a fresh key and its certificate, signed by `ca`.
fn leaf(
    name: &str,
    params: CertificateParams,
    ca: &CertifiedIssuer<'_, KeyPair>,
    what: &str,
) -> anyhow::Result<[PemFile; 2]> {
    let key = KeyPair::generate().with_context(|| format!("cannot generate the key of {name}"))?;
    let cert = params
        .signed_by(&key, ca)
        .with_context(|| format!("cannot sign the certificate of {name}"))?;
    Ok([
        pem_file(
            &format!("{name}.pem"),
            cert.pem(),
            &format!("certificate, {what}"),
        ),
        secret(
            &format!("{name}-key.pem"),
            key.serialize_pem(),
            &format!("key, {what}"),
        ),
    ])
}

/// The coordinator's certificate: every host as a DNS or IP subject alternative name.
fn server_params(
    hosts: &[String],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> anyhow::Result<CertificateParams> {
    for host in hosts {
        if host.trim().is_empty() || host.contains(char::is_whitespace) {
            bail!("--host '{host}' is not a DNS name or IP address");
        }
    }
    let mut params = CertificateParams::new(hosts.to_vec())
        .context("a --host is not a DNS name or IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "tunefleet coordinator");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// A client certificate: the name as its common name, for client authentication only.
fn client_params(
    name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// Client names become file names: letters, digits, `.`, `_` and `-`, unique, not one of the
/// CA's or the coordinator's.
fn check_client_names(names: &[String]) -> anyhow::Result<()> {
    for (index, name) in names.iter().enumerate() {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !starts_well || !name.chars().all(allowed) {
            bail!(
                "--client '{name}' must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
            );
        }
        if RESERVED_NAMES.contains(&name.as_str()) || name.ends_with("-key") {
            bail!("--client '{name}' would overwrite another file: choose another name");
        }
        if names[..index].contains(name) {
            bail!("--client '{name}' is given twice");
        }
    }
    Ok(())
}

/// From yesterday (a little clock skew between machines) to `days` from now.
fn validity(days: u32) -> anyhow::Result<(time::OffsetDateTime, time::OffsetDateTime)> {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let now = i64::try_from(now_secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .context("the system clock is out of range")?;
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(i64::from(days));
    Ok((not_before, not_after))
}

/// Writes `contents` to `path`, replacing a file there; mode 0600 for a private key.
fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    // A replaced file is removed first, so a new key never inherits a looser mode.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace '{}'", path.display())),
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = open
        .open(path)
        .with_context(|| format!("cannot create '{}'", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write '{}'", path.display()))
}

#[cfg(test)]
mod tests {
    use rcgen::SanType;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    fn options(out: &Path, clients: &[&str]) -> CertsOptions {
        CertsOptions {
            out: out.to_path_buf(),
            hosts: Vec::new(),
            clients: clients.iter().map(|c| (*c).to_string()).collect(),
            days: 30,
            force: false,
        }
    }

    fn run_quietly(options: &CertsOptions) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run(options, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn writes_the_ca_the_coordinator_and_each_client_as_pem() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("pki");
        let listing = run_quietly(&options(&out, &["agent-1", "tunectl"])).expect("writes");
        for stem in ["ca", "coordinator", "agent-1", "tunectl"] {
            let cert = std::fs::read(out.join(format!("{stem}.pem"))).expect("a certificate");
            assert_eq!(
                CertificateDer::pem_slice_iter(&cert).count(),
                1,
                "{stem}.pem"
            );
            let key_path = out.join(format!("{stem}-key.pem"));
            let key = std::fs::read(&key_path).expect("a key");
            PrivateKeyDer::from_pem_slice(&key).expect("a private key");
            assert!(
                listing.contains(&key_path.display().to_string()),
                "{listing}"
            );
            #[cfg(unix)]
            {
                assert_eq!(mode(&key_path), 0o600, "{stem}-key.pem");
                assert_eq!(mode(&out.join(format!("{stem}.pem"))), 0o644, "{stem}.pem");
            }
        }
        assert_eq!(std::fs::read_dir(&out).expect("lists").count(), 8);
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = options(dir.path(), &[]);
        run_quietly(&options).expect("first run");
        let first_ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
        let message = format!("{:#}", run_quietly(&options).expect_err("refused"));
        assert!(
            message.contains("refusing to overwrite") && message.contains("ca.pem"),
            "{message}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("ca.pem")).expect("ca"),
            first_ca
        );
        let forced = CertsOptions {
            force: true,
            ..options
        };
        run_quietly(&forced).expect("forced");
        assert_ne!(
            std::fs::read(dir.path().join("ca.pem")).expect("ca"),
            first_ca
        );
        #[cfg(unix)]
        assert_eq!(mode(&dir.path().join("ca-key.pem")), 0o600);
    }

    #[test]
    fn the_coordinator_certificate_names_its_hosts() {
        let (not_before, not_after) = validity(1).expect("a clock");
        assert!(not_before < not_after);
        let defaults: Vec<String> = DEFAULT_HOSTS.iter().map(|h| (*h).to_string()).collect();
        let params = server_params(&defaults, not_before, not_after).expect("params");
        let localhost = SanType::DnsName("localhost".try_into().expect("ia5"));
        let loopback = SanType::IpAddress("127.0.0.1".parse().expect("ip"));
        assert_eq!(params.subject_alt_names, vec![localhost, loopback]);
        assert_eq!(
            params.extended_key_usages,
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        );
        let bad = server_params(&["two words".to_string()], not_before, not_after);
        assert!(format!("{:#}", bad.expect_err("refused")).contains("two words"));
    }

    #[test]
    fn bad_client_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("pki");
        for name in [
            "../escape",
            "ca",
            "coordinator",
            "x-key",
            "",
            "-dash",
            "a b",
        ] {
            let refused = run_quietly(&options(&out, &[name]));
            assert!(refused.is_err(), "--client '{name}' was accepted");
        }
        let twice = run_quietly(&options(&out, &["agent", "agent"]));
        assert!(format!("{:#}", twice.expect_err("refused")).contains("twice"));
        assert!(!out.exists(), "nothing is written");
    }
}
