//! The early-stopping rules the service applies: a re-export of [`tuner::early_stop`], where the
//! pure rules (median stopping, ASHA) and their tests live, so that callers keep writing
//! `crate::service::early_stop::…`.

pub use tuner::early_stop::*;
