//! Exact, streaming, multi-threaded top-K Difference Sampling and its baselines
//! (definitions in docs/FORMATS.md, "Selection").
//!
//! Every instance gets a u64 key whose order is the selection order (an order-preserving
//! map of a float key, or a seeded random draw); the cut is the K-th largest key T plus
//! a tie cut (ties go to smaller ids). Routes to the cut, cheapest first:
//! - Sampled guess (2 passes): the keys of evenly spread blocks give an interval that
//!   probably holds T; pass A counts the keys above it and collects the (key, id)
//!   candidates inside it, and T is cut from those in memory.
//! - Narrowed guess (3 passes): past `cap` candidates (at K = N/2 that is from about
//!   N = 1e9 on with the defaults) pass A counts the interval's keys in 65536
//!   sub-intervals instead; one more pass collects the candidates of the sub-interval
//!   holding T.
//! - Radix narrowing (the guess missed, sorted input say, or a mass of equal keys
//!   exceeds `cap`): a pass histograms the top 16 bits of every key; each further pass
//!   either collects the candidates of the bucket holding the K-th key (once they fit
//!   `cap`) or histograms the next 16 bits inside it. At full depth the bucket is a
//!   single key value, and the tie cut is found by per-chunk counting.
//!
//! Whichever way the cut is found, the pass that finds it also learns how many ids each
//! chunk keeps, so the emit pass (`key > T || (key == T && id <= tie_cut)`) writes every
//! chunk's ids straight to their final place, all chunks in parallel. The per-instance
//! work of pass A and the emit pass runs in fused, vectorised loops (`kernel`). Memory:
//! per-thread 65536-bin histograms, at most `cap` candidates, one chunk of output ids per
//! thread, and a few numbers per chunk; never anything of length N.
//!
//! Parts: `request` (the request as the CLI and Python give it), `spec` (its defaults and
//! checks), `exclusion` (excluded ids), `plan` (chunking, pass A), `guess` (the sampled
//! interval and its narrowing), `radix` (radix narrowing and the tie cut), `route` (which
//! of them finds the cut), `emit` (kept ids out), `report` (`selection.json`), `record`
//! (reading and binding selections), `kernel` (the loops).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::{write_dir_atomically, write_file_atomically};
use crate::job::Job;
use crate::scores::ScoreSource;
use crate::stats::Histogram;

mod emit;
mod exclusion;
mod guess;
mod kernel;
mod plan;
mod radix;
pub mod record;
mod report;
mod request;
mod route;
mod spec;

pub use record::{read_selection, write_given_selection, DatasetBinding, DatasetRef};
pub use request::SelectRequest;

