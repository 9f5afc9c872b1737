//! `_core.DatasetWriter`: the core's Megatron shard writer for Python producers (the
//! tokenizer, tests, the demo).

use std::path::PathBuf;
use std::sync::Mutex;

use miniplm_core::shards::{DatasetWriter, TokenDType, WriterCheckpoint};
use miniplm_core::Error;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;

/// A checkpoint as Python sees it: (instances, bytes) of each finished shard, and of the
/// open one.
type Checkpoint = (Vec<(u64, u64)>, Option<(u64, u64)>);

#[pyclass(name = "DatasetWriter", module = "miniplm._core", frozen)]
pub struct PyDatasetWriter {
    inner: Mutex<Option<DatasetWriter>>,
}

fn closed() -> PyErr {
    to_py(Error::invalid("DatasetWriter is already finished"))
}

#[pymethods]
impl PyDatasetWriter {
    /// Shards `<dir>/<name>_0.bin/.idx, ...` of `dtype` ("uint16" or "int32"), a new shard
    /// whenever the next instance would push a .bin past `max_shard_bytes`. `resume`: what
    /// `checkpoint` returned, to continue a killed writer's files in `dir`.
    #[new]
    #[pyo3(signature = (dir, name, dtype, max_shard_bytes=None, resume=None))]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        name: &str,
        dtype: &str,
        max_shard_bytes: Option<u64>,
        resume: Option<Checkpoint>,
    ) -> PyResult<Self> {
        let dtype = match dtype {
            "uint16" => TokenDType::U16,
            "int32" => TokenDType::I32,
            d => {
                return Err(to_py(Error::invalid(format!(
                    "dtype must be 'uint16' or 'int32', got {d:?}"
                ))))
            }
        };
        let w = match resume {
            None => DatasetWriter::create(&dir, name, dtype, max_shard_bytes),
            Some((done, open)) => {
                let at = WriterCheckpoint { done, open };
                py.detach(|| DatasetWriter::resume(&dir, name, dtype, max_shard_bytes, &at))
            }
        }
        .map_err(to_py)?;
        Ok(PyDatasetWriter {
            inner: Mutex::new(Some(w)),
        })
    }

    /// Append instances: `tokens` holds them back to back, `lengths` their token counts.
    fn add_batch(
        &self,
        py: Python<'_>,
        tokens: PyReadonlyArray1<'_, i64>,
        lengths: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let tokens = tokens
            .as_slice()
            .map_err(|_| to_py(Error::invalid("tokens must be a contiguous int64 array")))?;
        let lengths = lengths
            .as_slice()
            .map_err(|_| to_py(Error::invalid("lengths must be a contiguous int64 array")))?;
        let total: i64 = lengths.iter().sum();
        if lengths.iter().any(|&l| l < 0) || total != tokens.len() as i64 {
            return Err(to_py(Error::invalid(format!(
                "lengths (sum {total}) must be non-negative and add up to len(tokens) = {}",
                tokens.len()
            ))));
        }
        let mut guard = self.inner.lock().map_err(|_| closed())?;
        let w = guard.as_mut().ok_or_else(closed)?;
        py.detach(|| {
            let mut at = 0usize;
            for &l in lengths {
                let end = at + l as usize;
                w.add_tokens(&tokens[at..end])?;
                at = end;
            }
            Ok(())
        })
        .map_err(to_py)
    }

    /// Make what was added durable; returns `(done, open)`: (instances, bytes) of each
    /// finished shard and of the open one, what `resume` takes.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<Checkpoint> {
        let mut guard = self.inner.lock().map_err(|_| closed())?;
        let w = guard.as_mut().ok_or_else(closed)?;
        let at = py.detach(|| w.checkpoint()).map_err(to_py)?;
        Ok((at.done, at.open))
    }

    /// Write the indexes and fsync; returns one dict per shard written.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let w = self
            .inner
            .lock()
            .map_err(|_| closed())?
            .take()
            .ok_or_else(closed)?;
        let shards = py.detach(|| w.finish()).map_err(to_py)?;
        shards
            .iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("prefix", &s.prefix)?;
                d.set_item("num_instances", s.num_sequences)?;
                d.set_item("num_tokens", s.num_tokens)?;
                Ok(d)
            })
            .collect()
    }
}
