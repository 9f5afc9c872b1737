//! Mutation fuzzing of every parser of untrusted bytes (CI's fuzzer; the coverage-guided
//! one is `benches/fuzz.sh`): valid files written by the core's own writers, then bytes
//! flipped, overwritten, inserted, deleted or cut off; the parsers must keep the rule of
//! `parsers/mod.rs` (Ok, or a format error naming an input; no panic).

mod parsers;

use parsers::Target;
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Clone, Debug)]
enum Edit {
    Flip(Index, u8),
    Set(Index, u8),
    /// Little-endian `u64` over 8 bytes: header counts, lengths and offsets.
    Word(Index, u64),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

/// Bytes that matter to the text parts (JSON, the `.npy` header dict) besides any byte.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b"0123456789-+.eE\"',:()[]{} ".to_vec())
    ]
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        prop::sample::select(vec![
            0,
            1,
            2,
            u64::MAX,
            i64::MAX as u64,
            1 << 31,
            1 << 32,
            1 << 60,
            (1 << 60) + 1,
        ]),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<Index>(), byte()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), word()).prop_map(|(i, w)| Edit::Word(i, w)),
        (any::<Index>(), prop::collection::vec(byte(), 1..12))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let at = |i: &Index, n: usize| if n == 0 { 0 } else { i.index(n) };
    match e {
        Edit::Flip(i, b) if !bytes.is_empty() => {
            let k = at(i, bytes.len());
            bytes[k] ^= 1 << b;
        }
        Edit::Set(i, b) if !bytes.is_empty() => {
            let k = at(i, bytes.len());
            bytes[k] = *b;
        }
        Edit::Word(i, w) => {
            let k = at(i, bytes.len().saturating_sub(7));
            let end = (k + 8).min(bytes.len());
            bytes[k..end].copy_from_slice(&w.to_le_bytes()[..end - k]);
        }
        Edit::Insert(i, b) => {
            let k = at(i, bytes.len() + 1);
            bytes.splice(k..k, b.iter().copied());
        }
        Edit::Delete(i, n) if !bytes.is_empty() => {
            let k = at(i, bytes.len());
            bytes.drain(k..(k + n).min(bytes.len()));
        }
        Edit::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        _ => {}
    }
}

/// The files of one input, shown as escaped byte strings when a case fails (a `Vec<u8>`
/// would print one number per line).
#[derive(Clone)]
struct Files(Vec<Vec<u8>>);

struct Bytes<'a>(&'a [u8]);

impl std::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|b| Bytes(b)))
            .finish()
    }
}

fn mutated(target: Target) -> impl Strategy<Value = Files> {
    let seeds = target.seeds();
    let files = target.files().len();
    (
        0..seeds.len(),
        prop::collection::vec((0..files, edit()), 1..5),
    )
        .prop_map(move |(s, edits)| {
            let mut contents = seeds[s].clone();
            for (f, e) in &edits {
                apply(&mut contents[*f], e);
            }
            Files(contents)
        })
}

fn run(target: Target, contents: &[Vec<u8>]) -> bool {
    let d = tempfile::tempdir().unwrap();
    target.check(d.path(), contents)
}

#[test]
fn seeds_parse() {
    for t in Target::ALL {
        for s in t.seeds() {
            assert!(run(t, &s), "a {} seed does not parse", t.name());
        }
    }
}

#[test]
fn container_round_trips() {
    let c = vec![b"ab".to_vec(), vec![], b"xyz".to_vec()];
    assert_eq!(parsers::decode(&parsers::encode(&c), 3), c);
    assert_eq!(parsers::decode(b"\xff\xff", 2), vec![Vec::<u8>::new(); 2]);
}

proptest! {
    // Failures are kept as named tests below, not in a regressions file.
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_shards(c in mutated(Target::Shard)) { run(Target::Shard, &c.0); }

    #[test]
    fn mutated_npy(c in mutated(Target::Npy)) { run(Target::Npy, &c.0); }

    #[test]
    fn mutated_score_runs(c in mutated(Target::ScoreRun)) { run(Target::ScoreRun, &c.0); }

    #[test]
    fn mutated_selections(c in mutated(Target::Selection)) { run(Target::Selection, &c.0); }
}

// Inputs the fuzzers found, each once a panic or a misclassified error.

/// `seed` of `target` with `from` replaced by `to` in its file `file`.
fn edited(target: Target, file: usize, from: &[u8], to: &[u8]) -> Vec<Vec<u8>> {
    let mut c = target.seeds().swap_remove(0);
    let f = &mut c[file];
    let at = f
        .windows(from.len())
        .position(|w| w == from)
        .expect("seed holds the text");
    f.splice(at..at + from.len(), to.iter().copied());
    c
}

#[test]
fn score_run_part_missing_is_a_format_error() {
    // The manifest names a part directory that does not exist (was: Io NotFound).
    let c = edited(Target::ScoreRun, 0, b"part-000000", b"rart-000000");
    assert!(!run(Target::ScoreRun, &c));
}

#[test]
fn score_run_part_name_that_cannot_be_a_directory_is_a_format_error() {
    // A file, a NUL byte, a name too long for the file system (were: Io NotADirectory,
    // InvalidInput, NameTooLong).
    let long = "p".repeat(300);
    for name in ["manifest.json", "a\\u0000b", &long] {
        let c = edited(Target::ScoreRun, 0, b"part-000000", name.as_bytes());
        assert!(!run(Target::ScoreRun, &c), "{name}");
    }
}

#[test]
fn selection_json_not_utf8_is_a_format_error() {
    // was: Io InvalidData "stream did not contain valid UTF-8"
    let c = edited(Target::Selection, 0, b"\"format\"", b"\"\xff\"");
    assert!(!run(Target::Selection, &c));
}

#[test]
fn npy_empty_or_non_ascii_descr_is_a_format_error() {
    // `descr` was split at byte 1 without a check (a panic on "" and on "é").
    for descr in [&b"''"[..], "'\u{e9}8'".as_bytes()] {
        let c = edited(Target::Npy, 0, b"'<f8'", descr);
        assert!(!run(Target::Npy, &c));
    }
}

/// Headers that claim far more entries than the file holds: refused from the file size,
/// before anything is allocated for them.
#[test]
fn huge_counts_are_refused_without_allocating_them() {
    let huge = 1u64 << 60;
    let mut c = Target::Shard.seeds().swap_remove(0);
    for at in [18, 26] {
        // sequence count, document count of the first shard's .idx
        let mut s = c.clone();
        s[0][at..at + 8].copy_from_slice(&huge.to_le_bytes());
        assert!(!run(Target::Shard, &s));
    }
    c = edited(Target::Npy, 0, b"(3,)", b"(1152921504606846976,)");
    assert!(!run(Target::Npy, &c));
    for (from, to) in [
        (
            &b"\"num_instances\":6"[..],
            &b"\"num_instances\":1152921504606846976"[..],
        ),
        (b"\"end\":6", b"\"end\":1152921504606846976"),
    ] {
        assert!(!run(
            Target::ScoreRun,
            &edited(Target::ScoreRun, 0, from, to)
        ));
    }
}
