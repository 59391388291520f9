//! The agent's configuration: defaults and the example file, the file, environment and flag
//! layers in order, bad values and unknown fields refused by name, TLS and token sources.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_a_valid_cpu_agent() {
    let cfg = load(None, &HashMap::new(), &CliOverrides::default()).expect("defaults load");
    assert_eq!(cfg.device, Device::Cpu);
    assert_eq!(cfg.slots.get(), 1);
    assert_eq!(cfg.timing.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(cfg.timing.lease_wait, Duration::from_secs(5));
    assert_eq!(cfg.pricing.trial_cost_dollars(3600.0), 0.0);
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../examples/agent.toml");
    let cfg = from_toml_str(text).expect("examples/agent.toml parses");
    assert_eq!(cfg.pricing.instance_type, "p2.xlarge");
    assert_eq!(cfg.device, Device::Cuda(0));
    assert!(cfg.auth_token.is_none());
    assert_eq!(cfg.timing.lease_wait, Duration::from_secs(5));
}

#[test]
fn layers_apply_in_order_file_env_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    let toml = "version = 1\nslots = 2\ninstance_type = \"g5.xlarge\"\nmetrics_listen_addr = \"127.0.0.1:1\"\n";
    std::fs::write(&path, toml).expect("write config");
    let vars = env(&[
        ("AGENT_SLOTS", "3"),
        ("AGENT_AUTH_TOKEN", "s3cret"),
        ("OTHER_SLOTS", "9"),
    ]);
    let from_env = load(Some(&path), &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(from_env.slots.get(), 3, "env beats file");
    assert_eq!(
        from_env.pricing.instance_type, "g5.xlarge",
        "file beats defaults"
    );
    assert!(!from_env.redacted_summary().contains("s3cret"));
    let cli = CliOverrides {
        slots: Some(4),
        gpu: Some(1),
        ..CliOverrides::default()
    };
    let from_cli = load(Some(&path), &vars, &cli).expect("loads");
    assert_eq!(from_cli.slots.get(), 4, "cli beats env");
    assert_eq!(from_cli.device, Device::Cuda(1));
    assert_eq!(from_cli.pricing.slots, 4);
}

#[test]
fn cpu_threads_come_from_the_file_the_environment_or_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "version = 1\ncpu_threads = 2\n").expect("writes");
    let none = HashMap::new();
    let from_file = load(Some(&path), &none, &CliOverrides::default()).expect("loads");
    assert_eq!(from_file.cpu_threads, Some(2));
    let vars = env(&[("AGENT_CPU_THREADS", "3")]);
    let from_env = load(Some(&path), &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(from_env.cpu_threads, Some(3), "env beats file");
    let cli = CliOverrides {
        cpu_threads: Some(4),
        ..CliOverrides::default()
    };
    assert_eq!(
        load(Some(&path), &vars, &cli).expect("loads").cpu_threads,
        Some(4),
        "the flag beats env"
    );
    let zero = CliOverrides {
        cpu_threads: Some(0),
        ..CliOverrides::default()
    };
    let error = load(None, &none, &zero).expect_err("0 threads refused");
    assert!(error.to_string().contains("cpu_threads"), "{error}");
}

#[test]
fn cpu_flag_overrides_a_cuda_file() {
    let vars = env(&[("AGENT_BACKEND", "cuda")]);
    let cli = CliOverrides {
        cpu: true,
        ..CliOverrides::default()
    };
    assert_eq!(load(None, &vars, &cli).expect("loads").device, Device::Cpu);
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        ("version = 2", "version"),
        ("slots = 0", "slots"),
        ("backend = \"tpu\"", "backend"),
        ("heartbeat_interval_secs = -1.0", "heartbeat_interval_secs"),
        ("lease_wait_secs = -1.0", "lease_wait_secs"),
        ("lease_wait_secs = nan", "lease_wait_secs"),
        ("coordinator_url = \"localhost:1\"", "coordinator_url"),
        ("metrics_listen_addr = \"nowhere\"", "metrics_listen_addr"),
        ("instance_type = \"z1.nope\"", "z1.nope"),
    ];
    for (text, field) in cases {
        let err = from_toml_str(text).expect_err(text);
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
}

