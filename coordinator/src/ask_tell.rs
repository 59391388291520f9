//! (ask_tell: being written.)
