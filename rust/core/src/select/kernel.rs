//! The per-instance loops of a selection, fused: each reads the score values of a run of
//! ids once and does all of a pass's work on them (value, eligibility, key, counts,
//! statistics, candidates or kept ids, histogram), in blocks of `W` lanes. Every loop is
//! generic over where values come from (`Vals`) and how keys are made (`Keys`). Top-K
//! keys (the common case) also have explicit AVX2 kernels (`avx2`), picked at run time
//! when the CPU has AVX2; they follow the portable loops lane for lane, so both give the
//! same bits (tested against each other).
//!
//! The element formulas live here once (`Vals::block`, `Keys::key`); the rare radix
//! passes use them through `keys_into`, so every path sees identical keys.
//!
//! Over 800 lines on purpose: the portable loops, their AVX2 twins and the tests that hold
//! them lane for lane equal belong together; split, a change to one would miss the other.

use crate::rng::rand_u64;
use crate::stats::Binner;

/// Lanes per block.
pub(super) const W: usize = 4;
pub(super) const HIST_BINS: usize = 64;

/// Order-preserving map of a non-NaN float to u64 (-0.0 and +0.0 map alike); branch-free
/// so the key loops vectorise.
#[inline(always)]
pub(super) fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    let neg = ((bits as i64) >> 63) as u64;
    bits ^ (neg | 1 << 63)
}

/// Inverse of `order_key`.
pub(super) fn key_value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// `u` in (0, 1) from a random draw, then the standard Gumbel variate.
#[inline(always)]
pub(super) fn gumbel(r: u64) -> f64 {
    let u = ((r >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    -(-u.ln()).ln()
}

/// The values of a run of ids (index 0 = the run's first id).
pub(super) trait Vals: Copy {
    /// Whether there are values (else every instance is eligible and values are NaN).
    const HAS: bool;
    fn len(&self) -> usize;
    /// Values `j..j + W`.
    fn block(&self, j: usize) -> [f64; W];
    /// Values `j..j + m` (m < W), NaN beyond.
    fn partial(&self, j: usize, m: usize) -> [f64; W];
    fn sub(&self, a: usize, b: usize) -> Self;
}

/// No scores (random selection without scores).
#[derive(Clone, Copy)]
pub(super) struct NoVals(pub usize);

impl Vals for NoVals {
    const HAS: bool = false;
    #[inline(always)]
    fn len(&self) -> usize {
        self.0
    }
    #[inline(always)]
    fn block(&self, _: usize) -> [f64; W] {
        [f64::NAN; W]
    }
    #[inline(always)]
    fn partial(&self, _: usize, _: usize) -> [f64; W] {
        [f64::NAN; W]
    }
    #[inline(always)]
    fn sub(&self, a: usize, b: usize) -> Self {
        NoVals(b - a)
    }
}

/// One score array is the value (by teacher or by reference).
#[derive(Clone, Copy)]
pub(super) struct One<'a>(pub &'a [f64]);

impl Vals for One<'_> {
    const HAS: bool = true;
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn block(&self, j: usize) -> [f64; W] {
        let a: &[f64; W] = self.0[j..j + W].try_into().unwrap();
        *a
    }
    #[inline(always)]
    fn partial(&self, j: usize, m: usize) -> [f64; W] {
        let mut v = [f64::NAN; W];
        v[..m].copy_from_slice(&self.0[j..j + m]);
        v
    }
    #[inline(always)]
    fn sub(&self, a: usize, b: usize) -> Self {
        One(&self.0[a..b])
    }
}

/// The difference score `r - t` (reference NLL minus teacher NLL).
#[derive(Clone, Copy)]
pub(super) struct Diff<'a> {
    pub t: &'a [f64],
    pub r: &'a [f64],
}

