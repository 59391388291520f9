//! The command runner against real processes (`sh`): epochs, stops, crashes, timeouts and the
//! errors of a trial that cannot start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proto::v1::{ParameterValue, Workload, parameter_value::Kind};

use super::CommandRunner;
use super::spec::{CommandSpec, RawCommand};
use crate::config::Device;
use crate::trainer::{EpochControl, EpochMetrics, TrainOutcome, TrialFailure, TrialJob};

fn declare(name: &str, script: &str, edit: impl FnOnce(&mut RawCommand)) -> CommandSpec {
    let mut raw = RawCommand {
        name: name.into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            "{lr}".into(),
        ],
        workdir: None,
        env: BTreeMap::from([("GREETING".to_string(), "Hello".to_string())]),
        metrics: Vec::new(),
        metrics_source: None,
        epoch_timeout_secs: None,
        stop_grace_secs: Some(2.0),
    };
    edit(&mut raw);
    raw.validate().expect("valid declaration")
}

fn job(command: &str, metric: &str) -> TrialJob {
    TrialJob {
        trial_id: "trial-7".into(),
        workload: Workload {
            kind: "command".into(),
            command: command.into(),
            ..Workload::default()
        },
        params: BTreeMap::from([(
            "lr".to_string(),
            ParameterValue {
                kind: Some(Kind::FloatValue(0.25)),
            },
        )]),
        metric: metric.into(),
        maximize: true,
    }
}

fn run(
    specs: Vec<CommandSpec>,
    device: Device,
    job: &TrialJob,
    stop_after: Option<u32>,
    stop_flag: &AtomicBool,
) -> (Vec<EpochMetrics>, Result<TrainOutcome, TrialFailure>) {
    let runner = CommandRunner::new(Arc::new(specs), device);
    let mut epochs = Vec::new();
    let mut on_epoch = |metrics: &EpochMetrics| {
        epochs.push(metrics.clone());
        if stop_after.is_some_and(|last| metrics.epoch >= last) {
            EpochControl::Stop
        } else {
            EpochControl::Continue
        }
    };
    let result = runner.run(job, &mut on_epoch, &|| stop_flag.load(Ordering::SeqCst));
    (epochs, result)
}

const THREE_EPOCHS: &str = r#"echo "starting with lr $1"; for e in 1 2 3; do echo "{\"epoch\": $e, \"acc\": 0.$e, \"train_loss\": 1.$e}"; done"#;

