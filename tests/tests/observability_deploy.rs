//! Static checks of `deploy/` (issue 7): the dashboards and alert rules use only metrics the
//! daemons define; the Kubernetes manifests, systemd units and Dockerfile name the images,
//! ports, paths and configs that the daemons and `deploy/config/` use. No daemon runs here;
//! `observability_prometheus` checks the same files against live daemons.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use integration_tests::prometheus::queries::{
    self, base_metric_name, dashboard_files, deploy_dir, load_dashboard, load_rules, metric_names,
    read_text, repo_root,
};
use serde_yaml::Value;

/// The metric names defined in each daemon's `metrics.rs`, checked by source text: the full
/// name, or the part after `tunefleet_<daemon>_` as a string literal (the `prometheus` crate
/// joins namespace, subsystem and name).
fn metric_is_defined(name: &str) -> Result<bool> {
    let (daemon, short) = if let Some(short) = name.strip_prefix("tunefleet_coordinator_") {
        ("coordinator", short)
    } else if let Some(short) = name.strip_prefix("tunefleet_agent_") {
        ("agent", short)
    } else {
        return Ok(false);
    };
    let source = read_text(&repo_root().join(daemon).join("src/metrics.rs"))?;
    Ok(source.contains(&format!("\"{name}\"")) || source.contains(&format!("\"{short}\"")))
}

/// Every PromQL expression in `deploy/`: (where, expression).
fn every_expression() -> Result<Vec<(String, String)>> {
    let mut all = Vec::new();
    for path in dashboard_files()? {
        for query in load_dashboard(&path)?.queries {
            all.push((
                format!("{} / {} / {}", query.dashboard, query.panel, query.ref_id),
                query.expr,
            ));
        }
    }
    for rule in load_rules(&deploy_dir().join("prometheus/rules.yml"))? {
        all.push((format!("rules.yml / {}", rule.name), rule.expr));
    }
    Ok(all)
}

#[test]
fn dashboards_and_rules_use_only_metrics_defined_in_code() -> Result<()> {
    // The check can fail: a name no metrics.rs defines is reported.
    assert!(!metric_is_defined("tunefleet_agent_no_such_metric_total")?);
    let expressions = every_expression()?;
    assert!(
        expressions.len() >= 20,
        "expected the dashboards and rules to hold many queries"
    );
    let mut undefined = Vec::new();
    for (place, expr) in &expressions {
        for name in metric_names(expr) {
            if !metric_is_defined(base_metric_name(&name))? {
                undefined.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        undefined.is_empty(),
        "metrics used in deploy/ but not defined in a metrics.rs:\n{}",
        undefined.join("\n")
    );
    Ok(())
}

#[test]
fn dashboards_are_well_formed() -> Result<()> {
    let files = dashboard_files()?;
    let names: BTreeSet<_> = files
        .iter()
        .filter_map(|path| path.file_name()?.to_str())
        .collect();
    assert!(
        names.contains("cluster-overview.json") && names.contains("experiment.json"),
        "{names:?}"
    );
    let mut uids = BTreeSet::new();
    for path in &files {
        let dashboard = load_dashboard(path)?;
        assert!(
            uids.insert(dashboard.uid.clone()),
            "{}: duplicate or empty uid",
            dashboard.file
        );
        let ids: BTreeSet<_> = dashboard.panel_ids.iter().collect();
        assert_eq!(
            ids.len(),
            dashboard.panel_ids.len(),
            "{}: panel ids repeat",
            dashboard.file
        );
        // Every variable an expression uses is defined (or is one of Grafana's own).
        let mut values: BTreeMap<String, String> = dashboard
            .variables
            .iter()
            .map(|name| (name.clone(), "x".to_string()))
            .collect();
        for builtin in ["__rate_interval", "__interval", "__range"] {
            values.insert(builtin.to_string(), "1m".to_string());
        }
        for query in &dashboard.queries {
            queries::substitute(&query.expr, &values)
                .with_context(|| format!("{}: {}", query.dashboard, query.panel))?;
        }
        // Panels pick their Prometheus through the `datasource` variable.
        let json: serde_json::Value = serde_json::from_str(&read_text(path)?)?;
        for panel in json["panels"].as_array().into_iter().flatten() {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}: {}",
                dashboard.file, panel["title"]
            );
        }
    }
    Ok(())
}

