//! The core's parsers of untrusted bytes, driven from raw file contents, and the rule
//! every one of them keeps: whatever the bytes, it returns `Ok` or a `Format` error naming
//! one of the files it was given; it never panics, never allocates more than the files
//! hold, and never reports bad bytes as an I/O, internal or argument error.
//!
//! Shared (by `#[path]`) by the mutation property test `tests/fuzz_parsers.rs`, the seed
//! generator `examples/fuzz_seeds.rs` and the coverage-guided targets in `rust/core/fuzz`,
//! so that all three test one rule on the same entry points.

#![allow(dead_code)] // each includer uses its own part

use std::path::Path;
use std::sync::atomic::AtomicBool;

use miniplm_core::inspect::inspect;
use miniplm_core::npy::{write_npy, DType, Npy, NpyWriter};
use miniplm_core::scores::{write_score_run, ScoreRun, ScoreSource};
use miniplm_core::select::{select, Amount, By, Keep, Mode, SelectInputs, SelectSpec};
use miniplm_core::shards::{Dataset, DatasetWriter, TokenDType};
use miniplm_core::{Error, Job, NoProgress};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `.idx`/`.bin` shard pairs, opened as a two-shard dataset.
    Shard,
    /// A 1-D `.npy` array.
    Npy,
    /// A score run: `manifest.json` and the arrays of two parts.
    ScoreRun,
    /// A selection directory: `selection.json` and `ids.npy`.
    Selection,
}

static NEVER: AtomicBool = AtomicBool::new(false);

