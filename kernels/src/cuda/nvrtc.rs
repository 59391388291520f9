//! Compiles CUDA C with NVRTC to PTX and, for a real architecture, to a cubin.
//!
//! cudarc's `compile_ptx_with_opts` returns PTX only, so this drives NVRTC through cudarc's
//! `result` and `sys` layers: create, compile with `--gpu-architecture` from the
//! [`LoadPlan`], read the PTX, and for [`LoadPlan::Cubin`] read the SASS with
//! `nvrtcGetCUBINSize` / `nvrtcGetCUBIN`. [`super::libraries::nvrtc`] runs first, so no call
//! reaches a missing entry point (which would panic under dynamic loading).

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;

use cudarc::nvrtc::result::{self as nvrtc, NvrtcError};
use cudarc::nvrtc::{Ptx, sys};

use super::libraries;
use super::load_plan::LoadPlan;
use crate::{Error, Result};

/// One module's NVRTC output for a [`LoadPlan`].
#[derive(Debug, Clone)]
pub struct Compiled {
    /// What it was built for.
    pub plan: LoadPlan,
    /// The PTX text (NVRTC emits it for both plans).
    pub ptx: String,
    /// The ELF image of SASS, for [`LoadPlan::Cubin`] only.
    pub cubin: Option<Vec<u8>>,
}

impl Compiled {
    /// What the driver loads: the cubin when there is one, else the PTX.
    pub fn loadable(&self) -> Ptx {
        match &self.cubin {
            Some(image) => Ptx::from_binary(image.clone()),
            None => Ptx::from_src(self.ptx.clone()),
        }
    }
}

/// Compiles CUDA C `source` (named `module` in errors) for `plan`.
///
/// # Errors
/// [`Error::CudaUnavailable`] when libnvrtc is missing or too old; [`Error::Compile`] with the
/// NVRTC log, or naming the NVRTC call that failed.
pub fn compile_source(module: &'static str, source: &str, plan: LoadPlan) -> Result<Compiled> {
    libraries::nvrtc()?;
    let failed = |call: &'static str| {
        move |err: NvrtcError| Error::Compile {
            module,
            log: format!("{call} failed: {err}"),
        }
    };
    let source_c = CString::new(source).map_err(|_| Error::Compile {
        module,
        log: "the source contains a NUL byte".to_string(),
    })?;
    let name_c = CString::new(format!("{module}.cu")).expect("module names have no NUL byte");
    let program = Program::create(&source_c, &name_c).map_err(failed("nvrtcCreateProgram"))?;
    let options = [
        format!("--gpu-architecture={}", plan.gpu_architecture()),
        "--std=c++17".to_string(),
    ];
    if let Err(err) = program.compile(&options) {
        let log = program.log().unwrap_or_else(|_| String::from("(no log)"));
        return Err(Error::Compile {
            module,
            log: format!("{err} with options {options:?}\n{log}"),
        });
    }
    let ptx = program.ptx().map_err(failed("nvrtcGetPTX"))?;
    let cubin = match plan {
        LoadPlan::Cubin { .. } => Some(program.cubin().map_err(failed("nvrtcGetCUBIN"))?),
        LoadPlan::Ptx { .. } => None,
    };
    Ok(Compiled { plan, ptx, cubin })
}

/// An NVRTC program, destroyed on drop; it borrows the source and name it was created from.
struct Program<'a> {
    raw: sys::nvrtcProgram,
    _text: PhantomData<&'a CStr>,
}

impl<'a> Program<'a> {
    fn create(source: &'a CStr, name: &'a CStr) -> Result<Self, NvrtcError> {
        let raw = nvrtc::create_program(source, Some(name))?;
        Ok(Self {
            raw,
            _text: PhantomData,
        })
    }

    fn compile(&self, options: &[String]) -> Result<(), NvrtcError> {
        // SAFETY: `raw` came from nvrtcCreateProgram and is destroyed only on drop.
        unsafe { nvrtc::compile_program(self.raw, options) }
    }

    fn log(&self) -> Result<String, NvrtcError> {
        // SAFETY: as in `compile`.
        let log = unsafe { nvrtc::get_program_log(self.raw) }?;
        Ok(text(&log))
    }

    fn ptx(&self) -> Result<String, NvrtcError> {
        // SAFETY: as in `compile`; called after a successful compile.
        let ptx = unsafe { nvrtc::get_ptx(self.raw) }?;
        Ok(text(&ptx))
    }

    fn cubin(&self) -> Result<Vec<u8>, NvrtcError> {
        let mut size: usize = 0;
        // SAFETY: `raw` is live and compiled; the pointer is valid for one write.
        unsafe { sys::nvrtcGetCUBINSize(self.raw, &mut size) }.result()?;
        let mut image = vec![0u8; size];
        if size > 0 {
            // SAFETY: `image` has the `size` bytes NVRTC reported and will write.
            unsafe { sys::nvrtcGetCUBIN(self.raw, image.as_mut_ptr().cast::<c_char>()) }
                .result()?;
        }
        Ok(image)
    }
}

impl Drop for Program<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` is live and destroyed once, here. A failure only leaks the program.
        let _ = unsafe { nvrtc::destroy_program(self.raw) };
    }
}

/// NVRTC's NUL-terminated text as a string.
fn text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
