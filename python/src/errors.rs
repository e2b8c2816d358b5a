//! Turning the core's errors and denials into the package's Python exceptions.
//!
//! The exception classes are plain Python (`hostlimit/_errors.py`), so that they read, pickle
//! and type-check like any Python exception; this module imports them once and raises them.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use hostlimit::{DenialKind, Denied, Error};

use crate::rate::{PyRate, rate_list};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The class `name` of `hostlimit._errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module =
        ERRORS.get_or_try_init(py, || py.import("hostlimit._errors").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

/// An instance of the exception class `name`, built with `message` and keyword arguments.
fn raise(py: Python<'_>, name: &str, message: String, kwargs: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let kw = PyDict::new(py);
        for (key, value) in kwargs {
            kw.set_item(key, value)?;
        }
        let error = class(py, name)?.call((message.clone(),), Some(&kw))?;
        Ok(PyErr::from_value(error))
    };
    build().unwrap_or_else(|e| e)
}

/// The exception for a setup or I/O failure, in Python's vocabulary: rate and name mistakes
/// are `ValueError`s, I/O failures the matching `OSError` (`FileNotFoundError`,
/// `PermissionError`, ...), the rest `hostlimit.HostlimitError` subclasses.
pub fn setup_error(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    let path = |p: &std::path::Path| {
        p.to_string_lossy()
            .into_owned()
            .into_pyobject(py)
            .map(|s| s.into_any().unbind())
    };
    let kw_path = |p: &std::path::Path| -> Vec<(&'static str, Py<PyAny>)> {
        path(p).map(|p| vec![("path", p)]).unwrap_or_default()
    };
    match error {
        Error::InvalidRate { .. } | Error::InvalidRates(_) | Error::TooLarge { .. } => {
            raise(py, "InvalidRateError", message, &[])
        }
        Error::InvalidName(_) => raise(py, "InvalidNameError", message, &[]),
        Error::ConfigMismatch {
            path: file,
            file: file_rates,
            requested,
            ..
        } => {
            let mut kwargs = kw_path(&file);
            for (key, rates) in [("file_rates", file_rates), ("requested", requested)] {
                if let Ok(list) = rate_list(py, &rates) {
                    kwargs.push((key, list.into_any().unbind()));
                }
            }
            raise(py, "ConfigMismatchError", message, &kwargs)
        }
        Error::Corrupt { path: file, .. }
        | Error::Truncated { path: file, .. }
        | Error::Version { path: file, .. } => {
            raise(py, "CorruptFileError", message, &kw_path(&file))
        }
        Error::ClockMismatch { path: file, .. } => {
            raise(py, "ClockMismatchError", message, &kw_path(&file))
        }
        Error::Unsupported(_) => raise(py, "UnsupportedError", message, &[]),
        Error::Journal { path: file, .. } => raise(py, "JournalError", message, &kw_path(&file)),
        Error::Io {
            path: file,
            op,
            source,
        } => {
            let file = file.to_string_lossy().into_owned();
            match source.raw_os_error() {
                // OSError(errno, text, filename) is FileNotFoundError for ENOENT, and so on.
                Some(errno) => {
                    let text = source.to_string();
                    let text = text
                        .strip_suffix(&format!(" (os error {errno})"))
                        .unwrap_or(&text);
                    PyOSError::new_err((errno, format!("{op}: {text}"), file))
                }
                None => PyOSError::new_err(message),
            }
        }
        _ => raise(py, "HostlimitError", message, &[]),
    }
}

/// The kind of a denial, as Python sees it.
pub fn kind_name(denied: &Denied) -> &'static str {
    match denied.kind() {
        DenialKind::Exhausted { .. } => "exhausted",
        DenialKind::NeverFits { .. } => "never_fits",
        DenialKind::Unreachable { .. } => "unreachable",
        _ => "unavailable",
    }
}

/// `hostlimit.RateLimited` (a `TimeoutError`) for a blocking acquire that was not admitted.
pub fn rate_limited(py: Python<'_>, denied: &Denied, waited: Option<f64>) -> PyErr {
    let message = match (denied.kind(), waited) {
        (DenialKind::Exhausted { .. }, Some(timeout)) => {
            format!("not admitted within the timeout ({timeout}s): {denied}")
        }
        _ => denied.to_string(),
    };
    let mut kwargs: Vec<(&str, Py<PyAny>)> = Vec::new();
    if let Some(after) = denied.retry_after()
        && let Ok(value) = after.as_secs_f64().into_pyobject(py)
    {
        kwargs.push(("retry_after", value.into_any().unbind()));
    }
    if let Some(rate) = denied.rate()
        && let Ok(value) = Bound::new(py, PyRate(rate))
    {
        kwargs.push(("rate", value.into_any().unbind()));
    }
    let Ok(kind) = kind_name(denied).into_pyobject(py);
    kwargs.push(("kind", kind.into_any().unbind()));
    raise(py, "RateLimited", message, &kwargs)
}

/// `hostlimit.ClosedError` for a call on a closed limiter.
pub fn closed(py: Python<'_>, path: &std::path::Path) -> PyErr {
    raise(
        py,
        "ClosedError",
        format!("{}: the limiter is closed", path.display()),
        &[],
    )
}

/// A `ValueError` with `message`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