/// The experiment dashboard picks experiments by name: its variable lists the names of
/// `experiment_info`, and every per-experiment series is joined with it on the id (so its
/// legend can show the name). The overview's trials by status are the gauge of trials now,
/// not sums of transition counters.
#[test]
fn experiments_are_picked_by_name_and_trials_by_status_are_current() -> Result<()> {
    let experiment = load_dashboard(&deploy_dir().join("grafana/dashboards/experiment.json"))?;
    let variable = experiment
        .query_variables
        .iter()
        .find(|variable| variable.name == "name")
        .context("experiment.json has no $name variable")?;
    assert_eq!(
        queries::parse_label_values(&variable.query),
        Some((
            "tunefleet_coordinator_experiment_info".to_string(),
            "name".to_string()
        ))
    );
    let join =
        r#"* on(experiment) group_left(name) tunefleet_coordinator_experiment_info{name=~"$name"}"#;
    let mut per_experiment = 0;
    for query in &experiment.queries {
        let names = metric_names(&query.expr);
        let uses_per_experiment = names.iter().any(|name| {
            name.starts_with("tunefleet_coordinator_experiment_")
                || name == "tunefleet_coordinator_best_objective"
        });
        if uses_per_experiment {
            per_experiment += 1;
            assert!(
                query.expr.contains(join),
                "{}: `{}` is not joined with experiment_info by name",
                query.panel,
                query.expr
            );
        }
        assert!(
            !query.expr.contains("$experiment"),
            "{}: `{}` still picks by id",
            query.panel,
            query.expr
        );
    }
    assert!(
        per_experiment >= 8,
        "only {per_experiment} per-experiment queries"
    );

    let overview = load_dashboard(&deploy_dir().join("grafana/dashboards/cluster-overview.json"))?;
    let now: Vec<_> = overview
        .queries
        .iter()
        .filter(|query| query.panel == "Trials by status (now)")
        .collect();
    assert_eq!(now.len(), 1, "no 'Trials by status (now)' panel");
    assert_eq!(
        metric_names(&now[0].expr),
        BTreeSet::from(["tunefleet_coordinator_trials".to_string()]),
        "{}",
        now[0].expr
    );
    Ok(())
}

/// The port of an `addr:port` string.
fn port_of(addr: &str) -> u16 {
    let port = addr
        .rsplit_once(':')
        .map(|(_, port)| port)
        .unwrap_or_default();
    port.parse()
        .unwrap_or_else(|_| panic!("'{addr}' has no port"))
}

fn load_toml(path: &Path) -> Result<toml::Table> {
    read_text(path)?
        .parse::<toml::Table>()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

fn toml_str<'a>(table: &'a toml::Table, key: &str) -> &'a str {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("missing string field {key}"))
}

/// Ports and paths of `deploy/config/`.
struct DeployConfig {
    grpc_port: u16,
    coordinator_metrics_port: u16,
    data_dir: String,
    agent_metrics_port: u16,
}

fn deploy_config() -> Result<DeployConfig> {
    let coordinator = load_toml(&deploy_dir().join("config/coordinator.toml"))?;
    let agent = load_toml(&deploy_dir().join("config/agent.toml"))?;
    Ok(DeployConfig {
        grpc_port: port_of(toml_str(&coordinator, "listen_addr")),
        coordinator_metrics_port: port_of(toml_str(&coordinator, "metrics_listen_addr")),
        data_dir: toml_str(&coordinator, "data_dir").to_string(),
        agent_metrics_port: port_of(toml_str(&agent, "metrics_listen_addr")),
    })
}

#[test]
fn deploy_configs_use_the_daemons_default_ports() -> Result<()> {
    let deploy = deploy_config()?;
    // The daemons' own example configs document their defaults (and their unit tests parse them).
    let agent_example = load_toml(&repo_root().join("agent/examples/agent.toml"))?;
    assert_eq!(
        deploy.agent_metrics_port,
        port_of(toml_str(&agent_example, "metrics_listen_addr"))
    );
    let coordinator_example_path = repo_root().join("coordinator/examples/coordinator.toml");
    if coordinator_example_path.exists() {
        let example = load_toml(&coordinator_example_path)?;
        for key in ["listen_addr", "metrics_listen_addr"] {
            if let Some(addr) = example.get(key).and_then(toml::Value::as_str) {
                assert_eq!(
                    port_of(toml_str(
                        &load_toml(&deploy_dir().join("config/coordinator.toml"))?,
                        key
                    )),
                    port_of(addr),
                    "{key}"
                );
            }
        }
    }
    Ok(())
}

