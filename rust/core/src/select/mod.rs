//! Exact, streaming, multi-threaded top-K Difference Sampling and its baselines
//! (definitions in docs/FORMATS.md, "Selection").
//!
//! Every instance gets a u64 key whose order is the selection order (an order-preserving
//! map of a float key, or a seeded random draw). The threshold key T is found by radix
//! narrowing: pass A histograms the top 16 bits of every key; each further pass either
//! collects the (key, id) candidates of the bucket holding the K-th key (once they fit a
//! bounded buffer) or histograms the next 16 bits inside it. At full depth the bucket is
//! a single key value, and the tie cut (ties go to smaller ids) is found by per-chunk
//! counting. The emit pass writes `key > T || (key == T && id <= tie_cut)` in id order.
//! Memory: per-thread 65536-bin histograms, at most `cap` candidates, a bounded batch of
//! output ids, and one count per chunk; never anything of length N.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::{quick_fingerprint, write_dir_atomically, write_file_atomically};
use crate::inspect::{bin_edges, Binner, Histogram};
use crate::job::Job;
use crate::npy::{DType, Npy, NpyWriter};
use crate::rng::rand_u64;
use crate::scores::ScoreSource;

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
    /// Full passes over the scores (2 when the sampled guess of the threshold held).
    pub passes: usize,
    pub elapsed_s: f64,
}

const BITS: u32 = 16;
const BINS: usize = 1 << BITS;
const HIST_BINS: usize = 64;

/// Order-preserving map of a non-NaN float to u64 (-0.0 and +0.0 map alike); branch-free
/// so the key loops vectorise.
#[inline]
fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    let neg = ((bits as i64) >> 63) as u64;
    bits ^ (neg | 1 << 63)
}