/// A typo of millions of slots spawned threads until the system refused one; a price of 1e300
/// made every completion's cost one the coordinator refuses; a megabyte instance type is
/// refused at registration. Each is refused here, naming the field and its range.
#[test]
fn slots_threads_prices_and_names_past_their_bounds_are_refused() {
    let long_name = format!(
        "instance_type = \"{}\"\nprice_per_hour_dollars = 1.0",
        "x".repeat(257)
    );
    let cases = [
        (
            "slots = 1025".to_string(),
            "slots must be from 1 to 1024, got 1025",
        ),
        (
            "slots = 4294967295".to_string(),
            "slots must be from 1 to 1024",
        ),
        (
            "cpu_threads = 0".to_string(),
            "cpu_threads must be from 1 to 1024, got 0",
        ),
        (
            "cpu_threads = 100000000".to_string(),
            "cpu_threads must be from 1 to 1024",
        ),
        (
            "price_per_hour_dollars = 1e300".to_string(),
            "price_per_hour_dollars must be a finite number from 0 to 10000",
        ),
        (
            "price_per_hour_dollars = -1.0".to_string(),
            "price_per_hour_dollars",
        ),
        (
            long_name,
            "instance_type must be at most 256 bytes, got 257",
        ),
    ];
    for (text, words) in cases {
        let err = from_toml_str(&text).expect_err(&text).to_string();
        assert!(err.contains(words), "{text}: {err}");
    }
    let at_bounds = "slots = 1024\ncpu_threads = 1024\nprice_per_hour_dollars = 10000.0";
    let cfg = from_toml_str(at_bounds).expect("the bounds are allowed");
    assert_eq!(cfg.slots.get(), 1024);
    assert_eq!(cfg.cpu_threads, Some(1024));
    // At the highest price, a trial of a year costs the most a completion may report.
    let year = 365.0 * 86_400.0;
    let cost = cfg.pricing.trial_cost_dollars(year);
    assert!(
        cost.is_finite() && cost <= crate::cost::MAX_TRIAL_COST_DOLLARS,
        "{cost}"
    );
}

