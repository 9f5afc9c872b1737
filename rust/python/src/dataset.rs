//! `_core.Dataset`: the validated native reader behind `miniplm.TokenDataset`. Python
//! builds its zero-copy numpy views from `shards()`; `gather` fills training batches.

use std::path::PathBuf;

use miniplm_core::select::{read_selection, write_given_selection};
use miniplm_core::shards::{Dataset, GatherOut};
use miniplm_core::Error;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;

#[pyclass(name = "Dataset", module = "miniplm._core", frozen)]
pub struct PyDataset {
    inner: Dataset,
}

fn gather_into<T: numpy::Element + GatherOut + Send>(
    py: Python<'_>,
    data: &Dataset,
    ids: &[u64],
    out: &Bound<'_, PyArray2<T>>,
    pad: T,
    lengths: &mut [u32],
) -> PyResult<()> {
    let cols = out.shape()[1];
    let mut guard = out.readwrite();
    let slice = guard.as_slice_mut().map_err(|_| {
        to_py(Error::invalid(
            "gather: out must be a C-contiguous 2-D array",
        ))
    })?;
    py.detach(|| data.gather(ids, slice, cols, pad, lengths))
        .map_err(to_py)
}

/// A dataset as Python gives it: one path (prefix, directory or glob) or a list of them.
pub fn dataset_paths(path: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    match path.extract::<PathBuf>() {
        Ok(p) => Ok(vec![p]),
        Err(_) => path.extract(),
    }
}

#[pymethods]
impl PyDataset {
    /// `path`: a prefix, a directory, a glob of prefixes, or a list of those (one
    /// dataset, in the order given).
    #[new]
    fn new(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Self> {
        let paths = dataset_paths(path)?;
        let inner = py.detach(|| Dataset::open_many(&paths)).map_err(to_py)?;
        Ok(PyDataset { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "Dataset({:?}, instances={}, tokens={}, dtype={})",
            self.inner.describe(),
            self.inner.len(),
            self.inner.num_tokens(),
            self.inner.dtype().name()
        )
    }

    #[getter]
    fn num_tokens(&self) -> u64 {
        self.inner.num_tokens()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    /// The dataset as given: its path, or its paths joined by ", ".
    #[getter]
    fn path(&self) -> String {
        self.inner.describe()
    }

    /// The paths the dataset was opened from, as given.
    fn paths(&self) -> Vec<String> {
        self.inner
            .paths()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// One dict per shard: file paths, dtype, counts, first global id and the byte
    /// offsets of the sizes / pointers arrays inside the .idx file.
    fn shards<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let mut first = 0u64;
        self.inner
            .shards()
            .iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("bin", s.bin_path())?;
                d.set_item("idx", s.idx_path())?;
                d.set_item("dtype", s.dtype().name())?;
                d.set_item("len", s.len())?;
                d.set_item("num_tokens", s.num_tokens())?;
                d.set_item("first_id", first)?;
                d.set_item("sizes_offset", s.sizes_offset())?;
                d.set_item("pointers_offset", s.pointers_offset())?;
                first += s.len();
                Ok(d)
            })
            .collect()
    }

    fn instance_len(&self, id: u64) -> PyResult<u32> {
        self.inner.instance_len(id).map_err(to_py)
    }

    /// A copy of one instance's tokens as int64.
    fn tokens<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        Ok(self.inner.tokens_i64(id).map_err(to_py)?.into_pyarray(py))
    }

    /// Fill `out` (B, L), int64 or int32, with instances `ids` truncated / padded with
    /// `pad_id`; returns the real token count per row.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        ids: PyReadonlyArray1<'py, u64>,
        out: &Bound<'py, PyAny>,
        pad_id: i64,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let ids = ids.as_slice().map_err(|_| {
            to_py(Error::invalid(
                "gather: ids must be a contiguous uint64 array",
            ))
        })?;
        let mut lengths = vec![0u32; ids.len()];
        if let Ok(out) = out.cast::<PyArray2<i64>>() {
            gather_into(py, &self.inner, ids, out, pad_id, &mut lengths)?;
        } else if let Ok(out) = out.cast::<PyArray2<i32>>() {
            let pad = i32::try_from(pad_id).map_err(|_| {
                to_py(Error::invalid(format!(
                    "pad_id {pad_id} does not fit int32"
                )))
            })?;
            gather_into(py, &self.inner, ids, out, pad, &mut lengths)?;
        } else {
            return Err(to_py(Error::invalid(
                "gather: out must be a 2-D int64 or int32 numpy array",
            )));
        }
        Ok(lengths.into_pyarray(py))
    }

    fn fingerprint(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.inner.fingerprint()).map_err(to_py)
    }

    /// The ids of the selection directory `dir`, checked against this dataset (see
    /// `miniplm_core::select::read_selection`).
    fn read_selection<'py>(
        &self,
        py: Python<'py>,
        dir: PathBuf,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let ids = py
            .detach(|| read_selection(&dir, &self.inner))
            .map_err(to_py)?;
        Ok(ids.into_pyarray(py))
    }

    /// Write `ids` of this dataset as a selection directory `out` (`mode: "given"`).
    #[pyo3(signature = (out, ids, what, overwrite=false))]
    fn write_selection(
        &self,
        py: Python<'_>,
        out: PathBuf,
        ids: PyReadonlyArray1<'_, u64>,
        what: &str,
        overwrite: bool,
    ) -> PyResult<()> {
        let ids = ids.as_slice().map_err(|_| {
            to_py(Error::invalid(
                "write_selection: ids must be a contiguous uint64 array",
            ))
        })?;
        py.detach(|| write_given_selection(&out, ids, &self.inner, what, overwrite))
            .map_err(to_py)?;
        Ok(())
    }

    /// `(min, max)` token id over all instances, `None` without tokens.
    fn token_range(&self, py: Python<'_>) -> PyResult<Option<(i64, i64)>> {
        py.detach(|| self.inner.token_range()).map_err(to_py)
    }

    /// Raise `InputError` naming the first instance with a token id outside `[0, vocab_size)`.
    fn check_vocab(&self, py: Python<'_>, vocab_size: u64) -> PyResult<()> {
        py.detach(|| self.inner.check_vocab(vocab_size))
            .map_err(to_py)
    }
}
