//! `hostlimit.Rate`, and reading rates from what Python callers pass: the CLI's text form
//! (`"10/s"`, `"90000tok/min"`, `"60req/min"`) or `Rate` objects.

use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDelta, PyDeltaAccess, PyList, PyString, PyTuple};

use hostlimit::{Counts, MAX_LIMIT, MAX_WINDOW, Rate};

use crate::errors::{setup_error, value_error};

/// At most `limit` in any sliding window of `window` seconds.
///
/// ``Rate(10, 1)`` counts the weight of each acquire: ``try_acquire(1200)`` counts 1200.
/// ``Rate(60, 60, counts="requests")`` (or ``Rate.requests(60, 60)``) counts acquires,
/// whatever their weight. ``Rate.parse("90000tok/min")`` reads the command line's form;
/// anywhere a rate is expected, that text works too.
#[pyclass(frozen, eq, hash, module = "hostlimit", name = "Rate")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyRate(pub Rate);

/// A window given as seconds (int or float) or a `datetime.timedelta`.
pub fn seconds(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    let secs = if let Ok(delta) = value.cast::<PyDelta>() {
        delta.get_days() as f64 * 86_400.0
            + delta.get_seconds() as f64
            + delta.get_microseconds() as f64 / 1e6
    } else if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds"
        )));
    } else {
        value.extract::<f64>().map_err(|_| {
            PyTypeError::new_err(format!("{what} must be a number of seconds or a timedelta"))
        })?
    };
    duration(secs, what)
}

/// `secs` as a duration, or a `ValueError` for a negative or non-finite number.
pub fn duration(secs: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        value_error(format!(
            "{what} must be a finite number of seconds >= 0, got {secs}"
        ))
    })
}

impl PyRate {
    /// Checks a rate as the core does when a limiter is opened, so that a bad rate fails
    /// where it is written.
    fn checked(py: Python<'_>, rate: Rate) -> PyResult<PyRate> {
        let reason = if rate.limit() == 0 {
            Some("the limit must be at least 1".to_string())
        } else if rate.limit() > MAX_LIMIT {
            Some(format!("the limit must be at most {MAX_LIMIT}"))
        } else if rate.window().is_zero() {
            Some("the window must be longer than zero".to_string())
        } else if rate.window() > MAX_WINDOW {
            Some("the window must be at most 366 days".to_string())
        } else {
            None
        };
        match reason {
            None => Ok(PyRate(rate)),
            Some(reason) => Err(setup_error(
                py,
                hostlimit::Error::InvalidRate {
                    rate: rate.to_string(),
                    reason,
                },
            )),
        }
    }
}

#[pymethods]
impl PyRate {
    #[new]
    #[pyo3(signature = (limit, window, *, counts = "weight"))]
    fn new(
        py: Python<'_>,
        limit: &Bound<'_, PyAny>,
        window: &Bound<'_, PyAny>,
        counts: &str,
    ) -> PyResult<Self> {
        if limit.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err("limit must be an int"));
        }
        let limit: i128 = limit
            .extract()
            .map_err(|_| PyTypeError::new_err("limit must be an int"))?;
        let limit = u64::try_from(limit).unwrap_or(if limit < 0 { 0 } else { u64::MAX });
        let window = seconds(window, "window")?;
        let rate = match counts {
            "weight" => Rate::new(limit, window),
            "requests" => Rate::requests(limit, window),
            other => {
                return Err(value_error(format!(
                    "counts must be \"weight\" or \"requests\", got {other:?}"
                )));
            }
        };
        PyRate::checked(py, rate)
    }

    /// A rate that counts acquires, whatever their weight: ``Rate.requests(60, 60)``.
    #[staticmethod]
    fn requests(
        py: Python<'_>,
        limit: &Bound<'_, PyAny>,
        window: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        PyRate::new(py, limit, window, "requests")
    }

    /// Reads the command line's form: ``10/s``, ``600/min``, ``90000tok/min``,
    /// ``60req/min``, ``5/2s``. Raises ``InvalidRateError`` (a ``ValueError``) with the reason.
    #[staticmethod]
    fn parse(py: Python<'_>, text: &str) -> PyResult<Self> {
        text.parse::<Rate>()
            .map(PyRate)
            .map_err(|e| setup_error(py, e))
    }

    /// The limit.
    #[getter]
    fn limit(&self) -> u64 {
        self.0.limit()
    }

    /// The window, in seconds.
    #[getter]
    fn window(&self) -> f64 {
        self.0.window().as_secs_f64()
    }

    /// The window, in nanoseconds (exact).
    #[getter]
    fn window_ns(&self) -> u128 {
        self.0.window().as_nanos()
    }

    /// What the rate counts: ``"weight"`` or ``"requests"``.
    #[getter]
    fn counts(&self) -> &'static str {
        match self.0.counts() {
            Counts::Requests => "requests",
            _ => "weight",
        }
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Rate.parse('{}')", self.0)
    }

    /// Pickles as its text form (which round-trips exactly).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let parse = py.get_type::<PyRate>().getattr("parse")?;
        let args = PyTuple::new(py, [slf.get().0.to_string()])?;
        Ok((parse, args))
    }
}

/// One rate from a `Rate` or its text.
pub fn rate_from(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Rate> {
    if let Ok(rate) = value.cast::<PyRate>() {
        return Ok(rate.get().0);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_cow()?
            .parse::<Rate>()
            .map_err(|e| setup_error(py, e));
    }
    Err(PyTypeError::new_err(format!(
        "a rate is a hostlimit.Rate or its text (\"10/s\", \"90000tok/min\", \"60req/min\"), not {}",
        value.get_type().name()?
    )))
}

/// The rates from one rate or a sequence of them.
pub fn rates_from(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<Rate>> {
    if value.cast::<PyRate>().is_ok() || value.cast::<PyString>().is_ok() {
        return Ok(vec![rate_from(py, value)?]);
    }
    let iter = value.try_iter().map_err(|_| {
        PyTypeError::new_err("rates must be a Rate, its text, or a sequence of them")
    })?;
    iter.map(|item| rate_from(py, &item?)).collect()
}

/// A Python list of `Rate`s.
pub fn rate_list<'py>(py: Python<'py>, rates: &[Rate]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, rates.iter().map(|r| PyRate(*r)))
}
