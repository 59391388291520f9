//! Writes the seed corpus, `corpus/<target>/seed-*`, from `tunefleet_fuzz::seeds`:
//! `cargo run --example write_seeds` in `coordinator/fuzz/`. The files are committed; run this
//! again after changing the seeds or the wire format.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in tunefleet_fuzz::seeds::all() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(&name), bytes)?;
        }
        println!("{}", dir.display());
    }
    Ok(())
}
