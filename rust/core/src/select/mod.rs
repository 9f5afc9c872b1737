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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::{quick_fingerprint, write_dir_atomically, write_file_atomically};
use crate::inspect::{bin_edges, Binner, Histogram};
use crate::job::Job;
use crate::npy::{DType, Npy, NpyAtWriter};
use crate::scores::ScoreSource;

mod kernel;
pub mod record;

pub use record::{read_selection, write_given_selection, DatasetBinding, DatasetRef};

#[cfg(test)]
use crate::rng::rand_u64;
#[cfg(test)]
use kernel::{gumbel, order_key};
use kernel::{
    key_value, Cpu, Cut, Diff, EmitAcc, Gumbel, Keys, NoVals, One, Random, Tally, Top, Vals,
    HIST_BINS,
};

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

/// Excluded ids, ascending and unique: the file itself when it already is, else a copy.
enum Exclude {
    None,
    Mapped(Npy),
    Owned(Vec<u64>),
}

impl Exclude {
    fn open(path: &Path, n: u64) -> Result<Exclude> {
        let npy = Npy::open(path)?;
        let bad = |id: i128| {
            Error::invalid(format!(
                "{}: excluded id {id} is out of range for {n} instances",
                path.display()
            ))
        };
        let ids: Vec<u64> = match npy.dtype() {
            DType::U64 => {
                let v = npy.view::<u64>()?;
                if let Some(&m) = v.iter().max() {
                    if m >= n {
                        return Err(bad(m as i128));
                    }
                }
                if v.windows(2).all(|w| w[0] < w[1]) {
                    return Ok(Exclude::Mapped(npy));
                }
                v.to_vec()
            }
            DType::I64 => widen(npy.view::<i64>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U32 => widen(npy.view::<u32>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I32 => widen(npy.view::<i32>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U16 => widen(npy.view::<u16>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I16 => widen(npy.view::<i16>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::U8 => widen(npy.view::<u8>()?.iter().map(|&x| x as i128), n, bad)?,
            DType::I8 => widen(npy.view::<i8>()?.iter().map(|&x| x as i128), n, bad)?,
            d @ (DType::F32 | DType::F64) => {
                return Err(Error::format(
                    path,
                    "dtype",
                    format!(
                        "exclude ids must be integers (uint8, uint16, uint32, uint64, int8, int16, \
                         int32 or int64), found {}",
                        d.name()
                    ),
                ))
            }
        };
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        Ok(Exclude::Owned(ids))
    }

    fn ids(&self) -> &[u64] {
        match self {
            Exclude::None => &[],
            Exclude::Mapped(n) => n.view::<u64>().unwrap_or(&[]),
            Exclude::Owned(v) => v,
        }
    }
}

fn widen(it: impl Iterator<Item = i128>, n: u64, bad: impl Fn(i128) -> Error) -> Result<Vec<u64>> {
    it.map(|x| {
        if x < 0 || x >= n as i128 {
            Err(bad(x))
        } else {
            Ok(x as u64)
        }
    })
    .collect()
}

const BITS: u32 = 16;
const BINS: usize = 1 << BITS;

/// Per-chunk scratch: score values when a source cannot lend its memory, and keys and
/// eligibility for the radix passes.
#[derive(Default)]
struct Buf {
    t: Vec<f64>,
    r: Vec<f64>,
    key: Vec<u64>,
    ok: Vec<bool>,
}

struct Plan<'a> {
    n: u64,
    spec: SelectSpec,
    teacher: Option<&'a ScoreSource>,
    reference: Option<&'a ScoreSource>,
    /// Whether values exist (scores for `by` were given).
    has_values: bool,
    exclude: Exclude,
    tuning: Tuning,
    cpu: Cpu,
    /// Full passes over the inputs so far.
    passes: AtomicUsize,
}

/// A kernel run on one chunk, given the chunk's values and key maker as concrete types
/// (so that every combination compiles to its own tight loop).
trait Visit {
    type Out;
    fn visit<V: Vals, K: Keys>(self, v: V, k: K) -> Self::Out;
}

fn with_keys<V: Vals, F: Visit>(mode: Mode, sign: f64, v: V, f: F) -> F::Out {
    match mode {
        Mode::Top => f.visit(v, Top { sign }),
        Mode::Gumbel { temperature, seed } => f.visit(
            v,
            Gumbel {
                sign,
                temperature,
                seed,
            },
        ),
        Mode::Random { seed } => f.visit(v, Random { seed }),
    }
}

/// The runs of ids of `[start, end)` between the excluded ids `ex` (ascending, inside the
/// range), as offsets from `start`.
fn runs(start: u64, end: u64, ex: &[u64]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut from = 0usize;
    ex.iter()
        .map(move |&x| (x - start) as usize)
        .chain(std::iter::once((end - start) as usize))
        .filter_map(move |x| {
            let run = (from, x);
            from = x + 1;
            (run.0 < run.1).then_some(run)
        })
}

impl Plan<'_> {
    fn num_chunks(&self) -> u64 {
        self.n.div_ceil(self.tuning.chunk as u64)
    }

    fn chunk_range(&self, c: u64) -> (u64, u64) {
        let s = c * self.tuning.chunk as u64;
        (s, (s + self.tuning.chunk as u64).min(self.n))
    }

    /// Excluded ids inside `[start, end)`.
    fn excluded(&self, start: u64, end: u64) -> &[u64] {
        let ex = self.exclude.ids();
        let lo = ex.partition_point(|&x| x < start);
        let hi = ex.partition_point(|&x| x < end);
        &ex[lo..hi]
    }

    /// Run `f` on ids `[start, end)` (exclusions are `f`'s business): values borrowed
    /// straight from float64 arrays, else computed into `buf`.
    fn visit<F: Visit>(&self, start: u64, end: u64, buf: &mut Buf, f: F) -> Result<F::Out> {
        let len = (end - start) as usize;
        let Buf { t, r, .. } = buf;
        let tv = match (
            self.has_values && self.spec.by != By::Reference,
            self.teacher,
        ) {
            (true, Some(s)) => Some(s.mean_nll_chunk(start, len, t)?),
            _ => None,
        };
        let rv = match (
            self.has_values && self.spec.by != By::Teacher,
            self.reference,
        ) {
            (true, Some(s)) => Some(s.mean_nll_chunk(start, len, r)?),
            _ => None,
        };
        let sign = match self.spec.keep {
            Keep::Highest => 1.0,
            Keep::Lowest => -1.0,
        };
        let mode = self.spec.mode;
        Ok(match (self.spec.by, tv, rv) {
            (By::Diff, Some(t), Some(r)) => with_keys(mode, sign, Diff { t, r }, f),
            (By::Teacher, Some(t), _) => with_keys(mode, sign, One(t), f),
            (By::Reference, _, Some(r)) => with_keys(mode, sign, One(r), f),
            _ => with_keys(mode, sign, NoVals(len), f),
        })
    }

    /// Keys and eligibility of ids `[start, end)` into `buf.key` and `buf.ok`.
    fn keys(&self, start: u64, end: u64, buf: &mut Buf) -> Result<()> {
        struct Into<'b> {
            id0: u64,
            key: &'b mut Vec<u64>,
            ok: &'b mut Vec<bool>,
        }
        impl Visit for Into<'_> {
            type Out = ();
            fn visit<V: Vals, K: Keys>(self, v: V, k: K) {
                kernel::keys_into(v, k, self.id0, self.key, self.ok)
            }
        }
        let (mut key, mut ok) = (std::mem::take(&mut buf.key), std::mem::take(&mut buf.ok));
        let r = self.visit(
            start,
            end,
            buf,
            Into {
                id0: start,
                key: &mut key,
                ok: &mut ok,
            },
        );
        for &x in self.excluded(start, end) {
            ok[(x - start) as usize] = false;
        }
        (buf.key, buf.ok) = (key, ok);
        r
    }

    /// Fold every chunk in parallel: `visit(acc, chunk, scratch)`.
    fn scan<A: Send>(
        &self,
        job: &Job,
        stage: &str,
        init: impl Fn() -> A + Sync + Send,
        visit: impl Fn(&mut A, u64, &mut Buf) -> Result<()> + Sync + Send,
        merge: impl Fn(A, A) -> A + Sync + Send,
    ) -> Result<A> {
        job.progress.start(stage, self.n);
        self.passes.fetch_add(1, Ordering::Relaxed);
        let r = (0..self.num_chunks())
            .into_par_iter()
            .try_fold(
                || (init(), Buf::default()),
                |(mut acc, mut buf), c| {
                    job.check()?;
                    visit(&mut acc, c, &mut buf)?;
                    let (s, e) = self.chunk_range(c);
                    job.progress.inc(e - s);
                    Ok::<_, Error>((acc, buf))
                },
            )
            .map(|r| r.map(|(a, _)| a))
            .try_reduce(&init, |a, b| Ok(merge(a, b)));
        job.progress.finish();
        r
    }

    /// `scan` for the radix passes, which look at keys and eligibility only:
    /// `visit(acc, chunk, start, keys, ok)`.
    fn scan_keys<A: Send>(
        &self,
        job: &Job,
        stage: &str,
        init: impl Fn() -> A + Sync + Send,
        visit: impl Fn(&mut A, usize, u64, &[u64], &[bool]) + Sync + Send,
        merge: impl Fn(A, A) -> A + Sync + Send,
    ) -> Result<A> {
        self.scan(
            job,
            stage,
            init,
            |acc, c, buf| {
                let (s, e) = self.chunk_range(c);
                self.keys(s, e, buf)?;
                visit(acc, c as usize, s, &buf.key, &buf.ok);
                Ok(())
            },
            merge,
        )
    }
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn loads(v: Vec<AtomicU64>) -> Vec<u64> {
    v.into_iter().map(AtomicU64::into_inner).collect()
}

/// `a[i] += b[i]`: merging per-thread histograms.
fn add_counts(a: &mut [u64], b: &[u64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

fn add_tally(a: &mut Tally, b: Tally) {
    a.eligible += b.eligible;
    a.above += b.above;
    a.n += b.n;
    a.sum += b.sum;
    a.min = a.min.min(b.min);
    a.max = a.max.max(b.max);
    a.neg += b.neg;
}

/// What pass A learns: counts, value statistics (the sum is kept per chunk, see
/// `select_into`), the guessed interval's candidates, and (only without a guess) the
/// histogram of the top 16 key bits.
struct PassA {
    tally: Tally,
    hist: Vec<u64>,
    /// Keys inside the guessed interval, and their candidates (dropped past the cap).
    in_range: u64,
    cands: Vec<(u64, u64)>,
    /// Past the cap: the interval's keys counted by sub-interval (`Band`), else empty.
    band: Vec<u64>,
}

impl PassA {
    fn new(with_hist: bool) -> PassA {
        PassA {
            tally: Tally::EMPTY,
            hist: if with_hist { vec![0; BINS] } else { Vec::new() },
            in_range: 0,
            cands: Vec::new(),
            band: Vec::new(),
        }
    }

    fn merge(mut self, o: PassA) -> PassA {
        add_tally(&mut self.tally, o.tally);
        add_counts(&mut self.hist, &o.hist);
        self.in_range += o.in_range;
        let mut c = o.cands;
        self.cands.append(&mut c);
        if self.band.is_empty() {
            self.band = o.band;
        } else {
            add_counts(&mut self.band, &o.band);
        }
        self
    }
}

/// Pass A on one chunk, run by run between excluded ids.
struct ScanChunk<'b> {
    cpu: Cpu,
    start: u64,
    ex: &'b [u64],
    range: (u64, u64),
    cands: &'b mut Vec<(u64, u64)>,
}

impl Visit for ScanChunk<'_> {
    type Out = Tally;
    fn visit<V: Vals, K: Keys>(self, v: V, k: K) -> Tally {
        let mut t = Tally::EMPTY;
        for (a, b) in runs(self.start, self.start + v.len() as u64, self.ex) {
            let id = self.start + a as u64;
            add_tally(
                &mut t,
                kernel::scan(self.cpu, v.sub(a, b), k, id, self.range, self.cands),
            );
        }
        t
    }
}

/// Histogram of the top 16 bits of every eligible key (the start of radix narrowing).
fn top_histogram(plan: &Plan, job: &Job) -> Result<Vec<u64>> {
    plan.scan_keys(
        job,
        "select: histogram",
        || vec![0u64; BINS],
        |h, _, _, keys, ok| {
            for (&key, &ok) in keys.iter().zip(ok) {
                h[(key >> (64 - BITS)) as usize] += ok as u64;
            }
        },
        |mut a, b| {
            add_counts(&mut a, &b);
            a
        },
    )
}

/// The cut and how many ids each chunk keeps under it.
type CutPlan = (Cut, Vec<u64>);

/// The bucket of `hist` (ascending key ranges) that holds the K-th largest key, when
/// `above` keys are larger than all of them; and the keys above that bucket. None when
/// the counts do not reach K.
fn kth_bucket(hist: &[u64], mut above: u64, k: u64) -> Option<(usize, u64)> {
    for (b, &here) in hist.iter().enumerate().rev() {
        if above + here >= k {
            return Some((b, above));
        }
        above += here;
    }
    None
}

/// Find the K-th largest key among eligible instances by radix narrowing.
fn find_cut(plan: &Plan, job: &Job, first: &[u64], k: u64) -> Result<CutPlan> {
    // Invariant: the K-th key lies among keys whose top `depth` bits equal `prefix`;
    // `above` eligible keys are larger than every key with that prefix.
    let (mut prefix, mut depth, mut above) = (0u64, 0u32, 0u64);
    let mut hist = first.to_vec();
    loop {
        // Pick the bucket of the next 16 bits that holds the K-th key.
        let (b, a) = kth_bucket(&hist, above, k).ok_or_else(|| {
            Error::internal("fewer keys than K (inputs changed during selection?)")
        })?;
        above = a;
        let inside = hist[b];
        prefix = (prefix << BITS) | b as u64;
        depth += BITS;
        if depth == 64 {
            return tie_cut(plan, job, prefix, k - above);
        }
        if inside as usize <= plan.tuning.cap {
            return collect(plan, job, prefix, depth, above, k);
        }
        let shift = 64 - depth - BITS;
        let (p, d) = (prefix, depth);
        hist = plan.scan_keys(
            job,
            "select: narrow",
            || vec![0u64; BINS],
            |h, _, _, keys, ok| {
                for (&key, &ok) in keys.iter().zip(ok) {
                    if ok && key >> (64 - d) == p {
                        h[((key >> shift) & (BINS as u64 - 1)) as usize] += 1;
                    }
                }
            },
            |mut a, b| {
                add_counts(&mut a, &b);
                a
            },
        )?;
        debug_assert_eq!(hist.iter().sum::<u64>(), inside);
    }
}

/// Collect the bucket's candidates (they fit `cap`) and cut exactly among them; count
/// per chunk the keys above the bucket on the way.
fn collect(plan: &Plan, job: &Job, prefix: u64, depth: u32, above: u64, k: u64) -> Result<CutPlan> {
    let per_chunk = zeros(plan.num_chunks() as usize);
    let mut cands = plan.scan_keys(
        job,
        "select: collect",
        Vec::new,
        |v: &mut Vec<(u64, u64)>, c, start, keys, ok| {
            let mut n = 0u64;
            for (j, (&key, &ok)) in keys.iter().zip(ok).enumerate() {
                let top = key >> (64 - depth);
                n += (ok & (top > prefix)) as u64;
                if ok && top == prefix {
                    v.push((key, start + j as u64));
                }
            }
            per_chunk[c].store(n, Ordering::Relaxed);
        },
        |mut a, mut b| {
            a.append(&mut b);
            a
        },
    )?;
    let cut = cut_from(&mut cands, above, k);
    Ok((cut, kept_per_chunk(loads(per_chunk), &cands, cut, plan)))
}

/// The exact cut from every candidate key in a range that `above` larger keys precede
/// and that holds the K-th key. Reorders `cands`.
fn cut_from(cands: &mut [(u64, u64)], above: u64, k: u64) -> Cut {
    // The rank-th in the order larger key first, then smaller id (a total order: ids
    // are unique), found without sorting everything.
    let rank = (k - above - 1) as usize;
    let (_, &mut (t, tie_cut), _) =
        cands.select_nth_unstable_by(rank, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let first_tie = cands.iter().filter(|c| c.0 > t).count();
    Cut {
        t,
        tie_cut,
        need: (rank - first_tie + 1) as u64,
    }
}

/// Ids kept per chunk: `above[c]` keys above every candidate, plus the chunk's kept
/// candidates.
fn kept_per_chunk(mut above: Vec<u64>, cands: &[(u64, u64)], cut: Cut, plan: &Plan) -> Vec<u64> {
    let chunk = plan.tuning.chunk as u64;
    for &(key, id) in cands {
        if key > cut.t || (key == cut.t && id <= cut.tie_cut) {
            above[(id / chunk) as usize] += 1;
        }
    }
    above
}

/// All 64 bits are fixed: the threshold is `t` and the `need`-th smallest id among the
/// keys equal to it is the tie cut. Count ties (and keys above) per chunk, then look
/// inside one chunk.
fn tie_cut(plan: &Plan, job: &Job, t: u64, need: u64) -> Result<CutPlan> {
    let nchunks = plan.num_chunks() as usize;
    let (above, ties) = (zeros(nchunks), zeros(nchunks));
    plan.scan_keys(
        job,
        "select: ties",
        || (),
        |_, c, _, keys, ok| {
            let (mut a, mut e) = (0u64, 0u64);
            for (&key, &ok) in keys.iter().zip(ok) {
                a += (ok & (key > t)) as u64;
                e += (ok & (key == t)) as u64;
            }
            above[c].store(a, Ordering::Relaxed);
            ties[c].store(e, Ordering::Relaxed);
        },
        |_, _| (),
    )?;
    let (mut kept, ties) = (loads(above), loads(ties));
    let mut seen = 0u64;
    let mut cut = None;
    for (c, &n) in ties.iter().enumerate() {
        let take = n.min(need - seen);
        if take > 0 && seen + take == need {
            let (s, e) = plan.chunk_range(c as u64);
            let mut buf = Buf::default();
            plan.keys(s, e, &mut buf)?;
            let mut at = seen;
            for (j, (&key, &ok)) in buf.key.iter().zip(&buf.ok).enumerate() {
                if ok && key == t {
                    at += 1;
                    if at == need {
                        cut = Some(Cut {
                            t,
                            tie_cut: s + j as u64,
                            need,
                        });
                        break;
                    }
                }
            }
        }
        kept[c] += take;
        seen += take;
    }
    match cut {
        Some(cut) => Ok((cut, kept)),
        None => Err(Error::internal(
            "tie cut not found (inputs changed during selection?)",
        )),
    }
}

/// A key interval `[lo, hi]` that probably holds the K-th largest eligible key, from the
/// keys of evenly spread blocks of ids, with a margin of 4 binomial standard deviations.
/// Only a guess: pass A counts what lies above and inside it and falls back to radix
/// narrowing when it missed, so a bad guess (sorted data, say) costs time, never exactness.
fn guess_interval(plan: &Plan, k: u64) -> Result<Option<(u64, u64)>> {
    let block = plan.tuning.sample_block;
    let n = plan.n;
    let blocks = (n / 256 / block).clamp(16, 1024);
    if n < blocks * block * 4 {
        return Ok(None); // small inputs: the radix passes cost next to nothing
    }
    let mut keys = Vec::with_capacity((blocks * block) as usize);
    let mut buf = Buf::default();
    for b in 0..blocks {
        let s = b * (n / blocks);
        plan.keys(s, s + block, &mut buf)?;
        keys.extend(
            buf.key
                .iter()
                .zip(&buf.ok)
                .filter(|(_, &ok)| ok)
                .map(|(&k, _)| k),
        );
    }
    let m = keys.len() as f64;
    if m < 8.0 {
        return Ok(None);
    }
    let eligible = m / (blocks * block) as f64 * n as f64;
    let p = k as f64 / eligible;
    if p >= 1.0 {
        return Ok(None);
    }
    let margin = 4.0 * (m * p * (1.0 - p)).sqrt() + 16.0;
    let at = p * m;
    let top = (at - margin).floor();
    let bottom = (at + margin).ceil();
    // The keys at two ranks of the descending order, each found in linear time.
    let mut nth = |i: usize| *keys.select_nth_unstable_by(i, |a, b| b.cmp(a)).1;
    let hi = if top <= 0.0 {
        u64::MAX
    } else {
        nth(top as usize)
    };
    let lo = if bottom >= m - 1.0 {
        0
    } else {
        nth(bottom as usize)
    };
    Ok(Some((lo, hi)))
}

/// Where kept ids go: `start` learns how many there will be, then `put` places runs of
/// them at their positions, from any thread and in any order.
trait IdsOut: Sync {
    fn start(&self, total: u64) -> Result<()>;
    fn put(&self, at: u64, ids: &[u64]) -> Result<()>;
}

/// Kept ids in memory.
struct MemOut(Mutex<Vec<u64>>);

impl IdsOut for MemOut {
    fn start(&self, total: u64) -> Result<()> {
        let mut v = self.0.lock().map_err(|_| poisoned())?;
        v.clear();
        v.resize(total as usize, 0);
        Ok(())
    }
    fn put(&self, at: u64, ids: &[u64]) -> Result<()> {
        let mut v = self.0.lock().map_err(|_| poisoned())?;
        v[at as usize..at as usize + ids.len()].copy_from_slice(ids);
        Ok(())
    }
}

fn poisoned() -> Error {
    Error::internal("a selection worker panicked")
}

/// Kept ids into `ids.npy`, written in place as the emit pass finds them.
struct FileOut {
    path: PathBuf,
    w: OnceLock<NpyAtWriter<u64>>,
    /// Ids written so far, and whether the selection is over (for `flush_behind`).
    written: AtomicU64,
    done: AtomicBool,
}

impl FileOut {
    /// Keep the disk busy while the emit pass runs: after every `STEP` bytes of new ids,
    /// start writing them out (without waiting), so that the final sync finds little
    /// left. Runs on its own thread, off the workers' path, until `done`.
    fn flush_behind(&self) {
        const STEP: u64 = 32 << 20;
        let mut last = 0u64;
        while !self.done.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let now = self.written.load(Ordering::Relaxed) * 8;
            if now >= last + STEP {
                if let Some(w) = self.w.get() {
                    w.start_writeback();
                    last = now;
                }
            }
        }
    }
}

impl IdsOut for FileOut {
    fn start(&self, total: u64) -> Result<()> {
        let w = NpyAtWriter::create(&self.path, total)?;
        self.w
            .set(w)
            .map_err(|_| Error::internal("ids.npy started twice"))
    }
    fn put(&self, at: u64, ids: &[u64]) -> Result<()> {
        match self.w.get() {
            Some(w) => {
                w.write_at(at, ids)?;
                self.written.fetch_add(ids.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Error::internal("ids.npy not started")),
        }
    }
}

/// Emit-pass totals.
struct Emitted {
    ties: u64,
    hist: [u64; HIST_BINS],
}

/// The emit pass on one chunk, run by run between excluded ids.
struct EmitChunk<'b> {
    cpu: Cpu,
    start: u64,
    ex: &'b [u64],
    cut: Option<Cut>,
    binner: Option<Binner>,
    acc: &'b mut EmitAcc,
    out: &'b mut [u64],
}

impl Visit for EmitChunk<'_> {
    type Out = usize;
    fn visit<V: Vals, K: Keys>(self, v: V, k: K) -> usize {
        let mut m = 0;
        for (a, b) in runs(self.start, self.start + v.len() as u64, self.ex) {
            let id = self.start + a as u64;
            let (cut, binner) = (self.cut, self.binner);
            m += kernel::emit(
                self.cpu,
                v.sub(a, b),
                k,
                id,
                cut,
                binner,
                self.acc,
                &mut self.out[m..],
            );
        }
        m
    }
}

/// Write the kept ids in ascending order (chunk `c`'s `per_chunk[c]` ids at their place,
/// all chunks in parallel); count ties at the cut and histogram the values.
fn emit(
    plan: &Plan,
    job: &Job,
    cut: Option<Cut>,
    per_chunk: &[u64],
    stats: Option<(f64, f64)>,
    out: &dyn IdsOut,
) -> Result<Emitted> {
    let mut offsets = Vec::with_capacity(per_chunk.len());
    let mut total = 0u64;
    for &c in per_chunk {
        offsets.push(total);
        total += c;
    }
    out.start(total)?;
    let binner = stats.map(|(lo, hi)| Binner::new(lo, hi, HIST_BINS));
    job.progress.start("select: write", plan.n);
    plan.passes.fetch_add(1, Ordering::Relaxed);
    let zero = || Emitted {
        ties: 0,
        hist: [0; HIST_BINS],
    };
    let r = (0..plan.num_chunks())
        .into_par_iter()
        .try_fold(
            || (zero(), Buf::default(), Vec::new()),
            |(mut tot, mut buf, mut ids), c| {
                job.check()?;
                let (s, e) = plan.chunk_range(c);
                if ids.len() < (e - s) as usize {
                    ids.resize((e - s) as usize, 0u64);
                }
                let mut acc = EmitAcc::new();
                let chunk = EmitChunk {
                    cpu: plan.cpu,
                    start: s,
                    ex: plan.excluded(s, e),
                    cut,
                    binner,
                    acc: &mut acc,
                    out: &mut ids,
                };
                let m = plan.visit(s, e, &mut buf, chunk)?;
                if m as u64 != per_chunk[c as usize] {
                    return Err(Error::internal(
                        "kept ids miscounted (inputs changed during selection?)",
                    ));
                }
                if m > 0 {
                    out.put(offsets[c as usize], &ids[..m])?;
                }
                tot.ties += acc.ties;
                add_counts(&mut tot.hist, &acc.hist());
                job.progress.inc(e - s);
                Ok::<_, Error>((tot, buf, ids))
            },
        )
        .map(|r| r.map(|(t, _, _)| t))
        .try_reduce(zero, |mut a, b| {
            a.ties += b.ties;
            add_counts(&mut a.hist, &b.hist);
            Ok(a)
        });
    job.progress.finish();
    r
}

fn check_inputs(inputs: &SelectInputs, spec: &SelectSpec) -> Result<u64> {
    let mut lens: Vec<(String, u64)> = Vec::new();
    for (name, src) in [
        ("teacher", &inputs.teacher),
        ("reference", &inputs.reference),
    ] {
        if let Some(s) = src {
            lens.push((format!("{name} {}", s.path().display()), s.len()));
        }
    }
    if let Some(n) = inputs.num_instances {
        lens.push(("dataset".into(), n));
    }
    if lens.windows(2).any(|w| w[0].1 != w[1].1) {
        let list: Vec<String> = lens.iter().map(|(w, n)| format!("{w} has {n}")).collect();
        return Err(Error::invalid(format!(
            "inputs disagree on the number of instances: {}",
            list.join(", ")
        )));
    }
    let needs_scores = !matches!(spec.mode, Mode::Random { .. });
    if needs_scores {
        let missing = match spec.by {
            By::Diff if inputs.teacher.is_none() || inputs.reference.is_none() => {
                Some("by=diff needs teacher and reference scores")
            }
            By::Teacher if inputs.teacher.is_none() => Some("by=teacher needs teacher scores"),
            By::Reference if inputs.reference.is_none() => {
                Some("by=reference needs reference scores")
            }
            _ => None,
        };
        if let Some(m) = missing {
            return Err(Error::invalid(m));
        }
    }
    if let Amount::Ratio(r) = spec.amount {
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::invalid(format!("ratio must lie in [0, 1], got {r}")));
        }
    }
    if let Mode::Gumbel { temperature, .. } = spec.mode {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::invalid(format!(
                "temperature must be finite and > 0, got {temperature}"
            )));
        }
    }
    lens.first().map(|l| l.1).ok_or_else(|| {
        Error::invalid("nothing to select from: give scores, or --data for --random")
    })
}

