//! The sampled guess of the threshold interval and its narrowing by sub-intervals.

use crate::error::{Error, Result};
use crate::job::Job;

use super::plan::{scan_interval, Band, Buf, PassA, Plan};
use super::radix::kth_bucket;

/// A key interval `[lo, hi]` that probably holds the K-th largest eligible key, from the
/// keys of evenly spread blocks of ids, with a margin of 4 binomial standard deviations.
/// Only a guess: pass A counts what lies above and inside it and falls back to radix
/// narrowing when it missed, so a bad guess (sorted data, say) costs time, never exactness.
pub(super) fn guess_interval(plan: &Plan, k: u64) -> Result<Option<(u64, u64)>> {
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

/// The guessed interval held the K-th key but more candidates than the cap: find, from
/// pass A's sub-interval counts, the sub-interval that holds it, and collect that one's
/// candidates (with the keys above it per chunk) in one more pass. `None` when even that
/// sub-interval exceeds the cap (a mass of equal keys): radix narrowing takes over.
pub(super) fn narrow(
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
