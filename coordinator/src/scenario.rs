//! (scenario: being written.)