impl Vals for Diff<'_> {
    const HAS: bool = true;
    #[inline(always)]
    fn len(&self) -> usize {
        self.t.len().min(self.r.len())
    }
    #[inline(always)]
    fn block(&self, j: usize) -> [f64; W] {
        let t: &[f64; W] = self.t[j..j + W].try_into().unwrap();
        let r: &[f64; W] = self.r[j..j + W].try_into().unwrap();
        let mut v = [0.0; W];
        for l in 0..W {
            v[l] = r[l] - t[l];
        }
        v
    }
    #[inline(always)]
    fn partial(&self, j: usize, m: usize) -> [f64; W] {
        let mut v = [f64::NAN; W];
        for (l, o) in v[..m].iter_mut().enumerate() {
            *o = self.r[j + l] - self.t[j + l];
        }
        v
    }
    #[inline(always)]
    fn sub(&self, a: usize, b: usize) -> Self {
        Diff {
            t: &self.t[a..b],
            r: &self.r[a..b],
        }
    }
}

/// The selection key of instance `id` with value `v`: its order is the selection order.
pub(super) trait Keys: Copy {
    fn key(&self, id: u64, v: f64) -> u64;
    /// `Some(sign)` for plain top-K keys (`order_key(sign * v)`), which have SIMD kernels.
    fn top_sign(&self) -> Option<f64> {
        None
    }
}

/// Top-K: the value itself (negated to keep the lowest).
#[derive(Clone, Copy)]
pub(super) struct Top {
    pub sign: f64,
}

impl Keys for Top {
    #[inline(always)]
    fn key(&self, _: u64, v: f64) -> u64 {
        order_key(self.sign * v)
    }
    #[inline(always)]
    fn top_sign(&self) -> Option<f64> {
        Some(self.sign)
    }
}

/// Gumbel-top-K: value / temperature + a Gumbel draw seeded per id.
#[derive(Clone, Copy)]
pub(super) struct Gumbel {
    pub sign: f64,
    pub temperature: f64,
    pub seed: u64,
}

impl Keys for Gumbel {
    #[inline(always)]
    fn key(&self, id: u64, v: f64) -> u64 {
        let g = gumbel(rand_u64(self.seed, id));
        order_key((self.sign * v + 0.0) / self.temperature + g)
    }
}

/// A uniform random subset: a seeded draw per id.
#[derive(Clone, Copy)]
pub(super) struct Random {
    pub seed: u64,
}

impl Keys for Random {
    #[inline(always)]
    fn key(&self, id: u64, _: f64) -> u64 {
        rand_u64(self.seed, id)
    }
}

/// Eligibility: a value that is not NaN (exclusions are the caller's).
#[inline(always)]
fn eligible<V: Vals>(v: f64) -> bool {
    !V::HAS || !v.is_nan()
}

/// Whether the AVX2 kernels may run here.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cpu {
    avx2: bool,
}

impl Cpu {
    pub(super) fn detect() -> Cpu {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Cpu { avx2 }
    }

    /// The portable kernels only (tests compare them with the AVX2 ones).
    #[cfg(test)]
    pub(super) fn baseline() -> Cpu {
        Cpu { avx2: false }
    }
}

/// What one pass-A run adds up: eligible count, keys above the guessed interval, and
/// the statistics of finite values (count, sum, min, max, negatives).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Tally {
    pub eligible: u64,
    pub above: u64,
    pub n: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub neg: u64,
}

impl Tally {
    pub(super) const EMPTY: Tally = Tally {
        eligible: 0,
        above: 0,
        n: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        neg: 0,
    };
}

/// Lane accumulators of pass A.
struct ScanLanes {
    eligible: [u64; W],
    above: [u64; W],
    n: [u64; W],
    sum: [f64; W],
    min: [f64; W],
    max: [f64; W],
    neg: [u64; W],
}

impl ScanLanes {
    const EMPTY: ScanLanes = ScanLanes {
        eligible: [0; W],
        above: [0; W],
        n: [0; W],
        sum: [0.0; W],
        min: [f64::INFINITY; W],
        max: [f64::NEG_INFINITY; W],
        neg: [0; W],
    };

