//! `hostlimit.Limiter`: the core limiter for Python, safe across `fork()`, with every wait
//! outside the GIL and interruptible.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};

use hostlimit::{Clock, Denied, Durability, Error, Jitter, Rate, Stamp};

use crate::clock::PyManualClock;
use crate::decision::{Decision, PyFileInfo, PyRateUsage};
use crate::errors::{closed, rate_limited, setup_error, value_error};
use crate::fork::{self, Owned, Pausable};
use crate::rate::{duration, rate_list, rates_from};

/// The longest a blocking `acquire` sleeps without looking at signals: Ctrl-C interrupts
/// it within this (plus the time to get the GIL back).
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// Where the journal is and how it is written.
#[derive(Clone)]
struct JournalSpec {
    path: PathBuf,
    durability: Durability,
    interval: Duration,
    busy_timeout: Option<Duration>,
}

/// A limiter on a Redis server (the core's Redis backend): where, and how calls fail.
#[derive(Clone)]
struct Remote {
    url: String,
    name: String,
    timeout: Duration,
    on_outage: hostlimit::redis::OnOutage,
}

/// Everything needed to open the limiter again (after a fork, or after a pause).
#[derive(Clone)]
struct Spec {
    /// A limiter on a Redis server instead of a file (then `path` is `URL#NAME`, for
    /// messages); a forked child connects again, it never shares its parent's socket.
    remote: Option<Remote>,
    path: PathBuf,
    /// `None` only for the first open of `Limiter.attach`.
    rates: Option<Vec<Rate>>,
    mode: u32,
    check_interval: Duration,
    clock: Option<Arc<dyn Clock>>,
    journal: Option<JournalSpec>,
}

impl Spec {
    fn open(&self) -> Result<hostlimit::Limiter, Error> {
        if let Some(remote) = &self.remote {
            return hostlimit::Limiter::redis(
                &remote.url,
                &remote.name,
                self.rates.as_deref().unwrap_or(&[]),
            )
            .timeout(remote.timeout)
            .on_outage(remote.on_outage)
            .connect();
        }
        let Some(rates) = &self.rates else {
            return hostlimit::Limiter::attach(&self.path);
        };
        let mut builder = hostlimit::Limiter::builder(rates)
            .mode(self.mode)
            .check_interval(self.check_interval);
        if let Some(clock) = &self.clock {
            builder = builder.clock(clock.clone());
        }
        if let Some(journal) = &self.journal {
            builder = builder.journal(&journal.path, journal.durability);
            if let Some(timeout) = journal.busy_timeout {
                builder = builder.journal_busy_timeout(timeout);
            }
        }
        builder.open(&self.path)
    }

    fn strict(&self) -> bool {
        matches!(
            self.journal,
            Some(JournalSpec {
                durability: Durability::Strict { .. },
                ..
            })
        )
    }
}

/// A core limiter opened by this process, in one fork generation.
struct Opened {
    limiter: Owned<hostlimit::Limiter>,
    generation: u64,
    /// An acquire may wait: in strict journal mode for a SQLite commit (a new lease), on
    /// Redis for a round trip. Such acquires run without the GIL.
    strict: bool,
}

impl Opened {
    #[inline]
    fn try_acquire(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        self.limiter.get().try_acquire_stamped(weight)
    }
}

/// The state behind one Python `Limiter`, shared with the fork registry.
struct Shared {
    spec: Spec,
    /// `None` once closed, or while paused for a fork (then opened again at the next call).
    current: ArcSwapOption<Opened>,
    closed: AtomicBool,
}

impl Shared {
    /// Opens the core limiter again and makes it current.
    #[cold]
    fn reopen(&self, py: Python<'_>) -> PyResult<Arc<Opened>> {
        // Acquire: pairs with the Release store in `close`.
        if self.closed.load(Ordering::Acquire) {
            return Err(closed(py, &self.spec.path));
        }
        let generation = fork::generation();
        let spec = self.spec.clone();
        let limiter = py
            .detach(move || spec.open())
            .map_err(|e| setup_error(py, e))?;
        let fresh = Arc::new(Opened {
            limiter: Owned::new(limiter),
            generation,
            strict: self.spec.strict() || self.spec.remote.is_some(),
        });
        let old = self.current.swap(Some(fresh.clone()));
        // Dropping a core limiter with a journal joins its thread: not while holding the GIL.
        py.detach(move || drop(old));
        if self.closed.load(Ordering::Acquire) {
            let ours = self.current.swap(None);
            py.detach(move || drop(ours));
            return Err(closed(py, &self.spec.path));
        }
        Ok(fresh)
    }
}

