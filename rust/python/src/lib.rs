//! `miniplm._core`: thin PyO3 bindings over miniplm-core. Conversions and error mapping
//! only; every long call runs with the GIL released (see `long.rs`).

mod dataset;
mod errors;
mod long;
mod output;
mod writer;

use std::ffi::OsString;
use std::path::PathBuf;

use miniplm_cli::{build_cmd, select_cmd, to_json, BuildArgs, ByArg, KeepArg, SelectArgs};
use miniplm_core::inspect::inspect as core_inspect;
use miniplm_core::scores::{ScoreRun, ScoreValues};
use miniplm_core::Error;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::to_py;
use crate::long::run_long;

fn by_arg(by: &str) -> PyResult<ByArg> {
    match by {
        "diff" => Ok(ByArg::Diff),
        "teacher" => Ok(ByArg::Teacher),
        "reference" => Ok(ByArg::Reference),
        _ => Err(to_py(Error::invalid(format!(
            "by must be 'diff', 'teacher' or 'reference', got {by:?}"
        )))),
    }
}

fn keep_arg(keep: Option<&str>) -> PyResult<Option<KeepArg>> {
    match keep {
        None => Ok(None),
        Some("highest") => Ok(Some(KeepArg::Highest)),
        Some("lowest") => Ok(Some(KeepArg::Lowest)),
        Some(k) => Err(to_py(Error::invalid(format!(
            "keep must be 'highest' or 'lowest', got {k:?}"
        )))),
    }
}

/// Select instances; returns selection.json as a string.
#[pyfunction]
#[pyo3(signature = (*, out, teacher=None, reference=None, teacher_nll=None, reference_nll=None,
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
) -> PyResult<String> {
    let conflict = |a: &str, b: &str| {
        Err(to_py(Error::invalid(format!(
            "pass either {a} or {b}, not both"
        ))))
    };
    if teacher.is_some() && teacher_nll.is_some() {
        return conflict("teacher", "teacher_nll");
    }
    if reference.is_some() && reference_nll.is_some() {
        return conflict("reference", "reference_nll");
    }
    // ratio / count and random / temperature: checked by the core's `SelectSpec::new`.
    let args = SelectArgs {
        teacher,
        reference,
        teacher_nll,
        reference_nll,
        ratio,
        count,
        exclude,
        data,
        by: by_arg(by)?,
        keep: keep_arg(keep)?,
        random,
        temperature,
        seed,
        out,
        overwrite,
        json: true,
    };
    run_long(py, threads, progress, |job| {
        select_cmd(&args, job).and_then(|r| to_json(&r))
    })
}

/// Build a refined dataset; returns build.json as a string.
#[pyfunction]
#[pyo3(signature = (*, data, selection, out, shuffle=false, seed=0, shard_size=None,
    name=None, overwrite=false, threads=0, progress=false))]
#[allow(clippy::too_many_arguments)]
fn build(
    py: Python<'_>,
    data: PathBuf,
    selection: PathBuf,
    out: PathBuf,
    shuffle: bool,
    seed: u64,
    shard_size: Option<u64>,
    name: Option<String>,
    overwrite: bool,
    threads: usize,
    progress: bool,
) -> PyResult<String> {
    let name = name.unwrap_or_else(|| "refined".to_string());
    let args = BuildArgs {
        data,
        selection,
        out,
        shuffle,
        seed,
        shard_size,
        name,
        overwrite,
        json: true,
    };
    run_long(py, threads, progress, |job| {
        build_cmd(&args, job).and_then(|r| to_json(&r))
    })
}

/// Inspect a dataset / score run / score array / selection; returns JSON.
#[pyfunction]
#[pyo3(signature = (path, threads=0, progress=false))]
fn inspect(py: Python<'_>, path: PathBuf, threads: usize, progress: bool) -> PyResult<String> {
    run_long(py, threads, progress, |job| {
        core_inspect(&path, job).and_then(|r| to_json(&r))
    })
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
    m.add_function(wrap_pyfunction!(output::check_spares_inputs, m)?)?;
    m.add_function(wrap_pyfunction!(select, m)?)?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(load_scores, m)?)?;
    m.add_function(wrap_pyfunction!(sample_main, m)?)?;
    m.add_function(wrap_pyfunction!(file_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(_internal_error_for_test, m)?)?;
    Ok(())
}