/// Inverse of `order_key`.
fn key_value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// `u` in (0, 1) from a random draw, then the standard Gumbel variate.
#[inline]
fn gumbel(r: u64) -> f64 {
    let u = ((r >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    -(-u.ln()).ln()
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
            d => {
                return Err(Error::format(
                    path,
                    "dtype",
                    format!("exclude ids must be integers, found {}", d.name()),
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

/// Per-chunk scratch buffers.
#[derive(Default)]
struct Buf {
    t: Vec<f64>,
    r: Vec<f64>,
    value: Vec<f64>,
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
    /// Full passes over the inputs so far.
    passes: AtomicUsize,
}

impl Plan<'_> {
    fn num_chunks(&self) -> u64 {
        self.n.div_ceil(self.tuning.chunk as u64)
    }

    fn chunk_range(&self, c: u64) -> (u64, u64) {
        let s = c * self.tuning.chunk as u64;
        (s, (s + self.tuning.chunk as u64).min(self.n))
    }

    /// Fill `b` for ids `[start, end)`: value (NaN if none), eligibility, key.
    fn fill(&self, start: u64, end: u64, b: &mut Buf) -> Result<()> {
        let len = (end - start) as usize;
        let Buf {
            t,
            r,
            value,
            key,
            ok,
        } = b;
        value.resize(len, f64::NAN);
        key.resize(len, 0);
        ok.resize(len, true);
        if self.has_values {
            // Scratch is only filled when a source cannot lend its memory directly.
            let (mut ts, mut rs) = (std::mem::take(t), std::mem::take(r));
            {
                let tv = match (self.spec.by != By::Reference, self.teacher) {
                    (true, Some(s)) => s.mean_nll_chunk(start, len, &mut ts)?,
                    _ => &[][..],
                };
                let rv = match (self.spec.by != By::Teacher, self.reference) {
                    (true, Some(s)) => s.mean_nll_chunk(start, len, &mut rs)?,
                    _ => &[][..],
                };
                match self.spec.by {
                    By::Diff => {
                        for ((v, &a), &b) in value.iter_mut().zip(tv).zip(rv) {
                            *v = b - a;
                        }
                    }
                    By::Teacher => value.copy_from_slice(tv),
                    By::Reference => value.copy_from_slice(rv),
                }
            }
            (*t, *r) = (ts, rs);
            for (o, v) in ok.iter_mut().zip(value.iter()) {
                *o = !v.is_nan();
            }
        } else {
            ok.fill(true);
        }
        let ex = self.exclude.ids();
        let lo = ex.partition_point(|&x| x < start);
        let hi = ex.partition_point(|&x| x < end);
        for &x in &ex[lo..hi] {
            ok[(x - start) as usize] = false;
        }
        let sign = match self.spec.keep {
            Keep::Highest => 1.0,
            Keep::Lowest => -1.0,
        };
        match self.spec.mode {
            Mode::Top => {
                for (k, &v) in key.iter_mut().zip(value.iter()) {
                    *k = order_key(sign * v);
                }
            }
            Mode::Gumbel { temperature, seed } => {
                for (j, (k, &v)) in key.iter_mut().zip(value.iter()).enumerate() {
                    let g = gumbel(rand_u64(seed, start + j as u64));
                    *k = order_key((sign * v + 0.0) / temperature + g);
                }
            }
            Mode::Random { seed } => {
                for (j, k) in key.iter_mut().enumerate() {
                    *k = rand_u64(seed, start + j as u64);
                }
            }
        }
        Ok(())
    }

    /// Fold every chunk in parallel: `visit(acc, start, buf)`.
    fn scan<A: Send>(
        &self,
        job: &Job,
        stage: &str,
        init: impl Fn() -> A + Sync + Send,
        visit: impl Fn(&mut A, u64, &Buf) + Sync + Send,
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
                    let (s, e) = self.chunk_range(c);
                    self.fill(s, e, &mut buf)?;
                    visit(&mut acc, s, &buf);
                    job.progress.inc(e - s);
                    Ok::<_, Error>((acc, buf))
                },
            )
            .map(|r| r.map(|(a, _)| a))
            .try_reduce(&init, |a, b| Ok(merge(a, b)));
        job.progress.finish();
        r
    }
}

/// Count, sum, min, max and negatives of finite eligible values, in 4 independent lanes
/// so the loop has no serial dependency chain.
#[derive(Clone, Copy)]
struct Lanes {
    n: [u64; 4],
    sum: [f64; 4],
    min: [f64; 4],
    max: [f64; 4],
    neg: [u64; 4],
}

impl Lanes {
    const EMPTY: Lanes = Lanes {
        n: [0; 4],
        sum: [0.0; 4],
        min: [f64::INFINITY; 4],
        max: [f64::NEG_INFINITY; 4],
        neg: [0; 4],
    };

    #[inline]
    fn add(&mut self, l: usize, v: f64, ok: bool) {
        let use_ = ok & v.is_finite();
        self.n[l] += use_ as u64;
        self.sum[l] += if use_ { v } else { 0.0 };
        self.min[l] = if use_ & (v < self.min[l]) {
            v
        } else {
            self.min[l]
        };
        self.max[l] = if use_ & (v > self.max[l]) {
            v
        } else {
            self.max[l]
        };
        self.neg[l] += (use_ & (v < 0.0)) as u64;
    }

    fn add_all(&mut self, values: &[f64], ok: &[bool]) {
        let (v4, o4) = (values.chunks_exact(4), ok.chunks_exact(4));
        let (vr, or) = (v4.remainder(), o4.remainder());
        for (v, o) in v4.zip(o4) {
            for l in 0..4 {
                self.add(l, v[l], o[l]);
            }
        }
        for (&v, &o) in vr.iter().zip(or) {
            self.add(0, v, o);
        }
    }

    fn merge(mut self, o: Lanes) -> Lanes {
        for l in 0..4 {
            self.n[l] += o.n[l];
            self.sum[l] += o.sum[l];
            self.min[l] = self.min[l].min(o.min[l]);
            self.max[l] = self.max[l].max(o.max[l]);
            self.neg[l] += o.neg[l];
        }
        self
    }

    fn stats(&self) -> Option<ScoreStats> {
        let n: u64 = self.n.iter().sum();
        (n > 0).then(|| ScoreStats {
            min: self.min.iter().copied().fold(f64::INFINITY, f64::min),
            max: self.max.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean: self.sum.iter().sum::<f64>() / n as f64,
            num_negative: self.neg.iter().sum(),
        })
    }
}

/// What pass A learns: counts, value statistics, the guessed interval's candidates, and
/// (only without a guess) the histogram of the top 16 key bits.
struct PassA {
    eligible: u64,
    stats: Lanes,
    hist: Vec<u64>,
    /// Keys above the guessed interval, keys inside it, and the candidates inside it.
    above_hi: u64,
    in_range: u64,
    cands: Vec<(u64, u64)>,
}

impl PassA {
    fn new(with_hist: bool) -> PassA {
        PassA {
            eligible: 0,
            stats: Lanes::EMPTY,
            hist: if with_hist { vec![0; BINS] } else { Vec::new() },
            above_hi: 0,
            in_range: 0,
            cands: Vec::new(),
        }
    }

    fn merge(mut self, o: PassA) -> PassA {
        self.eligible += o.eligible;
        self.stats = self.stats.merge(o.stats);
        self.hist.iter_mut().zip(o.hist).for_each(|(a, b)| *a += b);
        self.above_hi += o.above_hi;
        self.in_range += o.in_range;
        let mut c = o.cands;
        self.cands.append(&mut c);
        self
    }
}

/// Histogram of the top 16 bits of every eligible key (the start of radix narrowing).
fn top_histogram(plan: &Plan, job: &Job) -> Result<Vec<u64>> {
    plan.scan(
        job,
        "select: histogram",
        || vec![0u64; BINS],
        |h, _, buf| {
            for (&key, &ok) in buf.key.iter().zip(&buf.ok) {
                h[(key >> (64 - BITS)) as usize] += ok as u64;
            }
        },
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// The exact cut: keep `key > t || (key == t && id <= tie_cut)`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    t: u64,
    tie_cut: u64,
    need: u64,
}

/// Find the K-th largest key among eligible instances by radix narrowing.
fn find_cut(plan: &Plan, job: &Job, first: &[u64], k: u64) -> Result<Cut> {
    // Invariant: the K-th key lies among keys whose top `depth` bits equal `prefix`;
    // `above` eligible keys are larger than every key with that prefix.
    let (mut prefix, mut depth, mut above) = (0u64, 0u32, 0u64);
    let mut hist = first.to_vec();
    loop {
        // Pick the bucket of the next 16 bits that holds the K-th key.
        let mut b = BINS - 1;
        loop {
            if above + hist[b] >= k {
                break;
            }
            above += hist[b];
            b -= 1;
        }
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
        hist = plan.scan(
            job,
            "select: narrow",
            || vec![0u64; BINS],
            |h, _, buf| {
                for (&key, &ok) in buf.key.iter().zip(&buf.ok) {
                    if ok && key >> (64 - d) == p {
                        h[((key >> shift) & (BINS as u64 - 1)) as usize] += 1;
                    }
                }
            },
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )?;
        debug_assert_eq!(hist.iter().sum::<u64>(), inside);
    }
}

/// Collect the bucket's candidates (they fit `cap`) and cut exactly among them.
fn collect(plan: &Plan, job: &Job, prefix: u64, depth: u32, above: u64, k: u64) -> Result<Cut> {
    let cands = plan.scan(
        job,
        "select: collect",
        Vec::new,
        |v: &mut Vec<(u64, u64)>, start, buf| {
            for (j, (&key, &ok)) in buf.key.iter().zip(&buf.ok).enumerate() {
                if ok && key >> (64 - depth) == prefix {
                    v.push((key, start + j as u64));
                }
            }
        },
        |mut a, mut b| {
            a.append(&mut b);
            a
        },
    )?;
    Ok(cut_from(cands, above, k))
}

/// The exact cut from every candidate key in a range that `above` larger keys precede
/// and that holds the K-th key.
fn cut_from(mut cands: Vec<(u64, u64)>, above: u64, k: u64) -> Cut {
    // Larger key first, then smaller id.
    cands.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let rank = (k - above - 1) as usize;
    let (t, tie_cut) = cands[rank];
    let first_tie = cands.partition_point(|c| c.0 > t);
    Cut {
        t,
        tie_cut,
        need: (rank - first_tie + 1) as u64,
    }
}

/// All 64 bits are fixed: the threshold is `t` and the `need`-th smallest id among the
/// keys equal to it is the tie cut. Count ties per chunk, then look inside one chunk.
fn tie_cut(plan: &Plan, job: &Job, t: u64, need: u64) -> Result<Cut> {
    let nchunks = plan.num_chunks() as usize;
    let per_chunk = plan.scan(
        job,
        "select: ties",
        || vec![0u64; 0],
        |v, start, buf| {
            let c = (start / plan.tuning.chunk as u64) as usize;
            let n = buf
                .key
                .iter()
                .zip(&buf.ok)
                .filter(|(&key, &ok)| ok && key == t)
                .count() as u64;
            if v.len() < nchunks {
                v.resize(nchunks, 0);
            }
            v[c] += n;
        },
        |a, b| {
            if a.is_empty() {
                return b;
            }
            if b.is_empty() {
                return a;
            }
            a.into_iter().zip(b).map(|(x, y)| x + y).collect()
        },
    )?;
    let mut seen = 0u64;
    for (c, &n) in per_chunk.iter().enumerate() {
        if seen + n >= need {
            let (s, e) = plan.chunk_range(c as u64);
            let mut buf = Buf::default();
            plan.fill(s, e, &mut buf)?;
            for (j, (&key, &ok)) in buf.key.iter().zip(&buf.ok).enumerate() {
                if ok && key == t {
                    seen += 1;
                    if seen == need {
                        return Ok(Cut {
                            t,
                            tie_cut: s + j as u64,
                            need,
                        });
                    }
                }
            }
        }
        seen += n;
    }
    Err(Error::invalid(
        "internal: tie cut not found (inputs changed during selection?)",
    ))
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
        plan.fill(s, s + block, &mut buf)?;
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
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let margin = 4.0 * (m * p * (1.0 - p)).sqrt() + 16.0;
    let at = p * m;
    let top = (at - margin).floor();
    let bottom = (at + margin).ceil();
    let hi = if top <= 0.0 {
        u64::MAX
    } else {
        keys[top as usize]
    };
    let lo = if bottom >= m - 1.0 {
        0
    } else {
        keys[bottom as usize]
    };
    Ok(Some((lo, hi)))
}

struct Emitted {
    ties: u64,
    hist: Vec<u64>,
}

/// Write the kept ids in ascending order; count ties at the cut and histogram the values.
fn emit(
    plan: &Plan,
    job: &Job,
    cut: Option<Cut>,
    stats: Option<(f64, f64)>,
    mut sink: impl FnMut(Vec<u64>) -> Result<()>,
) -> Result<Emitted> {
    let per_batch = (rayon::current_num_threads() * 4) as u64;
    let nchunks = plan.num_chunks();
    let mut total = Emitted {
        ties: 0,
        hist: vec![0; HIST_BINS],
    };
    job.progress.start("select: write", plan.n);
    plan.passes.fetch_add(1, Ordering::Relaxed);
    let mut c0 = 0;
    while c0 < nchunks {
        job.check()?;
        let c1 = (c0 + per_batch).min(nchunks);
        let parts: Vec<(Vec<u64>, u64, Vec<u64>)> = (c0..c1)
            .into_par_iter()
            .map_init(Buf::default, |buf, c| {
                let (s, e) = plan.chunk_range(c);
                plan.fill(s, e, buf)?;
                let binner = stats.map(|(lo, hi)| Binner::new(lo, hi, HIST_BINS));
                let mut hist = vec![0u64; if stats.is_some() { HIST_BINS } else { 0 }];
                if let Some(b) = &binner {
                    for (&v, &ok) in buf.value.iter().zip(&buf.ok) {
                        if ok & v.is_finite() {
                            hist[b.bin(v)] += 1;
                        }
                    }
                }
                let mut ids: Vec<u64> = Vec::new();
                let mut ties = 0u64;
                if let Some(cut) = cut {
                    // Branch-free: write every id, advance only past kept ones.
                    ids.resize(buf.key.len(), 0);
                    let mut m = 0usize;
                    for (j, (&key, &ok)) in buf.key.iter().zip(&buf.ok).enumerate() {
                        let id = s + j as u64;
                        let tie = ok & (key == cut.t);
                        ties += tie as u64;
                        ids[m] = id;
                        m += (ok & (key > cut.t) | tie & (id <= cut.tie_cut)) as usize;
                    }
                    ids.truncate(m);
                }
                job.progress.inc(e - s);
                Ok((ids, ties, hist))
            })
            .collect::<Result<_>>()?;
        for (ids, ties, hist) in parts {
            sink(ids)?;
            total.ties += ties;
            total.hist.iter_mut().zip(hist).for_each(|(a, b)| *a += b);
        }
        c0 = c1;
    }
    job.progress.finish();
    Ok(total)
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

/// Run a selection, handing kept ids (ascending, in batches) to `sink`.
pub fn select_with(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    tuning: Tuning,
    job: &Job,
    sink: impl FnMut(Vec<u64>) -> Result<()> + Send,
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
        passes: AtomicUsize::new(0),
    };
    let k = match spec.amount {
        Amount::Ratio(r) => (r * (n - num_excluded) as f64).floor() as u64,
        Amount::Count(c) => c,
    };
    let (a, cut, emitted) = job.install(|| -> Result<_> {
        let guess = guess_interval(&plan, k)?;
        let (lo, hi) = guess.unwrap_or((1, 0)); // an empty interval when there is no guess
        let held = AtomicUsize::new(0);
        let cap = plan.tuning.cap;
        let with_hist = guess.is_none();
        let a = plan.scan(
            job,
            "select: scan",
            || PassA::new(with_hist),
            |acc, start, buf| {
                let before = acc.cands.len();
                for (j, (&key, &ok)) in buf.key.iter().zip(&buf.ok).enumerate() {
                    acc.eligible += ok as u64;
                    acc.above_hi += (ok & (key > hi)) as u64;
                    if ok & (key >= lo) & (key <= hi) {
                        acc.in_range += 1;
                        acc.cands.push((key, start + j as u64));
                    }
                }
                if with_hist {
                    for (&key, &ok) in buf.key.iter().zip(&buf.ok) {
                        acc.hist[(key >> (64 - BITS)) as usize] += ok as u64;
                    }
                }
                if has_values {
                    acc.stats.add_all(&buf.value, &buf.ok);
                }
                // Past the cap the guess is useless: drop candidates, keep counting.
                let added = acc.cands.len() - before;
                if held.fetch_add(added, Ordering::Relaxed) + added > cap {
                    acc.cands = Vec::new();
                }
            },
            PassA::merge,
        )?;
        let mut a = a;
        let kept = k.min(a.eligible);
        let guessed = guess.is_some()
            && held.load(Ordering::Relaxed) <= cap
            && a.above_hi < kept
            && kept <= a.above_hi + a.in_range;
        let cut = if kept == 0 {
            None
        } else if guessed {
            Some(cut_from(std::mem::take(&mut a.cands), a.above_hi, kept))
        } else {
            a.cands = Vec::new();
            let hist = if with_hist {
                std::mem::take(&mut a.hist)
            } else {
                top_histogram(&plan, job)?
            };
            Some(find_cut(&plan, job, &hist, kept)?)
        };
        let stats = a.stats.stats().map(|s| (s.min, s.max));
        let emitted = emit(&plan, job, cut, stats, sink)?;
        Ok((a, cut, emitted))
    })??;
    let nan = if has_values {
        n - num_excluded - a.eligible
    } else {
        0
    };
    let threshold = cut.map(|c| match spec.mode {
        Mode::Random { .. } => c.t as f64 / 2f64.powi(64),
        _ => key_value(c.t),
    });
    let stats = a.stats.stats();
    let histogram = stats.as_ref().map(|s| Histogram {
        edges: bin_edges(s.min, s.max, HIST_BINS),
        counts: emitted.hist.clone(),
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
        num_eligible: a.eligible,
        k,
        num_selected: k.min(a.eligible),
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
        passes: plan.passes.load(Ordering::Relaxed),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// Select in memory: the kept ids and the report.
pub fn select_ids(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    tuning: Tuning,
    job: &Job,
) -> Result<(Vec<u64>, SelectionReport)> {
    let mut ids = Vec::new();
    let rep = select_with(inputs, spec, tuning, job, |b| {
        ids.extend_from_slice(&b);
        Ok(())
    })?;
    Ok((ids, rep))
}

/// Select and write `out_dir/ids.npy` + `out_dir/selection.json` (all or nothing).
pub fn select(
    inputs: &SelectInputs,
    spec: &SelectSpec,
    out_dir: &Path,
    overwrite: bool,
    job: &Job,
) -> Result<SelectionReport> {
    write_dir_atomically(out_dir, overwrite, |tmp| {
        let mut w = NpyWriter::<u64>::create(tmp.join("ids.npy"))?;
        // A writer thread takes batches of ids so that writing overlaps the emit pass.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u64>>(4);
        let rep = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<NpyWriter<u64>> {
                for batch in rx {
                    w.write(&batch)?;
                }
                Ok(w)
            });
            let rep = select_with(inputs, spec, Tuning::default(), job, |b| {
                tx.send(b)
                    .map_err(|_| Error::invalid("internal: the id writer stopped"))
            });
            drop(tx);
            let w = writer
                .join()
                .map_err(|_| Error::invalid("internal: the id writer panicked"))?;
            // A write error explains a stopped writer better than the send failure.
            let w = w?;
            let rep = rep?;
            w.finish()?;
            Ok::<_, Error>(rep)
        })?;
        let json = serde_json::to_vec_pretty(&rep)
            .map_err(|e| Error::invalid(format!("cannot write selection.json: {e}")))?;
        write_file_atomically(&tmp.join("selection.json"), &json)?;
        Ok(rep)
    })
}

#[cfg(test)]
mod tests;
