//! `miniplm._core`: thin PyO3 bindings over miniplm-core. Conversions and error mapping
//! only; every long call runs with the GIL released (see `long.rs`).

mod dataset;
mod errors;
mod long;
mod output;
mod report;
mod scores;
mod writer;

use std::ffi::OsString;
use std::path::PathBuf;

use miniplm_core::build::{build_at, BuildOptions};
use miniplm_core::inspect::inspect as core_inspect;
use miniplm_core::scores::{ScoreRun, ScoreSource, ScoreValues};
use miniplm_core::select::SelectRequest;
use miniplm_core::Error;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::dataset::dataset_paths;
use crate::errors::to_py;
use crate::long::run_long;
use crate::report::to_python;

/// Select instances and write `out/ids.npy` + `out/selection.json`; returns the latter
/// as a dict. Scores come from score runs (`teacher` / `reference`) or plain
/// per-instance mean-NLL `.npy` files (`teacher_nll` / `reference_nll`). Exactly one of
/// `ratio` / `count`. `keep` defaults to highest for `by="diff"`, else lowest.
#[pyfunction]
#[pyo3(signature = (out, *, teacher=None, reference=None, teacher_nll=None, reference_nll=None,
    ratio=None, count=None, exclude=None, data=None, by="diff", keep=None, random=false,
    temperature=None, seed=0, overwrite=false, threads=0, progress=false))]
#[allow(clippy::too_many_arguments)]
fn select(
    py: Python<'_>,
    out: PathBuf,
    teacher: Option<PathBuf>,
    reference: Option<PathBuf>,
    teacher_nll: Option<PathBuf>,
    reference_nll: Option<PathBuf>,
    ratio: Option<f64>,
    count: Option<u64>,
    exclude: Option<PathBuf>,
    data: Option<PathBuf>,
    by: &str,
    keep: Option<&str>,
    random: bool,
    temperature: Option<f64>,
    seed: u64,
    overwrite: bool,
    threads: usize,
    progress: bool,
) -> PyResult<Py<PyAny>> {
    let request = SelectRequest {
        out,
        teacher,
        reference,
        teacher_nll,
        reference_nll,
        ratio,
        count,
        exclude,
        data,
        by: by.parse().map_err(to_py)?,
        keep: keep.map(str::parse).transpose().map_err(to_py)?,
        random,
        temperature,
        seed,
        overwrite,
    };
    let report = run_long(py, threads, progress, |job| request.run(job))?;
    to_python(py, &report)
}

/// Copy the selected instances of `data` (a path, or a list of paths: one dataset) into
/// new Megatron shards under `out` (plus `source_ids.npy` and `build.json`); returns
/// build.json as a dict. `name` (the shard prefix) defaults to "refined".
#[pyfunction]
#[pyo3(signature = (data, selection, out, *, shuffle=false, seed=0, shard_size=None,
    name=None, overwrite=false, threads=0, progress=false))]
#[allow(clippy::too_many_arguments)]
fn build(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    selection: PathBuf,
    out: PathBuf,
    shuffle: bool,
    seed: u64,
    shard_size: Option<u64>,
    name: Option<String>,
    overwrite: bool,
    threads: usize,
    progress: bool,
) -> PyResult<Py<PyAny>> {
    let data = dataset_paths(data)?;
    let defaults = BuildOptions::default();
    let opts = BuildOptions {
        name: name.unwrap_or(defaults.name),
        shuffle_seed: shuffle.then_some(seed),
        max_shard_bytes: shard_size,
        overwrite,
    };
    let report = run_long(py, threads, progress, |job| {
        build_at(&data, &selection, &out, &opts, job)
    })?;
    to_python(py, &report)
}

/// Summary of a dataset, score run, score array or selection (`kind` says which).
#[pyfunction]
#[pyo3(signature = (path, *, threads=0, progress=false))]
fn inspect(py: Python<'_>, path: PathBuf, threads: usize, progress: bool) -> PyResult<Py<PyAny>> {
    let report = run_long(py, threads, progress, |job| core_inspect(&path, job))?;
    to_python(py, &report)
}

/// `(nll_sum, n_scored)` of a score run, concatenated over its parts.
#[pyfunction]
fn load_scores<'py>(py: Python<'py>, run_dir: PathBuf) -> PyResult<Bound<'py, PyTuple>> {
    let (values, n_scored) = run_long(py, 0, false, |_| ScoreRun::open(&run_dir)?.load())?;
    let nll = match values {
        ScoreValues::F32(v) => v.into_pyarray(py).into_any(),
        ScoreValues::F64(v) => v.into_pyarray(py).into_any(),
    };
    PyTuple::new(py, [nll, n_scored.into_pyarray(py).into_any()])
}

/// A quick content fingerprint of a file (`xxh3:` of its size and 16 sampled 64 KiB
/// blocks): what score runs and selections record to notice a changed input.
#[pyfunction]
fn file_fingerprint(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    run_long(py, 0, false, |_| {
        miniplm_core::fsutil::quick_fingerprint(&path)
    })
}

/// The fingerprint `selection.json` records for a score input of `kind` "run" (a score
/// run directory) or "npy" (a `.npy` of mean NLLs), to tell whether it changed since.
#[pyfunction]
fn score_fingerprint(py: Python<'_>, path: PathBuf, kind: String) -> PyResult<String> {
    run_long(py, 0, false, move |_| match kind.as_str() {
        "run" => ScoreSource::open_run(&path)?.fingerprint(),
        "npy" => ScoreSource::open_npy(&path)?.fingerprint(),
        other => Err(Error::invalid(format!(
            "unknown score input kind {other:?}"
        ))),
    })
}

/// The `miniplm-sample` CLI; returns its exit code.
#[pyfunction]
fn sample_main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<i32> {
    run_long(py, 0, false, |job| Ok(miniplm_cli::run(argv, job.cancel)))
}

/// Test hook: fail the way a broken invariant of ours does, by returning the core's
/// internal error or (`panic=True`) by panicking on the worker thread.
#[pyfunction]
fn _internal_error_for_test(py: Python<'_>, panic: bool) -> PyResult<()> {
    run_long(py, 0, false, |_| {
        if panic {
            panic!("test panic");
        }
        Err(Error::internal("test invariant broken"))
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<writer::PyDatasetWriter>()?;
    m.add_class::<output::PyOutputLock>()?;
    m.add_class::<scores::PyScoreReader>()?;
    m.add_function(wrap_pyfunction!(output::check_spares_inputs, m)?)?;
    m.add_function(wrap_pyfunction!(select, m)?)?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(load_scores, m)?)?;
    m.add_function(wrap_pyfunction!(sample_main, m)?)?;
    m.add_function(wrap_pyfunction!(file_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(score_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(_internal_error_for_test, m)?)?;
    Ok(())
}