use emit::{poisoned, FileOut, IdsOut, MemOut};
use exclusion::Exclude;
use kernel::Cpu;
use plan::Plan;
use route::run;
use spec::check_inputs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Diff,
    Teacher,
    Reference,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    Highest,
    Lowest,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Top,
    Random { seed: u64 },
    Gumbel { temperature: f64, seed: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Ratio(f64),
    Count(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct SelectSpec {
    pub by: By,
    pub keep: Keep,
    pub mode: Mode,
    pub amount: Amount,
}

pub struct SelectInputs {
    pub teacher: Option<ScoreSource>,
    pub reference: Option<ScoreSource>,
    /// `.npy` of instance ids never kept (uint64/int64/uint32/int32).
    pub exclude: Option<PathBuf>,
    /// Instance count of the dataset the scores belong to, to check lengths against.
    pub num_instances: Option<u64>,
    /// The dataset itself (`--data`), recorded in `selection.json` and checked against
    /// the score runs' record of theirs.
    pub dataset: Option<DatasetRef>,
}

/// Work sizes; the defaults suit real runs, tests shrink them to reach every path.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Instances per parallel work item.
    pub chunk: usize,
    /// Most (key, id) candidates held at once (16 bytes each).
    pub cap: usize,
    /// Ids per sampled block when guessing the threshold interval.
    pub sample_block: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            chunk: 1 << 16,
            cap: 1 << 22,
            sample_block: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub num_negative: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputInfo {
    pub path: PathBuf,
    pub kind: &'static str,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub teacher: Option<InputInfo>,
    pub reference: Option<InputInfo>,
    pub exclude: Option<InputInfo>,
}

/// `selection.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SelectionReport {
    pub format: &'static str,
    pub version: u32,
    pub by: By,
    pub keep: Keep,
    pub mode: &'static str,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    pub ratio: Option<f64>,
    pub count: Option<u64>,
    pub num_instances: u64,
    pub num_excluded: u64,
    pub num_nan: u64,
    pub num_eligible: u64,
    pub k: u64,
    pub num_selected: u64,
    /// Key of the last kept instance (see FORMATS.md); null when nothing is kept or the
    /// key is infinite (JSON has no infinity).
    pub threshold: Option<f64>,
    pub ties_at_threshold: u64,
    pub ties_kept: u64,
    pub score_stats: Option<ScoreStats>,
    pub histogram: Option<Histogram>,
    pub inputs: Inputs,
    /// The dataset the selection was made for; every consumer checks it.
    pub dataset: DatasetBinding,
    /// Full passes over the scores (2 when the sampled guess of the threshold held).
    pub passes: usize,
    pub elapsed_s: f64,
}

/// Run a selection, placing the kept ids (ascending) through `out`.
fn select_into(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    tuning: Tuning,
    cpu: Cpu,
    job: &Job,
    out: &dyn IdsOut,
) -> Result<SelectionReport> {
    let started = Instant::now();
    let n = check_inputs(inputs, spec)?;
    let exclude = match &inputs.exclude {
        Some(p) => Exclude::open(p, n)?,
        None => Exclude::None,
    };
    let has_values = match spec.by {
        By::Diff => inputs.teacher.is_some() && inputs.reference.is_some(),
        By::Teacher => inputs.teacher.is_some(),
        By::Reference => inputs.reference.is_some(),
    };
    let num_excluded = exclude.ids().len() as u64;
    let plan = Plan {
        n,
        spec: *spec,
        teacher: inputs.teacher.as_ref(),
        reference: inputs.reference.as_ref(),
        has_values,
        exclude,
        tuning: Tuning {
            chunk: tuning.chunk.max(1),
            cap: tuning.cap.max(1),
            sample_block: tuning.sample_block.max(1),
        },
        cpu,
        passes: AtomicUsize::new(0),
    };
    let k = match spec.amount {
        Amount::Ratio(r) => ratio_count(r, n - num_excluded),
        Amount::Count(c) => c,
    };
    let run = job.install(|| run(&plan, job, k, out))??;
    SelectionReport::from_run(inputs, &plan, k, &run, started)
}

/// `floor(ratio * m)`, the K of a ratio, where the float product's own rounding is not
/// allowed to cost an instance: `0.29 * 100` is `28.999999999999996` in binary, and a
/// user who asks for 0.29 of 100 means 29. A product within a few ulps of an integer is
/// that integer (the product is off the exact one by at most an ulp; any real fraction
/// of an instance is far larger than that for m < 2^52).
pub fn ratio_count(ratio: f64, m: u64) -> u64 {
    let x = ratio * m as f64;
    let near = x.round();
    if (x - near).abs() <= 4.0 * f64::EPSILON * x.abs().max(1.0) {
        near as u64
    } else {
        x.floor() as u64
    }
}

/// Select in memory: the kept ids (ascending) and the report.
pub fn select_ids(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    tuning: Tuning,
    job: &Job,
) -> Result<(Vec<u64>, SelectionReport)> {
    let out = MemOut(Mutex::new(Vec::new()));
    let rep = select_into(inputs, spec, tuning, Cpu::detect(), job, &out)?;
    let ids = out.0.into_inner().map_err(|_| poisoned())?;
    Ok((ids, rep))
}

/// Select and write `out_dir/ids.npy` + `out_dir/selection.json` (all or nothing). The
/// emit pass writes each chunk's kept ids at their final place in `ids.npy` as it goes;
/// the file is synced once at the end, before the directory is renamed into place.
pub fn select(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    out_dir: &Path,
    overwrite: bool,
    job: &Job,
) -> Result<SelectionReport> {
    write_dir_atomically(out_dir, overwrite, |tmp| {
        let out = FileOut {
            path: tmp.join("ids.npy"),
            w: OnceLock::new(),
            written: AtomicU64::new(0),
            done: AtomicBool::new(false),
        };
        let rep = std::thread::scope(|s| {
            s.spawn(|| out.flush_behind());
            // Stop the helper however `select_into` ends (a panic too: the scope joins it).
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(&out.done);
            select_into(inputs, spec, Tuning::default(), Cpu::detect(), job, &out)
        })?;
        match out.w.into_inner() {
            Some(w) => w.finish()?,
            None => return Err(Error::internal("ids.npy was never started")),
        };
        let json = serde_json::to_vec_pretty(&rep)
            .map_err(|e| Error::internal(format!("cannot serialize selection.json: {e}")))?;
        write_file_atomically(&tmp.join("selection.json"), &json)?;
        Ok(rep)
    })
}

#[cfg(test)]
mod tests;
