//! Replays every committed seed through its target under plain `cargo test`, and checks the
//! committed seeds are the ones `examples/write_seeds.rs` writes.

use std::path::Path;

use tunefleet_fuzz::{Reached, targets};

fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the seed folder exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("a readable seed"))
        })
        .collect();
    seeds.sort();
    seeds
}

/// Names and lengths: prost encodes a map in `HashMap` order, so the bytes of an encoded seed
/// differ from run to run.
fn shape(seeds: &[(String, Vec<u8>)]) -> Vec<(String, usize)> {
    let mut shape: Vec<(String, usize)> = seeds
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.len()))
        .collect();
    shape.sort();
    shape
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    for (target, generated) in tunefleet_fuzz::seeds::all() {
        assert_eq!(
            shape(&committed(target)),
            shape(&generated),
            "{target}: run the write_seeds example"
        );
    }
}

/// A target's `run`.
type Target = fn(&[u8]) -> Reached;

#[test]
fn every_seed_runs_clean() {
    let runs: [(&str, Target); 4] = [
        ("spec_toml", targets::spec_toml::run),
        ("client_rpc", targets::client_rpc::run),
        ("agent_rpc", targets::agent_rpc::run),
        ("config_toml", targets::config_toml::run),
    ];
    for (target, run) in runs {
        for (name, bytes) in committed(target) {
            let reached = run(&bytes);
            let wanted = if name.contains("-refused") {
                Reached::Refused
            } else {
                Reached::Served
            };
            assert_eq!(reached, wanted, "{target}/{name}");
        }
    }
}
