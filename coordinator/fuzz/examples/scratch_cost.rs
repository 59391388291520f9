//! Measures what a scratch coordinator costs, to choose between a fresh store per input and one
//! reused across inputs: `cargo run --example scratch_cost` in `coordinator/fuzz/` prints the
//! mean time to start one (over memory, over SQLite) and to run one `spec_toml` seed on the
//! reused SQLite world.

use std::time::{Duration, Instant};

use tunefleet_fuzz::scratch::{Scratch, fuzz_settings};
use tunefleet_fuzz::seeds::BRANIN_RANDOM;
use tunefleet_fuzz::targets::spec_toml;

const RUNS: u32 = 200;

fn mean(what: &str, mut once: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..RUNS {
        once();
    }
    let each = start.elapsed() / RUNS;
    println!("{what}: {each:?} each over {RUNS} runs");
    each
}

fn main() {
    mean("start over memory, register an agent", || {
        Scratch::memory(fuzz_settings()).register(&[]);
    });
    mean("start over a fresh SQLite file, register an agent", || {
        Scratch::sqlite(fuzz_settings()).register(&[]);
    });
    spec_toml::run(BRANIN_RANDOM.as_bytes());
    mean("one spec_toml seed on the reused SQLite world", || {
        spec_toml::run(BRANIN_RANDOM.as_bytes());
    });
}