/// Every document of a multi-document YAML file.
fn yaml_documents(path: &Path) -> Result<Vec<Value>> {
    let text = read_text(path)?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = <Value as serde::Deserialize>::deserialize(document)
            .with_context(|| format!("{} is not valid YAML", path.display()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn k8s_object(file: &str, kind: &str) -> Result<Value> {
    let documents = yaml_documents(&deploy_dir().join("k8s").join(file))?;
    documents
        .into_iter()
        .find(|document| document["kind"] == kind)
        .with_context(|| format!("deploy/k8s/{file} has no {kind}"))
}

/// The `containerPort` of the named port of the pod template's first container.
fn container_port(workload: &Value, name: &str) -> u16 {
    let ports = workload["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .expect("ports");
    let port = ports
        .iter()
        .find(|port| port["name"] == name)
        .unwrap_or_else(|| panic!("no port named {name}"));
    u16::try_from(port["containerPort"].as_u64().expect("containerPort")).expect("a port fits u16")
}

fn service_port(service: &Value, name: &str) -> u16 {
    let ports = service["spec"]["ports"]
        .as_sequence()
        .expect("service ports");
    let port = ports
        .iter()
        .find(|port| port["name"] == name)
        .unwrap_or_else(|| panic!("no service port {name}"));
    u16::try_from(port["port"].as_u64().expect("port")).expect("a port fits u16")
}

fn scrape_port_annotation(workload: &Value) -> u16 {
    let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    annotations["prometheus.io/port"]
        .as_str()
        .expect("prometheus.io/port")
        .parse()
        .expect("numeric port")
}

fn workspace_version() -> Result<String> {
    let manifest = load_toml(&repo_root().join("Cargo.toml"))?;
    let version = manifest["workspace"]["package"]["version"]
        .as_str()
        .context("workspace version")?;
    Ok(version.to_string())
}

#[test]
fn k8s_coordinator_matches_its_config() -> Result<()> {
    let deploy = deploy_config()?;
    let statefulset = k8s_object("coordinator.yaml", "StatefulSet")?;
    let service = k8s_object("coordinator.yaml", "Service")?;
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(format!("tunefleet/coordinator:{}", workspace_version()?).as_str())
    );
    assert_eq!(container_port(&statefulset, "grpc"), deploy.grpc_port);
    assert_eq!(
        container_port(&statefulset, "metrics"),
        deploy.coordinator_metrics_port
    );
    assert_eq!(service_port(&service, "grpc"), deploy.grpc_port);
    assert_eq!(
        service_port(&service, "metrics"),
        deploy.coordinator_metrics_port
    );
    assert_eq!(
        scrape_port_annotation(&statefulset),
        deploy.coordinator_metrics_port
    );
    assert_eq!(
        statefulset["spec"]["replicas"].as_u64(),
        Some(1),
        "one writer for SQLite"
    );
    // The database's persistent volume is mounted at the configured data_dir.
    let claim = &statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    let mounts = container["volumeMounts"]
        .as_sequence()
        .context("volumeMounts")?;
    let data_mount = mounts
        .iter()
        .find(|mount| mount["name"] == *claim)
        .context("the claim is not mounted")?;
    assert_eq!(
        data_mount["mountPath"].as_str(),
        Some(deploy.data_dir.as_str())
    );
    let args = container["args"].as_sequence().context("args")?;
    assert!(
        args.iter()
            .any(|arg| arg == "/etc/tunefleet/coordinator.toml"),
        "{args:?}"
    );
    Ok(())
}

#[test]
fn k8s_agents_match_their_config() -> Result<()> {
    let deploy = deploy_config()?;
    let daemonset = k8s_object("agent.yaml", "DaemonSet")?;
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(format!("tunefleet/agent:{}", workspace_version()?).as_str())
    );
    assert_eq!(
        container["resources"]["limits"]["nvidia.com/gpu"].as_u64(),
        Some(1)
    );
    assert_eq!(
        container_port(&daemonset, "metrics"),
        deploy.agent_metrics_port
    );
    assert_eq!(
        scrape_port_annotation(&daemonset),
        deploy.agent_metrics_port
    );
    assert_eq!(
        service_port(&k8s_object("agent.yaml", "Service")?, "metrics"),
        deploy.agent_metrics_port
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|pair| pair == ["--gpu", "0"]),
        "{args:?}"
    );
    let coordinator_url = args
        .windows(2)
        .find(|pair| pair[0] == "--coordinator")
        .context("--coordinator")?[1];
    let expected = format!(
        "http://tunefleet-coordinator.tunefleet.svc.cluster.local:{}",
        deploy.grpc_port
    );
    assert_eq!(
        coordinator_url, expected,
        "agents must reach the coordinator's Service"
    );
    Ok(())
}

#[test]
fn config_maps_embed_the_deploy_configs() -> Result<()> {
    for (file, key) in [
        ("coordinator.yaml", "coordinator.toml"),
        ("agent.yaml", "agent.toml"),
    ] {
        let config_map = k8s_object(file, "ConfigMap")?;
        let embedded = config_map["data"][key]
            .as_str()
            .with_context(|| format!("{file}: no data.{key}"))?;
        let original = read_text(&deploy_dir().join("config").join(key))?;
        assert_eq!(
            embedded, original,
            "deploy/k8s/{file} must embed deploy/config/{key} unchanged"
        );
        // The mount point matches the path the container is told to read.
        let workload = yaml_documents(&deploy_dir().join("k8s").join(file))?
            .into_iter()
            .find(|document| document["kind"] == "StatefulSet" || document["kind"] == "DaemonSet")
            .context("no workload")?;
        let mounts = workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            .as_sequence()
            .context("mounts")?;
        assert!(
            mounts
                .iter()
                .any(|mount| mount["mountPath"] == "/etc/tunefleet"),
            "{file}: config not mounted"
        );
    }
    Ok(())
}

#[test]
fn the_prometheus_rule_resource_equals_rules_yml() -> Result<()> {
    let rule_resource = k8s_object("servicemonitor.yaml", "PrometheusRule")?;
    let rules_yml: Value =
        serde_yaml::from_str(&read_text(&deploy_dir().join("prometheus/rules.yml"))?)?;
    assert_eq!(rule_resource["spec"]["groups"], rules_yml["groups"]);
    // The ServiceMonitors select the Services whose names are the job names the rules use.
    let monitors: Vec<Value> = yaml_documents(&deploy_dir().join("k8s/servicemonitor.yaml"))?
        .into_iter()
        .filter(|document| document["kind"] == "ServiceMonitor")
        .collect();
    for (file, job) in [
        ("coordinator.yaml", "tunefleet-coordinator"),
        ("agent.yaml", "tunefleet-agent"),
    ] {
        let service = k8s_object(file, "Service")?;
        assert_eq!(service["metadata"]["name"], job);
        let selects = |monitor: &&Value| {
            let wanted = monitor["spec"]["selector"]["matchLabels"]
                .as_mapping()
                .expect("matchLabels");
            wanted.iter().all(|(key, value)| {
                service["metadata"]["labels"][key.as_str().expect("key")] == *value
            })
        };
        let monitor = monitors
            .iter()
            .find(selects)
            .with_context(|| format!("no ServiceMonitor selects {job}"))?;
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    }
    Ok(())
}

#[test]
fn the_kubernetes_scrape_jobs_match_the_manifests() -> Result<()> {
    let jobs: Value = serde_yaml::from_str(&read_text(
        &deploy_dir().join("prometheus/kubernetes-scrape-jobs.yml"),
    )?)?;
    let job = &jobs["scrape_configs"][0];
    let namespace = k8s_object("namespace.yaml", "Namespace")?["metadata"]["name"].clone();
    assert_eq!(
        job["kubernetes_sd_configs"][0]["namespaces"]["names"][0],
        namespace
    );
    let relabels = job["relabel_configs"]
        .as_sequence()
        .context("relabel_configs")?;
    let job_rule = relabels
        .iter()
        .find(|rule| rule["target_label"] == "job")
        .context("no job relabeling")?;
    assert_eq!(job_rule["replacement"], "tunefleet-$1");
    for file in ["coordinator.yaml", "agent.yaml"] {
        let workload = yaml_documents(&deploy_dir().join("k8s").join(file))?
            .into_iter()
            .find(|document| document["kind"] == "StatefulSet" || document["kind"] == "DaemonSet")
            .context("no workload")?;
        let component =
            &workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"];
        let service = k8s_object(file, "Service")?;
        assert_eq!(
            format!("tunefleet-{}", component.as_str().unwrap_or_default()),
            service["metadata"]["name"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// The `Key=value` lines of a systemd unit (every value of repeated keys).
fn unit_entries(path: &Path) -> Result<Vec<(String, String)>> {
    let text = read_text(path)?;
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('[') && !line.is_empty())
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    Ok(entries)
}

fn unit_value(entries: &[(String, String)], key: &str) -> String {
    entries
        .iter()
        .find(|(found, _)| found == key)
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

#[test]
fn systemd_units_match_the_configs_and_are_hardened() -> Result<()> {
    let deploy = deploy_config()?;
    let coordinator = unit_entries(&deploy_dir().join("systemd/coordinator.service"))?;
    let agent = unit_entries(&deploy_dir().join("systemd/agent@.service"))?;
    let coordinator_exec = unit_value(&coordinator, "ExecStart");
    assert!(
        coordinator_exec.contains("--config /etc/tunefleet/coordinator.toml"),
        "{coordinator_exec}"
    );
    assert_eq!(
        format!("/var/lib/{}", unit_value(&coordinator, "StateDirectory")),
        deploy.data_dir
    );
    let agent_exec = unit_value(&agent, "ExecStart");
    assert!(agent_exec.contains("--gpu %i"), "{agent_exec}");
    assert!(
        agent_exec.contains(&format!("$(({} + %i))", deploy.agent_metrics_port)),
        "{agent_exec}"
    );
    for (name, entries) in [
        ("coordinator.service", &coordinator),
        ("agent@.service", &agent),
    ] {
        for (key, value) in [
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("PrivateTmp", "yes"),
            ("DynamicUser", "yes"),
        ] {
            assert_eq!(unit_value(entries, key), value, "{name}: {key}");
        }
        assert!(
            !unit_value(entries, "RestrictAddressFamilies").is_empty(),
            "{name}: RestrictAddressFamilies"
        );
    }
    assert_eq!(unit_value(&coordinator, "PrivateDevices"), "yes");
    assert_eq!(
        unit_value(&agent, "PrivateDevices"),
        "",
        "the agent needs /dev/nvidia*"
    );
    assert!(
        agent
            .iter()
            .any(|(key, value)| key == "DeviceAllow" && value.contains("nvidia"))
    );
    verify_units_with_systemd_analyze()
}

/// Runs `systemd-analyze verify` on copies of the units whose binaries point at `/bin/true`,
/// when systemd-analyze exists (it catches misspelt directives).
fn verify_units_with_systemd_analyze() -> Result<()> {
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        println!("skipped: systemd-analyze not installed");
        return Ok(());
    };
    if !output.status.success() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    for (source, copy) in [
        ("coordinator.service", "coordinator.service"),
        ("agent@.service", "agent@0.service"),
    ] {
        let text = read_text(&deploy_dir().join("systemd").join(source))?
            .replace("/usr/local/bin/coordinator", "/bin/true")
            .replace("/usr/local/bin/agent", "/bin/true");
        std::fs::write(dir.path().join(copy), text)?;
    }
    let output = std::process::Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "./coordinator.service",
            "./agent@0.service",
        ])
        .current_dir(dir.path())
        .output()?;
    let messages = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && messages.trim().is_empty(),
        "systemd-analyze verify:\n{messages}"
    );
    Ok(())
}

#[test]
fn the_dockerfile_builds_the_images_k8s_runs() -> Result<()> {
    let deploy = deploy_config()?;
    let dockerfile = read_text(&deploy_dir().join("Dockerfile"))?;
    let version = workspace_version()?;
    for (target, exposed) in [
        (
            "coordinator",
            format!(
                "EXPOSE {} {}",
                deploy.grpc_port, deploy.coordinator_metrics_port
            ),
        ),
        ("agent", format!("EXPOSE {}", deploy.agent_metrics_port)),
    ] {
        assert!(
            dockerfile.contains(&format!(" AS {target}\n")),
            "no `{target}` stage"
        );
        assert!(
            dockerfile.contains(&format!("--target {target}")),
            "no build command for {target}"
        );
        assert!(
            dockerfile.contains(&format!("tunefleet/{target}:{version}")),
            "tag tunefleet/{target}:{version}"
        );
        assert!(dockerfile.contains(&exposed), "{target}: {exposed}");
        assert!(dockerfile.contains(&format!(
            "COPY deploy/config/{target}.toml /etc/tunefleet/{target}.toml"
        )));
    }
    assert!(
        dockerfile.contains("VOLUME [\"/var/lib/tunefleet\"]")
            && deploy.data_dir == "/var/lib/tunefleet"
    );
    Ok(())
}
