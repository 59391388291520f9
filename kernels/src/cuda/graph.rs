//! CUDA graphs of a backend's stream: [`crate::Backend::capture_graph`] records what a closure
//! enqueues (stream capture, `cuStreamBeginCapture` / `cuStreamEndCapture`) and instantiates
//! it; [`crate::Backend::replay_graph`] launches it with one call, in place of one launch a
//! kernel. `TUNEFLEET_CUDA_GRAPH=0` in the environment, or [`CudaBackend::set_graphs`], turns
//! capture off (the training step then runs uncaptured, with the same kernels and results).

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cudarc::driver::CudaGraph;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};

use cudarc::driver::DriverError;

use super::CudaBackend;
use crate::{Error, Result};

/// The environment variable that switches graphs off (`0`, `false`, `off` or `no`).
pub const GRAPH_ENV: &str = "TUNEFLEET_CUDA_GRAPH";

/// Whether graphs are on for a value of [`GRAPH_ENV`] (on unless it says off).
pub fn graphs_enabled_by(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "false" | "off" | "no")
    )
}

/// A captured graph that may move between threads.
pub(super) struct Graph(CudaGraph);

// SAFETY: CUDA graph objects are not internally synchronized, but may be used from any thread
// when calls on one graph are serialized (CUDA driver API, "Graph object thread safety"); the
// backend keeps them in a `Mutex` and touches them only with it held.
unsafe impl Send for Graph {}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graph")
    }
}

/// The graphs of one backend.
pub(super) type Graphs = Mutex<Vec<Graph>>;

/// A driver error of a graph call, naming the switch that trains without graphs.
fn graph_error(op: &'static str) -> impl FnOnce(DriverError) -> Error {
    move |err| Error::Cuda {
        op,
        message: format!("{err} ({GRAPH_ENV}=0 trains without CUDA graphs)"),
    }
}

fn lock(graphs: &Graphs) -> MutexGuard<'_, Vec<Graph>> {
    graphs.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CudaBackend {
    /// Turns graph capture on or off for this backend (on by default unless
    /// `TUNEFLEET_CUDA_GRAPH=0`). Off, [`crate::Backend::capture_graph`] returns `None`.
    pub fn set_graphs(&self, on: bool) {
        self.graphs_on.store(on, Ordering::Relaxed);
    }

    /// Whether [`crate::Backend::capture_graph`] captures.
    pub fn graphs_enabled(&self) -> bool {
        self.graphs_on.load(Ordering::Relaxed)
    }

    pub(super) fn capture(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<Option<usize>> {
        const OP: &str = "capture_graph";
        if !self.graphs_enabled() {
            return Ok(None);
        }
        if self.lock_profile().is_some() {
            return Err(Error::InvalidShape {
                op: OP,
                reason: "cannot capture while the per-operation profile records events".into(),
            });
        }
        // Thread-local mode: another thread's backend (another trial on this GPU) may allocate
        // while this one captures.
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(graph_error(OP))?;
        // Launches enqueued while capturing do not run; the counters count replays instead.
        let launches_before = self.launches.load(Ordering::Relaxed);
        let recorded = body();
        self.launches.store(launches_before, Ordering::Relaxed);
        // End the capture whatever happened, so the stream is usable again.
        let ended = self
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(graph_error(OP));
        recorded?;
        let Some(graph) = ended? else {
            return Err(Error::Cuda {
                op: OP,
                message: "the capture recorded no graph".into(),
            });
        };
        graph.upload().map_err(graph_error(OP))?;
        let mut graphs = lock(&self.graphs);
        graphs.push(Graph(graph));
        Ok(Some(graphs.len() - 1))
    }

    pub(super) fn replay(&self, id: usize) -> Result<()> {
        const OP: &str = "replay_graph";
        let graphs = lock(&self.graphs);
        let graph = graphs.get(id).ok_or_else(|| Error::InvalidShape {
            op: OP,
            reason: format!("graph {id} was never captured ({} graphs)", graphs.len()),
        })?;
        graph.0.launch().map_err(graph_error(OP))?;
        self.graph_launches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn drop_graphs(&self) {
        lock(&self.graphs).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_are_on_unless_the_variable_says_off() {
        assert!(graphs_enabled_by(None));
        assert!(graphs_enabled_by(Some("1")));
        assert!(graphs_enabled_by(Some("yes")));
        for off in ["0", "false", "OFF", " no "] {
            assert!(!graphs_enabled_by(Some(off)), "{off}");
        }
    }
}
