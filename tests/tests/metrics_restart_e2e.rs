//! End to end: the coordinator's per-experiment series (`experiment_info`, best objective,
//! trials completed, epochs, cost) and its gauge of trials by status hold the values the API
//! reports for a finished experiment, and a coordinator restarted on the same data dir serves
//! the same series (they used to start empty, so a finished experiment left the dashboards).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use integration_tests::agents;
use integration_tests::cluster::Cluster;
use proto::v1 as pb;

/// One exposed series: its metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses one line of the text exposition format (`name{k="v",...} value`); `None` for
/// comments and blank lines.
fn parse_line(line: &str) -> Result<Option<(Series, f64)>> {
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (series, value) = line.rsplit_once(' ').context("no value")?;
    let value: f64 = value
        .parse()
        .with_context(|| format!("bad value in {line}"))?;
    let Some((name, labels)) = series.split_once('{') else {
        return Ok(Some(((series.to_string(), BTreeMap::new()), value)));
    };
    let labels = labels.strip_suffix('}').context("unclosed labels")?;
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").context("label without a value")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    end = Some(index);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.context("unterminated label value")?;
        map.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(Some(((name.to_string(), map), value)))
}

/// The coordinator's series that belong to experiment `id`, and its gauge of trials by status.
async fn scrape(cluster: &Cluster, id: &str) -> Result<BTreeMap<Series, f64>> {
    let url = cluster.metrics_url()?;
    let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
    let mut wanted = BTreeMap::new();
    for line in text.lines() {
        let Some(((name, labels), value)) =
            parse_line(line).with_context(|| format!("bad line in {url}: {line}"))?
        else {
            continue;
        };
        let of_experiment = labels.get("experiment").map(String::as_str) == Some(id);
        if of_experiment || name == "tunefleet_coordinator_trials" {
            wanted.insert((name, labels), value);
        }
    }
    Ok(wanted)
}

/// The value of the series `name` with `labels`.
fn value_of(series: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    series
        .get(&(name.to_string(), labels.clone()))
        .copied()
        .with_context(|| format!("no series {name}{labels:?} in {series:#?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_experiment_series_hold_the_stored_values_and_survive_a_restart() -> Result<()> {
    let mut cluster = Cluster::builder().start()?;
    let _agent = agents::start_agent(&cluster, "agent", &[])?;
    let mut spec = agents::slow_function_spec("series-after-restart", 6, 2, 2, 0.02);
    spec.study = "restart-study".to_string();
    let mut client = agents::experiments(&cluster).await?;
    let id = agents::create(&mut client, spec).await?;
    let done = agents::wait_until_done(&cluster, &id, Duration::from_secs(120)).await?;
    ensure!(
        done.state() == pb::ExperimentState::Completed,
        "the experiment ended {:?}",
        done.state()
    );
    let trials = agents::trials(&mut client, &id).await?;
    let succeeded = trials
        .iter()
        .filter(|t| t.state() == pb::TrialState::Succeeded)
        .count();
    ensure!(
        succeeded == 6,
        "{succeeded} of 6 trials succeeded: {trials:?}"
    );
    let best = trials
        .iter()
        .filter_map(|t| t.value)
        .fold(f64::INFINITY, f64::min);
    let epochs: usize = trials.iter().map(|t| t.epochs.len()).sum();
    let cost: f64 = trials.iter().map(|t| t.cost_dollars).sum();
    ensure!(cost > 0.0, "the agent priced no trial");

    let before = scrape(&cluster, &id).await?;
    let experiment = [("experiment", id.as_str())];
    let info = [
        ("experiment", id.as_str()),
        ("name", "series-after-restart"),
        ("strategy", "random"),
        ("study", "restart-study"),
    ];
    let prefix = "tunefleet_coordinator_";
    let expected = [
        ("experiment_info", &info[..], 1.0),
        ("best_objective", &experiment[..], best),
        ("experiment_trials_completed_total", &experiment[..], 6.0),
        ("experiment_epochs_total", &experiment[..], epochs as f64),
        ("experiment_cost_dollars_total", &experiment[..], cost),
    ];
    for (name, labels, want) in expected {
        let got = value_of(&before, &format!("{prefix}{name}"), labels)?;
        ensure!(close(got, want), "{name}: {got}, expected {want}");
    }
    for (status, want) in [
        ("pending", 0.0),
        ("leased", 0.0),
        ("running", 0.0),
        ("succeeded", 6.0),
        ("failed", 0.0),
        ("cancelled", 0.0),
        ("early_stopped", 0.0),
    ] {
        let got = value_of(
            &before,
            "tunefleet_coordinator_trials",
            &[("status", status)],
        )?;
        ensure!(
            got == want,
            "trials{{status={status}}}: {got}, expected {want}"
        );
    }

    cluster.restart_coordinator()?;
    let after = scrape(&cluster, &id).await?;
    let keys = |series: &BTreeMap<Series, f64>| series.keys().cloned().collect::<Vec<_>>();
    ensure!(
        keys(&before) == keys(&after),
        "the restarted coordinator serves other series:\nbefore {before:#?}\nafter {after:#?}"
    );
    for (series, value) in &before {
        let again = after[series];
        ensure!(
            close(*value, again),
            "{series:?} was {value} and is {again} after the restart"
        );
    }
    Ok(())
}

#[test]
fn the_exposition_parser_reads_labels_and_values() -> Result<()> {
    let ((name, labels), value) =
        parse_line(r#"m_total{a="x,y",b="say \"hi\""} 2.5"#)?.context("a series")?;
    assert_eq!(name, "m_total");
    assert_eq!(labels["a"], "x,y");
    assert_eq!(labels["b"], "say \"hi\"");
    assert!(close(value, 2.5));
    assert!(parse_line("# HELP m help")?.is_none());
    assert_eq!(parse_line("plain 3")?.map(|(_, v)| v), Some(3.0));
    Ok(())
}
