//! A real Prometheus against a real cluster (issue 7): `promtool` checks the shipped config and
//! rules and both daemons' live `/metrics`; then Prometheus, run from a copy of
//! `deploy/prometheus/prometheus.yml` and `rules.yml`, scrapes a coordinator and a CPU agent
//! while they run a small BO study, and every dashboard panel and alert rule is evaluated
//! through `/api/v1/query`.
//!
//! Without Prometheus installed the tests print
//! `skipped: prometheus not installed (run scripts/install-prometheus.sh)` and pass, unless
//! `REQUIRE_PROMETHEUS=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use integration_tests::cluster::Daemon;
use integration_tests::prometheus::daemons::{start_coordinator, start_cpu_agent};
use integration_tests::prometheus::queries::{
    base_metric_name, dashboard_files, deploy_dir, load_dashboard, load_rules, metric_names,
    parse_label_values, read_text, substitute,
};
use integration_tests::prometheus::{Sample, Server, Tools};
use proto::v1::experiment_service_client::ExperimentServiceClient;
use proto::v1::{
    BatchStrategy, Direction, ExperimentSpec, ExperimentState, FloatParam, GetExperimentRequest,
    ParameterSpec, Strategy, Workload, parameter_spec,
};
use serde_yaml::Value;

/// Scrape jobs of `deploy/prometheus/prometheus.yml` that the rules and dashboards rely on.
const COORDINATOR_JOB: &str = "tunefleet-coordinator";
const AGENT_JOB: &str = "tunefleet-agent";

/// Dashboard panels allowed to have no data on this test's cluster, and why. They must still
/// evaluate without error.
const PANELS_EMPTY_ON_A_CPU_CLUSTER: &[(&str, &str, &str)] = &[(
    "cluster-overview.json",
    "GPU memory in use",
    "CPU agents have no GPU memory to report",
)];

/// Metrics no series of which exists on this test's cluster (CPU agents only).
const METRICS_ABSENT_ON_A_CPU_CLUSTER: &[&str] = &["tunefleet_agent_gpu_memory_used_bytes"];

/// Values of Grafana's built-in variables for instant queries at the end of the study.
const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
];

/// Trials in the test study.
const BUDGET_TRIALS: u32 = 10;

/// The test study's name, which the experiment dashboard's `$name` variable must list.
const STUDY_NAME: &str = "observability";

#[test]
fn promtool_accepts_the_shipped_config_and_rules() -> Result<()> {
    let Some(tools) = Tools::find_or_skip() else {
        return Ok(());
    };
    let config = deploy_dir().join("prometheus/prometheus.yml");
    tools.promtool(&["check", "config", &config.display().to_string()], None)?;
    let rules = deploy_dir().join("prometheus/rules.yml");
    let output = tools.promtool(&["check", "rules", &rules.display().to_string()], None)?;
    let expected = format!("SUCCESS: {} rules found", load_rules(&rules)?.len());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&expected),
        "{output:?}"
    );
    // A broken rule file is refused, so the check above can fail.
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(x[5m]\n",
    )?;
    assert!(
        tools
            .promtool(&["check", "rules", &broken.display().to_string()], None)
            .is_err()
    );
    Ok(())
}

/// The cluster under test: daemons, Prometheus and the experiment they ran.
struct Fixture {
    _dir: tempfile::TempDir,
    coordinator: Daemon,
    agent: Daemon,
    prometheus: Server,
    experiment_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_alert_rule_evaluates_against_a_live_cluster() -> Result<()> {
    let Some(tools) = Tools::find_or_skip() else {
        return Ok(());
    };
    let mut fixture = start_fixture(&tools).await?;
    check_live_metrics(&tools, &fixture).await?;
    check_dashboards(&fixture).await?;
    check_rules(&fixture).await?;
    check_every_metric_has_series(&fixture).await?;
    check_agent_down_is_detected(&mut fixture).await
}

async fn start_fixture(tools: &Tools) -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let coordinator = start_coordinator(
        &deploy_dir().join("config/coordinator.toml"),
        &dir.path().join("data"),
        dir.path(),
    )?;
    let grpc = coordinator.ready_field("grpc")?;
    let agent = start_cpu_agent(&deploy_dir().join("config/agent.toml"), &grpc, dir.path())?;
    let config = scrape_config(
        &coordinator.ready_field("metrics")?,
        &agent.ready_field("metrics")?,
    )?;
    let rules = read_text(&deploy_dir().join("prometheus/rules.yml"))?;
    let prometheus = Server::start(tools, &config, &[("rules.yml", &rules)]).await?;
    prometheus
        .wait_for_targets_up(&[COORDINATOR_JOB, AGENT_JOB], Duration::from_secs(60))
        .await?;
    // The study starts once both are scraped, so counters rise between scrapes.
    let experiment_id = run_study(&grpc, &prometheus, &coordinator, &agent).await?;
    Ok(Fixture {
        _dir: dir,
        coordinator,
        agent,
        prometheus,
        experiment_id,
    })
}

