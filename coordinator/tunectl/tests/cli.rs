//! The `tunectl` binary itself, without a coordinator: its commands, an `ask-tell` session over
//! stdin/stdout, and the one-line error. Having an integration test also makes
//! `cargo test --workspace` build `target/<profile>/tunectl`, which the end-to-end tests in
//! `tests/` spawn.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn tunectl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunectl"))
        .args(args)
        .env_remove("TUNEFLEET_COORDINATOR")
        .env_remove("TUNEFLEET_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tunectl starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("tunectl exits")
}

#[test]
fn help_lists_every_command() {
    let output = tunectl(&["--help"], "");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    let commands = [
        "create", "list", "status", "watch", "best", "trials", "stop", "ask-tell", "local",
        "study", "report",
    ];
    for command in commands {
        assert!(help.contains(command), "no `{command}` in:\n{help}");
    }
}

#[test]
fn ask_tell_answers_one_json_line_per_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let space = dir.path().join("space.json");
    std::fs::write(
        &space,
        r#"{"direction": "minimize", "params": [{"name": "x", "type": "float", "low": 0, "high": 1}]}"#,
    )
    .expect("write space");
    let space = space.to_str().expect("utf-8 path");
    let output = tunectl(
        &["ask-tell", "--space", space, "--seed", "3"],
        "{\"suggest\": 2}\n{\"stop\": true}\n",
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 replies");
    let replies: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each reply is JSON"))
        .collect();
    assert_eq!(replies.len(), 1, "{stdout}");
    let suggestions = replies[0]["suggestions"].as_array().expect("a list");
    assert_eq!(suggestions.len(), 2);
    for suggestion in suggestions {
        let x = suggestion["params"]["x"].as_f64().expect("x is a number");
        assert!((0.0..=1.0).contains(&x), "{x} out of bounds");
    }
}

#[test]
fn an_error_is_one_line_and_exit_code_1() {
    let output = tunectl(&["ask-tell", "--space", "/nonexistent/space.json"], "");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// `ask-tell`, `local` and `certs` talk to no coordinator: their help lists only their own
/// options, and a connection flag given to one is refused, not ignored.
#[test]
fn offline_commands_list_only_the_options_they_use() {
    let connect = [
        "--coordinator",
        "--token",
        "--token-file",
        "--ca-file",
        "--cert-file",
        "--key-file",
    ];
    let help = |command: &str| {
        let output = tunectl(&[command, "--help"], "");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("utf-8 help")
    };
    let ask_tell = help("ask-tell");
    for used in [
        "--space",
        "--seed",
        "--strategy",
        "--batch",
        "--grid-levels",
        "--initial-trials",
    ] {
        assert!(ask_tell.contains(used), "no {used} in:\n{ask_tell}");
    }
    for command in ["ask-tell", "local", "certs"] {
        let text = help(command);
        for flag in connect {
            assert!(
                !text.contains(flag),
                "{command} --help lists {flag}:\n{text}"
            );
        }
    }
    // The commands that connect still list them.
    for command in ["create", "list", "study", "report"] {
        let text = help(command);
        for flag in connect {
            assert!(
                text.contains(flag),
                "{command} --help lacks {flag}:\n{text}"
            );
        }
    }
    for args in [
        &[
            "ask-tell",
            "--coordinator",
            "http://h:1",
            "--space",
            "s.json",
        ][..],
        &["--token", "t", "ask-tell", "--space", "s.json"][..],
    ] {
        let output = tunectl(args, "");
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("talks to no coordinator") && stderr.contains("does not take --"),
            "{args:?}: {stderr}"
        );
    }
}
