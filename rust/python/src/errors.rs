//! Core errors -> Python exceptions. The miniplm-specific classes live in
//! `miniplm/errors.py` so they can also derive from `ValueError`.

use miniplm_core::Error;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError,
};
use pyo3::prelude::*;

fn miniplm_exception(py: Python<'_>, class: &str, msg: String) -> PyErr {
    match py
        .import("miniplm.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((msg,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// Map a core error to the Python exception users catch; the message is the core's own.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match &err {
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        Error::OutputExists(_) => PyFileExistsError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        Error::Format { .. } => Python::attach(|py| miniplm_exception(py, "FormatError", msg)),
        Error::Invalid(_) => Python::attach(|py| miniplm_exception(py, "InputError", msg)),
        Error::Locked { .. } => {
            Python::attach(|py| miniplm_exception(py, "OutputLockedError", msg))
        }
        Error::Internal(_) => Python::attach(|py| miniplm_exception(py, "InternalError", msg)),
    }
}
