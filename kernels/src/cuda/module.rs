//! The registry of `.cu` modules and kernels, NVRTC compilation and the per-context cache.
//!
//! Each op family has one `.cu` file embedded with `include_str!`. A module is compiled on
//! first use (once per process and [`LoadPlan`]: a cubin for the device's architecture, or PTX
//! as the fallback that [`super::load_plan`] describes) and loaded into a backend's context
//! once; functions are looked up once and kept. Compile errors carry the NVRTC log
//! ([`Error::Compile`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

pub use super::load_plan::LoadPlan;
pub use super::nvrtc::{Compiled, compile_source};
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
    /// `loss.cu`: softmax cross-entropy with accuracy, and the fused head.
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
    DropoutStep,
    StepAdvance,
    EmbeddingGather,
    EmbeddingGradRows,
    ConvPool,
    ConvPoolWeights,
    ConvPoolData,
    ConvPoolBranches,
    ConvPoolRetiled,
    ConvPoolBranchesWeights,
    ConvPoolBranchesData,
    LinearFwd,
    LinearBwd,
    SoftmaxXent,
    HeadFwd,
    SumSquaresPartial,
    SumSquaresFinal,
    SumSquaresMultiPartial,
    SumSquaresMultiFinal,
    RmsProp,
    RmsPropMulti,
    RmsPropRows,
}

impl Kernel {
    /// Every kernel, in a fixed order.
    pub const ALL: [Kernel; 25] = [
        Kernel::Fill,
        Kernel::Mul,
        Kernel::Dropout,
        Kernel::DropoutStep,
        Kernel::StepAdvance,
        Kernel::EmbeddingGather,
        Kernel::EmbeddingGradRows,
        Kernel::ConvPool,
        Kernel::ConvPoolWeights,
        Kernel::ConvPoolData,
        Kernel::ConvPoolBranches,
        Kernel::ConvPoolRetiled,
        Kernel::ConvPoolBranchesWeights,
        Kernel::ConvPoolBranchesData,
        Kernel::LinearFwd,
        Kernel::LinearBwd,
        Kernel::SoftmaxXent,
        Kernel::HeadFwd,
        Kernel::SumSquaresPartial,
        Kernel::SumSquaresFinal,
        Kernel::SumSquaresMultiPartial,
        Kernel::SumSquaresMultiFinal,
        Kernel::RmsProp,
        Kernel::RmsPropMulti,
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
            K::DropoutStep => (M::Elementwise, "dropout_step", Pass::Fwd),
            K::StepAdvance => (M::Elementwise, "step_advance", Pass::Fwd),
            K::EmbeddingGather => (M::Embedding, "embedding", Pass::Fwd),
            K::EmbeddingGradRows => (M::Embedding, "embedding", Pass::Bwd),
            K::ConvPool => (M::Conv, "conv_pool", Pass::Fwd),
            K::ConvPoolWeights => (M::Conv, "conv_pool_weights", Pass::Bwd),
            K::ConvPoolData => (M::Conv, "conv_pool_data", Pass::Bwd),
            K::ConvPoolBranches => (M::Conv, "conv_pool_branches", Pass::Fwd),
            K::ConvPoolRetiled => (M::Conv, "conv_pool_retiled", Pass::Fwd),
            K::ConvPoolBranchesWeights => (M::Conv, "conv_pool_branches_weights", Pass::Bwd),
            K::ConvPoolBranchesData => (M::Conv, "conv_pool_branches_data", Pass::Bwd),
            K::LinearFwd => (M::Linear, "linear", Pass::Fwd),
            K::LinearBwd => (M::Linear, "linear", Pass::Bwd),
            K::SoftmaxXent => (M::Loss, "softmax_xent", Pass::Fwd),
            K::HeadFwd => (M::Loss, "head", Pass::Fwd),
            K::SumSquaresPartial => (M::Optim, "sum_squares_partial", Pass::Fwd),
            K::SumSquaresFinal => (M::Optim, "sum_squares_final", Pass::Fwd),
            K::SumSquaresMultiPartial => (M::Optim, "sum_squares_multi_partial", Pass::Fwd),
            K::SumSquaresMultiFinal => (M::Optim, "sum_squares_multi_final", Pass::Fwd),
            K::RmsProp => (M::Optim, "rmsprop", Pass::Fwd),
            K::RmsPropMulti => (M::Optim, "rmsprop_multi", Pass::Fwd),
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

/// Compiles one module for `plan` (e.g. `LoadPlan::Cubin { sm: 90 }`).
///
/// # Errors
/// [`Error::CudaUnavailable`] without a usable libnvrtc; [`Error::Compile`] with the NVRTC log.
pub fn compile(module: Module, plan: LoadPlan) -> Result<Compiled> {
    compile_source(module.name(), module.source(), plan)
}

/// Compiles every module for `plan`, in [`Module::ALL`] order. Needs only libnvrtc, no driver
/// and no GPU.
///
/// # Errors
/// As [`compile`], for the first module that fails.
pub fn compile_all(plan: LoadPlan) -> Result<Vec<(Module, Compiled)>> {
    let mut compiled = Vec::with_capacity(Module::ALL.len());
    for module in Module::ALL {
        compiled.push((module, compile(module, plan)?));
    }
    Ok(compiled)
}

/// What the driver loads for a module, compiled once in this process per module and plan:
/// several backends on one GPU (one per trial slot) share it.
fn cached_image(module: Module, plan: LoadPlan) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<(Module, LoadPlan), Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (module, plan);
    if let Some(image) = lock(cache).get(&key) {
        return Ok(image.clone());
    }
    let image = compile(module, plan)?.loadable();
    lock(cache).insert(key, image.clone());
    Ok(image)
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
    plan: LoadPlan,
    modules: [OnceLock<Arc<CudaModule>>; Module::ALL.len()],
    functions: [OnceLock<CudaFunction>; Kernel::ALL.len()],
}

impl KernelCache {
    /// An empty cache for `ctx`, building modules as `plan` says.
    pub fn new(ctx: Arc<CudaContext>, plan: LoadPlan) -> Self {
        Self {
            ctx,
            plan,
            modules: std::array::from_fn(|_| OnceLock::new()),
            functions: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// What modules are built as (a cubin or PTX, and for which architecture).
    pub fn plan(&self) -> LoadPlan {
        self.plan
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
        let image = cached_image(module, self.plan)?;
        let loaded = self.ctx.load_module(image).map_err(|err| Error::Cuda {
            op: "load_module",
            message: format!("module '{}' ({}): {err}", module.name(), self.plan),
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