/// `deploy/prometheus/prometheus.yml` with its static targets replaced by the live daemons,
/// discovery files dropped, and scrapes and rule evaluations every 250 ms.
fn scrape_config(coordinator_metrics: &str, agent_metrics: &str) -> Result<String> {
    let text = read_text(&deploy_dir().join("prometheus/prometheus.yml"))?;
    let mut config: Value = serde_yaml::from_str(&text)?;
    config["global"]["scrape_interval"] = Value::from("250ms");
    config["global"]["evaluation_interval"] = Value::from("250ms");
    config["rule_files"] = serde_yaml::from_str("[rules.yml]")?;
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .context("scrape_configs")?;
    let mut found = Vec::new();
    for job in jobs.iter_mut() {
        let name = job["job_name"].as_str().unwrap_or_default().to_string();
        let target = match name.as_str() {
            COORDINATOR_JOB => coordinator_metrics,
            AGENT_JOB => agent_metrics,
            _ => continue,
        };
        let job = job
            .as_mapping_mut()
            .context("a scrape job is not a mapping")?;
        job.remove("file_sd_configs");
        job.insert(
            Value::from("static_configs"),
            serde_yaml::from_str(&format!("[{{targets: ['{target}']}}]"))?,
        );
        found.push(name);
    }
    if found.len() != 2 {
        bail!(
            "prometheus.yml must have the jobs {COORDINATOR_JOB} and {AGENT_JOB}, found {found:?}"
        );
    }
    Ok(serde_yaml::to_string(&config)?)
}

/// Creates a 10-trial BO study of Branin (the agents' `function` workload) and waits until it
/// completed and Prometheus scraped its end.
async fn run_study(
    grpc: &str,
    prometheus: &Server,
    coordinator: &Daemon,
    agent: &Daemon,
) -> Result<String> {
    let mut client = ExperimentServiceClient::connect(format!("http://{grpc}")).await?;
    let float = |name: &str, low: f64, high: f64| ParameterSpec {
        name: name.to_string(),
        kind: Some(parameter_spec::Kind::Float(FloatParam {
            step: None,
            low,
            high,
            log: false,
            default_value: None,
        })),
    };
    let spec = ExperimentSpec {
        name: STUDY_NAME.to_string(),
        metric: "value".to_string(),
        direction: Direction::Minimize as i32,
        strategy: Strategy::Bo as i32,
        batch_strategy: BatchStrategy::ClMin as i32,
        budget_trials: BUDGET_TRIALS,
        parallelism: 2,
        parameters: vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)],
        seed: 7,
        initial_trials: 3,
        workload: Some(Workload {
            kind: "function".to_string(),
            dataset: "branin".to_string(),
            ..Workload::default()
        }),
        ..ExperimentSpec::default()
    };
    let created = client
        .create_experiment(proto::v1::CreateExperimentRequest { spec: Some(spec) })
        .await?;
    let id = created
        .into_inner()
        .experiment
        .context("no experiment in the response")?
        .id;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let request = GetExperimentRequest {
            experiment_id: id.clone(),
        };
        let experiment = client
            .get_experiment(request)
            .await?
            .into_inner()
            .experiment
            .context("no experiment")?;
        if experiment.state == ExperimentState::Completed as i32 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the study did not finish: {experiment:?}\ncoordinator:\n{}\nagent:\n{}",
                coordinator.log(),
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let completed =
        format!("tunefleet_coordinator_experiment_trials_completed_total{{experiment=\"{id}\"}}");
    wait_for_value(prometheus, &completed, f64::from(BUDGET_TRIALS)).await?;
    wait_for_value(
        prometheus,
        "sum(tunefleet_agent_trials_total)",
        f64::from(BUDGET_TRIALS),
    )
    .await?;
    // The gauge of trials now: every trial of the study succeeded (the function cannot fail).
    wait_for_value(
        prometheus,
        r#"tunefleet_coordinator_trials{status="succeeded"}"#,
        f64::from(BUDGET_TRIALS),
    )
    .await?;
    Ok(id)
}

