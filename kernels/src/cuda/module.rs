//! The registry of `.cu` modules and kernels, NVRTC compilation and the per-context cache.
//!
//! Each op family has one `.cu` file embedded with `include_str!`. A module is compiled to PTX
//! for the device's compute capability on first use (once per process and architecture) and
//! loaded into a backend's context once; functions are looked up once and kept. Compile errors
//! carry the NVRTC log ([`Error::Compile`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

use crate::{Error, Result};

/// One `.cu` source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    /// `elementwise.cu`: fill, product, dropout.
    Elementwise,
    /// `embedding.cu`: gather and gradient rows.
    Embedding,
    /// `conv.cu`: fused convolution with max over time, and its backward.
    Conv,
    /// `linear.cu`: fully connected forward and backward.
    Linear,
    /// `loss.cu`: softmax cross-entropy with accuracy.
    Loss,
    /// `optim.cu`: sum of squares and RMSProp.
    Optim,
}

impl Module {
    /// Every module, in a fixed order.
    pub const ALL: [Module; 6] = [
        Module::Elementwise,
        Module::Embedding,
        Module::Conv,
        Module::Linear,
        Module::Loss,
        Module::Optim,
    ];

    /// The module's name (its file stem).
    pub fn name(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise",
            Module::Embedding => "embedding",
            Module::Conv => "conv",
            Module::Linear => "linear",
            Module::Loss => "loss",
            Module::Optim => "optim",
        }
    }

    /// The CUDA C source.
    pub fn source(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("elementwise.cu"),
            Module::Embedding => include_str!("embedding.cu"),
            Module::Conv => include_str!("conv.cu"),
            Module::Linear => include_str!("linear.cu"),
            Module::Loss => include_str!("loss.cu"),
            Module::Optim => include_str!("optim.cu"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Forward or backward, the middle part of a kernel's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// `fwd`.
    Fwd,
    /// `bwd`.
    Bwd,
}

/// Builds a kernel's symbol, `<op>_<fwd|bwd>_f32`.
pub fn kernel_name(op: &str, pass: Pass) -> String {
    let pass = match pass {
        Pass::Fwd => "fwd",
        Pass::Bwd => "bwd",
    };
    format!("{op}_{pass}_f32")
}

/// Every kernel the backend launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kernel {
    Fill,
    Mul,
    Dropout,
    EmbeddingGather,
    EmbeddingGradRows,
    ConvPool,
    ConvPoolWeights,
    ConvPoolData,
    LinearFwd,
    LinearBwd,
    SoftmaxXent,
    SumSquaresPartial,
    SumSquaresFinal,
    RmsProp,
    RmsPropRows,
}

impl Kernel {
    /// Every kernel, in a fixed order.
    pub const ALL: [Kernel; 15] = [
        Kernel::Fill,
        Kernel::Mul,
        Kernel::Dropout,
        Kernel::EmbeddingGather,
        Kernel::EmbeddingGradRows,
        Kernel::ConvPool,
        Kernel::ConvPoolWeights,
        Kernel::ConvPoolData,
        Kernel::LinearFwd,
        Kernel::LinearBwd,
        Kernel::SoftmaxXent,
        Kernel::SumSquaresPartial,
        Kernel::SumSquaresFinal,
        Kernel::RmsProp,
        Kernel::RmsPropRows,
    ];

    /// The module that defines the kernel, its op name and its pass.
    pub fn parts(self) -> (Module, &'static str, Pass) {
        use Kernel as K;
        use Module as M;
        match self {
            K::Fill => (M::Elementwise, "fill", Pass::Fwd),
            K::Mul => (M::Elementwise, "mul", Pass::Fwd),
            K::Dropout => (M::Elementwise, "dropout", Pass::Fwd),
            K::EmbeddingGather => (M::Embedding, "embedding", Pass::Fwd),
            K::EmbeddingGradRows => (M::Embedding, "embedding", Pass::Bwd),
            K::ConvPool => (M::Conv, "conv_pool", Pass::Fwd),
            K::ConvPoolWeights => (M::Conv, "conv_pool_weights", Pass::Bwd),
            K::ConvPoolData => (M::Conv, "conv_pool_data", Pass::Bwd),
            K::LinearFwd => (M::Linear, "linear", Pass::Fwd),
            K::LinearBwd => (M::Linear, "linear", Pass::Bwd),
            K::SoftmaxXent => (M::Loss, "softmax_xent", Pass::Fwd),
            K::SumSquaresPartial => (M::Optim, "sum_squares_partial", Pass::Fwd),
            K::SumSquaresFinal => (M::Optim, "sum_squares_final", Pass::Fwd),
            K::RmsProp => (M::Optim, "rmsprop", Pass::Fwd),
            K::RmsPropRows => (M::Optim, "rmsprop_rows", Pass::Fwd),
        }
    }

