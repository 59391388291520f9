//! Compiles every CUDA kernel module to PTX with NVRTC for Hopper (`sm_90`) and Ampere
//! (`sm_80`). Needs only libnvrtc (no driver, no GPU): CI installs it with
//! `pip install 'nvidia-cuda-nvrtc==13.0.*'` and puts `site-packages/nvidia/cu13/lib` on
//! `LD_LIBRARY_PATH`. Without libnvrtc the tests print that they were skipped and pass, unless
//! `REQUIRE_NVRTC=1`, which makes that a failure.
#![cfg(feature = "cuda")]

use kernels::Error;
use kernels::cuda::module::{Kernel, Module, compile, compile_source};
use kernels::cuda::{compile_all_for_arch, probe};

fn nvrtc_required() -> bool {
    std::env::var("REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Compiles every module for `arch`, or reports why NVRTC is unavailable.
fn compile_all_or_skip(arch: &str) {
    match compile_all_for_arch(arch) {
        Ok(sizes) => {
            assert_eq!(sizes.len(), Module::ALL.len());
            for (name, ptx_len) in &sizes {
                assert!(*ptx_len > 0, "{name}: empty PTX for {arch}");
                println!("{arch} {name}: {ptx_len} bytes of PTX");
            }
        }
        Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
            println!("skipped: {reason}");
        }
        Err(err) => panic!("compiling for {arch}: {err}"),
    }
}

#[test]
fn every_module_compiles_for_sm_90() {
    compile_all_or_skip("sm_90");
}

#[test]
fn every_module_compiles_for_sm_80() {
    compile_all_or_skip("sm_80");
}

#[test]
fn every_kernel_is_an_entry_in_the_compiled_ptx() {
    for module in Module::ALL {
        let ptx = match compile(module, "sm_90") {
            Ok(ptx) => ptx.to_src(),
            Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
                println!("skipped: {reason}");
                return;
            }
            Err(err) => panic!("{err}"),
        };
        for kernel in Kernel::ALL.iter().filter(|k| k.parts().0 == module) {
            let entry = format!(".entry {}(", kernel.symbol());
            assert!(ptx.contains(&entry), "{} has no {entry}", module.name());
        }
    }
}

#[test]
fn a_compile_error_carries_the_nvrtc_log() {
    let bad = "extern \"C\" __global__ void broken_fwd_f32(float* x) { x[0] = undefined_name; }";
    match compile_source("broken", bad, "sm_90") {
        Err(Error::Compile { module, log }) => {
            assert_eq!(module, "broken");
            assert!(
                log.contains("undefined_name"),
                "log without the culprit: {log}"
            );
        }
        Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
            println!("skipped: {reason}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

/// This machine may have no driver: probing must then be a clear error, never a panic.
#[test]
fn probe_without_a_device_is_a_clear_error() {
    match probe(0) {
        Ok(info) => println!("found {info:?}"),
        Err(Error::CudaUnavailable { reason }) => {
            println!("cuda unavailable (expected without a GPU): {reason}");
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("probe(0) must fail with CudaUnavailable, got: {other}"),
    }
    match probe(1_000) {
        Err(Error::CudaUnavailable { .. }) => {}
        other => panic!("probe(1000) must fail with CudaUnavailable, got: {other:?}"),
    }
}
