//! Seed corpora of the fuzz targets (`benches/fuzz.sh`): valid inputs written by the
//! core's own writers, packed one file per seed into `DIR/<target>/`.
//!
//! `cargo run -p miniplm-core --example fuzz_seeds -- DIR`

#[path = "../tests/parsers/mod.rs"]
mod parsers;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| std::io::Error::other("usage: fuzz_seeds DIR"))?;
    for t in parsers::Target::ALL {
        let d = dir.join(t.name());
        std::fs::create_dir_all(&d)?;
        for (k, seed) in t.seeds().iter().enumerate() {
            std::fs::write(d.join(format!("seed-{k}")), parsers::encode(seed))?;
        }
    }
    Ok(())
}
