//! Summaries of datasets, score runs, score arrays and selections, for `miniplm-sample
//! inspect` and `miniplm.inspect`: what a user checks before spending GPU hours on it.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::job::Job;
use crate::npy::Npy;
use crate::scores::ScoreSource;
use crate::shards::Dataset;
use crate::stats::{bin_edges, Acc, Binner, Histogram, Summary};

const CHUNK: usize = 1 << 16;
const BINS: usize = 64;

#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub num_instances: u64,
    pub num_tokens: u64,
    pub dtype: &'static str,
    pub num_shards: usize,
    pub fingerprint: String,
    pub length: Option<Summary>,
    /// Instances by length in powers of two: `[lo, hi)` tokens and their count.
    pub length_histogram: Vec<(u64, u64, u64)>,
}

#[derive(Debug, Serialize)]
pub struct ScoresInfo {
    pub path: PathBuf,
    pub num_instances: u64,
    /// Instances without a score (NaN mean NLL, or no scored token).
    pub num_nan: u64,
    pub mean_nll: Option<Summary>,
    pub histogram: Option<Histogram>,
    pub fingerprint: String,
}

#[derive(Debug, Serialize)]
pub struct SelectionInfo {
    pub path: PathBuf,
    pub num_ids: u64,
    /// Inconsistencies between ids.npy and selection.json; empty when sound.
    pub problems: Vec<String>,
    pub selection: serde_json::Value,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Dataset(DatasetInfo),
    ScoreRun(ScoresInfo),
    ScoreArray(ScoresInfo),
    Selection(SelectionInfo),
}

/// Inspect whatever `path` is: a selection directory (`selection.json`), a score run
/// (`manifest.json`), a `.npy` score array, or a token dataset.
pub fn inspect(path: &Path, job: &Job) -> Result<Report> {
    if path.join("selection.json").is_file() {
        return inspect_selection(path, job).map(Report::Selection);
    }
    if path.join("manifest.json").is_file() {
        let src = ScoreSource::open_run(path)?;
        return inspect_scores(&src, job).map(Report::ScoreRun);
    }
    if path.extension().is_some_and(|e| e == "npy") {
        let src = ScoreSource::open_npy(path)?;
        return inspect_scores(&src, job).map(Report::ScoreArray);
    }
    let data = Dataset::open(path)?;
    inspect_dataset(path, &data, job).map(Report::Dataset)
}

fn inspect_dataset(path: &Path, data: &Dataset, job: &Job) -> Result<DatasetInfo> {
    job.progress.start("inspect", data.len());
    let per_shard = job.install(|| {
        data.shards()
            .par_iter()
            .map(|shard| {
                let n = shard.len() as usize;
                (0..n)
                    .into_par_iter()
                    .step_by(CHUNK)
                    .map(|start| {
                        job.check()?;
                        let mut acc = Acc::EMPTY;
                        let mut log2 = [0u64; 33];
                        for i in start..(start + CHUNK).min(n) {
                            let len = shard.size(i as u64);
                            acc = acc.add(len as f64);
                            log2[(u32::BITS - len.leading_zeros()) as usize] += 1;
                        }
                        job.progress.inc(((start + CHUNK).min(n) - start) as u64);
                        Ok((acc, log2))
                    })
                    .try_reduce(|| (Acc::EMPTY, [0u64; 33]), merge_lengths)
            })
            .try_reduce(|| (Acc::EMPTY, [0u64; 33]), merge_lengths)
    })??;
    job.progress.finish();
    let (acc, log2) = per_shard;
    // Bucket b holds lengths with b significant bits: 0 -> [0,1), b -> [2^(b-1), 2^b).
    let length_histogram = log2
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(b, &c)| {
            let lo = if b == 0 { 0 } else { 1u64 << (b - 1) };
            (lo, 1u64 << b, c)
        })
        .collect();
    Ok(DatasetInfo {
        path: path.to_path_buf(),
        num_instances: data.len(),
        num_tokens: data.num_tokens(),
        dtype: data.dtype().name(),
        num_shards: data.shards().len(),
        fingerprint: data.fingerprint()?,
        length: acc.summary(),
        length_histogram,
    })
}

fn merge_lengths(a: (Acc, [u64; 33]), b: (Acc, [u64; 33])) -> Result<(Acc, [u64; 33])> {
    let mut h = a.1;
    for (x, y) in h.iter_mut().zip(b.1) {
        *x += y;
    }
    Ok((a.0.merge(b.0), h))
}

/// Map `f` over the mean NLLs of `src` in parallel chunks and reduce.
fn fold_scores<T: Send>(
    src: &ScoreSource,
    job: &Job,
    init: impl Fn() -> T + Sync + Send,
    f: impl Fn(T, f64) -> T + Sync + Send,
    merge: impl Fn(T, T) -> T + Sync + Send,
) -> Result<T> {
    let n = src.len() as usize;
    job.install(|| {
        (0..n)
            .into_par_iter()
            .step_by(CHUNK)
            .map(|start| {
                job.check()?;
                let end = (start + CHUNK).min(n);
                let mut buf = vec![0.0f64; end - start];
                src.mean_nll_into(start as u64, &mut buf)?;
                job.progress.inc((end - start) as u64);
                Ok(buf.iter().fold(init(), |t, &v| f(t, v)))
            })
            .try_reduce(&init, |a, b| Ok(merge(a, b)))
    })?
}