impl Pausable for Shared {
    fn pause(&self) {
        drop(self.current.swap(None));
    }
}

/// A host-wide rate limiter: every process that opens the same file shares its limits.
///
/// Open one per process (``Limiter.open``, ``Limiter.named``, ``Limiter.attach``) and share it
/// between threads. ``try_acquire`` never waits and returns a ``Decision``; ``acquire`` waits
/// (without the GIL, interruptible by Ctrl-C) and raises ``RateLimited``; ``acquire_async``
/// awaits. A limiter opened before ``os.fork()`` keeps working in the child.
#[pyclass(frozen, weakref, module = "hostlimit", name = "Limiter")]
pub struct PyLimiter {
    shared: Arc<Shared>,
}

impl Drop for PyLimiter {
    fn drop(&mut self) {
        let old = self.shared.current.swap(None);
        if old.is_some() {
            // Dropping a core limiter with a journal joins its thread: not while holding the
            // GIL. (During interpreter shutdown the closure is not called and `old` is simply
            // dropped with it.)
            Python::try_attach(move |py| py.detach(move || drop(old)));
        }
    }
}

/// A weight from Python: an int >= 0.
fn weight_of(weight: i64) -> PyResult<u64> {
    u64::try_from(weight).map_err(|_| value_error(format!("weight must be >= 0, got {weight}")))
}

/// An optional timeout in seconds: `None` or infinity waits as long as needed.
fn timeout_of(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t == f64::INFINITY => Ok(None),
        Some(t) => duration(t, "timeout").map(Some),
    }
}

#[allow(clippy::too_many_arguments)]
fn spec_for(
    path: PathBuf,
    rates: Option<Vec<Rate>>,
    mode: u32,
    journal: Option<PathBuf>,
    durability: &str,
    journal_interval: f64,
    journal_busy_timeout: Option<f64>,
    check_interval: f64,
    clock: Option<&PyManualClock>,
) -> PyResult<Spec> {
    if mode > 0o777 {
        return Err(value_error(format!(
            "mode must be permission bits (at most 0o777), got {mode:#o}"
        )));
    }
    let interval = duration(journal_interval, "journal_interval")?;
    let journal = match journal {
        None => None,
        Some(path) => {
            if interval.is_zero() {
                return Err(value_error("journal_interval must be longer than zero"));
            }
            let durability = match durability {
                "periodic" => Durability::Periodic(interval),
                "strict" => Durability::Strict { lease: interval },
                other => {
                    return Err(value_error(format!(
                        "durability must be \"periodic\" or \"strict\", got {other:?}"
                    )));
                }
            };
            Some(JournalSpec {
                path,
                durability,
                interval,
                busy_timeout: journal_busy_timeout
                    .map(|t| duration(t, "journal_busy_timeout"))
                    .transpose()?,
            })
        }
    };
    Ok(Spec {
        remote: None,
        path,
        rates,
        mode,
        check_interval: duration(check_interval, "check_interval")?,
        clock: clock.map(|c| c.0.clone() as Arc<dyn Clock>),
        journal,
    })
}

impl PyLimiter {
    /// Opens the first core limiter and builds the Python object around it.
    fn start(py: Python<'_>, spec: Spec) -> PyResult<PyLimiter> {
        let generation = fork::generation();
        let first = spec.clone();
        let limiter = py
            .detach(move || first.open())
            .map_err(|e| setup_error(py, e))?;
        // From now on the limiter is re-opened with the rates it got (those of the file, for
        // `attach`), so that a re-creation after a fork or a deletion keeps them.
        let spec = Spec {
            rates: Some(limiter.rates()),
            ..spec
        };
        let opened = Opened {
            limiter: Owned::new(limiter),
            generation,
            strict: spec.strict() || spec.remote.is_some(),
        };
        let journaled = spec.journal.is_some();
        let shared = Arc::new(Shared {
            spec,
            current: ArcSwapOption::new(Some(Arc::new(opened))),
            closed: AtomicBool::new(false),
        });
        if journaled {
            let weak: Weak<dyn Pausable> = Arc::downgrade(&shared) as Weak<dyn Pausable>;
            fork::register(weak);
        }
        Ok(PyLimiter { shared })
    }

