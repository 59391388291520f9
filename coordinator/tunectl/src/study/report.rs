//! `tunectl report`: writes a study's `report.md` (Markdown tables, linked plots),
//! `summary.json` (the same numbers), the plots, and `study-data.json` (the input, so a report
//! can be regenerated offline with `--from-json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::curves::{self, Band};
use super::data::StudyData;
use super::importance::{self, Importance};
use super::plots::{self, PlotSpec};
use super::tables::{self, DefaultAccuracy, StrategyRow};

/// Everything the report shows, as written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Study name.
    pub study: String,
    /// Experiments in the study.
    pub experiments: usize,
    /// One row a scenario and strategy.
    pub rows: Vec<StrategyRow>,
    /// The default accuracy of each scenario.
    pub defaults: BTreeMap<String, DefaultAccuracy>,
    /// Parameter importance of each scenario.
    pub importance: Vec<Importance>,
    /// Best-so-far bands of each scenario: `trials` and `dollars`.
    pub curves: BTreeMap<String, BTreeMap<String, Vec<Band>>>,
    /// Instance prices used (dollars an hour).
    pub prices: BTreeMap<String, f64>,
    /// Whether every experiment trained on MR, so the published study's figures apply.
    pub mr: bool,
    /// Each experiment's best trial with a test accuracy: (experiment, trial number, dev value,
    /// test accuracy).
    pub best_test: Vec<(String, u32, f64, f64)>,
}

/// Computes the summary (pure).
///
/// # Errors
/// When the study has no experiments or no trial with a result.
pub fn summarize(data: &StudyData, default_given: Option<f64>) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        !data.experiments.is_empty(),
        "study '{}' has no experiments",
        data.name
    );
    let rows = tables::rows(data, default_given);
    anyhow::ensure!(
        !rows.is_empty(),
        "study '{}' has no finished trial with a value yet",
        data.name
    );
    let mut defaults = BTreeMap::new();
    let mut curves_by_scenario = BTreeMap::new();
    for (scenario, _) in data.groups() {
        defaults.insert(
            scenario.clone(),
            tables::default_accuracy(data, &scenario, default_given),
        );
        let bands = BTreeMap::from([
            ("trials".to_string(), curves::by_trials(data, &scenario)),
            ("dollars".to_string(), curves::by_dollars(data, &scenario)),
        ]);
        curves_by_scenario.insert(scenario, bands);
    }
    let prices = BTreeMap::from([
        ("p2.xlarge".to_string(), tables::P2_XLARGE_DOLLARS_PER_HOUR),
        (
            "m4.4xlarge".to_string(),
            tables::M4_4XLARGE_DOLLARS_PER_HOUR,
        ),
    ]);
    Ok(Summary {
        study: data.name.clone(),
        experiments: data.experiments.len(),
        rows,
        defaults,
        importance: importance::rank(data),
        curves: curves_by_scenario,
        prices,
        mr: data.experiments.iter().all(|e| e.is_mr()),
        best_test: best_test(data),
    })
}

/// Each experiment's best trial and its test accuracy, where it reported one.
fn best_test(data: &StudyData) -> Vec<(String, u32, f64, f64)> {
    let mut rows = Vec::new();
    for experiment in &data.experiments {
        let best = experiment
            .trials
            .iter()
            .filter(|t| t.has_result())
            .filter_map(|t| Some((t, t.value?)))
            .max_by(|a, b| {
                let order = a.1.total_cmp(&b.1);
                if experiment.maximize {
                    order
                } else {
                    order.reverse()
                }
            });
        if let Some((trial, value)) = best
            && let Some(test) = trial.metrics.get("test_accuracy")
        {
            rows.push((experiment.id.clone(), trial.number, value, *test));
        }
    }
    rows
}

