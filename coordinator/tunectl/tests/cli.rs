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