    /// One instance into lane `l`; whether its key lies inside `[lo, hi]`.
    #[inline(always)]
    fn add<V: Vals, K: Keys>(
        &mut self,
        k: K,
        v: f64,
        id: u64,
        l: usize,
        range: (u64, u64),
    ) -> bool {
        let (lo, hi) = range;
        let key = k.key(id, v);
        let ok = eligible::<V>(v);
        self.eligible[l] += ok as u64;
        self.above[l] += (ok & (key > hi)) as u64;
        if V::HAS {
            let u = ok & v.is_finite();
            self.n[l] += u as u64;
            self.sum[l] += if u { v } else { 0.0 };
            self.min[l] = if u & (v < self.min[l]) {
                v
            } else {
                self.min[l]
            };
            self.max[l] = if u & (v > self.max[l]) {
                v
            } else {
                self.max[l]
            };
            self.neg[l] += (u & (v < 0.0)) as u64;
        }
        ok & (key >= lo) & (key <= hi)
    }

    /// Lanes fold in a fixed order, so the sum does not depend on the build or threads.
    fn fold(&self) -> Tally {
        let mut t = Tally::EMPTY;
        for l in 0..W {
            t.eligible += self.eligible[l];
            t.above += self.above[l];
            t.n += self.n[l];
            t.sum += self.sum[l];
            t.min = t.min.min(self.min[l]);
            t.max = t.max.max(self.max[l]);
            t.neg += self.neg[l];
        }
        t
    }
}

/// Push the (key, id) of each instance of a block whose key lies inside `[lo, hi]`.
#[inline(never)]
fn push_candidates<V: Vals, K: Keys>(
    k: K,
    vals: &[f64],
    id: u64,
    (lo, hi): (u64, u64),
    cands: &mut Vec<(u64, u64)>,
) {
    for (l, &v) in vals.iter().enumerate() {
        let (key, id) = (k.key(id + l as u64, v), id + l as u64);
        if eligible::<V>(v) & (key >= lo) & (key <= hi) {
            cands.push((key, id));
        }
    }
}

/// Push the (key, id) of the lanes set in `mask` (lane order), keys already made; out of
/// line so that the rare call keeps the vector loop's registers free.
#[inline(never)]
fn push_lanes(keys: [u64; W], mut mask: u32, id: u64, cands: &mut Vec<(u64, u64)>) {
    while mask != 0 {
        let l = mask.trailing_zeros() as usize;
        cands.push((keys[l], id + l as u64));
        mask &= mask - 1;
    }
}

/// The last `len % W` instances of a run, into lane 0.
fn scan_tail<V: Vals, K: Keys>(
    v: V,
    k: K,
    id0: u64,
    j: usize,
    range: (u64, u64),
    acc: &mut ScanLanes,
    cands: &mut Vec<(u64, u64)>,
) {
    let len = v.len();
    if j < len {
        let vals = v.partial(j, len - j);
        let vals = &vals[..len - j];
        let id = id0 + j as u64;
        let mut any = false;
        for (l, &x) in vals.iter().enumerate() {
            any |= acc.add::<V, K>(k, x, id + l as u64, 0, range);
        }
        if any {
            push_candidates::<V, K>(k, vals, id, range, cands);
        }
    }
}

fn scan_portable<V: Vals, K: Keys>(
    v: V,
    k: K,
    id0: u64,
    range: (u64, u64),
    cands: &mut Vec<(u64, u64)>,
) -> Tally {
    let mut acc = ScanLanes::EMPTY;
    let full = v.len() / W * W;
    let mut j = 0;
    while j < full {
        let vals = v.block(j);
        let id = id0 + j as u64;
        let mut any = false;
        for (l, &x) in vals.iter().enumerate() {
            any |= acc.add::<V, K>(k, x, id + l as u64, l, range);
        }
        if any {
            push_candidates::<V, K>(k, &vals, id, range, cands);
        }
        j += W;
    }
    scan_tail(v, k, id0, j, range, &mut acc, cands);
    acc.fold()
}

