//! Shared helpers: temporary directories, worker processes, and the checks of the contract
//! over what the workers recorded.
//!
//! # Workers
//!
//! A worker is this very test binary, re-executed with `--exact support::worker_entry` and
//! a script in [`WORKER_ENV`]. The script is a list of steps separated by `;`:
//!
//! | step | what it does |
//! |------|--------------|
//! | `open RATES [mode=OCT] [interval=MS] [manual] [parents]` | `Limiter::builder(RATES)...open(path)`; `RATES` as in `10/s,25/min`; `parents`: `.create_dirs(true)` |
//! | `attach` | `Limiter::attach(path)` |
//! | `umask OCT` / `setuid UID` | change the process before opening |
//! | `touch NAME` / `wait NAME` | create / wait for a signal file in the worker's directory |
//! | `sleep MS` | sleep |
//! | `acquire W` | one `try_acquire_stamped(W)` |
//! | `fill W MAX` | `try_acquire_stamped(W)` until the first denial (at most `MAX` calls) |
//! | `hammer MS W1,W2,.. PAUSE_US [quiet]` | for `MS` ms: acquire a random weight, then sleep a random pause in `[0, PAUSE_US]` µs (at most the retry-after after a denial); `quiet` records admissions only |
//! | `usage` | record `usage()` |
//! | `reset` / `remove` | `hostlimit::reset(path)` / `hostlimit::remove(path)`, recorded as an `M` line |
//! | `nofile N` | lower this process's descriptor limit (`RLIMIT_NOFILE`) to `N` |
//! | `resources` | record the open descriptors and the mappings of files in the worker's directory |
//! | `churn N` | `N` rounds of a reset (every third round a remove) followed by `acquire 1` |
//! | `admin reset\|remove N` | `N` tries of a race: wait (spinning) for `go.K`, reset or remove, touch `NAME.K` |
//! | `follow N RATES` | `N` tries of the same race as the user: open, touch `ready.K`, spin on `go.K`, call `usage()` until `r0.K` and `r1.K` exist, `acquire 1`, touch `done.K` |
//! | `chaos ..` / `scribble ..` / `cli-status ..` | the hostile-file test's callers (`hostile.rs`) |
//!
//! Each result is one line, written with a single `write` as it happens, so that a worker
//! killed at any moment leaves every line but possibly a torn last one:
//!
//! ```text
//! O <pid>                                               opened
//! E <error>                                             open failed (the script stops)
//! A <before> <after> <timestamp> <sequence> <weight>    admitted (times: CLOCK_BOOTTIME ns)
//! D <before> <after> <weight> <rate> <retry_ns|-> <X|N|U>   denied: exhausted, never fits, unavailable
//! F <before> <after> <weight>                           admitted without a record (weight 0)
//! U <used>:<remaining>:<next_free_ns|->:<denied> ...    usage, one field per rate
//! M <op> ok | M <op> error <error>                      reset or remove, and how it went
//! R <descriptors> <mappings>                            resources in use
//! L <what> <calls> <worst_wall_ns> <worst_cpu_ns> <worst_call>   call latencies (hostile.rs)
//! ```
//!
//! Here the worker's entry point and the small helpers every test uses; by concern: `process`
//! (spawning a worker and waiting for it), `output` (the format above, read back), `checks` (the
//! contract's checks and their test) and `worker` (the worker side: the steps).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hostlimit::{Clock, Counts, DenialKind, HostClock, Limiter, ManualClock, Nanos, Rate};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

#[path = "runner.rs"]
mod runner;
pub use runner::command;

mod checks;
mod output;
mod process;
mod worker;

pub use checks::{
    check_denials, check_sequence, check_stamps, check_windows, match_ring, ring_log,
};
pub use output::{Admission, Denial, Latency, Output, UsageLine};
pub use process::{Worker, spawn};
pub use worker::Random;
use worker::WorkerProcess;

/// The script a worker runs; unset in the test process itself.
const WORKER_ENV: &str = "HOSTLIMIT_TEST_WORKER";
/// The limiter file a worker opens.
const PATH_ENV: &str = "HOSTLIMIT_TEST_PATH";
/// The file a worker writes its results to; signal files live in its directory.
const OUT_ENV: &str = "HOSTLIMIT_TEST_OUT";

/// The entry point of worker processes. In the test process itself it does nothing: it is
/// the hook [`spawn`] re-executes this binary into, not a test.
#[test]
fn worker_entry() {
    let Some(script) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let script = script.into_string().expect("the worker script is UTF-8");
    let path = PathBuf::from(std::env::var_os(PATH_ENV).expect("worker without a path"));
    let out = PathBuf::from(std::env::var_os(OUT_ENV).expect("worker without an output"));
    WorkerProcess::new(path, &out).run(&script);
}

/// A temporary directory, on tmpfs (`/dev/shm`) where there is one.
pub fn temp_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("hostlimit-test.");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("create a temporary directory")
}

/// Serializes the timing-sensitive tests, so that two of them never share the (possibly
/// two) cores: each still has to hold on a loaded machine, this only keeps them from loading
/// it themselves.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Now, on the clock of every real limiter (`CLOCK_BOOTTIME`).
pub fn now() -> Nanos {
    HostClock.now()
}

/// Rates as a worker's `open` step takes them: `10/s,25/min`.
pub fn rates_arg(rates: &[Rate]) -> String {
    rates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// What an admission of `weight` costs under `rate`.
pub fn units(rate: &Rate, weight: u64) -> u64 {
    match rate.counts() {
        Counts::Weight => weight,
        Counts::Requests => 1,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("duration fits in u64 ns")
}

/// Creates an empty signal file.
pub fn touch(path: &Path) {
    File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
}

/// Waits until `path` exists, at most `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Sleeps until the host clock reads at least `at`.
pub fn sleep_until(at: Nanos) {
    let now = now();
    if at > now {
        std::thread::sleep(Duration::from_nanos(at - now));
    }
}