/// Polls `expr` until its first sample reaches `expected`.
async fn wait_for_value(prometheus: &Server, expr: &str, expected: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = prometheus.query(expr).await?;
        if samples
            .first()
            .is_some_and(|sample| sample.value >= expected)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("`{expr}` never reached {expected}: {samples:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `promtool check metrics` on each daemon's live exposition.
async fn check_live_metrics(tools: &Tools, fixture: &Fixture) -> Result<()> {
    for (name, daemon) in [
        ("coordinator", &fixture.coordinator),
        ("agent", &fixture.agent),
    ] {
        let url = format!("http://{}/metrics", daemon.ready_field("metrics")?);
        let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
        assert!(
            text.contains(&format!("tunefleet_{name}_")),
            "{url} has no tunefleet_{name}_ metric"
        );
        tools
            .promtool(&["check", "metrics"], Some(&text))
            .with_context(|| format!("{name}'s /metrics"))?;
    }
    Ok(())
}

/// Whether a query result holds at least one number.
fn has_data(samples: &[Sample]) -> bool {
    samples.iter().any(|sample| !sample.value.is_nan())
}

/// Evaluates `expr` until it has data or 20 s pass: a `rate()` over a counter needs two scrapes
/// after the counter first moved, which a fast cluster may not have had yet. An evaluation error
/// (a broken expression) is returned at once; an expression allowed to be empty is run once.
async fn query_until_data(
    prometheus: &Server,
    expr: &str,
    allowed_empty: bool,
) -> Result<Vec<Sample>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let samples = prometheus.query(expr).await?;
        if allowed_empty || has_data(&samples) || Instant::now() > deadline {
            return Ok(samples);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Evaluates every panel query of every dashboard: no error, and data unless allowed.
async fn check_dashboards(fixture: &Fixture) -> Result<()> {
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for path in dashboard_files()? {
        let dashboard = load_dashboard(&path)?;
        let values =
            variable_values(&fixture.prometheus, &dashboard, &fixture.experiment_id).await?;
        for query in &dashboard.queries {
            let expr = substitute(&query.expr, &values)?;
            let place = format!("{} / {} / {}", query.dashboard, query.panel, query.ref_id);
            evaluated += 1;
            let allowed_empty = PANELS_EMPTY_ON_A_CPU_CLUSTER
                .iter()
                .any(|(file, panel, _)| *file == query.dashboard && *panel == query.panel);
            let samples = match query_until_data(&fixture.prometheus, &expr, allowed_empty).await {
                Ok(samples) => samples,
                Err(error) => {
                    failures.push(format!("{place}: `{expr}` failed: {error:#}"));
                    continue;
                }
            };
            if !allowed_empty && !has_data(&samples) {
                failures.push(format!("{place}: `{expr}` has no data ({samples:?})"));
            }
            // A per-experiment series joined with `experiment_info` carries the name and the id.
            let labelled = |sample: &Sample| {
                sample.labels.get("name").map(String::as_str) == Some(STUDY_NAME)
                    && sample.labels.get("experiment") == Some(&fixture.experiment_id)
            };
            if expr.contains("group_left(name)")
                && !expr.contains("sum(")
                && !samples.iter().all(labelled)
            {
                failures.push(format!(
                    "{place}: `{expr}` has series without the name {STUDY_NAME} and id {}: \
                     {samples:?}",
                    fixture.experiment_id
                ));
            }
        }
    }
    assert!(evaluated >= 20, "only {evaluated} panel queries found");
    assert!(
        failures.is_empty(),
        "{} of {evaluated} panel queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The values substituted for a dashboard's variables: Grafana's built-ins, `datasource`, and
/// each query variable's own query run through Prometheus, which must list the study's name
/// (experiments are picked by name; the panels join on the id).
async fn variable_values(
    prometheus: &Server,
    dashboard: &integration_tests::prometheus::queries::Dashboard,
    experiment_id: &str,
) -> Result<BTreeMap<String, String>> {
    let mut values: BTreeMap<String, String> = BUILTIN_VARIABLES
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    values.insert("datasource".to_string(), "prometheus".to_string());
    for variable in &dashboard.query_variables {
        let (selector, label) = parse_label_values(&variable.query).with_context(|| {
            format!(
                "{}: variable {} is not label_values(...)",
                dashboard.file, variable.name
            )
        })?;
        let listed = prometheus.label_values(&selector, &label).await?;
        assert!(
            listed.iter().any(|value| value == STUDY_NAME),
            "{}: ${} lists {listed:?}, not the name {STUDY_NAME} of experiment {experiment_id}",
            dashboard.file,
            variable.name
        );
        values.insert(variable.name.clone(), regex_escape(STUDY_NAME));
    }
    Ok(values)
}

/// Escapes a label value for a `=~` matcher (Grafana does the same for regex variables).
fn regex_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.replace('\\', "\\\\")
}

/// Every alert rule evaluates without error and, the cluster being healthy, returns nothing;
/// Prometheus itself loaded them all, evaluated them without error, and has no alert pending.
async fn check_rules(fixture: &Fixture) -> Result<()> {
    let rules = load_rules(&deploy_dir().join("prometheus/rules.yml"))?;
    assert!(rules.len() >= 5, "expected at least five alert rules");
    for rule in &rules {
        let samples = fixture
            .prometheus
            .query(&rule.expr)
            .await
            .with_context(|| format!("alert {}", rule.name))?;
        // Every alert watches for a failure, so each is expected to be empty while healthy.
        assert!(
            samples.is_empty(),
            "alert {} would fire on a healthy cluster: {samples:?}",
            rule.name
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = fixture.prometheus.rules().await?;
        let alerts = fixture.prometheus.alerts().await?;
        let all_ok =
            statuses.len() == rules.len() && statuses.iter().all(|status| status.health == "ok");
        if all_ok && alerts.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "rules not all healthy, or alerts active:\n{statuses:#?}\n{alerts:#?}\n{}",
                fixture.prometheus.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each `tunefleet_*` metric the dashboards and rules use has live series, so an empty alert
/// result above is not a misspelt name.
async fn check_every_metric_has_series(fixture: &Fixture) -> Result<()> {
    let mut exprs: Vec<String> = load_rules(&deploy_dir().join("prometheus/rules.yml"))?
        .into_iter()
        .map(|rule| rule.expr)
        .collect();
    for path in dashboard_files()? {
        exprs.extend(
            load_dashboard(&path)?
                .queries
                .into_iter()
                .map(|query| query.expr),
        );
    }
    let names: std::collections::BTreeSet<String> =
        exprs.iter().flat_map(|expr| metric_names(expr)).collect();
    let mut missing = Vec::new();
    for name in &names {
        if METRICS_ABSENT_ON_A_CPU_CLUSTER.contains(&base_metric_name(name)) {
            continue;
        }
        if fixture
            .prometheus
            .query(&format!("count({{__name__=\"{name}\"}})"))
            .await?
            .is_empty()
        {
            missing.push(name.clone());
        }
    }
    assert!(missing.is_empty(), "no live series for {missing:?}");
    Ok(())
}

/// Kills the agent and waits until the `TunefleetAgentDown` rule's expression reports it.
async fn check_agent_down_is_detected(fixture: &mut Fixture) -> Result<()> {
    let rules = load_rules(&deploy_dir().join("prometheus/rules.yml"))?;
    let agent_down = rules
        .iter()
        .find(|rule| rule.name == "TunefleetAgentDown")
        .context("no TunefleetAgentDown rule")?;
    let agent_target = fixture.agent.ready_field("metrics")?;
    fixture.agent.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = fixture.prometheus.query(&agent_down.expr).await?;
        if samples
            .iter()
            .any(|sample| sample.labels.get("instance") == Some(&agent_target))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("TunefleetAgentDown's expression never reported the killed agent: {samples:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
