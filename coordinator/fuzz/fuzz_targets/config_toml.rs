//! The `config_toml` fuzz target: see `tunefleet_fuzz::targets::config_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunefleet_fuzz::harness::tally(tunefleet_fuzz::targets::config_toml::run(data));
});
