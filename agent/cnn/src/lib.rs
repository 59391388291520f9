//! The study's text CNN (Kim 2014, "Convolutional neural networks for sentence
//! classification", CNN-rand) on MR: data pipeline, model, RMSProp and the training loop.
//!
//! Place in the stack (STYLE.md §1): `agent → cnn → kernels`. This crate composes the
//! operations of [`kernels::Backend`] into a training step and is generic over the backend, so
//! the same code trains on the CPU and on a GPU. It does no networking and no async work.
//!
//! - [`data`]: MR exactly as the reference pipeline tokenizes, pads and splits it, and users'
//!   own `label<TAB>text` or `label text` files (train, optional dev and test).
//! - [`model`]: embedding → three convolution branches → ReLU → max over time → dropout →
//!   linear → softmax cross-entropy, as backend calls.
//! - [`optim`]: RMSProp (plain or centered) with global-norm clipping and a lazy sparse
//!   embedding update.
//! - [`train()`]: the loop, one report an epoch.
//!
//! ```no_run
//! use cnn::{data, train, Control, HyperParams};
//! use kernels::cpu::CpuBackend;
//!
//! let data = data::mr_embedded()?.truncated(500, 200);
//! let hp = HyperParams::study_default().with_overrides([("embed_dim", 32.0), ("epochs", 2.0)])?;
//! let summary = train(&CpuBackend::new(), &data, &hp, 1, |report| {
//!     println!("epoch {} dev {:.3}", report.epoch, report.dev_accuracy);
//!     Control::Continue
//! })?;
//! println!("score {:.3}", summary.final_dev_accuracy);
//! # Ok::<(), cnn::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod data;
mod error;
pub mod model;
pub mod optim;
mod params;
mod train;

pub use data::Dataset;
pub use error::{Error, Result};
pub use params::HyperParams;
pub use train::{Control, EpochReport, TrainSummary, learning_rate_at, train};