fn info(src: &Option<ScoreSource>) -> Result<Option<InputInfo>> {
    src.as_ref()
        .map(|s| {
            Ok(InputInfo {
                path: s.path().to_path_buf(),
                kind: s.kind(),
                fingerprint: s.fingerprint()?,
            })
        })
        .transpose()
}

/// Pass A over every chunk for the key interval `[lo, hi]`: counts and statistics, the
/// keys above the interval per chunk, the sum of finite values per chunk (summed in chunk
/// order by the caller, so the mean does not depend on thread timing), the interval's
/// candidates while they fit the cap, and else the interval's histogram (`PassA::band`);
/// with `with_hist`, the histogram of the top 16 key bits too.
fn scan_interval(
    plan: &Plan,
    job: &Job,
    stage: &str,
    (lo, hi): (u64, u64),
    with_hist: bool,
) -> Result<(PassA, Vec<u64>, Vec<f64>)> {
    let held = AtomicUsize::new(0);
    let cap = plan.tuning.cap;
    let nchunks = plan.num_chunks() as usize;
    let (above, sums) = (zeros(nchunks), zeros(nchunks));
    let band = Band::new(lo, hi);
    let mut a = plan.scan(
        job,
        stage,
        || PassA::new(with_hist),
        |acc, c, buf| {
            let (s, e) = plan.chunk_range(c);
            let before = acc.cands.len();
            let chunk = ScanChunk {
                cpu: plan.cpu,
                start: s,
                ex: plan.excluded(s, e),
                range: (lo, hi),
                cands: &mut acc.cands,
            };
            let t = plan.visit(s, e, buf, chunk)?;
            above[c as usize].store(t.above, Ordering::Relaxed);
            sums[c as usize].store(t.sum.to_bits(), Ordering::Relaxed);
            add_tally(&mut acc.tally, t);
            if with_hist {
                plan.keys(s, e, buf)?;
                for (&key, &ok) in buf.key.iter().zip(&buf.ok) {
                    acc.hist[(key >> (64 - BITS)) as usize] += ok as u64;
                }
            }
            let added = acc.cands.len() - before;
            acc.in_range += added as u64;
            // Past the cap the candidates cannot be kept: count them by sub-interval
            // instead, so that one more pass can collect those of the K-th key's.
            if held.fetch_add(added, Ordering::Relaxed) + added > cap {
                band.count(&mut acc.band, &acc.cands);
                acc.cands = Vec::new();
            }
            Ok(())
        },
        PassA::merge,
    )?;
    if held.into_inner() > cap {
        band.count(&mut a.band, &a.cands);
        a.cands = Vec::new();
    }
    let sums = loads(sums).into_iter().map(f64::from_bits).collect();
    Ok((a, loads(above), sums))
}

