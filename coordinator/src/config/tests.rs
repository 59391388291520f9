//! The coordinator's configuration: defaults and the example file parse, layers apply in order,
//! every bad value, unknown field and corrupt file is refused naming what was wrong, and secrets
//! are read from files and redacted.

use super::*;

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("coordinator.toml");
    std::fs::write(&path, text).expect("writes config");
    path
}

#[test]
fn defaults_are_valid() {
    let config = Config::load(None, &no_env(), &Overrides::default()).expect("defaults load");
    assert_eq!(config.listen_addr.port(), 50051);
    assert_eq!(config.lease_timeout, Duration::from_secs(60));
    assert_eq!(config.auth_token, None);
}

#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coordinator.toml");
    let config =
        Config::load(Some(&path), &no_env(), &Overrides::default()).expect("example parses");
    assert_eq!(config.lease_timeout, Duration::from_secs(60));
}

#[test]
fn text_parses_like_a_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coordinator.toml");
    let text = std::fs::read_to_string(&path).expect("reads example");
    let from_file =
        Config::load(Some(&path), &no_env(), &Overrides::default()).expect("example parses");
    assert_eq!(
        Config::from_toml_str(&text).expect("text parses"),
        from_file
    );
    for (text, words) in [
        ("listen_addr = \"127.0.0.1:1\"\n", "version"),
        ("version = 2\n", "unsupported version 2"),
        ("version = 1\nlisten_adr = \"x\"\n", "listen_adr"),
        (
            "version = 1\nlease_timeout_secs = 0\n",
            "lease_timeout_secs",
        ),
    ] {
        let message = Config::from_toml_str(text)
            .expect_err("refused")
            .to_string();
        assert!(message.contains(words), "{text:?}: {message}");
    }
}

/// Issue 12 (fuzzing): a key the `config` crate reads as an array index
/// (`['g[167440737095516150 ]']`, found by the `config_toml` fuzz target) panicked with a
/// capacity overflow; keys are now checked against the fields first, in text and in files.
#[test]
fn test_reproduce_12_path_keys_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    for text in [
        "['g[167440737095516150 ]']\n",
        "version = 1\n'listen_addr[100000000]' = 1\n",
        "version = 1\n\"max_attempts.x\" = 1\n",
    ] {
        let message = Config::from_toml_str(text)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("unknown field"), "{text:?}: {message}");
        let path = write(&dir, text);
        let message = Config::load(Some(&path), &no_env(), &Overrides::default())
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("unknown field") && message.contains("coordinator.toml"),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir,
        "version = 1\nlisten_addr = \"127.0.0.1:1\"\nmax_attempts = 5\nlease_timeout_secs = 40\n",
    );
    let env = HashMap::from([
        (
            "COORDINATOR_LISTEN_ADDR".to_string(),
            "127.0.0.1:2".to_string(),
        ),
        ("COORDINATOR_MAX_ATTEMPTS".to_string(), "7".to_string()),
        (
            "COORDINATOR_PORT".to_string(),
            "tcp://10.0.0.1:50051".to_string(),
        ),
    ]);
    let overrides = Overrides {
        listen_addr: Some("127.0.0.1:3".into()),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), &env, &overrides).expect("loads");
    assert_eq!(config.listen_addr.port(), 3);
    assert_eq!(config.max_attempts.get(), 7);
    assert_eq!(config.lease_timeout, Duration::from_secs(40));
}

#[test]
fn corrupt_file_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(&dir, "version = 1\nlisten_addr = [unclosed\n");
    let message = Config::load(Some(&path), &no_env(), &Overrides::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("coordinator.toml"), "{message}");
}

#[test]
fn unknown_field_and_missing_version_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(&dir, "version = 1\nlisten_adr = \"127.0.0.1:1\"\n");
    let message = Config::load(Some(&path), &no_env(), &Overrides::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("listen_adr"), "{message}");
    let path = write(&dir, "listen_addr = \"127.0.0.1:1\"\n");
    let message = Config::load(Some(&path), &no_env(), &Overrides::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("version"), "{message}");
}

#[test]
fn bad_values_name_the_field() {
    let env = HashMap::from([(
        "COORDINATOR_LEASE_TIMEOUT_SECS".to_string(),
        "0".to_string(),
    )]);
    let message = Config::load(None, &env, &Overrides::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("lease_timeout_secs"), "{message}");
    let overrides = Overrides {
        listen_addr: Some("nowhere".into()),
        ..Overrides::default()
    };
    let message = Config::load(None, &no_env(), &overrides)
        .expect_err("refused")
        .to_string();
    assert!(message.contains("listen_addr"), "{message}");
}

#[test]
fn connection_limits_have_defaults_and_ranges() {
    let config = Config::load(None, &no_env(), &Overrides::default()).expect("defaults load");
    assert_eq!(config.connections, ConnectionLimits::default());
    assert!(
        config.connections.max_connections >= 1000 + 64,
        "a fleet of 1,000 agents fits"
    );
    let env = HashMap::from([
        ("COORDINATOR_MAX_CONNECTIONS".to_string(), "50".to_string()),
        (
            "COORDINATOR_CONNECTION_IDLE_TIMEOUT_SECS".to_string(),
            "2".to_string(),
        ),
    ]);
    let config = Config::load(None, &env, &Overrides::default()).expect("loads");
    assert_eq!(config.connections.max_connections, 50);
    assert_eq!(config.connections.idle_timeout, Duration::from_secs(2));
    for (field, value) in [
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONCURRENT_STREAMS_PER_CONNECTION", "70000"),
        ("HTTP2_KEEPALIVE_INTERVAL_SECS", "0"),
        ("HTTP2_KEEPALIVE_TIMEOUT_SECS", "601"),
        ("TCP_KEEPALIVE_SECS", "0"),
        ("CONNECTION_IDLE_TIMEOUT_SECS", "3601"),
    ] {
        let env = HashMap::from([(format!("COORDINATOR_{field}"), value.to_string())]);
        let message = Config::load(None, &env, &Overrides::default())
            .expect_err("out of range")
            .to_string();
        assert!(
            message.contains(&field.to_ascii_lowercase()) && message.contains("between"),
            "{message}"
        );
    }
}

