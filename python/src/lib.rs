//! `hostlimit._native`: the Python module of hostlimit (PyO3, stable ABI for CPython >= 3.9).
//!
//! The Python package `hostlimit` (in `python/hostlimit/`) re-exports these classes and adds
//! what is plain Python: the exceptions, `acquire_async` and the decorator, the registry and
//! the drop-in shims. The module is free-threading ready: every class is frozen (no
//! `&mut self`), shared state is atomic or behind `arc-swap`, and the GIL is released
//! wherever native code may wait (opening, journal writes, strict-mode acquires, sleeping).

mod clock;
mod decision;
mod errors;
mod fork;
mod limiter;
mod rate;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::clock::PyManualClock;
    #[pymodule_export]
    use crate::decision::{Decision, PyFileInfo, PyRateUsage};
    #[pymodule_export]
    use crate::limiter::{_before_fork, _restore, PyLimiter, default_dir, path_for, remove, reset};
    #[pymodule_export]
    use crate::rate::PyRate;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        crate::fork::install();
        m.add("MAX_LIMIT", hostlimit::MAX_LIMIT)?;
        m.add("MAX_WINDOW", hostlimit::MAX_WINDOW.as_secs_f64())?;
        m.add("DEFAULT_DIR", hostlimit::DEFAULT_DIR)?;
        m.add("DIR_ENV", hostlimit::DIR_ENV)?;
        Ok(())
    }

    /// Raises the exception a core error of kind `kind` becomes, for the tests of errors that
    /// this machine cannot produce (an unsupported CPU, an I/O error without errno).
    #[pyfunction]
    fn _raise_for_test(py: Python<'_>, kind: &str) -> PyResult<()> {
        let error = match kind {
            "unsupported" => hostlimit::Error::Unsupported("no cmpxchg16b".into()),
            "io" => hostlimit::Error::Io {
                path: "/x".into(),
                op: "read",
                source: std::io::Error::other("no errno"),
            },
            _ => return Err(crate::errors::value_error(format!("no such kind: {kind}"))),
        };
        Err(crate::errors::setup_error(py, error))
    }

    /// The result of ``try_acquire`` for a limiter that never refuses (``NoOpLimiter``).
    #[pyfunction]
    fn _admitted() -> crate::decision::Decision {
        crate::decision::Decision::new(Ok(None))
    }
}