    /// The kernel's symbol in its module.
    pub fn symbol(self) -> String {
        let (_, op, pass) = self.parts();
        kernel_name(op, pass)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Fails with [`Error::CudaUnavailable`] when libnvrtc cannot be loaded (cudarc would panic on
/// its first NVRTC call otherwise).
pub fn ensure_nvrtc() -> Result<()> {
    // SAFETY: this only tries to dlopen the NVRTC library by its usual names; loading runs the
    // library's initializers, which for NVIDIA's libnvrtc have no preconditions.
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    if present {
        Ok(())
    } else {
        Err(Error::CudaUnavailable {
            reason: "the NVRTC library (libnvrtc.so.13) was not found: install the CUDA 13 \
                     runtime compiler or put its folder (e.g. /usr/local/cuda/lib64) on \
                     LD_LIBRARY_PATH"
                .to_string(),
        })
    }
}

/// Compiles one module to PTX for `arch` (e.g. "sm_90").
///
/// # Errors
/// [`Error::CudaUnavailable`] without libnvrtc; [`Error::Compile`] with the NVRTC log.
pub fn compile(module: Module, arch: &str) -> Result<Ptx> {
    compile_source(module.name(), module.source(), arch)
}

/// Compiles CUDA C `source` (named `module` in errors) to PTX for `arch`.
///
/// # Errors
/// [`Error::CudaUnavailable`] without libnvrtc; [`Error::Compile`] with the NVRTC log.
pub fn compile_source(module: &'static str, source: &str, arch: &str) -> Result<Ptx> {
    ensure_nvrtc()?;
    let options = CompileOptions {
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".to_string(),
        ],
        name: Some(format!("{module}.cu")),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|err| {
        let log = match err {
            CompileError::CompileError { log, options, .. } => {
                format!("options {options:?}\n{}", log.to_string_lossy())
            }
            other => format!("{other:?}"),
        };
        Error::Compile { module, log }
    })
}

/// Compiles every module for `arch` and returns each module's name and PTX length in bytes.
/// Needs only libnvrtc, no driver and no GPU.
///
/// # Errors
/// As [`compile`], for the first module that fails.
pub fn compile_all_for_arch(arch: &str) -> Result<Vec<(&'static str, usize)>> {
    let mut sizes = Vec::with_capacity(Module::ALL.len());
    for module in Module::ALL {
        let ptx = compile(module, arch)?;
        sizes.push((module.name(), ptx.to_src().len()));
    }
    Ok(sizes)
}

/// PTX compiled in this process, by module and architecture: several backends on one GPU
/// (one per trial slot) compile each module once.
fn cached_ptx(module: Module, arch: &str) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<(Module, String), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (module, arch.to_string());
    if let Some(ptx) = lock(cache).get(&key) {
        return Ok(ptx.clone());
    }
    let ptx = compile(module, arch)?;
    lock(cache).insert(key, ptx.clone());
    Ok(ptx)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent (one insert).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Modules and functions loaded into one context, filled on first use.
#[derive(Debug)]
pub struct KernelCache {
    ctx: Arc<CudaContext>,
    arch: String,
    modules: [OnceLock<Arc<CudaModule>>; Module::ALL.len()],
    functions: [OnceLock<CudaFunction>; Kernel::ALL.len()],
}

impl KernelCache {
    /// An empty cache for `ctx`, compiling for `arch` (e.g. "sm_90").
    pub fn new(ctx: Arc<CudaContext>, arch: String) -> Self {
        Self {
            ctx,
            arch,
            modules: std::array::from_fn(|_| OnceLock::new()),
            functions: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The architecture modules are compiled for.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The loaded function of `kernel`, compiling and loading its module on first use.
    ///
    /// # Errors
    /// [`Error::Compile`], or [`Error::Cuda`] when the driver rejects the module or the symbol.
    pub fn function(&self, kernel: Kernel) -> Result<&CudaFunction> {
        let slot = &self.functions[kernel.index()];
        if let Some(function) = slot.get() {
            return Ok(function);
        }
        let (module, _, _) = kernel.parts();
        let loaded = self.module(module)?;
        let function = loaded
            .load_function(&kernel.symbol())
            .map_err(|err| Error::Cuda {
                op: "load_function",
                message: format!("kernel '{}': {err}", kernel.symbol()),
            })?;
        Ok(slot.get_or_init(|| function))
    }

    /// Compiles and loads every module now (so the first step is not slowed by NVRTC).
    ///
    /// # Errors
    /// As [`KernelCache::function`].
    pub fn load_all(&self) -> Result<()> {
        for kernel in Kernel::ALL {
            self.function(kernel)?;
        }
        Ok(())
    }

    fn module(&self, module: Module) -> Result<&Arc<CudaModule>> {
        let slot = &self.modules[module.index()];
        if let Some(loaded) = slot.get() {
            return Ok(loaded);
        }
        let ptx = cached_ptx(module, &self.arch)?;
        let loaded = self.ctx.load_module(ptx).map_err(|err| Error::Cuda {
            op: "load_module",
            message: format!("module '{}': {err}", module.name()),
        })?;
        Ok(slot.get_or_init(|| loaded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_the_convention() {
        assert_eq!(kernel_name("conv_pool", Pass::Fwd), "conv_pool_fwd_f32");
        assert_eq!(Kernel::EmbeddingGradRows.symbol(), "embedding_bwd_f32");
        for (i, kernel) in Kernel::ALL.iter().enumerate() {
            assert_eq!(kernel.index(), i, "{kernel:?} out of order");
        }
        for (i, module) in Module::ALL.iter().enumerate() {
            assert_eq!(module.index(), i, "{module:?} out of order");
        }
    }

    #[test]
    fn every_kernel_symbol_appears_in_its_source() {
        for kernel in Kernel::ALL {
            let (module, _, _) = kernel.parts();
            let declaration = format!("{}(", kernel.symbol());
            let found = module.source().contains(&declaration)
                || module.source().contains(&format!("\n{}(", kernel.symbol()));
            assert!(found, "{} not in {}.cu", kernel.symbol(), module.name());
            assert!(
                module.source().contains("extern \"C\" __global__"),
                "{}.cu has no extern C kernels",
                module.name()
            );
        }
    }
}
