//! The `client_rpc` fuzz target: see `tunefleet_fuzz::targets::client_rpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunefleet_fuzz::harness::tally(tunefleet_fuzz::targets::client_rpc::run(data));
});
