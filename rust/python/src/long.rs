//! Long calls: run the work on a worker thread with the GIL released, and turn Ctrl-C in
//! the Python main thread into a cancellation of the job (then `KeyboardInterrupt`).
//! The same role as polars' `enter_polars`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use miniplm_cli::Bar;
use miniplm_core::{Error, Job, Result};
use pyo3::prelude::*;

use crate::errors::to_py;

/// How often the waiting thread looks for a pending signal.
const POLL: Duration = Duration::from_millis(50);

pub fn run_long<T: Send>(
    py: Python<'_>,
    threads: usize,
    progress: bool,
    work: impl FnOnce(&Job) -> Result<T> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    let bar = Bar::new(progress);
    let mut pending: Option<PyErr> = None;
    let outcome = py.detach(|| {
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let (bar, cancel) = (&bar, &cancel);
            let worker = s.spawn(move || {
                let job = Job {
                    progress: bar,
                    cancel,
                    threads,
                };
                let r = work(&job);
                let _ = tx.send(());
                r
            });
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(POLL) {
                if pending.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        pending = Some(e);
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
            }
            worker.join()
        })
    });
    // A signal handler's exception (KeyboardInterrupt for Ctrl-C) wins over the result.
    if let Some(e) = pending {
        return Err(e);
    }
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(to_py(Error::internal(format!("a worker panicked: {what}"))))
        }
    }
}