/// Pass A over ids `id0..id0 + v.len()` (none of them excluded): counts eligible keys
/// and keys above `range.1`, pushes the (key, id) of keys inside `range` onto `cands`,
/// and adds up the statistics of the finite values.
pub(super) fn scan<V: Vals, K: Keys>(
    cpu: Cpu,
    v: V,
    k: K,
    id0: u64,
    range: (u64, u64),
    cands: &mut Vec<(u64, u64)>,
) -> Tally {
    #[cfg(target_arch = "x86_64")]
    if let (true, true, Some(sign)) = (cpu.avx2, V::HAS, k.top_sign()) {
        // SAFETY: `cpu.avx2` is true only when `is_x86_feature_detected!("avx2")` found
        // AVX2 on this CPU (`Cpu::detect`), the one requirement of this
        // `#[target_feature(enable = "avx2")]` function.
        return unsafe { avx2::scan_top(v, k, sign, id0, range, cands) };
    }
    let _ = cpu;
    scan_portable(v, k, id0, range, cands)
}

/// The exact cut: keep `key > t || (key == t && id <= tie_cut)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cut {
    pub t: u64,
    pub tie_cut: u64,
    pub need: u64,
}

/// Emit-pass accumulators: ties at the threshold and the value histogram (one per lane,
/// summed by `hist`).
#[derive(Debug, PartialEq)]
pub(super) struct EmitAcc {
    pub ties: u64,
    pub lanes: [[u64; HIST_BINS]; W],
}

impl EmitAcc {
    pub(super) fn new() -> EmitAcc {
        EmitAcc {
            ties: 0,
            lanes: [[0; HIST_BINS]; W],
        }
    }

    pub(super) fn hist(&self) -> [u64; HIST_BINS] {
        let mut h = [0u64; HIST_BINS];
        for lane in &self.lanes {
            super::plan::add_counts(&mut h, lane);
        }
        h
    }
}

/// One instance of the emit pass into lane `l`: histogram it, count a tie, and whether
/// it is kept.
#[inline(always)]
fn emit_one<V: Vals, K: Keys>(
    k: K,
    v: f64,
    id: u64,
    l: usize,
    cut: Option<Cut>,
    binner: Option<Binner>,
    acc: &mut EmitAcc,
) -> bool {
    let ok = eligible::<V>(v);
    if let Some(b) = binner {
        acc.lanes[l][b.bin(v)] += (ok & v.is_finite()) as u64;
    }
    match cut {
        Some(c) => {
            let key = k.key(id, v);
            let tie = ok & (key == c.t);
            acc.ties += tie as u64;
            ok & (key > c.t) | tie & (id <= c.tie_cut)
        }
        None => false,
    }
}

/// The last `len % W` instances of a run, into lane 0; the new count of ids in `out`.
#[allow(clippy::too_many_arguments)]
fn emit_tail<V: Vals, K: Keys>(
    v: V,
    k: K,
    id0: u64,
    j: usize,
    cut: Option<Cut>,
    binner: Option<Binner>,
    acc: &mut EmitAcc,
    out: &mut [u64],
    mut at: usize,
) -> usize {
    for x in j..v.len() {
        let vx = v.partial(x, 1)[0];
        let id = id0 + x as u64;
        if emit_one::<V, K>(k, vx, id, 0, cut, binner, acc) {
            out[at] = id;
            at += 1;
        }
    }
    at
}

fn emit_portable<V: Vals, K: Keys>(
    v: V,
    k: K,
    id0: u64,
    cut: Option<Cut>,
    binner: Option<Binner>,
    acc: &mut EmitAcc,
    out: &mut [u64],
) -> usize {
    let full = v.len() / W * W;
    let mut at = 0usize;
    let mut j = 0;
    while j < full {
        let vals = v.block(j);
        let id = id0 + j as u64;
        for (l, &x) in vals.iter().enumerate() {
            // Branch-free: write every id, advance only past kept ones.
            let kept = emit_one::<V, K>(k, x, id + l as u64, l, cut, binner, acc);
            out[at] = id + l as u64;
            at += kept as usize;
        }
        j += W;
    }
    emit_tail(v, k, id0, j, cut, binner, acc, out, at)
}

