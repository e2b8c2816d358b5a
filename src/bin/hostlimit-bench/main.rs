//! `hostlimit-bench`: P processes hammering one limiter, hostlimit side by side with the same
//! sliding log behind a robust process-shared pthread mutex and behind `flock`, in one
//! invocation. Prints markdown tables (for the README): aggregate calls per second,
//! per-process fairness, latency percentiles, and what the other processes keep doing while
//! one of them is stopped with `SIGSTOP`.
//!
//! ```text
//! hostlimit-bench [--duration 2] [--rounds 1] [--stop 1] [--stop-processes 4] [PROCESSES ...]
//! ```
//!
//! It needs no toolchain: workers are this same binary, re-executed with `worker` as the first
//! argument, so it runs unchanged on a larger machine. Files go in `--dir` (default
//! `/dev/shm`) and are removed afterwards.
//!
//! **Method.** For each process count and each design, P workers open one limiter file with
//! the same two rates (1,000 requests per 10 µs and 10^9 units of weight per 100 µs: limits
//! that never bind, so every call commits and contention is all there is) and call
//! `try_acquire(1)` in a loop from a common start instant for a fixed time. Each worker reads
//! the clock once after every call; the difference between consecutive reads is that call's
//! latency (so every latency, for every design, includes one clock read and the loop, about
//! 25-30 ns). Histograms are log-linear (16 buckets per power of two: within 6 %); the
//! maximum is exact.
//!
//! **The stop.** With `--stop-processes` workers, one worker (the victim) is stopped for
//! `--stop` seconds after one second of running. For the lock designs the victim stops itself
//! *while holding the lock*: it takes the lock, then raises `SIGSTOP` on itself; the parent
//! sees it stopped (`waitpid(WUNTRACED)`) and sends `SIGCONT` after the stop time. A lock-free
//! design holds nothing to stop inside of, so for hostlimit the parent sends `SIGSTOP` from
//! outside at an arbitrary moment (almost always inside `try_acquire`, which is nearly all of
//! the loop; e.g. between reading the newest record and the compare-exchange). The table
//! compares the others' calls per second during the stop with their rate before it.
//!
//! **The journal designs** (`--designs strict-journal,periodic-journal`, not in the default
//! set) are hostlimit with a SQLite journal (`Durability::Strict` with 1 s leases, or
//! `Durability::Periodic` every second) in `--journal-dir` (default `/var/tmp`, a disk). A
//! strict-mode process commits a lease to the journal every 1/64 of the request limit (15
//! calls here), so most of its time is spent in SQLite; a periodic-mode process never calls
//! SQLite from `try_acquire`. In the stop runs their victim stops itself *while holding the
//! write lock of the journal file it writes to* (it opens that file, `BEGIN IMMEDIATE`,
//! raises `SIGSTOP`), which is what a process stopped inside a journal write holds.
//!
//! The binary's modules, in reading order: `stats` (what a worker measures, and its latency
//! histogram), `worker` (the measuring loop a re-executed worker runs), `case` (the parent's
//! side of one case: spawning the workers, stopping the victim, collecting their stats) and
//! `report` (the rounds of cases and the markdown tables).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hostlimit::{Durability, Rate};

#[path = "../../../benches/baselines/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the criterion benches, which use other parts"
)]
mod baselines;
mod case;
mod report;
mod stats;
mod worker;

use baselines::LockKind;
use report::run;
use worker::worker;

/// The rates every design is configured with: limits that never bind in a tight loop.
fn rates() -> [Rate; 2] {
    [
        Rate::requests(1_000, Duration::from_micros(10)),
        Rate::new(1_000_000_000, Duration::from_micros(100)),
    ]
}

const RATES_TEXT: &str = "1,000 requests per 10 µs and 10^9 weight per 100 µs (never binding)";

/// Time-slice length for the per-process timelines of the stop runs.
const SLICE_NS: u64 = 10_000_000;

/// The journal a journal design's worker opens (set by the parent).
const JOURNAL_ENV: &str = "HOSTLIMIT_BENCH_JOURNAL";

