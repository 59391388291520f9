//! (local: being written.)