/// The emit pass over ids `id0..id0 + v.len()` (none excluded): writes the kept ids to
/// the front of `out` (which must hold `v.len()` ids; ids past the returned count are
/// scratch) and returns how many; counts ties at the cut and histograms finite values.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit<V: Vals, K: Keys>(
    cpu: Cpu,
    v: V,
    k: K,
    id0: u64,
    cut: Option<Cut>,
    binner: Option<Binner>,
    acc: &mut EmitAcc,
    out: &mut [u64],
) -> usize {
    let out = &mut out[..v.len()];
    #[cfg(target_arch = "x86_64")]
    if let (true, true, Some(sign)) = (cpu.avx2, V::HAS, k.top_sign()) {
        // SAFETY: as in `scan`: AVX2 was detected on this CPU.
        return unsafe { avx2::emit_top(v, k, sign, id0, cut, binner, acc, out) };
    }
    let _ = cpu;
    emit_portable(v, k, id0, cut, binner, acc, out)
}

/// Keys and eligibility (NaN only; the caller applies exclusions) of ids
/// `id0..id0 + v.len()`, for the rare radix passes.
pub(super) fn keys_into<V: Vals, K: Keys>(
    v: V,
    k: K,
    id0: u64,
    key: &mut Vec<u64>,
    ok: &mut Vec<bool>,
) {
    let len = v.len();
    key.clear();
    ok.clear();
    let mut j = 0;
    while j < len {
        let m = (len - j).min(W);
        let vals = if m == W { v.block(j) } else { v.partial(j, m) };
        for (l, &x) in vals[..m].iter().enumerate() {
            key.push(k.key(id0 + (j + l) as u64, x));
            ok.push(eligible::<V>(x));
        }
        j += m;
    }
}