/// The designs compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Design {
    /// hostlimit: one 128-bit compare-exchange per admission, lock-free.
    Hostlimit,
    /// The same log behind a robust process-shared pthread mutex in the mapping.
    RobustMutex,
    /// The same log behind `flock` on the file.
    Flock,
    /// hostlimit with a strict-mode SQLite journal (1 s leases).
    StrictJournal,
    /// hostlimit with a periodic-mode SQLite journal (flushed every second).
    PeriodicJournal,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Hostlimit => "hostlimit",
            Design::RobustMutex => "robust-mutex",
            Design::Flock => "flock",
            Design::StrictJournal => "strict-journal",
            Design::PeriodicJournal => "periodic-journal",
        }
    }

    fn from_name(name: &str) -> Option<Design> {
        [
            Design::Hostlimit,
            Design::RobustMutex,
            Design::Flock,
            Design::StrictJournal,
            Design::PeriodicJournal,
        ]
        .into_iter()
        .find(|d| d.name() == name)
    }

    fn label(self) -> &'static str {
        match self {
            Design::Hostlimit => "hostlimit (lock-free)",
            Design::RobustMutex => "robust pthread mutex + log",
            Design::Flock => "flock + log",
            Design::StrictJournal => "hostlimit, strict journal",
            Design::PeriodicJournal => "hostlimit, periodic journal",
        }
    }

    fn lock_kind(self) -> Option<LockKind> {
        match self {
            Design::Hostlimit | Design::StrictJournal | Design::PeriodicJournal => None,
            Design::RobustMutex => Some(LockKind::RobustMutex),
            Design::Flock => Some(LockKind::Flock),
        }
    }

    /// The journal mode of a journal design.
    fn durability(self) -> Option<Durability> {
        match self {
            Design::StrictJournal => Some(Durability::Strict {
                lease: Duration::from_secs(1),
            }),
            Design::PeriodicJournal => Some(Durability::Periodic(Duration::from_secs(1))),
            _ => None,
        }
    }

    /// Does its victim stop itself while holding a lock (rather than from outside)?
    fn stops_itself(self) -> bool {
        self.lock_kind().is_some() || self.durability().is_some()
    }

    /// How its victim is stopped, for the table.
    fn how_stopped(self) -> &'static str {
        if self.lock_kind().is_some() {
            "raised SIGSTOP on itself while holding the lock"
        } else if self.durability().is_some() {
            "raised SIGSTOP on itself while holding its journal's write lock"
        } else {
            "SIGSTOP from outside, at any instruction"
        }
    }
}

/// Multi-process benchmark: hostlimit against a robust-mutex log and a flock log.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "P processes hammering one limiter: hostlimit against a robust-mutex log and a flock log"
)]
struct Args {
    /// Process counts to run, one case per count and design.
    #[arg(default_values_t = vec![1, 2, 4, 8, 16])]
    processes: Vec<usize>,
    /// Seconds each case runs.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Runs of every contended case, interleaved; each table row is the run with the highest
    /// throughput (on a busy machine the least disturbed one).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Seconds one process is stopped in the stop runs; 0 skips them.
    #[arg(long, default_value_t = 1.0)]
    stop: f64,
    /// Processes in the stop runs (one of them is stopped).
    #[arg(long, default_value_t = 4)]
    stop_processes: usize,
    /// Designs to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Design::Hostlimit, Design::RobustMutex, Design::Flock])]
    designs: Vec<Design>,
    /// Directory for the limiter files (a tmpfs).
    #[arg(long, default_value = "/dev/shm")]
    dir: PathBuf,
    /// Directory for the journal designs' journals (a disk).
    #[arg(long, default_value = "/var/tmp")]
    journal_dir: PathBuf,
    /// Also write the figures as `key value` lines to this file (for benches/report.sh).
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("worker") {
        worker(&argv[2..]);
        return;
    }
    let args = Args::parse();
    if let Err(error) = run(&args) {
        eprintln!("hostlimit-bench: {error}");
        std::process::exit(1);
    }
}
