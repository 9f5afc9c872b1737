//! The emit pass: kept ids to memory or straight into `ids.npy`.

use crate::error::{Error, Result};
use crate::job::Job;
use crate::npy::NpyAtWriter;
use crate::stats::Binner;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::exclusion::runs;
use super::kernel;
use super::kernel::{Cpu, Cut, EmitAcc, Keys, Vals, HIST_BINS};
use super::plan::{add_counts, Buf, Plan, Visit};
use rayon::prelude::*;

/// Where kept ids go: `start` learns how many there will be, then `put` places runs of
/// them at their positions, from any thread and in any order.
pub(super) trait IdsOut: Sync {
    fn start(&self, total: u64) -> Result<()>;
    fn put(&self, at: u64, ids: &[u64]) -> Result<()>;
}

/// Kept ids in memory.
pub(super) struct MemOut(pub(super) Mutex<Vec<u64>>);

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

pub(super) fn poisoned() -> Error {
    Error::internal("a selection worker panicked")
}

/// Kept ids into `ids.npy`, written in place as the emit pass finds them.
pub(super) struct FileOut {
    pub(super) path: PathBuf,
    pub(super) w: OnceLock<NpyAtWriter<u64>>,
    /// Ids written so far, and whether the selection is over (for `flush_behind`).
    pub(super) written: AtomicU64,
    pub(super) done: AtomicBool,
}

impl FileOut {
    /// Keep the disk busy while the emit pass runs: after every `STEP` bytes of new ids,
    /// start writing them out (without waiting), so that the final sync finds little
    /// left. Runs on its own thread, off the workers' path, until `done`.
    pub(super) fn flush_behind(&self) {
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
pub(super) struct Emitted {
    pub(super) ties: u64,
    pub(super) hist: [u64; HIST_BINS],
}

/// The emit pass on one chunk, run by run between excluded ids.
pub(super) struct EmitChunk<'b> {
    pub(super) cpu: Cpu,
    pub(super) start: u64,
    pub(super) ex: &'b [u64],
    pub(super) cut: Option<Cut>,
    pub(super) binner: Option<Binner>,
    pub(super) acc: &'b mut EmitAcc,
    pub(super) out: &'b mut [u64],
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
pub(super) fn emit(
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