/// The sub-intervals of a key interval `[lo, hi]`: at most `BINS` of `2^shift` keys each.
#[derive(Clone, Copy)]
struct Band {
    lo: u64,
    hi: u64,
    shift: u32,
}

impl Band {
    fn new(lo: u64, hi: u64) -> Band {
        let span = hi.saturating_sub(lo);
        let shift = (64 - span.leading_zeros()).saturating_sub(BITS);
        Band { lo, hi, shift }
    }

    /// Add the keys of `cands` (all inside the interval) to the counts `band`.
    fn count(&self, band: &mut Vec<u64>, cands: &[(u64, u64)]) {
        if band.is_empty() {
            band.resize(BINS, 0);
        }
        for &(key, _) in cands {
            band[((key - self.lo) >> self.shift) as usize] += 1;
        }
    }

    /// Sub-interval `b`.
    fn part(&self, b: usize) -> (u64, u64) {
        let lo = self.lo + ((b as u64) << self.shift);
        (lo, self.hi.min(lo.saturating_add((1u64 << self.shift) - 1)))
    }
}

/// The guessed interval held the K-th key but more candidates than the cap: find, from
/// pass A's sub-interval counts, the sub-interval that holds it, and collect that one's
/// candidates (with the keys above it per chunk) in one more pass. `None` when even that
/// sub-interval exceeds the cap (a mass of equal keys): radix narrowing takes over.
fn narrow(
    plan: &Plan,
    job: &Job,
    a: &PassA,
    (lo, hi): (u64, u64),
    kept: u64,
) -> Result<Option<(PassA, Vec<u64>)>> {
    let Some((b, above)) = kth_bucket(&a.band, a.tally.above, kept) else {
        return Ok(None);
    };
    let here = a.band[b];
    if here > plan.tuning.cap as u64 {
        return Ok(None);
    }
    let part = Band::new(lo, hi).part(b);
    let (pa, per_chunk, _) = scan_interval(plan, job, "select: narrow", part, false)?;
    if pa.tally.above != above || pa.in_range != here {
        return Err(Error::internal(
            "counts changed between passes (inputs changed during selection?)",
        ));
    }
    Ok(Some((pa, per_chunk)))
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
        Amount::Ratio(r) => (r * (n - num_excluded) as f64).floor() as u64,
        Amount::Count(c) => c,
    };
    let (tally, stats, cut, emitted) = job.install(|| -> Result<_> {
        let guess = guess_interval(&plan, k)?;
        let (lo, hi) = guess.unwrap_or((1, 0)); // an empty interval when there is no guess
        let cap = plan.tuning.cap;
        let nchunks = plan.num_chunks() as usize;
        let (mut a, above, sums) =
            scan_interval(&plan, job, "select: scan", (lo, hi), guess.is_none())?;
        let sum: f64 = sums.iter().fold(0.0, |x, y| x + y);
        let t = a.tally;
        let stats = (t.n > 0).then(|| ScoreStats {
            min: t.min,
            max: t.max,
            mean: sum / t.n as f64,
            num_negative: t.neg,
        });
        let kept = k.min(t.eligible);
        // Whether the K-th key lies inside the guessed interval.
        let inside = guess.is_some() && t.above < kept && kept <= t.above + a.in_range;
        let narrowed = if inside && a.in_range > cap as u64 {
            narrow(&plan, job, &a, (lo, hi), kept)?
        } else {
            None
        };
        let (cut, per_chunk) = if kept == 0 {
            (None, vec![0; nchunks])
        } else if inside && a.in_range <= cap as u64 {
            let cut = cut_from(&mut a.cands, t.above, kept);
            let per_chunk = kept_per_chunk(above, &a.cands, cut, &plan);
            (Some(cut), per_chunk)
        } else if let Some((mut b, above_b)) = narrowed {
            let cut = cut_from(&mut b.cands, b.tally.above, kept);
            let per_chunk = kept_per_chunk(above_b, &b.cands, cut, &plan);
            (Some(cut), per_chunk)
        } else {
            a.cands = Vec::new();
            let hist = if guess.is_none() {
                std::mem::take(&mut a.hist)
            } else {
                top_histogram(&plan, job)?
            };
            let (cut, per_chunk) = find_cut(&plan, job, &hist, kept)?;
            (Some(cut), per_chunk)
        };
        drop(a);
        if per_chunk.iter().sum::<u64>() != kept {
            return Err(Error::internal(
                "kept ids miscounted (inputs changed during selection?)",
            ));
        }
        let emitted = emit(
            &plan,
            job,
            cut,
            &per_chunk,
            stats.as_ref().map(|s| (s.min, s.max)),
            out,
        )?;
        Ok((t, stats, cut, emitted))
    })??;
    let nan = if has_values {
        n - num_excluded - tally.eligible
    } else {
        0
    };
    let threshold = cut.map(|c| match spec.mode {
        Mode::Random { .. } => c.t as f64 / 2f64.powi(64),
        _ => key_value(c.t),
    });
    let histogram = stats.as_ref().map(|s| Histogram {
        edges: bin_edges(s.min, s.max, HIST_BINS),
        counts: emitted.hist.to_vec(),
    });
    let (mode, temperature, seed) = match spec.mode {
        Mode::Top => ("top", None, None),
        Mode::Random { seed } => ("random", None, Some(seed)),
        Mode::Gumbel { temperature, seed } => ("gumbel", Some(temperature), Some(seed)),
    };
    let (ratio, count) = match spec.amount {
        Amount::Ratio(r) => (Some(r), None),
        Amount::Count(c) => (None, Some(c)),
    };
    let exclude_info = match &inputs.exclude {
        Some(p) => Some(InputInfo {
            path: p.clone(),
            kind: "npy",
            fingerprint: quick_fingerprint(p)?,
        }),
        None => None,
    };
    Ok(SelectionReport {
        format: "miniplm.selection",
        version: 1,
        by: spec.by,
        keep: spec.keep,
        mode,
        temperature,
        seed,
        ratio,
        count,
        num_instances: n,
        num_excluded,
        num_nan: nan,
        num_eligible: tally.eligible,
        k,
        num_selected: k.min(tally.eligible),
        threshold: threshold.filter(|t| t.is_finite()),
        ties_at_threshold: emitted.ties,
        ties_kept: cut.map_or(0, |c| c.need),
        score_stats: stats,
        histogram,
        inputs: Inputs {
            teacher: info(&inputs.teacher)?,
            reference: info(&inputs.reference)?,
            exclude: exclude_info,
        },
        dataset: record::binding(inputs, n)?,
        passes: plan.passes.load(Ordering::Relaxed),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
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
