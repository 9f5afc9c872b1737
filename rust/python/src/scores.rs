//! `_core.ScoreReader`: per-instance mean NLLs of a score run (or a `.npy` of them) read
//! a range at a time, by the same validated reader `select` uses, so a caller can stream
//! over billions of instances in bounded memory.

use std::path::PathBuf;

use miniplm_core::scores::ScoreSource;
use miniplm_core::Error;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::long::run_long;

#[pyclass(name = "ScoreReader", module = "miniplm._core", frozen)]
pub struct PyScoreReader {
    inner: ScoreSource,
}

#[pymethods]
impl PyScoreReader {
    /// `kind` "run" (a score run directory) or "npy" (a `.npy` of mean NLLs).
    #[new]
    #[pyo3(signature = (path, kind="run"))]
    fn new(py: Python<'_>, path: PathBuf, kind: &str) -> PyResult<Self> {
        let inner = run_long(py, 0, false, |_| match kind {
            "run" => ScoreSource::open_run(&path),
            "npy" => ScoreSource::open_npy(&path),
            other => Err(Error::invalid(format!(
                "unknown score input kind {other:?} (run or npy)"
            ))),
        })?;
        Ok(PyScoreReader { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    /// Mean NLL of instances `[start, start + count)` as float64 (NaN = not scored);
    /// an error past the end.
    fn mean_nll<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        count: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let src = &self.inner;
        let len = src.len();
        if start.checked_add(count as u64).is_none_or(|end| end > len) {
            return Err(crate::errors::to_py(Error::invalid(format!(
                "{}: scores [{start}, {start} + {count}) past its {len} instances",
                src.path().display()
            ))));
        }
        let out = run_long(py, 0, false, |_| {
            let mut v = vec![0.0; count];
            src.mean_nll_into(start, &mut v)?;
            Ok(v)
        })?;
        Ok(out.into_pyarray(py))
    }
}
