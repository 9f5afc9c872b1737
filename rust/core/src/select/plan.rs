//! The plan of a selection (inputs, spec, chunking) and pass A, the scan that counts
//! keys and collects the guessed interval's candidates.

use crate::error::{Error, Result};
use crate::job::Job;
use crate::scores::ScoreSource;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::exclusion::{runs, Exclude};
use super::kernel;
use super::kernel::{Cpu, Diff, Gumbel, Keys, NoVals, One, Random, Tally, Top, Vals};
use super::{By, Keep, Mode, SelectSpec, Tuning};
use rayon::prelude::*;

pub(super) const BITS: u32 = 16;
pub(super) const BINS: usize = 1 << BITS;

/// Per-chunk scratch: score values when a source cannot lend its memory, and keys and
/// eligibility for the radix passes.
#[derive(Default)]
pub(super) struct Buf {
    pub(super) t: Vec<f64>,
    pub(super) r: Vec<f64>,
    pub(super) key: Vec<u64>,
    pub(super) ok: Vec<bool>,
}

pub(super) struct Plan<'a> {
    pub(super) n: u64,
    pub(super) spec: SelectSpec,
    pub(super) teacher: Option<&'a ScoreSource>,
    pub(super) reference: Option<&'a ScoreSource>,
    /// Whether values exist (scores for `by` were given).
    pub(super) has_values: bool,
    pub(super) exclude: Exclude,
    pub(super) tuning: Tuning,
    pub(super) cpu: Cpu,
    /// Full passes over the inputs so far.
    pub(super) passes: AtomicUsize,
}

/// A kernel run on one chunk, given the chunk's values and key maker as concrete types
/// (so that every combination compiles to its own tight loop).
pub(super) trait Visit {
    type Out;
    fn visit<V: Vals, K: Keys>(self, v: V, k: K) -> Self::Out;
}

pub(super) fn with_keys<V: Vals, F: Visit>(mode: Mode, sign: f64, v: V, f: F) -> F::Out {
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

impl Plan<'_> {
    pub(super) fn num_chunks(&self) -> u64 {
        self.n.div_ceil(self.tuning.chunk as u64)
    }

    pub(super) fn chunk_range(&self, c: u64) -> (u64, u64) {
        let s = c * self.tuning.chunk as u64;
        (s, (s + self.tuning.chunk as u64).min(self.n))
    }

    /// Excluded ids inside `[start, end)`.
    pub(super) fn excluded(&self, start: u64, end: u64) -> &[u64] {
        let ex = self.exclude.ids();
        let lo = ex.partition_point(|&x| x < start);
        let hi = ex.partition_point(|&x| x < end);
        &ex[lo..hi]
    }

    /// Run `f` on ids `[start, end)` (exclusions are `f`'s business): values borrowed
    /// straight from float64 arrays, else computed into `buf`.
    pub(super) fn visit<F: Visit>(
        &self,
        start: u64,
        end: u64,
        buf: &mut Buf,
        f: F,
    ) -> Result<F::Out> {
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
    pub(super) fn keys(&self, start: u64, end: u64, buf: &mut Buf) -> Result<()> {
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
    pub(super) fn scan<A: Send>(
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
    pub(super) fn scan_keys<A: Send>(
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

pub(super) fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

pub(super) fn loads(v: Vec<AtomicU64>) -> Vec<u64> {
    v.into_iter().map(AtomicU64::into_inner).collect()
}

/// `a[i] += b[i]`: merging per-thread histograms.
pub(super) fn add_counts(a: &mut [u64], b: &[u64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

pub(super) fn add_tally(a: &mut Tally, b: Tally) {
    a.eligible += b.eligible;
    a.above += b.above;
    a.n += b.n;
    a.sum += b.sum;
    a.min = a.min.min(b.min);
    a.max = a.max.max(b.max);
    a.neg += b.neg;
}

/// What pass A learns: counts, value statistics (the sum is kept per chunk, see
/// `route::run`), the guessed interval's candidates, and (only without a guess) the
/// histogram of the top 16 key bits.
pub(super) struct PassA {
    pub(super) tally: Tally,
    pub(super) hist: Vec<u64>,
    /// Keys inside the guessed interval, and their candidates (dropped past the cap).
    pub(super) in_range: u64,
    pub(super) cands: Vec<(u64, u64)>,
    /// Past the cap: the interval's keys counted by sub-interval (`Band`), else empty.
    pub(super) band: Vec<u64>,
}

impl PassA {
    pub(super) fn new(with_hist: bool) -> PassA {
        PassA {
            tally: Tally::EMPTY,
            hist: if with_hist { vec![0; BINS] } else { Vec::new() },
            in_range: 0,
            cands: Vec::new(),
            band: Vec::new(),
        }
    }

    pub(super) fn merge(mut self, o: PassA) -> PassA {
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
pub(super) struct ScanChunk<'b> {
    pub(super) cpu: Cpu,
    pub(super) start: u64,
    pub(super) ex: &'b [u64],
    pub(super) range: (u64, u64),
    pub(super) cands: &'b mut Vec<(u64, u64)>,
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

/// Pass A over every chunk for the key interval `[lo, hi]`: counts and statistics, the
/// keys above the interval per chunk, the sum of finite values per chunk (summed in chunk
/// order by the caller, so the mean does not depend on thread timing), the interval's
/// candidates while they fit the cap, and else the interval's histogram (`PassA::band`);
/// with `with_hist`, the histogram of the top 16 key bits too.
pub(super) fn scan_interval(
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
pub(super) struct Band {
    pub(super) lo: u64,
    pub(super) hi: u64,
    pub(super) shift: u32,
}

impl Band {
    pub(super) fn new(lo: u64, hi: u64) -> Band {
        let span = hi.saturating_sub(lo);
        let shift = (64 - span.leading_zeros()).saturating_sub(BITS);
        Band { lo, hi, shift }
    }

    /// Add the keys of `cands` (all inside the interval) to the counts `band`.
    pub(super) fn count(&self, band: &mut Vec<u64>, cands: &[(u64, u64)]) {
        if band.is_empty() {
            band.resize(BINS, 0);
        }
        for &(key, _) in cands {
            band[((key - self.lo) >> self.shift) as usize] += 1;
        }
    }

    /// Sub-interval `b`.
    pub(super) fn part(&self, b: usize) -> (u64, u64) {
        let lo = self.lo + ((b as u64) << self.shift);
        (lo, self.hi.min(lo.saturating_add((1u64 << self.shift) - 1)))
    }
}