    /// Runs `f` on the current core limiter (opening it again first if needed).
    #[inline]
    fn with_opened<R>(&self, py: Python<'_>, f: impl FnOnce(&Opened) -> R) -> PyResult<R> {
        {
            let guard = self.shared.current.load();
            if let Some(opened) = guard.as_ref()
                && opened.generation == fork::generation()
            {
                return Ok(f(opened));
            }
        }
        let opened = self.shared.reopen(py)?;
        Ok(f(&opened))
    }

    /// One non-waiting acquire; in strict journal mode (where it may wait for SQLite),
    /// without the GIL.
    #[inline]
    fn attempt(&self, py: Python<'_>, weight: u64) -> PyResult<Result<Option<Stamp>, Denied>> {
        let strict = self.with_opened(py, |opened| {
            if opened.strict {
                Err(())
            } else {
                Ok(opened.try_acquire(weight))
            }
        })?;
        match strict {
            Ok(outcome) => Ok(outcome),
            Err(()) => {
                let opened = match self.shared.current.load_full() {
                    Some(opened) if opened.generation == fork::generation() => opened,
                    _ => self.shared.reopen(py)?,
                };
                Ok(py.detach(move || opened.try_acquire(weight)))
            }
        }
    }

    fn path_text(&self) -> String {
        self.shared.spec.path.to_string_lossy().into_owned()
    }

    fn rates_vec(&self) -> &[Rate] {
        self.shared.spec.rates.as_deref().unwrap_or_default()
    }
}

