//! Studies: the study's comparison of BO, random and grid search run as tagged experiments
//! (`tunectl study`, [`run`]), the report computed from what was stored (`tunectl report`:
//! [`data`] → [`tables`], [`curves`], [`importance`] → [`plots`], [`report`]). The
//! early-stopping rules the experiments may use live in the optimizer crate
//! ([`tuner::early_stop`]), which the coordinator's service applies.
//!
//! Everything after [`data::fetch`] is a pure function of [`data::StudyData`], so the tests
//! compute the tables from a stored fixture study (`coordinator/tunectl/tests/fixtures/study/`).

pub mod curves;
pub mod data;
pub mod importance;
pub mod plots;
pub mod report;
pub mod run;
pub mod tables;