/// One thread: the inputs are tiny, and a fuzzer runs one process per core.
fn job() -> Job<'static> {
    Job {
        progress: &NoProgress,
        cancel: &NEVER,
        threads: 1,
    }
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::Shard,
        Target::Npy,
        Target::ScoreRun,
        Target::Selection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Shard => "shard",
            Target::Npy => "npy",
            Target::ScoreRun => "score_run",
            Target::Selection => "selection",
        }
    }

    /// The files an input consists of, relative to its directory.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Target::Shard => &[
                "corpus_0.idx",
                "corpus_0.bin",
                "corpus_1.idx",
                "corpus_1.bin",
            ],
            Target::Npy => &["a.npy"],
            Target::ScoreRun => &[
                "manifest.json",
                "part-000000/nll_sum.npy",
                "part-000000/n_scored.npy",
                "part-000001/nll_sum.npy",
                "part-000001/n_scored.npy",
            ],
            Target::Selection => &["selection.json", "ids.npy"],
        }
    }

    /// Valid inputs written by the core's own writers, one content per `files()` entry.
    pub fn seeds(self) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for variant in 0..3 {
            let d = tempfile::tempdir().expect("temp dir");
            self.write_seed(d.path(), variant);
            out.push(read_files(d.path(), self.files()));
        }
        out
    }

    fn write_seed(self, dir: &Path, variant: usize) {
        match self {
            Target::Shard => {
                let dtype = [TokenDType::U16, TokenDType::I32, TokenDType::I64][variant];
                // Sequences of 3, 0, 2 | 4, 1 tokens: shards of at most 5 tokens' bytes.
                let max = Some(5 * dtype.size() as u64);
                let mut w = DatasetWriter::create(dir, "corpus", dtype, max).unwrap();
                for seq in [&[1i64, 2, 3][..], &[], &[7, 8], &[4, 5, 6, 9], &[0]] {
                    w.add_tokens(seq).unwrap();
                }
                let shards = w.finish().unwrap();
                assert_eq!(shards.len(), 2, "the seed must have two shards");
            }
            Target::Npy => {
                let p = dir.join("a.npy");
                match variant {
                    0 => write_npy(&p, &[1.5f64, -2.0, f64::NAN]).unwrap(),
                    1 => {
                        let mut w = NpyWriter::<u32>::create(&p).unwrap();
                        w.write(&[3, 1, 4, 1, 5]).unwrap();
                        w.finish().unwrap();
                    }
                    _ => write_npy::<u64>(&p, &[]).unwrap(),
                }
            }
            Target::ScoreRun => {
                let n = [6usize, 2, 3][variant];
                let sums: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
                let counts: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
                write_score_run(dir, &sums, &counts, n.div_ceil(2)).unwrap();
            }
            Target::Selection => {
                let scores = tempfile::tempdir().expect("temp dir");
                let t = scores.path().join("teacher");
                let r = scores.path().join("reference");
                write_score_run(&t, &[3.0, 1.0, 4.0, 1.0, 5.0, 9.0], &[2; 6], 4).unwrap();
                write_score_run(&r, &[2.0, 7.0, 1.0, 8.0, 2.0, 8.0], &[1; 6], 4).unwrap();
                let inputs = SelectInputs {
                    teacher: Some(ScoreSource::open_run(&t).unwrap()),
                    reference: Some(ScoreSource::open_run(&r).unwrap()),
                    exclude: None,
                    num_instances: Some(6),
                    dataset: None,
                };
                let spec = SelectSpec {
                    by: By::Diff,
                    keep: Keep::Highest,
                    mode: [Mode::Top, Mode::Random { seed: 1 }, Mode::Top][variant],
                    amount: [Amount::Ratio(0.5), Amount::Count(2), Amount::Count(0)][variant],
                };
                select(&inputs, &spec, dir, true, &job()).unwrap();
            }
        }
    }

    /// Write `contents` (one per `files()` entry; missing ones empty) under `dir`, parse
    /// them through the public entry point and use what was parsed; panic if the outcome
    /// breaks the rule of this module. True when they parsed.
    pub fn check(self, dir: &Path, contents: &[Vec<u8>]) -> bool {
        for (i, name) in self.files().iter().enumerate() {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, contents.get(i).map_or(&[][..], Vec::as_slice)).unwrap();
        }
        match self.parse(dir) {
            Ok(()) => true,
            Err(Error::Format { ref path, .. }) if path.starts_with(dir) => false,
            Err(e) => panic!("{}: not a format error naming an input: {e:?}", self.name()),
        }
    }

    fn parse(self, dir: &Path) -> miniplm_core::Result<()> {
        match self {
            Target::Shard => {
                let d = Dataset::open(&dir.join("corpus"))?;
                let mut tokens = 0u64;
                for id in 0..d.len() {
                    tokens += d.tokens_i64(id)?.len() as u64;
                }
                assert_eq!(tokens, d.num_tokens());
                d.fingerprint()?;
                inspect(&dir.join("corpus"), &job())?;
            }
            Target::Npy => {
                let a = Npy::open(dir.join("a.npy"))?;
                let n = match a.dtype() {
                    DType::U8 => a.view::<u8>()?.len(),
                    DType::I8 => a.view::<i8>()?.len(),
                    DType::I16 => a.view::<i16>()?.len(),
                    DType::U16 => a.view::<u16>()?.len(),
                    DType::I32 => a.view::<i32>()?.len(),
                    DType::U32 => a.view::<u32>()?.len(),
                    DType::I64 => a.view::<i64>()?.len(),
                    DType::U64 => a.view::<u64>()?.len(),
                    DType::F32 | DType::F64 => {
                        // A float array is a score array too: its summary and histogram.
                        inspect(a.path(), &job())?;
                        a.floats()?.len()
                    }
                };
                assert_eq!(n, a.len());
            }
            Target::ScoreRun => {
                let run = ScoreRun::open(dir)?;
                let (_, counts) = run.load()?;
                assert_eq!(counts.len() as u64, run.len());
                let mut means = vec![0.0; run.len() as usize];
                run.mean_nll_into(0, &mut means)?;
                run.fingerprint()?;
                inspect(dir, &job())?;
            }
            Target::Selection => {
                inspect(dir, &job())?;
            }
        }
        Ok(())
    }
}

fn read_files(dir: &Path, names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).expect("seed file"))
        .collect()
}

/// One fuzzer input holding several files: for each, its length (u32 LE) and bytes; the
/// last file takes whatever is left, so every byte string decodes to something.
pub fn encode(contents: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        if i + 1 < contents.len() {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(c);
    }
    out
}

pub fn decode(mut data: &[u8], files: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(files);
    for i in 0..files {
        if i + 1 == files {
            out.push(data.to_vec());
            break;
        }
        let n = match data.get(..4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => 0,
        };
        let n = n.min(data.len().saturating_sub(4));
        out.push(data.get(4..4 + n).unwrap_or(&[]).to_vec());
        data = data.get(4 + n..).unwrap_or(&[]);
    }
    out
}
