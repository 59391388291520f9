//! tunefleet's wire API: prost messages and tonic clients and servers generated from
//! `proto/tunefleet/v1/tunefleet.proto`.
//!
//! This crate holds generated code and nothing else (STYLE.md §1); conversions to domain types
//! live in the crates that own those types (`coordinator::grpc::convert`, `agent`).
//!
//! ```
//! use proto::v1::{Direction, ExperimentSpec};
//! let spec = ExperimentSpec { name: "demo".into(), direction: Direction::Maximize as i32, ..Default::default() };
//! assert_eq!(spec.direction(), Direction::Maximize);
//! ```
#![forbid(unsafe_code)]

/// Version 1 of the API, package `tunefleet.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("tunefleet.v1");
}
