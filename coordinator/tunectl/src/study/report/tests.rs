//! The study report against a fixture computed by hand: accuracy, resource, cost and best-so-far
//! columns, early-stopping arms, the written files and the clear error for an empty study.

use super::*;
use crate::study::tables::{DefaultSource, Quartiles};

const FIXTURE: &str = include_str!("../../../tests/fixtures/study/fixture-study.json");

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
