//! `hostlimit.ManualClock`: time that moves only when a test says so.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use hostlimit::{Clock, ManualClock};

use crate::rate::seconds;

/// A clock for tests: ``Limiter.open(path, rates, clock=clock)`` then ``clock.advance(1.5)``
/// instead of sleeping. A file made with a manual clock can only be shared by limiters
/// with a manual clock (other processes get ``ClockMismatchError``).
///
/// ``acquire`` still sleeps in real time; use ``try_acquire`` with a manual clock.
#[pyclass(frozen, module = "hostlimit", name = "ManualClock")]
pub struct PyManualClock(pub Arc<ManualClock>);

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start = None))]
    fn new(start: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let start = match start {
            Some(value) => seconds(value, "start")?,
            None => Duration::from_secs(1),
        };
        Ok(PyManualClock(Arc::new(ManualClock::new(
            u64::try_from(start.as_nanos()).unwrap_or(u64::MAX),
        ))))
    }

    /// Moves the clock forward by ``seconds`` (a number or a ``timedelta``).
    fn advance(&self, seconds_: &Bound<'_, PyAny>) -> PyResult<()> {
        self.0.advance(seconds(seconds_, "seconds")?);
        Ok(())
    }

    /// Now, in nanoseconds.
    #[getter]
    fn now_ns(&self) -> u64 {
        self.0.now()
    }
}