/// Writes the report into `out_dir` (created if missing); returns the files written.
///
/// # Errors
/// When the study is empty or a file cannot be written.
pub fn write(
    data: &StudyData,
    out_dir: &Path,
    default_given: Option<f64>,
) -> anyhow::Result<Vec<PathBuf>> {
    let summary = summarize(data, default_given)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (scenario, bands) in &summary.curves {
        for (axis, x_desc) in [
            ("trials", "trials"),
            ("dollars", "dollars spent (agents' prices)"),
        ] {
            let Some(axis_bands) = bands.get(axis) else {
                continue;
            };
            if axis_bands.iter().all(|b| b.points.is_empty()) {
                continue;
            }
            let unpriced = axis == "dollars"
                && axis_bands
                    .iter()
                    .flat_map(|b| b.points.iter())
                    .all(|p| p.x == 0.0);
            let title = if unpriced {
                format!(
                    "{scenario}: best vs dollars: no price known (cost 0); set the agents' \
                     price_per_hour_dollars"
                )
            } else {
                format!("{scenario}: best validation accuracy vs {axis}")
            };
            let spec = PlotSpec {
                title: &title,
                x_desc,
                integer_x: axis == "trials",
                bands: axis_bands,
            };
            written.extend(plots::write(out_dir, &plot_stem(scenario, axis), &spec)?);
        }
    }
    let files = [
        ("report.md", markdown(&summary)),
        (
            "summary.json",
            serde_json::to_string_pretty(&summary).context("failed to serialize the summary")?,
        ),
        (
            "study-data.json",
            serde_json::to_string_pretty(data).context("failed to serialize the study data")?,
        ),
    ];
    for (name, text) in files {
        let path = out_dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The file stem of a scenario's plot against `axis` (`trials` or `dollars`).
pub fn plot_stem(scenario: &str, axis: &str) -> String {
    format!("{scenario}-best-vs-{axis}")
}

fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// The Markdown report.
pub fn markdown(summary: &Summary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Study `{}`\n", summary.study);
    let _ = writeln!(
        md,
        "Written by `tunectl report` from {} experiments. Best accuracies are medians over repeats with their \
         interquartile range; resource columns are medians per repeat (totals are in `summary.json`).\n",
        summary.experiments
    );
    for (scenario, default) in &summary.defaults {
        let rows: Vec<&StrategyRow> = summary
            .rows
            .iter()
            .filter(|r| &r.scenario == scenario)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## Scenario `{scenario}`\n");
        let _ = writeln!(
            md,
            "Default configuration: {} ({}).\n",
            percent(default.value),
            default.source.label()
        );
        accuracy_table(&mut md, &rows);
        cost_table(&mut md, &rows);
        early_stopping_table(&mut md, &rows);
        plot_links(&mut md, scenario, summary, &rows);
        match summary.importance.iter().find(|i| &i.scenario == scenario) {
            Some(importance) => importance_table(&mut md, importance),
            None => {
                let _ = writeln!(
                    md,
                    "### Parameter importance\n\nNot enough results to fit a GP (a repeat needs {}).\n",
                    importance::MIN_RESULTS
                );
            }
        }
    }
    if !summary.best_test.is_empty() {
        md.push_str(
            "## Test accuracy of the best trials

Each experiment's best trial by validation \
             accuracy, and its final model on the held-out test file (never used for selection).\n\n\
             | experiment | best trial | validation accuracy | test accuracy |\n|---|---:|---:|---:|\n",
        );
        for (experiment, number, dev, test) in &summary.best_test {
            let _ = writeln!(
                md,
                "| {experiment} | {number} | {} | {} |",
                percent(*dev),
                percent(*test)
            );
        }
        md.push('\n');
    }
    if summary.mr {
        study_figures(&mut md);
    }
    md
}

fn accuracy_table(md: &mut String, rows: &[&StrategyRow]) {
    md.push_str("### Best validation accuracy\n\n");
    md.push_str("| strategy | repeats | median best | IQR (Q1–Q3) | gain over default | trials | epochs | device hours |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let usage = &row.median_usage;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} ({} – {}) | {:+.2} points | {} | {} | {:.3} |",
            row.strategy,
            row.repeats,
            percent(row.best.median),
            row.best.iqr() * 100.0,
            percent(row.best.q1),
            percent(row.best.q3),
            row.gain_over_default * 100.0,
            usage.trials,
            usage.epochs,
            usage.device_hours
        );
    }
    md.push('\n');
}

fn cost_table(md: &mut String, rows: &[&StrategyRow]) {
    md.push_str("### Cost per repeat (median)\n\n");
    md.push_str(
        "| strategy | agents' prices | same device time on p2.xlarge ($0.90/h) | same device time on m4.4xlarge \
         ($0.862/h) | same epochs at the study's p2.xlarge speed (3 s/epoch) | same epochs at the study's m4.4xlarge \
         speed (146 s/epoch) |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let u = &row.median_usage;
        let instances = match row.instance_types.join(", ") {
            names if names.is_empty() => "instance not reported".to_string(),
            names => names,
        };
        let _ = writeln!(
            md,
            "| {} | ${:.4} ({}) | ${:.4} | ${:.4} | ${:.4} | ${:.4} |",
            row.strategy,
            u.dollars,
            instances,
            u.dollars_p2_same_time,
            u.dollars_m4_same_time,
            u.dollars_p2_study_speed,
            u.dollars_m4_study_speed
        );
    }
    md.push('\n');
}

fn early_stopping_table(md: &mut String, rows: &[&StrategyRow]) {
    if rows.iter().all(|r| r.total_usage.early_stopped == 0.0) {
        return;
    }
    md.push_str("### Early stopping (totals over repeats)\n\n");
    md.push_str("| strategy | trials stopped | epochs run | epochs saved | share of planned epochs saved | dollars saved |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let t = &row.total_usage;
        let planned = t.epochs + t.epochs_saved;
        let share = if planned > 0.0 {
            t.epochs_saved / planned
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | ${:.4} |",
            row.strategy,
            t.early_stopped,
            t.epochs,
            t.epochs_saved,
            percent(share),
            t.dollars_saved
        );
    }
    md.push('\n');
    for row in rows {
        let Some((base_name, _rule)) = row.strategy.split_once('+') else {
            continue;
        };
        let Some(base) = rows.iter().find(|r| r.strategy == base_name) else {
            continue;
        };
        let fewer = if base.total_usage.epochs > 0.0 {
            1.0 - row.total_usage.epochs / base.total_usage.epochs
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "`{}` against `{base_name}`: {} fewer epochs, median best {:+.2} points ({} against \
             {}).\n",
            row.strategy,
            percent(fewer),
            (row.best.median - base.best.median) * 100.0,
            percent(row.best.median),
            percent(base.best.median),
        );
    }
    md.push_str(
        "A stopped trial counts as a result at the accuracy it reached, and BO's Gaussian process \
         sees it as an ordinary observation (`docs/design/early-stopping.md` explains why). \
         `tunectl study` gives an arm with a rule its strategy's seeds and trial budget, so the \
         two differ only by the stopping.\n\n",
    );
}

fn plot_links(md: &mut String, scenario: &str, summary: &Summary, rows: &[&StrategyRow]) {
    let Some(curves) = summary.curves.get(scenario) else {
        return;
    };
    md.push_str("### Best so far\n\n");
    for axis in ["trials", "dollars"] {
        if curves
            .get(axis)
            .is_none_or(|bands| bands.iter().all(|b| b.points.is_empty()))
        {
            continue;
        }
        let stem = plot_stem(scenario, axis);
        let _ = writeln!(
            md,
            "![best validation accuracy vs {axis}]({stem}.svg) ([PNG]({stem}.png))\n"
        );
    }
    let key: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.strategy, plots::colour_name(&r.strategy)))
        .collect();
    let _ = writeln!(
        md,
        "Lines are medians over repeats and bands the interquartile range. Colours: {}.\n",
        key.join(", ")
    );
}