static WAITING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LIMIT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RESTORE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pymethods]
impl PyLimiter {
    /// Opens the limiter file at ``path`` with ``rates``, creating it (and its directory) if
    /// it does not exist, or attaching to it if it does.
    ///
    /// ``rates``: one rate or a sequence, each a ``Rate`` or its text (``"60req/min"``,
    /// ``"90000tok/min"``, ``"10/s"``). Options: ``mode`` (permissions of a new file, default
    /// ``0o600``); ``journal`` (a SQLite file that keeps the admissions across reboots) with
    /// ``durability`` (``"periodic"``: written every ``journal_interval`` seconds by a
    /// background thread; ``"strict"``: capacity leased from the journal before it is
    /// handed out, for ``journal_interval`` seconds) and ``journal_busy_timeout``;
    /// ``check_interval`` (how often the file is checked for replacement); ``clock`` (a
    /// ``ManualClock``, for tests).
    ///
    /// Raises ``InvalidRateError``, ``ConfigMismatchError`` (the file has other rates),
    /// ``CorruptFileError``, ``ClockMismatchError``, ``JournalError``, or an ``OSError``.
    #[staticmethod]
    #[pyo3(signature = (path, rates, *, mode = 0o600, journal = None, durability = "periodic",
        journal_interval = 1.0, journal_busy_timeout = None, check_interval = 1.0, clock = None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        rates: &Bound<'_, PyAny>,
        mode: u32,
        journal: Option<PathBuf>,
        durability: &str,
        journal_interval: f64,
        journal_busy_timeout: Option<f64>,
        check_interval: f64,
        clock: Option<PyRef<'_, PyManualClock>>,
    ) -> PyResult<PyLimiter> {
        let rates = rates_from(py, rates)?;
        let spec = spec_for(
            path,
            Some(rates),
            mode,
            journal,
            durability,
            journal_interval,
            journal_busy_timeout,
            check_interval,
            clock.as_deref(),
        )?;
        PyLimiter::start(py, spec)
    }

    /// Opens the limiter called ``name`` in ``default_dir()`` (``$HOSTLIMIT_DIR``, else
    /// ``/dev/shm/hostlimit``), with the options of ``open``. Names are 1 to 200 of
    /// ``A-Z a-z 0-9 . _ -``, not starting with ``.`` (else ``InvalidNameError``).
    #[staticmethod]
    #[pyo3(signature = (name, rates, *, mode = 0o600, journal = None, durability = "periodic",
        journal_interval = 1.0, journal_busy_timeout = None, check_interval = 1.0, clock = None))]
    #[allow(clippy::too_many_arguments)]
    fn named(
        py: Python<'_>,
        name: &str,
        rates: &Bound<'_, PyAny>,
        mode: u32,
        journal: Option<PathBuf>,
        durability: &str,
        journal_interval: f64,
        journal_busy_timeout: Option<f64>,
        check_interval: f64,
        clock: Option<PyRef<'_, PyManualClock>>,
    ) -> PyResult<PyLimiter> {
        let path =
            hostlimit::path_for(&hostlimit::default_dir(), name).map_err(|e| setup_error(py, e))?;
        PyLimiter::open(
            py,
            path,
            rates,
            mode,
            journal,
            durability,
            journal_interval,
            journal_busy_timeout,
            check_interval,
            clock,
        )
    }

    /// Connects to the limiter ``name`` on the Redis (or Valkey) server at ``url``
    /// (``redis://host:port/db``): the same limiter, shared by every host that reaches the
    /// server. ``rates`` as for ``open``; ``None`` adopts the rates stored on the server.
    /// ``timeout`` (seconds) bounds each call; ``on_outage`` says what a call does when the
    /// server is unreachable: ``"deny"`` (a denial with reason ``"unreachable"``),
    /// ``"allow"`` (admitted uncounted) or ``"fall_back"`` (the host-wide file limiter of
    /// the same name and rates decides).
    ///
    /// Raises ``InvalidRateError``, ``InvalidNameError``, or ``HostlimitError`` (the server
    /// is unreachable, or holds the limiter with other rates: the message names both).
    #[staticmethod]
    #[pyo3(signature = (url, name, rates = None, *, timeout = 0.5, on_outage = "deny"))]
    fn connect(
        py: Python<'_>,
        url: String,
        name: String,
        rates: Option<&Bound<'_, PyAny>>,
        timeout: f64,
        on_outage: &str,
    ) -> PyResult<PyLimiter> {
        use hostlimit::redis::OnOutage;
        let rates = rates.map(|r| rates_from(py, r)).transpose()?;
        let on_outage = match on_outage {
            "deny" => OnOutage::Deny,
            "allow" => OnOutage::Allow,
            "fall_back" => OnOutage::FallBack,
            other => {
                return Err(value_error(format!(
                    "on_outage must be \"deny\", \"allow\" or \"fall_back\", got {other:?}"
                )));
            }
        };
        let path = PathBuf::from(format!("{url}#{name}"));
        let mut spec = spec_for(path, rates, 0o600, None, "periodic", 1.0, None, 1.0, None)?;
        spec.remote = Some(Remote {
            url,
            name,
            timeout: duration(timeout, "timeout")?,
            on_outage,
        });
        PyLimiter::start(py, spec)
    }

    /// Attaches to an existing limiter file, adopting its rates. A missing file is a
    /// ``FileNotFoundError``.
    #[staticmethod]
    fn attach(py: Python<'_>, path: PathBuf) -> PyResult<PyLimiter> {
        let spec = spec_for(path, None, 0o600, None, "periodic", 1.0, None, 1.0, None)?;
        PyLimiter::start(py, spec)
    }

    /// Admits ``weight`` now if every rate has room, committing to all rates at once;
    /// otherwise changes nothing. Never waits. Returns a ``Decision``: truthy iff admitted,
    /// with ``retry_after`` and ``rate`` when denied.
    ///
    /// A rate that counts weight counts ``weight``; one that counts requests counts 1.
    #[pyo3(signature = (weight = 1))]
    fn try_acquire(&self, py: Python<'_>, weight: i64) -> PyResult<Decision> {
        let weight = weight_of(weight)?;
        Ok(Decision::new(self.attempt(py, weight)?))
    }

    /// Waits until ``weight`` is admitted, at most ``timeout`` seconds (``None``: as long as
    /// needed), then returns ``None``.
    ///
    /// It sleeps, without the GIL, until the moment the shared log says the request fits
    /// (plus a small random delay, so that waiters do not wake together), and retries.
    /// Raises ``RateLimited`` (a ``TimeoutError``) at once when that moment is past the
    /// deadline, or when the weight can never fit (``kind == "never_fits"``). Ctrl-C
    /// interrupts the wait within 50 ms.
    #[pyo3(signature = (weight = 1, timeout = None))]
    fn acquire(&self, py: Python<'_>, weight: i64, timeout: Option<f64>) -> PyResult<()> {
        let weight = weight_of(weight)?;
        let wait_at_most = timeout_of(timeout)?;
        let deadline = wait_at_most.and_then(|t| Instant::now().checked_add(t));
        let mut jitter = Jitter::new();
        loop {
            let denied = match self.attempt(py, weight)? {
                Ok(_) => return Ok(()),
                Err(denied) => denied,
            };
            let Some(wait) = denied.retry_after() else {
                return Err(rate_limited(py, &denied, None));
            };
            let now = Instant::now();
            let mut until = now + wait + jitter.next(wait);
            if let Some(deadline) = deadline {
                if now + wait > deadline {
                    return Err(rate_limited(py, &denied, timeout));
                }
                until = until.min(deadline);
            }
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                py.detach(|| std::thread::sleep(left.min(SIGNAL_SLICE)));
                py.check_signals()?;
            }
        }
    }

    /// Like ``acquire``, as a coroutine that never blocks the event loop: it awaits
    /// ``asyncio.sleep`` between attempts. Cancelling it leaves the limiter's use unchanged.
    #[pyo3(signature = (weight = 1, timeout = None))]
    fn acquire_async<'py>(
        slf: &Bound<'py, Self>,
        weight: i64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        weight_of(weight)?;
        timeout_of(timeout)?;
        WAITING
            .import(py, "hostlimit._waiting", "acquire_async")?
            .call1((slf, weight, timeout))
    }

    /// A decorator and context manager that acquires before the call or block:
    /// ``@lim.limit(weight=lambda prompt, **kw: len(prompt))``, ``with lim.limit(1200):``,
    /// ``async with lim.limit(1200):``. ``weight`` may be a callable that gets the call's
    /// arguments; coroutine functions are awaited with ``acquire_async``.
    #[pyo3(signature = (weight = None, *, timeout = None))]
    fn limit<'py>(
        slf: &Bound<'py, Self>,
        weight: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        timeout_of(timeout)?;
        LIMIT
            .import(py, "hostlimit._waiting", "Limit")?
            .call1((slf, weight, timeout))
    }

    /// Every rate's use now, read on one consistent state, consuming nothing.
    fn usage(&self, py: Python<'_>) -> PyResult<Vec<PyRateUsage>> {
        self.with_opened(py, |opened| opened.limiter.get().usage())?
            .map(|rates| rates.into_iter().map(PyRateUsage).collect())
            .map_err(|e| setup_error(py, e))
    }

    /// Admissions since the file was created, by all processes.
    fn admitted(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_opened(py, |opened| opened.limiter.get().admitted())?
            .map_err(|e| setup_error(py, e))
    }

    /// What the file records about itself.
    fn info(&self, py: Python<'_>) -> PyResult<PyFileInfo> {
        self.with_opened(py, |opened| PyFileInfo(opened.limiter.get().info()))
    }

    /// The rates, in the file's order.
    #[getter]
    fn rates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        rate_list(py, self.rates_vec())
    }

    /// The limiter file.
    #[getter]
    fn path(&self) -> String {
        self.path_text()
    }

    /// The journal file, or ``None``.
    #[getter]
    fn journal(&self) -> Option<String> {
        self.shared
            .spec
            .journal
            .as_ref()
            .map(|j| j.path.to_string_lossy().into_owned())
    }

    /// The reason the last journal write failed, until one succeeds again; ``None`` while
    /// all is well (and always without a journal).
    #[getter]
    fn journal_error(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with_opened(py, |opened| opened.limiter.get().journal_status().err())
    }

    /// Journals now every admission the shared file holds that the journal does not.
    fn journal_flush(&self, py: Python<'_>) -> PyResult<()> {
        let opened = match self.shared.current.load_full() {
            Some(opened) if opened.generation == fork::generation() => opened,
            _ => self.shared.reopen(py)?,
        };
        py.detach(move || opened.limiter.get().journal_flush())
            .map_err(|e| setup_error(py, e))
    }

    /// Empties every window, for every process using the file (they move to a fresh file
    /// with the same rates at their next call). The journal is not cleared.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        if self.shared.spec.remote.is_some() {
            // On Redis: the log emptied, the rates kept, for every host.
            let opened = match self.shared.current.load_full() {
                Some(opened) if opened.generation == fork::generation() => opened,
                _ => self.shared.reopen(py)?,
            };
            return py
                .detach(move || opened.limiter.get().reset())
                .map(|_| ())
                .map_err(|e| setup_error(py, e));
        }
        let path = self.shared.spec.path.clone();
        py.detach(move || hostlimit::reset(&path))
            .map(|_| ())
            .map_err(|e| setup_error(py, e))
    }

    /// Deletes the file for every process and closes this limiter. Processes still using it
    /// create it again at their next call, with their rates.
    fn remove(&self, py: Python<'_>) -> PyResult<()> {
        let path = self.shared.spec.path.clone();
        py.detach(move || hostlimit::remove(&path))
            .map_err(|e| setup_error(py, e))?;
        self.close(py);
        Ok(())
    }

    /// Releases the file (and, with a journal, flushes it and stops its thread). Later calls
    /// raise ``ClosedError``. Closing twice is harmless.
    fn close(&self, py: Python<'_>) {
        // Release: pairs with the Acquire loads in `reopen`.
        self.shared.closed.store(true, Ordering::Release);
        let old = self.shared.current.swap(None);
        py.detach(move || drop(old));
    }

    /// ``True`` once ``close`` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let rates: Vec<String> = self.rates_vec().iter().map(ToString::to_string).collect();
        format!(
            "<hostlimit.Limiter {:?} [{}]{}>",
            self.path_text(),
            rates.join(", "),
            if self.closed() { " closed" } else { "" }
        )
    }

    /// Pickles as what is needed to open it again (for `multiprocessing` with `spawn`).
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let spec = &slf.get().shared.spec;
        if spec.clock.is_some() {
            return Err(PyTypeError::new_err(
                "a limiter with a manual clock cannot be pickled",
            ));
        }
        if spec.remote.is_some() {
            return Err(PyTypeError::new_err(
                "a Redis limiter cannot be pickled: connect again where it is needed",
            ));
        }
        let rates: Vec<String> = slf
            .get()
            .rates_vec()
            .iter()
            .map(ToString::to_string)
            .collect();
        let journal = spec.journal.as_ref();
        let args = (
            spec.path.to_string_lossy().into_owned(),
            rates,
            spec.mode,
            journal.map(|j| j.path.to_string_lossy().into_owned()),
            if spec.strict() { "strict" } else { "periodic" },
            journal.map_or(1.0, |j| j.interval.as_secs_f64()),
            journal
                .and_then(|j| j.busy_timeout)
                .map(|t| t.as_secs_f64()),
            spec.check_interval.as_secs_f64(),
        )
            .into_pyobject(py)?;
        let restore = RESTORE.import(py, "hostlimit._native", "_restore")?.clone();
        Ok((restore, args))
    }
}