fn inspect_scores(src: &ScoreSource, job: &Job) -> Result<ScoresInfo> {
    job.progress.start("inspect: stats", src.len());
    let (acc, nan) = fold_scores(
        src,
        job,
        || (Acc::EMPTY, 0u64),
        |(acc, nan), v| {
            if v.is_finite() {
                (acc.add(v), nan)
            } else if v.is_nan() {
                (acc, nan + 1)
            } else {
                (acc, nan)
            }
        },
        |a, b| (a.0.merge(b.0), a.1 + b.1),
    )?;
    let histogram = match acc.summary() {
        Some(s) => {
            job.progress.start("inspect: histogram", src.len());
            let binner = Binner::new(s.min, s.max, BINS);
            let counts = fold_scores(
                src,
                job,
                || vec![0u64; BINS],
                |mut h, v| {
                    if v.is_finite() {
                        h[binner.bin(v)] += 1;
                    }
                    h
                },
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            )?;
            Some(Histogram {
                edges: bin_edges(s.min, s.max, BINS),
                counts,
            })
        }
        None => None,
    };
    job.progress.finish();
    Ok(ScoresInfo {
        path: src.path().to_path_buf(),
        num_instances: src.len(),
        num_nan: nan,
        mean_nll: acc.summary(),
        histogram,
        fingerprint: src.fingerprint()?,
    })
}

fn inspect_selection(dir: &Path, _job: &Job) -> Result<SelectionInfo> {
    let json_path = dir.join("selection.json");
    // Bytes, not a string: invalid UTF-8 is a JSON error of the file, not an I/O error.
    let bytes = std::fs::read(&json_path).at(&json_path)?;
    let selection: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(&json_path, "json", e.to_string()))?;
    let ids_npy = Npy::open(dir.join("ids.npy"))?;
    let ids = ids_npy.view::<u64>()?;
    let mut problems = Vec::new();
    if let Some(pos) = ids.windows(2).position(|w| w[0] >= w[1]) {
        problems.push(format!(
            "ids.npy is not strictly ascending at position {}: {} then {}",
            pos + 1,
            ids[pos],
            ids[pos + 1]
        ));
    }
    if let Some(k) = selection.get("num_selected").and_then(|v| v.as_u64()) {
        if k != ids.len() as u64 {
            problems.push(format!(
                "selection.json says num_selected = {k}, ids.npy holds {}",
                ids.len()
            ));
        }
    }
    if let (Some(n), Some(&last)) = (
        selection.get("num_instances").and_then(|v| v.as_u64()),
        ids.last(),
    ) {
        if last >= n {
            problems.push(format!("id {last} is past num_instances = {n}"));
        }
    }
    let bound = selection
        .pointer("/dataset/num_instances")
        .and_then(|v| v.as_u64());
    if let (Some(b), Some(n)) = (
        bound,
        selection.get("num_instances").and_then(|v| v.as_u64()),
    ) {
        if b != n {
            problems.push(format!(
                "selection.json says num_instances = {n} but dataset.num_instances = {b}"
            ));
        }
    }
    Ok(SelectionInfo {
        path: dir.to_path_buf(),
        num_ids: ids.len() as u64,
        problems,
        selection,
    })
}

fn fmt_summary(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "min {:.4}  mean {:.4}  max {:.4}  (n = {})",
            s.min, s.mean, s.max, s.count
        ),
        None => "-".to_string(),
    }
}

impl Report {
    /// Human-readable form for the terminal.
    pub fn to_text(&self) -> String {
        match self {
            Report::Dataset(d) => {
                let mut t = format!(
                    "token dataset {}\n  instances {}  tokens {}  dtype {}  shards {}\n  length: {}\n  length histogram:\n",
                    d.path.display(),
                    d.num_instances,
                    d.num_tokens,
                    d.dtype,
                    d.num_shards,
                    fmt_summary(&d.length)
                );
                for (lo, hi, c) in &d.length_histogram {
                    t += &format!("    [{lo:>7}, {hi:>7})  {c}\n");
                }
                t + &format!("  fingerprint {}", d.fingerprint)
            }
            Report::ScoreRun(s) | Report::ScoreArray(s) => format!(
                "scores {}\n  instances {}  without score {}\n  mean NLL: {}\n  fingerprint {}",
                s.path.display(),
                s.num_instances,
                s.num_nan,
                fmt_summary(&s.mean_nll),
                s.fingerprint
            ),
            Report::Selection(s) => {
                let g = |k: &str| {
                    s.selection
                        .get(k)
                        .map_or("-".to_string(), |v| v.to_string())
                };
                let mut t = format!(
                    "selection {}\n  kept {} of {} (k {}, excluded {}, without score {})\n  by {} keep {} mode {}  ratio {} count {}\n  threshold {}  ties at threshold {} (kept {})",
                    s.path.display(),
                    s.num_ids,
                    g("num_instances"),
                    g("k"),
                    g("num_excluded"),
                    g("num_nan"),
                    g("by"),
                    g("keep"),
                    g("mode"),
                    g("ratio"),
                    g("count"),
                    g("threshold"),
                    g("ties_at_threshold"),
                    g("ties_kept"),
                );
                for p in &s.problems {
                    t += &format!("\n  PROBLEM: {p}");
                }
                t
            }
        }
    }
}
