//! The version probes against fake CUDA libraries: stubs of `libnvrtc.so` and `libcuda.so`,
//! built here with the C compiler that links Rust, export a version call and nothing else, as
//! an old or incomplete install would. With cudarc's dynamic loading, any call into a missing
//! symbol panics; the backend must instead refuse with an error naming the library and its
//! version.
//!
//! cudarc loads each library once per process, so every case runs this test executable again
//! in a child process with the stubs first on `LD_LIBRARY_PATH`.
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};
use std::process::Command;

use kernels::Error;
use kernels::cuda::module::{LoadPlan, Module, compile};
use kernels::cuda::{libraries, probe};

/// Set in the child: the case to check.
const CASE_VAR: &str = "KERNELS_FAKE_LIBRARY_CASE";

const TEST_NAME: &str = "fake_libraries_are_refused_with_their_versions_not_a_panic";

/// One fake install: the versions its stubs report and what the errors must say.
struct Case {
    name: &'static str,
    nvrtc: (u32, u32),
    driver_code: u32,
    nvrtc_error: &'static str,
    driver_error: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        name: "old",
        nvrtc: (11, 8),
        driver_code: 12080,
        nvrtc_error: "NVRTC is CUDA 11.8, older than CUDA 12.0",
        driver_error: "the driver is CUDA 12.8, older than CUDA 13.0",
    },
    Case {
        name: "incomplete",
        nvrtc: (13, 0),
        driver_code: 13000,
        nvrtc_error: "NVRTC (CUDA 13.0) lacks nvrtcGetNumSupportedArchs",
        driver_error: "the driver (CUDA 13.0) lacks cuInit",
    },
];

fn stub_source(case: &Case) -> (String, String) {
    let (nvrtc_major, nvrtc_minor) = case.nvrtc;
    let driver_code = case.driver_code;
    let nvrtc = format!(
        "int nvrtcVersion(int* major, int* minor) {{ *major = {nvrtc_major}; *minor = {nvrtc_minor}; return 0; }}\n"
    );
    let driver =
        format!("int cuDriverGetVersion(int* version) {{ *version = {driver_code}; return 0; }}\n");
    (nvrtc, driver)
}

fn build_stub(dir: &Path, library: &str, source: &str) {
    let c_file = dir.join(format!("{library}.c"));
    std::fs::write(&c_file, source).expect("write the stub source");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join(format!("lib{library}.so")))
        .arg(&c_file)
        .status()
        .expect("run cc (the C compiler Rust links with) to build a stub library");
    assert!(status.success(), "cc failed to build the {library} stub");
}

fn stub_dir(case: &Case) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kernels-fake-cuda-{}-{}",
        case.name,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create the stub folder");
    let (nvrtc, driver) = stub_source(case);
    build_stub(&dir, "nvrtc", &nvrtc);
    build_stub(&dir, "cuda", &driver);
    dir
}

/// In the child: every entry point refuses, naming the library and its version.
fn check_child(case: &Case) {
    let expected = case.nvrtc_error;
    let nvrtc = match libraries::nvrtc() {
        Err(Error::CudaUnavailable { reason }) => reason,
        other => panic!("NVRTC probe: expected CudaUnavailable, got {other:?}"),
    };
    println!("nvrtc probe: {nvrtc}");
    assert!(nvrtc.contains(expected), "{nvrtc}");
    match compile(Module::Linear, LoadPlan::Cubin { sm: 90 }) {
        Err(Error::CudaUnavailable { reason }) => assert!(reason.contains(expected), "{reason}"),
        other => panic!("compile: expected CudaUnavailable, got {other:?}"),
    }
    let device = match probe(0) {
        Err(Error::CudaUnavailable { reason }) => reason,
        other => panic!("probe: expected CudaUnavailable, got {other:?}"),
    };
    println!("device probe: {device}");
    assert!(device.contains(case.driver_error), "{device}");
}

#[test]
fn fake_libraries_are_refused_with_their_versions_not_a_panic() {
    if let Ok(name) = std::env::var(CASE_VAR) {
        let case = CASES
            .iter()
            .find(|c| c.name == name)
            .expect("the parent sets a known case");
        check_child(case);
        return;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    for case in &CASES {
        let dir = stub_dir(case);
        let output = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CASE_VAR, case.name)
            .env("LD_LIBRARY_PATH", &dir)
            .output()
            .expect("rerun the test executable");
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let name = case.name;
        assert!(
            output.status.success(),
            "case '{name}' failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        assert!(stdout.contains(case.nvrtc_error), "case '{name}': {stdout}");
        assert!(
            stdout.contains(case.driver_error),
            "case '{name}': {stdout}"
        );
        assert!(
            stdout.contains("1 passed"),
            "case '{name}' ran no test: {stdout}"
        );
    }
}
