//! `_core.OutputLock` and `_core.check_spares_inputs`: the core's output-safety rules
//! (rust/core/src/output.rs) for the Python writers (tokenize, score, train).

use std::path::PathBuf;
use std::sync::Mutex;

use miniplm_core::output::{self, OutputLock};
use pyo3::prelude::*;

use crate::errors::to_py;

/// Refuse (InputError) an output that is, contains, or would replace part of an input.
#[pyfunction]
pub fn check_spares_inputs(out: PathBuf, inputs: Vec<PathBuf>) -> PyResult<()> {
    output::check_spares_inputs(&out, &inputs).map_err(to_py)
}

/// An exclusive lock on an output for one writer's run (released by `release()`).
#[pyclass(name = "OutputLock", module = "miniplm._core", frozen)]
pub struct PyOutputLock {
    inner: Mutex<Option<OutputLock>>,
    path: PathBuf,
}

#[pymethods]
impl PyOutputLock {
    /// Lock `out`, removing a dead writer's debris; OutputLockedError if another holds it.
    #[new]
    fn new(out: PathBuf) -> PyResult<Self> {
        let lock = OutputLock::acquire(&out).map_err(to_py)?;
        Ok(PyOutputLock {
            path: lock.path().to_path_buf(),
            inner: Mutex::new(Some(lock)),
        })
    }

    /// The lock file, `.<name>.lock` beside the output.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Whether the lock is still held by this object.
    #[getter]
    fn held(&self) -> bool {
        self.inner.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Give the lock up; a second call does nothing.
    fn release(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.take();
        }
    }
}
