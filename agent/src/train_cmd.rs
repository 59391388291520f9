//! (train_cmd: being written.)
