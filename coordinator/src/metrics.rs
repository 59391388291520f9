//! (metrics: being written.)
