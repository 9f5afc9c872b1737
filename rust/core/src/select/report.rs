//! `selection.json`, built in one place from a finished run.

use crate::error::{IoContext, Result};
use crate::fsutil::quick_fingerprint;
use crate::scores::ScoreSource;
use crate::stats::{bin_edges, Histogram};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::kernel::{key_value, HIST_BINS};
use super::plan::Plan;
use super::record;
use super::route::Run;
use super::{Amount, InputInfo, Inputs, Mode, SelectInputs, SelectionReport};

/// `path` made absolute (against the working directory, symlinks kept): what
/// `selection.json` records, so that a consumer in another directory (`miniplm export`'s
/// score columns) finds the same input.
fn recorded(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).at(path)
}

pub(super) fn info(src: &Option<ScoreSource>) -> Result<Option<InputInfo>> {
    src.as_ref()
        .map(|s| {
            Ok(InputInfo {
                path: recorded(s.path())?,
                kind: s.kind(),
                fingerprint: s.fingerprint()?,
            })
        })
        .transpose()
}

impl SelectionReport {
    /// The report of a finished run of `plan` for `k` ids, started at `started`.
    pub(super) fn from_run(
        inputs: &SelectInputs,
        plan: &Plan,
        k: u64,
        run: &Run,
        started: Instant,
    ) -> Result<SelectionReport> {
        let (n, spec) = (plan.n, plan.spec);
        let num_excluded = plan.exclude.ids().len() as u64;
        let Run {
            tally,
            stats,
            cut,
            emitted,
        } = run;
        let cut = *cut;
        let nan = if plan.has_values {
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
                path: recorded(p)?,
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
            score_stats: stats.clone(),
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
}
