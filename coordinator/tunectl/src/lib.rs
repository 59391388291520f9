//! `tunectl`, the tunefleet client: creates, inspects, watches and stops experiments over gRPC
//! ([`cli`]), runs studies and writes their reports ([`study`]), runs a whole cluster on one
//! machine ([`local`]), and runs the tuner in-process for benchmarks ([`ask_tell`]). The
//! built-in search spaces are in [`scenario`]. The binary (`src/main.rs`) only parses the
//! command line and calls these modules; they are a library so that tests can reach them.
//!
//! Place in the workspace (STYLE.md §1): a client, not a daemon. It depends on `proto` (the
//! wire types and the generated gRPC client), on `tuner` (search spaces, the early-stopping
//! rules, and the optimizer behind `ask-tell`), and on the `coordinator` library only for what
//! must match the daemon exactly: the pb⇄domain conversions of parameters and early-stopping
//! rules (`coordinator::grpc::convert`), the readiness-line prefix and the log setup. It never
//! starts a coordinator in-process and never links the agent: `tunectl local` runs both as child
//! processes, found next to its own binary.
//!
//! ```
//! use tunectl::study::run::rule_by_name;
//! let spec = tunectl::scenario::scenario("basic-mini").expect("built in");
//! assert_eq!(spec.workload.expect("a workload").kind, "textcnn");
//! assert_eq!(rule_by_name("median").expect("a rule").label(), "median");
//! ```
#![forbid(unsafe_code)]

pub mod ask_tell;
pub mod cli;
pub mod local;
pub mod scenario;
pub mod study;