#[test]
fn a_zero_lease_wait_disables_the_long_poll() {
    let cfg = from_toml_str("lease_wait_secs = 0").expect("an integer 0 parses");
    assert_eq!(cfg.timing.lease_wait, Duration::ZERO);
    let vars = env(&[("AGENT_LEASE_WAIT_SECS", "2.5")]);
    let cfg = load(None, &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(cfg.timing.lease_wait, Duration::from_millis(2500));
}

/// Issue 12 (fuzzing): `retry_max_backoff_secs=1e30`, found by the `config_toml` fuzz target,
/// panicked in `Duration::from_secs_f64`; every timing field now has a range.
#[test]
fn test_reproduce_12_huge_timings_are_refused_not_a_panic() {
    assert!(from_toml_str("retry_max_backoff_secs=1e30\n").is_err());
    let fields = [
        "heartbeat_interval_secs",
        "request_timeout_secs",
        "connect_timeout_secs",
        "retry_initial_backoff_secs",
        "retry_max_backoff_secs",
        "idle_poll_max_secs",
        "lease_wait_secs",
        "shutdown_grace_secs",
    ];
    for field in fields {
        for value in ["1e30", "1.7976931348623157e308", "86400.5"] {
            let text = format!("{field} = {value}");
            let err = from_toml_str(&text).expect_err(&text).to_string();
            assert!(
                err.contains(field) && err.contains("86400"),
                "{text}: {err}"
            );
        }
    }
    let day = "retry_max_backoff_secs = 86400.0\nshutdown_grace_secs = 86400";
    let cfg = from_toml_str(day).expect("a day is allowed");
    assert_eq!(cfg.timing.retry_max_backoff, Duration::from_secs(86_400));
}

/// Issue 12 (fuzzing): a key the `config` crate reads as an array index
/// (`['g[167440737095516150 ]']`, found by the `config_toml` fuzz target) panicked with a
/// capacity overflow; such keys are refused in text, files and the environment.
#[test]
fn test_reproduce_12_path_keys_are_refused_not_a_panic() {
    for text in [
        "['g[167440737095516150 ]']\n",
        "'slots[100000000]' = 1\n",
        "\"slots.x\" = 1\n",
    ] {
        let err = from_toml_str(text).expect_err(text).to_string();
        assert!(err.contains("names no config field"), "{text:?}: {err}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "['g[167440737095516150 ]']\n").expect("writes");
    let err = load(Some(&path), &HashMap::new(), &CliOverrides::default())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("names no config field"), "{err}");
    let vars = env(&[("AGENT_SLOTS[100000000]", "1")]);
    let err = load(None, &vars, &CliOverrides::default())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("AGENT_SLOTS[100000000]"), "{err}");
}

#[test]
fn an_https_url_turns_tls_on_with_the_files_given() {
    let cfg = from_toml_str(
        "coordinator_url = \"https://coordinator.internal:50051\"\ntls_ca_file = \"/pki/ca.pem\"\n\
         tls_cert_file = \"/pki/agent.pem\"\ntls_key_file = \"/pki/agent-key.pem\"\n",
    )
    .expect("loads");
    let tls = cfg.tls.clone().expect("tls is on");
    assert_eq!(tls.ca_file, Some(PathBuf::from("/pki/ca.pem")));
    assert_eq!(tls.key_file, Some(PathBuf::from("/pki/agent-key.pem")));
    assert!(cfg.redacted_summary().contains("/pki/agent.pem"));
    let vars = env(&[
        ("AGENT_COORDINATOR_URL", "https://10.0.0.5:50051"),
        ("AGENT_TLS_DOMAIN", "coordinator.internal"),
    ]);
    let cfg = load(None, &vars, &CliOverrides::default()).expect("loads");
    let tls = cfg.tls.expect("tls is on");
    assert_eq!(tls.ca_file, None, "the system roots");
    assert_eq!(tls.domain.as_deref(), Some("coordinator.internal"));
    let plain = from_toml_str("coordinator_url = \"http://127.0.0.1:1\"").expect("loads");
    assert!(plain.tls.is_none());
}

#[test]
fn tls_fields_without_https_or_half_an_identity_are_refused() {
    let cases = [
        ("tls_ca_file = \"/pki/ca.pem\"", "is http://"),
        (
            "coordinator_url = \"https://c:1\"\ntls_cert_file = \"/pki/a.pem\"",
            "both or neither",
        ),
        (
            "coordinator_url = \"https://c:1\"\ntls_key_file = \"/pki/a-key.pem\"",
            "both or neither",
        ),
    ];
    for (text, words) in cases {
        let err = from_toml_str(text).expect_err(text).to_string();
        assert!(err.contains(words), "{text}: {err}");
    }
}

#[test]
fn the_token_comes_from_a_file_or_the_environment_not_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cret\n").expect("write token");
    let vars = env(&[("AGENT_AUTH_TOKEN_FILE", path.to_str().expect("utf-8 path"))]);
    let cfg = load(None, &vars, &CliOverrides::default()).expect("loads");
    assert_eq!(cfg.auth_token.as_deref(), Some("s3cret"));
    assert!(!cfg.redacted_summary().contains("s3cret"));
    let both = env(&[
        ("AGENT_AUTH_TOKEN_FILE", path.to_str().expect("utf-8 path")),
        ("AGENT_AUTH_TOKEN", "other"),
    ]);
    let err = load(None, &both, &CliOverrides::default()).expect_err("both");
    assert!(err.to_string().contains("not both"), "{err}");
    std::fs::write(&path, "\n").expect("write token");
    let err = load(None, &vars, &CliOverrides::default()).expect_err("empty");
    assert!(err.to_string().contains("is empty"), "{err}");
    let missing = env(&[("AGENT_AUTH_TOKEN_FILE", "/nonexistent/token")]);
    let err = load(None, &missing, &CliOverrides::default()).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/token"), "{err}");
}

#[test]
fn unknown_fields_are_refused() {
    assert!(from_toml_str("slotz = 2").is_err());
    let vars = env(&[("AGENT_SLOTZ", "2")]);
    assert!(load(None, &vars, &CliOverrides::default()).is_err());
}

/// A token file path such as `/dev/zero` made the reader allocate without end (found by the
/// `config_toml` fuzz target): small files are read with a bound.
#[test]
fn an_endless_token_file_is_refused_not_read() {
    let text = "auth_token_file = \"/dev/zero\"";
    let err = from_toml_str(text).expect_err("an endless file");
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        message.contains("/dev/zero") && message.contains("1048576"),
        "{message}"
    );
}
