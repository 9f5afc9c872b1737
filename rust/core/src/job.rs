//! What every long operation takes besides its inputs: where to report progress, a flag
//! that asks it to stop, and how many threads it may use.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Progress sink. Implementations must be cheap: `inc` is called once per chunk of work.
pub trait Progress: Sync {
    fn start(&self, _stage: &str, _total: u64) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

pub struct Job<'a> {
    pub progress: &'a dyn Progress,
    pub cancel: &'a AtomicBool,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
}

static NEVER: AtomicBool = AtomicBool::new(false);

impl Default for Job<'static> {
    fn default() -> Self {
        Job {
            progress: &NoProgress,
            cancel: &NEVER,
            threads: 0,
        }
    }
}

impl Job<'_> {
    /// `Err(Interrupted)` once the caller has asked to stop.
    pub fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Run `f` on a thread pool of its own. A fresh pool per long call (cost: microseconds)
    /// instead of rayon's global one keeps the core safe in forked children (torch
    /// DataLoader workers): a global pool's threads do not survive `fork`.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("miniplm-{i}"))
            .build()
            .map_err(|e| Error::invalid(format!("cannot start worker threads: {e}")))?;
        Ok(pool.install(f))
    }
}
