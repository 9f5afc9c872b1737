//! Radix narrowing: the exact cut by histograms of 16 key bits at a time, and the
//! per-chunk tie cut at full depth.

use crate::error::{Error, Result};
use crate::job::Job;
use std::sync::atomic::Ordering;

use super::kernel::Cut;
use super::plan::{add_counts, loads, zeros, Buf, Plan, BINS, BITS};

/// Histogram of the top 16 bits of every eligible key (the start of radix narrowing).
pub(super) fn top_histogram(plan: &Plan, job: &Job) -> Result<Vec<u64>> {
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
pub(super) type CutPlan = (Cut, Vec<u64>);

/// The bucket of `hist` (ascending key ranges) that holds the K-th largest key, when
/// `above` keys are larger than all of them; and the keys above that bucket. None when
/// the counts do not reach K.
pub(super) fn kth_bucket(hist: &[u64], mut above: u64, k: u64) -> Option<(usize, u64)> {
    for (b, &here) in hist.iter().enumerate().rev() {
        if above + here >= k {
            return Some((b, above));
        }
        above += here;
    }
    None
}

/// Find the K-th largest key among eligible instances by radix narrowing.
pub(super) fn find_cut(plan: &Plan, job: &Job, first: &[u64], k: u64) -> Result<CutPlan> {
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
pub(super) fn collect(
    plan: &Plan,
    job: &Job,
    prefix: u64,
    depth: u32,
    above: u64,
    k: u64,
) -> Result<CutPlan> {
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
pub(super) fn cut_from(cands: &mut [(u64, u64)], above: u64, k: u64) -> Cut {
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
pub(super) fn kept_per_chunk(
    mut above: Vec<u64>,
    cands: &[(u64, u64)],
    cut: Cut,
    plan: &Plan,
) -> Vec<u64> {
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
pub(super) fn tie_cut(plan: &Plan, job: &Job, t: u64, need: u64) -> Result<CutPlan> {
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
