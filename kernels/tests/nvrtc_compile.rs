//! Compiles every CUDA kernel module with NVRTC: to a cubin for Hopper (`sm_90`) and Ampere
//! (`sm_80`), the images the backend loads, and to PTX for `compute_90`, the fallback. Needs
//! only libnvrtc (no driver, no GPU): CI installs it with
//! `pip install 'nvidia-cuda-nvrtc==13.0.*'` and puts `site-packages/nvidia/cu13/lib` on
//! `LD_LIBRARY_PATH`. Without libnvrtc the tests print that they were skipped and pass, unless
//! `REQUIRE_NVRTC=1`, which makes that a failure.
#![cfg(feature = "cuda")]

use kernels::Error;
use kernels::cuda::libraries;
use kernels::cuda::module::{Compiled, Kernel, LoadPlan, Module, compile, compile_source};
use kernels::cuda::{CudaVersion, Toolchain, compile_all, plan_load, probe};

/// ELF's `e_machine` for NVIDIA CUDA images.
const EM_CUDA: u16 = 190;

fn nvrtc_required() -> bool {
    std::env::var("REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Compiles every module for `plan`; `None` (after saying why) when NVRTC is unavailable and
/// not required.
fn compile_all_or_skip(plan: LoadPlan) -> Option<Vec<(Module, Compiled)>> {
    match compile_all(plan) {
        Ok(compiled) => {
            assert_eq!(compiled.len(), Module::ALL.len());
            Some(compiled)
        }
        Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
            println!("skipped: {reason}");
            None
        }
        Err(err) => panic!("compiling for {plan}: {err}"),
    }
}

fn check_cubins(sm: u32) {
    let Some(compiled) = compile_all_or_skip(LoadPlan::Cubin { sm }) else {
        return;
    };
    for (module, output) in &compiled {
        let name = module.name();
        let cubin = output
            .cubin
            .as_deref()
            .expect("a cubin plan yields a cubin");
        assert!(cubin.len() > 64, "{name}: cubin of {} bytes", cubin.len());
        assert_eq!(
            &cubin[..4],
            b"\x7fELF",
            "{name}: the sm_{sm} cubin is not ELF"
        );
        let machine = u16::from_le_bytes([cubin[18], cubin[19]]);
        assert_eq!(machine, EM_CUDA, "{name}: ELF machine {machine}, not CUDA");
        assert!(!output.ptx.is_empty(), "{name}: no PTX beside the cubin");
        println!("sm_{sm} {name}: {} bytes of cubin", cubin.len());
    }
}

#[test]
fn every_module_compiles_to_a_cubin_for_sm_90() {
    check_cubins(90);
}

#[test]
fn every_module_compiles_to_a_cubin_for_sm_80() {
    check_cubins(80);
}

#[test]
fn every_module_compiles_to_ptx_with_every_kernel_as_an_entry() {
    let Some(compiled) = compile_all_or_skip(LoadPlan::Ptx { sm: 90 }) else {
        return;
    };
    for (module, output) in &compiled {
        assert!(
            output.cubin.is_none(),
            "{}: PTX plan made a cubin",
            module.name()
        );
        let ptx = &output.ptx;
        assert!(
            ptx.contains(".target sm_90"),
            "{}: wrong target",
            module.name()
        );
        for kernel in Kernel::ALL.iter().filter(|k| k.parts().0 == *module) {
            let entry = format!(".entry {}(", kernel.symbol());
            assert!(ptx.contains(&entry), "{} has no {entry}", module.name());
        }
        let isa = ptx
            .lines()
            .find(|l| l.starts_with(".version"))
            .unwrap_or("?");
        println!(
            "compute_90 {}: {} bytes of PTX, {isa}",
            module.name(),
            ptx.len()
        );
    }
}

#[test]
fn a_compile_error_carries_the_nvrtc_log() {
    let bad = "extern \"C\" __global__ void broken_fwd_f32(float* x) { x[0] = undefined_name; }";
    match compile_source("broken", bad, LoadPlan::Cubin { sm: 90 }) {
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

/// The installed NVRTC's real version and targets, with the GPU machines' driver (CUDA 13.0)
/// as a fake: Hopper gets a cubin.
#[test]
fn the_nvrtc_probe_reads_its_version_and_targets() {
    let (nvrtc, archs) = match libraries::nvrtc() {
        Ok(found) => found,
        Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
            println!("skipped: {reason}");
            return;
        }
        Err(err) => panic!("probing NVRTC: {err}"),
    };
    println!("NVRTC {nvrtc}, targets {archs:?}");
    assert!(nvrtc >= libraries::MIN_NVRTC, "NVRTC {nvrtc}");
    assert!(archs.contains(&80) && archs.contains(&90), "{archs:?}");
    let toolchain = Toolchain {
        nvrtc,
        nvrtc_archs: archs,
        driver: CudaVersion::new(13, 0),
    };
    assert_eq!(
        plan_load(&toolchain, (9, 0)).unwrap(),
        LoadPlan::Cubin { sm: 90 }
    );
}

#[test]
fn a_module_compiles_to_the_same_ptx_either_way() {
    let cubin_plan = match compile(Module::Linear, LoadPlan::Cubin { sm: 90 }) {
        Ok(compiled) => compiled,
        Err(Error::CudaUnavailable { reason }) if !nvrtc_required() => {
            println!("skipped: {reason}");
            return;
        }
        Err(err) => panic!("{err}"),
    };
    let ptx_plan = compile(Module::Linear, LoadPlan::Ptx { sm: 90 }).expect("NVRTC worked above");
    assert_eq!(cubin_plan.ptx, ptx_plan.ptx);
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
