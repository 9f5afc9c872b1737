//! The route to the cut, cheapest first (see the module docs): the sampled guess, its
//! narrowing, or radix narrowing; then the emit pass.

use crate::error::{Error, Result};
use crate::job::Job;

use super::emit::{emit, Emitted, IdsOut};
use super::guess::{guess_interval, narrow};
use super::kernel::{Cut, Tally};
use super::plan::{scan_interval, Plan};
use super::radix::{cut_from, find_cut, kept_per_chunk, top_histogram};
use super::ScoreStats;

/// What a run learns: pass A's counts, the value statistics, the cut and the emit totals.
pub(super) struct Run {
    pub(super) tally: Tally,
    pub(super) stats: Option<ScoreStats>,
    pub(super) cut: Option<Cut>,
    pub(super) emitted: Emitted,
}

/// Find the cut of the `k` largest keys and emit the kept ids through `out`.
pub(super) fn run(plan: &Plan, job: &Job, k: u64, out: &dyn IdsOut) -> Result<Run> {
    let guess = guess_interval(plan, k)?;
    let (lo, hi) = guess.unwrap_or((1, 0)); // an empty interval when there is no guess
    let cap = plan.tuning.cap;
    let nchunks = plan.num_chunks() as usize;
    let (mut a, above, sums) = scan_interval(plan, job, "select: scan", (lo, hi), guess.is_none())?;
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
        narrow(plan, job, &a, (lo, hi), kept)?
    } else {
        None
    };
    let (cut, per_chunk) = if kept == 0 {
        (None, vec![0; nchunks])
    } else if inside && a.in_range <= cap as u64 {
        let cut = cut_from(&mut a.cands, t.above, kept);
        let per_chunk = kept_per_chunk(above, &a.cands, cut, plan);
        (Some(cut), per_chunk)
    } else if let Some((mut b, above_b)) = narrowed {
        let cut = cut_from(&mut b.cands, b.tally.above, kept);
        let per_chunk = kept_per_chunk(above_b, &b.cands, cut, plan);
        (Some(cut), per_chunk)
    } else {
        a.cands = Vec::new();
        let hist = if guess.is_none() {
            std::mem::take(&mut a.hist)
        } else {
            top_histogram(plan, job)?
        };
        let (cut, per_chunk) = find_cut(plan, job, &hist, kept)?;
        (Some(cut), per_chunk)
    };
    drop(a);
    if per_chunk.iter().sum::<u64>() != kept {
        return Err(Error::internal(
            "kept ids miscounted (inputs changed during selection?)",
        ));
    }
    let emitted = emit(
        plan,
        job,
        cut,
        &per_chunk,
        stats.as_ref().map(|s| (s.min, s.max)),
        out,
    )?;
    Ok(Run {
        tally: t,
        stats,
        cut,
        emitted,
    })
}