#[test]
fn epochs_are_read_from_stdout_and_the_trial_succeeds() {
    let spec = declare("three", THREE_EPOCHS, |_| {});
    let never = AtomicBool::new(false);
    let (epochs, result) = run(vec![spec], Device::Cpu, &job("three", "acc"), None, &never);
    let outcome = result.expect("succeeds");
    assert_eq!(
        epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(epochs[2].value, 0.3);
    assert_eq!(epochs[1].train_loss, 1.2);
    assert_eq!(
        (outcome.epochs_run, outcome.best_epoch, outcome.stopped),
        (3, 3, false)
    );
    assert_eq!(outcome.final_value, 0.3);
    assert!(outcome.device_seconds > 0.0);
}

#[test]
fn the_environment_carries_params_trial_gpu_and_metrics_file() {
    let script = r#"printf '{"epoch": 1, "acc": 1}\n' >> "$TUNEFLEET_METRICS_FILE"
echo "$GREETING|$1|$TUNEFLEET_PARAMS|$TUNEFLEET_TRIAL_ID|$CUDA_VISIBLE_DEVICES" >&2
exit 9"#;
    let spec = declare("env", script, |raw| {
        raw.metrics_source = Some("file".into())
    });
    let never = AtomicBool::new(false);
    let (epochs, result) = run(
        vec![spec],
        Device::Cuda(3),
        &job("env", "acc"),
        None,
        &never,
    );
    assert_eq!(epochs.len(), 1, "the epoch came through the file");
    let reason = result.expect_err("exit 9").reason;
    assert!(
        reason.contains(r#"Hello|0.25|{"lr":0.25}|trial-7|3"#),
        "{reason}"
    );
    assert!(
        reason.contains("exited with status 9 after 1 epoch(s)"),
        "{reason}"
    );
}

#[test]
fn a_stop_at_an_epoch_ends_the_command_with_sigterm() {
    let script = r#"trap 'echo got-sigterm >&2; exit 143' TERM
e=0; while true; do e=$((e+1)); echo "{\"epoch\": $e, \"acc\": 0.5}"; sleep 0.2; done"#;
    let spec = declare("forever", script, |_| {});
    let never = AtomicBool::new(false);
    let started = Instant::now();
    let (epochs, result) = run(
        vec![spec],
        Device::Cpu,
        &job("forever", "acc"),
        Some(2),
        &never,
    );
    let outcome = result.expect("stopped, not failed");
    assert!(outcome.stopped);
    assert_eq!((outcome.epochs_run, epochs.len()), (2, 2));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_stop_between_epochs_and_a_command_ignoring_sigterm_is_killed() {
    let script = r#"trap '' TERM; echo '{"epoch": 1, "acc": 0.5}'; sleep 30 & wait; sleep 30"#;
    let spec = declare("stubborn", script, |raw| raw.stop_grace_secs = Some(0.3));
    let stop = Arc::new(AtomicBool::new(false));
    let setter = Arc::clone(&stop);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        setter.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let (_, result) = run(
        vec![spec],
        Device::Cpu,
        &job("stubborn", "acc"),
        None,
        &stop,
    );
    let outcome = result.expect("stopped");
    assert!(outcome.stopped && outcome.epochs_run == 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn crashes_timeouts_and_broken_lines_fail_with_a_reason() {
    let crash = declare(
        "crash",
        r#"echo '{"epoch": 1, "acc": 0.5}'; echo 'Traceback' >&2; echo 'ValueError: boom' >&2; exit 3"#,
        |_| {},
    );
    let quiet = declare("quiet", "sleep 30", |raw| {
        raw.epoch_timeout_secs = Some(0.4)
    });
    let broken = declare(
        "broken",
        r#"echo '{"epoch": 1, "loss": 0.5}'; sleep 30"#,
        |_| {},
    );
    let silent = declare("silent", "echo no epochs here", |_| {});
    let killed = declare("killed", "kill -9 $$", |_| {});
    let specs = vec![crash, quiet, broken, silent, killed];
    let cases = [
        (
            "crash",
            "exited with status 3 after 1 epoch(s); last lines of stderr:\nTraceback\nValueError: boom",
        ),
        ("quiet", "printed no epoch for 0.4 s and was stopped"),
        ("broken", "no finite number for the metric 'acc'"),
        ("silent", "exited without reporting an epoch of 'acc'"),
        ("killed", "exited with signal 9"),
    ];
    let never = AtomicBool::new(false);
    for (name, words) in cases {
        let started = Instant::now();
        let (_, result) = run(specs.clone(), Device::Cpu, &job(name, "acc"), None, &never);
        let reason = result.expect_err(name).reason;
        assert!(reason.contains(words), "{name}: {reason}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn undeclared_commands_unlisted_metrics_and_unknown_placeholders_are_refused() {
    let listed = declare("listed", THREE_EPOCHS, |raw| {
        raw.metrics = vec!["acc".into()]
    });
    let unknown = declare("unknown", THREE_EPOCHS, |raw| {
        raw.argv.push("{batch_size}".into())
    });
    let missing = declare("missing-program", "", |raw| {
        raw.argv = vec!["/nonexistent/train".into()];
    });
    let specs = vec![listed, unknown, missing];
    let never = AtomicBool::new(false);
    let cases = [
        (
            job("other", "acc"),
            "command 'other' is not declared by this agent (it declares: listed, unknown, missing-program)",
        ),
        (
            job("listed", "loss"),
            "metric 'loss' is not reported by command 'listed' (it reports: acc)",
        ),
        (
            job("unknown", "acc"),
            "uses {batch_size}, which is not a parameter of the trial (parameters: lr)",
        ),
        (
            job("missing-program", "acc"),
            "failed to start command 'missing-program' ('/nonexistent/train')",
        ),
    ];
    for (job, words) in cases {
        let (_, result) = run(specs.clone(), Device::Cpu, &job, None, &never);
        let reason = result.expect_err(words).reason;
        assert!(reason.contains(words), "{reason}");
    }
}