fn importance_table(md: &mut String, importance: &Importance) {
    let _ = writeln!(
        md,
        "### Parameter importance\n\nGP length-scales (Matérn-5/2 ARD) fitted to {} {} repeat(s); shorter = more important.\n",
        importance.fits, importance.source
    );
    md.push_str(
        "| rank | parameter | median length-scale | relative importance |\n|---:|---|---:|---:|\n",
    );
    for (rank, param) in importance.params.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} |",
            rank + 1,
            param.name,
            param.length_scale,
            percent(param.relative)
        );
    }
    md.push('\n');
}

fn study_figures(md: &mut String) {
    md.push_str(
        "## The published study's figures\n\n\
         \"Fast CNN tuning with GPU instances and Bayesian optimization\" (Kim-2014 text CNN on MR):\n\n\
         | space | default | BO | random | grid |\n|---|---:|---:|---:|---:|\n\
         | Basic | 75.7% | 80.4% (240 trials) | 79.9% (2,400 trials) | 79.3% (729 trials) |\n\
         | Complex | 75.7% | 81.0% (400 trials) | 80.1% (4,000 trials) | – |\n\n\
         BO on Basic took 15,803 epochs, 13 GPU hours and $11.35 on p2.xlarge; an epoch took 3 s on the K80 and \
         146 s on the m4.4xlarge CPU.\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::tables::{DefaultSource, Quartiles};

    const FIXTURE: &str = include_str!("../../tests/fixtures/study/fixture-study.json");

    fn fixture() -> StudyData {
        serde_json::from_str(FIXTURE).expect("the fixture parses")
    }

    /// Equal up to floating-point rounding of the hand computation (see the fixture's README).
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0)
    }

    macro_rules! assert_close {
        ($actual:expr, $expected:expr) => {
            assert!(
                close($actual, $expected),
                "{} = {} but the hand computation gives {}",
                stringify!($actual),
                $actual,
                $expected
            )
        };
    }

    fn row<'a>(summary: &'a Summary, strategy: &str) -> &'a StrategyRow {
        summary
            .rows
            .iter()
            .find(|r| r.strategy == strategy)
            .expect("row exists")
    }

    #[test]
    fn fixture_accuracy_columns_match_the_hand_computation() {
        let summary = summarize(&fixture(), None).expect("summarizes");
        assert_eq!(summary.rows.len(), 2);
        let default = summary.defaults["basic-mini"];
        assert_eq!(default.source, DefaultSource::DefaultTrial);
        assert_close!(default.value, 0.705);
        let bo = row(&summary, "bo");
        assert_eq!(bo.repeats, 4);
        assert_eq!(bo.best_per_repeat, vec![0.78, 0.80, 0.79, 0.77]);
        let Quartiles { q1, median, q3 } = bo.best;
        assert_close!(q1, 0.7775);
        assert_close!(median, 0.785);
        assert_close!(q3, 0.7925);
        assert_close!(bo.gain_over_default, 0.08);
        let random = row(&summary, "random");
        assert_eq!(random.repeats, 3);
        assert_close!(random.best.q1, 0.755);
        assert_close!(random.best.median, 0.76);
        assert_close!(random.best.q3, 0.77);
        assert_close!(random.gain_over_default, 0.055);
    }

    #[test]
    fn fixture_resource_and_cost_columns_match_the_hand_computation() {
        let summary = summarize(&fixture(), None).expect("summarizes");
        let bo = row(&summary, "bo").median_usage;
        assert_eq!((bo.trials, bo.epochs, bo.early_stopped), (3.0, 6.0, 0.5));
        assert_close!(bo.device_hours * 3600.0, 60.0);
        assert_close!(bo.dollars, 0.006);
        assert_close!(bo.dollars_p2_same_time, 0.015);
        assert_close!(bo.dollars_m4_same_time, 60.0 / 3600.0 * 0.862);
        assert_close!(bo.dollars_p2_study_speed, 0.0045);
        assert_close!(bo.dollars_m4_study_speed, 6.0 * 146.0 / 3600.0 * 0.862);
        let bo_total = row(&summary, "bo").total_usage;
        assert_eq!(
            (
                bo_total.early_stopped,
                bo_total.epochs,
                bo_total.epochs_saved
            ),
            (2.0, 27.0, 4.0)
        );
        assert_close!(bo_total.dollars_saved, 0.004);
        let random = row(&summary, "random").median_usage;
        assert_eq!(
            (random.trials, random.epochs, random.early_stopped),
            (3.0, 7.0, 0.0)
        );
        assert_close!(random.device_hours * 3600.0, 70.0);
        assert_close!(random.dollars, 0.007);
        assert_close!(random.dollars_p2_same_time, 0.0175);
        assert_close!(random.dollars_p2_study_speed, 0.00525);
        assert_close!(random.dollars_m4_study_speed, 7.0 * 146.0 / 3600.0 * 0.862);
    }

    #[test]
    fn an_early_stopping_arm_is_compared_with_its_strategy() {
        let mut data = fixture();
        for experiment in &mut data.experiments {
            if experiment.strategy == "random" {
                experiment.strategy = "bo+median".into();
            }
        }
        let summary = summarize(&data, None).expect("summarizes");
        let text = markdown(&summary);
        let arm = row(&summary, "bo+median").total_usage.epochs;
        let fewer = percent(1.0 - arm / 27.0);
        let expected = format!(
            "`bo+median` against `bo`: {fewer} fewer epochs, median best -2.50 points (76.00% \
             against 78.50%)."
        );
        assert!(text.contains(&expected), "{expected}\nnot in\n{text}");
        assert!(text.contains("ordinary observation"), "{text}");
    }

    #[test]
    fn fixture_best_so_far_curves_match_the_hand_computation() {
        let summary = summarize(&fixture(), None).expect("summarizes");
        let trials = &summary.curves["basic-mini"]["trials"];
        let medians: Vec<(f64, usize)> = trials[0]
            .points
            .iter()
            .map(|p| (p.best.median, p.repeats))
            .collect();
        assert_eq!(trials[0].strategy, "bo");
        assert_eq!(medians.len(), 3);
        assert_close!(medians[0].0, 0.705);
        assert_close!(medians[1].0, 0.77);
        assert_close!(medians[2].0, 0.785);
        let random_last = trials[1].points.last().expect("points");
        assert_eq!(random_last.repeats, 2, "the cancelled trial does not count");
        assert_close!(random_last.best.median, 0.77);
    }

    #[test]
    fn the_default_accuracy_falls_back_to_the_flag_then_the_study() {
        let mut data = fixture();
        data.experiments.retain(|e| e.strategy == "random");
        assert_eq!(
            summarize(&data, Some(0.7)).expect("summarizes").defaults["basic-mini"].source,
            DefaultSource::CommandLine
        );
        let summary = summarize(&data, None).expect("summarizes");
        assert_eq!(
            summary.defaults["basic-mini"].source,
            DefaultSource::StudyFigure
        );
        assert_close!(row(&summary, "random").gain_over_default, 0.76 - 0.757);
        assert!(markdown(&summary).contains("75.70% (study's figure)"));
    }

    #[test]
    fn markdown_holds_the_tables_and_links_the_plots() {
        let text = markdown(&summarize(&fixture(), None).expect("summarizes"));
        for expected in [
            "## Scenario `basic-mini`",
            "| bo | 4 | 78.50% | 1.50 (77.75% – 79.25%) | +8.00 points | 3 | 6 | 0.017 |",
            "| random | 3 | 76.00% | 1.50 (75.50% – 77.00%) | +5.50 points | 3 | 7 | 0.019 |",
            "| bo | $0.0060 (cpu-test) | $0.0150 | $0.0144 | $0.0045 | $0.2098 |",
            "| bo | 2 | 27 | 4 | 12.90% | $0.0040 |",
            "![best validation accuracy vs trials](basic-mini-best-vs-trials.svg) ([PNG](basic-mini-best-vs-trials.png))",
            "basic-mini-best-vs-dollars.svg",
            "### Parameter importance\n\nNot enough results to fit a GP (a repeat needs 4)",
            "bo blue, random orange",
            "80.4% (240 trials)",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
    }

    #[test]
    fn writes_the_report_the_summary_and_non_empty_plots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write(&fixture(), dir.path(), None).expect("writes");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for name in [
            "basic-mini-best-vs-trials.svg",
            "basic-mini-best-vs-trials.png",
            "basic-mini-best-vs-dollars.svg",
            "basic-mini-best-vs-dollars.png",
            "report.md",
            "summary.json",
            "study-data.json",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
            let bytes = std::fs::read(dir.path().join(name)).expect("written file reads");
            assert!(
                bytes.len() > 100,
                "{name} is nearly empty ({} bytes)",
                bytes.len()
            );
            if name.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
            }
            if name.ends_with(".svg") {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    text.contains("<svg") && text.contains("random"),
                    "{name} lacks the legend"
                );
            }
        }
        let saved = StudyData::read_json(&dir.path().join("study-data.json")).expect("reads back");
        assert_eq!(saved, fixture());
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).expect("reads"))
                .expect("json");
        assert_close!(
            summary["rows"][0]["best"]["median"]
                .as_f64()
                .expect("a number"),
            0.785
        );
    }

    #[test]
    fn an_empty_study_is_a_clear_error() {
        let empty = StudyData {
            name: "nothing".into(),
            experiments: Vec::new(),
        };
        let error = summarize(&empty, None).expect_err("refused").to_string();
        assert_eq!(error, "study 'nothing' has no experiments");
        let mut unfinished = fixture();
        for experiment in &mut unfinished.experiments {
            experiment.trials.clear();
        }
        let error = summarize(&unfinished, None)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("no finished trial"), "{error}");
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(write(&empty, dir.path(), None).is_err());
    }

    #[test]
    fn the_published_figures_only_for_mr_and_test_accuracy_beside_dev() {
        let mr = markdown(&summarize(&fixture(), None).expect("summarizes"));
        assert!(mr.contains("The published study's figures"), "{mr}");
        assert!(!mr.contains("Test accuracy of the best trials"), "{mr}");
        let mut own = fixture();
        for experiment in &mut own.experiments {
            experiment.dataset = Some("/data/trec-train.txt".into());
            for trial in &mut experiment.trials {
                trial.metrics.insert("test_accuracy".into(), 0.5);
            }
        }
        let md = markdown(&summarize(&own, None).expect("summarizes"));
        assert!(!md.contains("The published study's figures"), "{md}");
        assert!(md.contains("## Test accuracy of the best trials"), "{md}");
        assert!(md.contains("| 50.00% |"), "{md}");
    }
}