#[test]
fn every_value_has_a_range_named_in_the_error() {
    let cases = [
        (
            "LEASE_CHECK_INTERVAL_SECS",
            "100000000000",
            "lease_check_interval_secs",
            "1..=60",
        ),
        (
            "LEASE_TIMEOUT_SECS",
            "86401",
            "lease_timeout_secs",
            "1..=86400",
        ),
        (
            "HEARTBEAT_INTERVAL_SECS",
            "0",
            "heartbeat_interval_secs",
            "1..=86400",
        ),
        (
            "AGENT_TIMEOUT_SECS",
            "604801",
            "agent_timeout_secs",
            "1..=604800",
        ),
        (
            "SUGGEST_TIMEOUT_SECS",
            "0",
            "suggest_timeout_secs",
            "1..=86400",
        ),
        ("MAX_ATTEMPTS", "101", "max_attempts", "1..=100"),
        ("MAX_ATTEMPTS", "0", "max_attempts", "1..=100"),
        (
            "DEFAULT_INITIAL_TRIALS",
            "10001",
            "default_initial_trials",
            "1..=10000",
        ),
    ];
    for (variable, value, field, range) in cases {
        let env = HashMap::from([(format!("COORDINATOR_{variable}"), value.to_string())]);
        let message = Config::load(None, &env, &Overrides::default())
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains(field) && message.contains(range),
            "{variable}={value}: {message}"
        );
    }
    let env = HashMap::from([
        (
            "COORDINATOR_LEASE_TIMEOUT_SECS".to_string(),
            "86400".to_string(),
        ),
        (
            "COORDINATOR_LEASE_CHECK_INTERVAL_SECS".to_string(),
            "86400".to_string(),
        ),
        ("COORDINATOR_MAX_ATTEMPTS".to_string(), "100".to_string()),
    ]);
    Config::load(None, &env, &Overrides::default()).expect("the upper ends are allowed");
}

#[test]
fn token_file_is_read_and_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "s3cret\n").expect("writes token");
    let overrides = Overrides {
        auth_token_file: Some(token_path),
        ..Overrides::default()
    };
    let config = Config::load(None, &no_env(), &overrides).expect("loads");
    assert_eq!(config.auth_token.as_deref(), Some("s3cret"));
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn tls_files_come_from_the_file_and_the_environment_and_are_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir,
        "version = 1\ntls_cert_file = \"/pki/coordinator.pem\"\ntls_key_file = \"/pki/coordinator-key.pem\"\n",
    );
    let config = Config::load(Some(&path), &no_env(), &Overrides::default()).expect("loads");
    let tls = config.tls.clone().expect("tls configured");
    assert_eq!(tls.cert_file, PathBuf::from("/pki/coordinator.pem"));
    assert_eq!(tls.client_ca_file, None);
    let env = HashMap::from([(
        "COORDINATOR_TLS_CLIENT_CA_FILE".to_string(),
        "/pki/ca.pem".to_string(),
    )]);
    let config = Config::load(Some(&path), &env, &Overrides::default()).expect("loads");
    assert!(config.tls.as_ref().is_some_and(TlsFiles::mutual));
    let printed = format!("{config:?}");
    for file in [
        "/pki/coordinator.pem",
        "/pki/coordinator-key.pem",
        "/pki/ca.pem",
    ] {
        assert!(printed.contains(file), "{printed}");
    }
    let plain = Config::load(None, &no_env(), &Overrides::default()).expect("defaults");
    assert_eq!(plain.tls, None);
}

#[test]
fn tls_needs_both_the_certificate_and_the_key() {
    let cases = [
        ("TLS_CERT_FILE", "/pki/c.pem", "tls_key_file is not"),
        ("TLS_KEY_FILE", "/pki/k.pem", "tls_cert_file is not"),
        ("TLS_CLIENT_CA_FILE", "/pki/ca.pem", "needs tls_cert_file"),
    ];
    for (variable, value, words) in cases {
        let env = HashMap::from([(format!("COORDINATOR_{variable}"), value.to_string())]);
        let message = Config::load(None, &env, &Overrides::default())
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains(words) && message.contains(value),
            "{message}"
        );
    }
}

/// A token file path such as `/dev/zero` made the reader allocate without end (found by the
/// `config_toml` fuzz target): small files are read with a bound.
#[test]
fn an_endless_token_file_is_refused_not_read() {
    let text = "version = 1\nauth_token_file = \"/dev/zero\"";
    let err = Config::from_toml_str(text).expect_err("an endless file");
    let message = crate::display_chain(&err);
    assert!(
        message.contains("/dev/zero") && message.contains("1048576"),
        "{message}"
    );
}