/// Opens a limiter from what `Limiter.__reduce__` gave.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn _restore(
    py: Python<'_>,
    path: PathBuf,
    rates: &Bound<'_, PyAny>,
    mode: u32,
    journal: Option<PathBuf>,
    durability: &str,
    journal_interval: f64,
    journal_busy_timeout: Option<f64>,
    check_interval: f64,
) -> PyResult<PyLimiter> {
    PyLimiter::open(
        py,
        path,
        rates,
        mode,
        journal,
        durability,
        journal_interval,
        journal_busy_timeout,
        check_interval,
        None,
    )
}

/// Resets the limiter file at ``path`` for every process (see ``Limiter.reset``).
#[pyfunction]
pub fn reset(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(move || hostlimit::reset(&path))
        .map(|_| ())
        .map_err(|e| setup_error(py, e))
}

/// Deletes the limiter file at ``path``, closing its log first so that every process using
/// it notices at its next call.
#[pyfunction]
pub fn remove(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(move || hostlimit::remove(&path))
        .map(|_| ())
        .map_err(|e| setup_error(py, e))
}

/// The directory of named limiters: ``$HOSTLIMIT_DIR``, else ``/dev/shm/hostlimit``.
#[pyfunction]
pub fn default_dir() -> String {
    hostlimit::default_dir().to_string_lossy().into_owned()
}

/// The path of the limiter called ``name`` in ``directory`` (default ``default_dir()``);
/// ``InvalidNameError`` for a name that cannot be a file name there.
#[pyfunction]
#[pyo3(signature = (name, directory = None))]
pub fn path_for(py: Python<'_>, name: &str, directory: Option<PathBuf>) -> PyResult<String> {
    let directory = directory.unwrap_or_else(hostlimit::default_dir);
    hostlimit::path_for(&directory, name)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| setup_error(py, e))
}

/// Stops every journal thread before `os.fork()` (see `fork.rs`).
#[pyfunction]
pub fn _before_fork(py: Python<'_>) {
    py.detach(fork::before_fork);
}
