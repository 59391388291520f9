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
mod tests;
