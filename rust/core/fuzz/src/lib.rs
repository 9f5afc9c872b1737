//! Coverage-guided fuzz targets of the core's parsers (run by `benches/fuzz.sh`). The
//! targets, their files and the rule they keep live in the core's
//! `tests/parsers/mod.rs`, shared with CI's mutation test `tests/fuzz_parsers.rs`.

#[path = "../../tests/parsers/mod.rs"]
pub mod parsers;

use std::sync::OnceLock;

pub use parsers::Target;

/// One fuzzer input: the target's files packed by `parsers::encode`, written into a
/// directory of this process (reused: one input at a time) and parsed.
pub fn run(target: Target, data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    target.check(dir.path(), &parsers::decode(data, target.files().len()));
}