/// AVX2 builds of the top-K kernels: the same arithmetic as the portable ones, lane for
/// lane (the same lane sums in the same order, the same comparisons), four at a time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    /// For each 4-bit keep mask, the 32-bit lane permutation that packs the kept 64-bit
    /// lanes to the front in order.
    const PACK: [[i32; 8]; 16] = {
        let mut t = [[0i32; 8]; 16];
        let mut m = 0;
        while m < 16 {
            let (mut e, mut o) = (0i32, 0usize);
            while e < 4 {
                if m >> e & 1 == 1 {
                    t[m][2 * o] = 2 * e;
                    t[m][2 * o + 1] = 2 * e + 1;
                    o += 1;
                }
                e += 1;
            }
            m += 1;
        }
        t
    };

    // Every function below is `#[target_feature(enable = "avx2")]` and therefore
    // `unsafe` to call: the caller must know that the CPU has AVX2 (`Cpu::detect`). Apart
    // from that the only unsafe operations are unaligned loads and stores, each from or to
    // a Rust array or slice of exactly the accessed size (see the SAFETY comments).

    /// Unsigned 64-bit `a > b` on lanes already flipped by `flip` (xor of the sign bit).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gt(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpgt_epi64(a, b)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn flip(a: __m256i) -> __m256i {
        _mm256_xor_si256(a, _mm256_set1_epi64x(i64::MIN))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn splat(x: u64) -> __m256i {
        _mm256_set1_epi64x(x as i64)
    }

    /// Values `j..j + 4` and their keys `order_key(sign * v)` (see `order_key`).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load<V: Vals>(v: &V, j: usize, sign: __m256d) -> (__m256d, __m256i) {
        let vals = v.block(j);
        // SAFETY: `vals` is a [f64; 4]: the 32 bytes read; the load is unaligned.
        let x = _mm256_loadu_pd(vals.as_ptr());
        let bits = _mm256_castpd_si256(_mm256_add_pd(_mm256_mul_pd(sign, x), _mm256_setzero_pd()));
        let neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), bits);
        let key = _mm256_xor_si256(bits, _mm256_or_si256(neg, splat(1 << 63)));
        (x, key)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_u(a: __m256i) -> [u64; 4] {
        let mut o = [0u64; 4];
        // SAFETY: `o` is 32 writable bytes; the store is unaligned.
        _mm256_storeu_si256(o.as_mut_ptr().cast(), a);
        o
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_f(a: __m256d) -> [f64; 4] {
        let mut o = [0f64; 4];
        // SAFETY: `o` is 32 writable bytes; the store is unaligned.
        _mm256_storeu_pd(o.as_mut_ptr(), a);
        o
    }

    /// `scan_portable` for `Top` keys and values.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scan_top<V: Vals, K: Keys>(
        v: V,
        k: K,
        sign: f64,
        id0: u64,
        range: (u64, u64),
        cands: &mut Vec<(u64, u64)>,
    ) -> Tally {
        let sign = _mm256_set1_pd(sign);
        let (lo, hi) = (flip(splat(range.0)), flip(splat(range.1)));
        let abs = _mm256_castsi256_pd(splat(!(1 << 63)));
        let inf = _mm256_set1_pd(f64::INFINITY);
        let zero = _mm256_setzero_pd();
        let mut eligible = _mm256_setzero_si256();
        let mut above = _mm256_setzero_si256();
        let mut n = _mm256_setzero_si256();
        let mut neg = _mm256_setzero_si256();
        let mut sum = _mm256_setzero_pd();
        let mut min = _mm256_set1_pd(f64::INFINITY);
        let mut max = _mm256_set1_pd(f64::NEG_INFINITY);
        let full = v.len() / W * W;
        let mut j = 0;
        while j < full {
            let (x, key) = load(&v, j, sign);
            let kf = flip(key);
            let ok = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_ORD_Q>(x, x));
            eligible = _mm256_sub_epi64(eligible, ok);
            let over = gt(kf, hi);
            above = _mm256_sub_epi64(above, _mm256_and_si256(ok, over));
            let inside = _mm256_andnot_si256(_mm256_or_si256(over, gt(lo, kf)), ok);
            let fin = _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, abs), inf);
            n = _mm256_sub_epi64(n, _mm256_castpd_si256(fin));
            sum = _mm256_add_pd(sum, _mm256_and_pd(x, fin));
            let lt = _mm256_and_pd(fin, _mm256_cmp_pd::<_CMP_LT_OQ>(x, min));
            min = _mm256_blendv_pd(min, x, lt);
            let gtm = _mm256_and_pd(fin, _mm256_cmp_pd::<_CMP_GT_OQ>(x, max));
            max = _mm256_blendv_pd(max, x, gtm);
            let below = _mm256_and_pd(fin, _mm256_cmp_pd::<_CMP_LT_OQ>(x, zero));
            neg = _mm256_sub_epi64(neg, _mm256_castpd_si256(below));
            if _mm256_testz_si256(inside, inside) == 0 {
                let m = _mm256_movemask_pd(_mm256_castsi256_pd(inside));
                push_lanes(lanes_u(key), m as u32, id0 + j as u64, cands);
            }
            j += W;
        }
        let mut acc = ScanLanes {
            eligible: lanes_u(eligible),
            above: lanes_u(above),
            n: lanes_u(n),
            sum: lanes_f(sum),
            min: lanes_f(min),
            max: lanes_f(max),
            neg: lanes_u(neg),
        };
        scan_tail(v, k, id0, j, range, &mut acc, cands);
        acc.fold()
    }

    /// `emit_portable` for `Top` keys and values.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn emit_top<V: Vals, K: Keys>(
        v: V,
        k: K,
        sign: f64,
        id0: u64,
        cut: Option<Cut>,
        binner: Option<Binner>,
        acc: &mut EmitAcc,
        out: &mut [u64],
    ) -> usize {
        let sign = _mm256_set1_pd(sign);
        let abs = _mm256_castsi256_pd(splat(!(1 << 63)));
        let inf = _mm256_set1_pd(f64::INFINITY);
        let (bmin, bscale, blast) = match binner {
            Some(b) => b.parts(),
            None => (0.0, 0.0, 0),
        };
        // Bins are at most `blast`, so masking an index with `HIST_BINS - 1` keeps it and
        // spares the bounds checks.
        assert!(blast < HIST_BINS && HIST_BINS.is_power_of_two());
        let (bmin, bscale) = (_mm256_set1_pd(bmin), _mm256_set1_pd(bscale));
        let blastf = _mm256_set1_pd(blast as f64);
        let c = cut.unwrap_or(Cut {
            t: 0,
            tie_cut: 0,
            need: 0,
        });
        let (t, tf, tie_cut) = (splat(c.t), flip(splat(c.t)), flip(splat(c.tie_cut)));
        let step = _mm256_set_epi64x(3, 2, 1, 0);
        let mut ties = _mm256_setzero_si256();
        let full = v.len() / W * W;
        let mut at = 0usize;
        let mut j = 0;
        while j < full {
            let (x, key) = load(&v, j, sign);
            let ok = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_ORD_Q>(x, x));
            if binner.is_some() {
                // `Binner::bin` exactly: max/min first send NaN and negatives to 0 and
                // cap at the last bin, so the truncating conversion sees [0, last] only.
                let y = _mm256_mul_pd(_mm256_sub_pd(x, bmin), bscale);
                let y = _mm256_min_pd(_mm256_max_pd(y, _mm256_setzero_pd()), blastf);
                let mut bins = [0i32; 4];
                // SAFETY: `bins` is 16 writable bytes; the store is unaligned.
                _mm_storeu_si128(bins.as_mut_ptr().cast(), _mm256_cvttpd_epi32(y));
                let fin = _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, abs), inf);
                let count = _mm256_movemask_pd(fin);
                for (l, &b) in bins.iter().enumerate() {
                    acc.lanes[l][b as usize & (HIST_BINS - 1)] += (count >> l & 1) as u64;
                }
            }
            if cut.is_some() {
                let id = id0 + j as u64;
                let ids = _mm256_add_epi64(splat(id), step);
                let tie = _mm256_and_si256(ok, _mm256_cmpeq_epi64(key, t));
                ties = _mm256_sub_epi64(ties, tie);
                let over = _mm256_and_si256(ok, gt(flip(key), tf));
                let early = _mm256_andnot_si256(gt(flip(ids), tie_cut), tie);
                let keep = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_or_si256(over, early)));
                // SAFETY: a row of `PACK` is an [i32; 8]: the 32 bytes read (unaligned).
                let perm = _mm256_loadu_si256(PACK[keep as usize].as_ptr().cast());
                let packed = _mm256_permutevar8x32_epi32(ids, perm);
                // `at <= j` and `j + 4 <= out.len()`, so the four lanes fit; lanes past
                // the kept ones are scratch, overwritten by the next block.
                let dst = &mut out[at..at + 4];
                // SAFETY: `dst` is 4 writable u64s (32 bytes); the store is unaligned.
                _mm256_storeu_si256(dst.as_mut_ptr().cast(), packed);
                at += keep.count_ones() as usize;
            }
            j += W;
        }
        acc.ties += lanes_u(ties).iter().sum::<u64>();
        emit_tail(v, k, id0, j, cut, binner, acc, out, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: [f64; 8] = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e300,
    ];

    fn data(seed: u64, n: usize) -> Vec<f64> {
        (0..n as u64)
            .map(|i| {
                let r = rand_u64(seed, i);
                if r % 5 == 0 {
                    SPECIAL[(r >> 8) as usize % SPECIAL.len()]
                } else {
                    ((r >> 11) % 64) as f64 / 16.0 - 2.0
                }
            })
            .collect()
    }

    fn both<V: Vals>(v: V, seed: u64) {
        let len = v.len();
        let key = |j: u64| Top { sign: 1.0 }.key(0, v.partial(j as usize, 1)[0]);
        for sign in [1.0, -1.0] {
            let k = Top { sign };
            let pick = |s: u64| {
                if len == 0 {
                    0
                } else {
                    k.key(
                        0,
                        v.partial((rand_u64(seed, s) % len as u64) as usize, 1)[0],
                    )
                }
            };
            let (a, b) = (pick(1), pick(2));
            let range = (a.min(b), a.max(b));
            let mut c1 = Vec::new();
            let mut c2 = Vec::new();
            let t1 = scan(Cpu::detect(), v, k, 7, range, &mut c1);
            let t2 = scan(Cpu::baseline(), v, k, 7, range, &mut c2);
            assert_eq!(format!("{t1:?}"), format!("{t2:?}"));
            assert_eq!(t1.sum.to_bits(), t2.sum.to_bits());
            assert_eq!(c1, c2);
            let cut = Cut {
                t: pick(3),
                tie_cut: 7 + rand_u64(seed, 4) % (len as u64 + 1),
                need: 0,
            };
            let _ = key;
            for (cut, binner) in [
                (Some(cut), Some(Binner::new(-2.0, 2.0, HIST_BINS))),
                (Some(cut), None),
                (None, Some(Binner::new(-1.0, 1e300, HIST_BINS))),
            ] {
                let (mut a1, mut a2) = (EmitAcc::new(), EmitAcc::new());
                let (mut o1, mut o2) = (vec![0u64; len], vec![0u64; len]);
                let m1 = emit(Cpu::detect(), v, k, 7, cut, binner, &mut a1, &mut o1);
                let m2 = emit(Cpu::baseline(), v, k, 7, cut, binner, &mut a2, &mut o2);
                assert_eq!(m1, m2);
                assert_eq!(o1[..m1], o2[..m2]);
                assert_eq!(a1, a2);
            }
        }
    }

    #[test]
    fn simd_and_portable_kernels_agree() {
        for seed in 0..40u64 {
            let n = (rand_u64(seed, 99) % 70) as usize;
            let t = data(seed, n);
            let r = data(seed + 1000, n);
            both(Diff { t: &t, r: &r }, seed);
            both(One(&t), seed);
        }
    }

    #[test]
    #[ignore]
    fn kernel_speed() {
        let n = 1 << 16;
        let t: Vec<f64> = (0..n)
            .map(|i| (rand_u64(1, i) >> 11) as f64 / 1e15)
            .collect();
        let r: Vec<f64> = (0..n)
            .map(|i| (rand_u64(2, i) >> 11) as f64 / 1e15)
            .collect();
        let reps = 1000;
        for cpu in [Cpu::detect(), Cpu::baseline()] {
            let v = Diff { t: &t, r: &r };
            let k = Top { sign: 1.0 };
            let mut cands = Vec::new();
            // As in a real run: the guessed interval holds about 0.7% of the values (the
            // sampled guess at N = 1e8, K = N/2), and the histogram spans the values.
            let t0 = std::time::Instant::now();
            let mut x = 0;
            for _ in 0..reps {
                cands.clear();
                x += scan(cpu, v, k, 0, (order_key(0.0), order_key(0.06)), &mut cands).eligible;
            }
            let dt = t0.elapsed().as_secs_f64() / (reps * n) as f64 * 1e9;
            println!("{cpu:?} scan {dt:.3} ns/elt ({x}, {})", cands.len());
            let mut out = vec![0u64; n as usize];
            let b = Binner::new(-9.0, 9.0, 64);
            let cut = Cut {
                t: order_key(0.0),
                tie_cut: 0,
                need: 1,
            };
            let t0 = std::time::Instant::now();
            let mut x = 0;
            for _ in 0..reps {
                let mut acc = EmitAcc::new();
                x += emit(cpu, v, k, 0, Some(cut), Some(b), &mut acc, &mut out);
            }
            let dt = t0.elapsed().as_secs_f64() / (reps * n) as f64 * 1e9;
            println!("{cpu:?} emit {dt:.3} ns/elt ({x})");
            let t0 = std::time::Instant::now();
            for _ in 0..reps {
                let mut acc = EmitAcc::new();
                x += emit(cpu, v, k, 0, Some(cut), None, &mut acc, &mut out);
            }
            let dt = t0.elapsed().as_secs_f64() / (reps * n) as f64 * 1e9;
            println!("{cpu:?} emit-nohist {dt:.3} ns/elt ({x})");
        }
    }
}
