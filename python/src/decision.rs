//! What a limiter reports back: a `Decision` (admitted or denied, as a value), the use of each
//! rate (`RateUsage`) and what the file records about itself (`FileInfo`).

use std::time::UNIX_EPOCH;

use pyo3::prelude::*;

use hostlimit::{DenialKind, Denied, FileInfo, RateUsage, Stamp};

use crate::errors::kind_name;
use crate::rate::{PyRate, rate_list};

/// The outcome of ``try_acquire``: truthy if and only if the request was admitted.
///
/// A denial changed nothing. ``rate`` is the rate that refused (the one that frees up
/// last) and ``retry_after`` the seconds until the request would fit given what was
/// admitted so far, or ``None`` if it never can (a weight above a limit, or an unusable
/// file). An admission carries its recorded timestamp and sequence number in the shared log.
#[pyclass(frozen, module = "hostlimit", name = "Decision")]
pub struct Decision {
    outcome: Result<Option<Stamp>, Denied>,
}

impl Decision {
    pub fn new(outcome: Result<Option<Stamp>, Denied>) -> Self {
        Decision { outcome }
    }

    fn denied(&self) -> Option<&Denied> {
        self.outcome.as_ref().err()
    }

    fn stamp(&self) -> Option<Stamp> {
        self.outcome.as_ref().ok().copied().flatten()
    }
}

#[pymethods]
impl Decision {
    /// ``True`` if the request was admitted.
    #[getter]
    fn admitted(&self) -> bool {
        self.outcome.is_ok()
    }

    fn __bool__(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Seconds until the request could first fit; ``None`` if admitted or if it never can.
    #[getter]
    fn retry_after(&self) -> Option<f64> {
        self.denied()?.retry_after().map(|d| d.as_secs_f64())
    }

    /// The rate that refused; ``None`` if admitted (or if no rate refused: an unusable file).
    #[getter]
    fn rate(&self) -> Option<PyRate> {
        self.denied()?.rate().map(PyRate)
    }

    /// The refusing rate's index in ``Limiter.rates``; ``None`` if admitted or no rate refused.
    #[getter]
    fn rate_index(&self) -> Option<usize> {
        self.denied()
            .filter(|d| d.rate().is_some())
            .map(Denied::rate_index)
    }

    /// ``None`` if admitted; else ``"exhausted"`` (retry after ``retry_after``),
    /// ``"never_fits"`` (the weight is above a limit) or ``"unavailable"`` (the shared
    /// state could not be trusted; nothing was admitted).
    #[getter]
    fn kind(&self) -> Option<&'static str> {
        self.denied().map(kind_name)
    }

    /// ``True`` for a denial that no waiting can turn into an admission.
    #[getter]
    fn is_final(&self) -> bool {
        self.denied().is_some_and(Denied::is_final)
    }

    /// The denial for people (``"rate 10/s is full; retry after 952ms"``); ``None`` if admitted.
    #[getter]
    fn reason(&self) -> Option<String> {
        self.denied().map(ToString::to_string)
    }

    /// The admission's recorded timestamp, in nanoseconds of ``CLOCK_BOOTTIME`` (or of the
    /// limiter's manual clock): between the call's clock read and its commit, never
    /// decreasing along the log. ``None`` if denied or if weight 0 charged nothing.
    #[getter]
    fn timestamp_ns(&self) -> Option<u64> {
        self.stamp().map(|s| s.timestamp)
    }

    /// The admission's sequence number in the shared log, modulo 2**32 (1 for the first).
    #[getter]
    fn sequence(&self) -> Option<u32> {
        self.stamp().map(|s| s.sequence)
    }

    fn __repr__(&self) -> String {
        match &self.outcome {
            Ok(Some(stamp)) => format!(
                "Decision(admitted, timestamp_ns={}, sequence={})",
                stamp.timestamp, stamp.sequence
            ),
            Ok(None) => "Decision(admitted)".into(),
            Err(denied) => match denied.kind() {
                DenialKind::Exhausted { .. } => format!(
                    "Decision(denied, rate={}, retry_after={:.6})",
                    denied.rate().map(|r| r.to_string()).unwrap_or_default(),
                    denied.retry_after().unwrap_or_default().as_secs_f64()
                ),
                _ => format!("Decision(denied: {denied})"),
            },
        }
    }
}

/// One rate's state at one moment, from ``Limiter.usage()``.
#[pyclass(frozen, module = "hostlimit", name = "RateUsage")]
pub struct PyRateUsage(pub RateUsage);

#[pymethods]
impl PyRateUsage {
    /// The rate.
    #[getter]
    fn rate(&self) -> PyRate {
        PyRate(self.0.rate)
    }

    /// Weight (or requests) admitted inside the current window, by every process.
    #[getter]
    fn used(&self) -> u64 {
        self.0.used
    }

    /// What is left in the current window: ``limit - used``.
    #[getter]
    fn remaining(&self) -> u64 {
        self.0.remaining
    }

    /// Seconds until the oldest admission in the window leaves it; ``None`` if it is empty.
    #[getter]
    fn next_free(&self) -> Option<f64> {
        self.0.next_free.map(|d| d.as_secs_f64())
    }

    /// Requests this rate refused since the file was created (all processes).
    #[getter]
    fn denied(&self) -> u64 {
        self.0.denied
    }

    fn __repr__(&self) -> String {
        format!(
            "RateUsage(rate={}, used={}, remaining={}, next_free={}, denied={})",
            self.0.rate,
            self.0.used,
            self.0.remaining,
            self.0
                .next_free
                .map_or_else(|| "None".to_string(), |d| d.as_secs_f64().to_string()),
            self.0.denied
        )
    }
}

/// What a limiter file records about itself, from ``Limiter.info()``.
#[pyclass(frozen, module = "hostlimit", name = "FileInfo")]
pub struct PyFileInfo(pub FileInfo);

#[pymethods]
impl PyFileInfo {
    /// The file.
    #[getter]
    fn path(&self) -> String {
        self.0.path.to_string_lossy().into_owned()
    }

    /// The rates, in the file's order.
    #[getter]
    fn rates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        rate_list(py, &self.0.rates)
    }

    /// Ring slots: how many admissions of history the file keeps.
    #[getter]
    fn capacity(&self) -> u64 {
        self.0.capacity
    }

    /// File size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.0.size
    }

    /// When the file was created, in seconds since the Unix epoch.
    #[getter]
    fn created(&self) -> f64 {
        self.0
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// The process that created it.
    #[getter]
    fn creator_pid(&self) -> u64 {
        self.0.creator_pid
    }

    /// The user that created it.
    #[getter]
    fn creator_uid(&self) -> u64 {
        self.0.creator_uid
    }

    fn __repr__(&self) -> String {
        format!(
            "FileInfo(path={:?}, rates=[{}], capacity={}, size={})",
            self.0.path,
            self.0
                .rates
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.0.capacity,
            self.0.size
        )
    }
}
