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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use hostlimit::{Clock, Durability, HostClock, Limiter, Rate};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

#[path = "../../benches/baselines/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the criterion benches, which use other parts"
)]
mod baselines;

use baselines::{LockKind, LockedLog};

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

// ---------------------------------------------------------------------------------------
// Latency histogram

/// Sub-buckets per power of two: 16, so a bucket spans at most 1/16 of its value.
const SUB_BITS: u32 = 4;
/// Buckets: values below 32 exactly, then 16 per power of two up to 2^64.
const HIST_LEN: usize = 32 + 59 * 16;

fn bucket(ns: u64) -> usize {
    if ns < 32 {
        ns as usize
    } else {
        let exponent = 63 - ns.leading_zeros();
        let mantissa = (ns >> (exponent - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        32 + (exponent as usize - 5) * 16 + mantissa as usize
    }
}

/// The middle of a bucket's range.
fn bucket_value(index: usize) -> u64 {
    if index < 32 {
        index as u64
    } else {
        let exponent = ((index - 32) / 16 + 5) as u32;
        let mantissa = ((index - 32) % 16) as u64;
        let width = 1u64 << (exponent - SUB_BITS);
        (16 + mantissa) * width + width / 2
    }
}

/// What one worker measured.
#[derive(Debug, Clone)]
struct Stats {
    calls: u64,
    admitted: u64,
    max_ns: u64,
    hist: Vec<u64>,
    /// Calls completed in each `SLICE_NS` slice after the start.
    slices: Vec<u64>,
}

impl Stats {
    fn new(slices: usize) -> Stats {
        Stats {
            calls: 0,
            admitted: 0,
            max_ns: 0,
            hist: vec![0; HIST_LEN],
            slices: vec![0; slices],
        }
    }

    #[inline]
    fn record(&mut self, latency: u64, since_start: u64, admitted: bool) {
        self.calls += 1;
        self.admitted += u64::from(admitted);
        self.max_ns = self.max_ns.max(latency);
        self.hist[bucket(latency)] += 1;
        let slice = ((since_start / SLICE_NS) as usize).min(self.slices.len() - 1);
        self.slices[slice] += 1;
    }

    fn merge(&mut self, other: &Stats) {
        self.calls += other.calls;
        self.admitted += other.admitted;
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            *a += b;
        }
    }

    fn percentile(&self, q: f64) -> u64 {
        let total: u64 = self.hist.iter().sum();
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_value(index).min(self.max_ns);
            }
        }
        self.max_ns
    }

    fn encode(&self) -> String {
        let mut out = format!(
            "calls {} admitted {} max {}\nhist",
            self.calls, self.admitted, self.max_ns
        );
        for (index, count) in self.hist.iter().enumerate().filter(|(_, c)| **c > 0) {
            let _ = write!(out, " {index}:{count}");
        }
        out.push_str("\nslices");
        for count in &self.slices {
            let _ = write!(out, " {count}");
        }
        out.push('\n');
        out
    }

    fn decode(text: &str) -> Option<Stats> {
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .step_by(2)
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        let mut stats = Stats::new(1);
        let [calls, admitted, max_ns] = head[..] else {
            return None;
        };
        (stats.calls, stats.admitted, stats.max_ns) = (calls, admitted, max_ns);
        for pair in lines.next()?.strip_prefix("hist")?.split_whitespace() {
            let (index, count) = pair.split_once(':')?;
            *stats.hist.get_mut(index.parse::<usize>().ok()?)? = count.parse().ok()?;
        }
        stats.slices = lines
            .next()?
            .strip_prefix("slices")?
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        Some(stats)
    }
}

// ---------------------------------------------------------------------------------------
// Worker

fn now() -> u64 {
    HostClock.now()
}

fn sleep_until(at: u64) {
    let left = at.saturating_sub(now());
    if left > 2_000_000 {
        std::thread::sleep(Duration::from_nanos(left - 1_000_000));
    }
    while now() < at {
        std::hint::spin_loop();
    }
}

/// `worker DESIGN PATH START END STOP_AT`: hammers the file from START to END (clock ns),
/// prints its `Stats`. A lock design's worker with STOP_AT > 0 stops itself holding the lock
/// at its first call after STOP_AT.
fn worker(args: &[String]) {
    let parsed = (|| {
        let design = Design::from_name(args.first()?)?;
        let path = PathBuf::from(args.get(1)?);
        let numbers: Vec<u64> = args[2..]
            .iter()
            .map(|a| a.parse().ok())
            .collect::<Option<_>>()?;
        let [start, end, stop_at] = numbers[..] else {
            return None;
        };
        Some((design, path, start, end, stop_at))
    })();
    let Some((design, path, start, end, stop_at)) = parsed else {
        eprintln!("usage: hostlimit-bench worker DESIGN PATH START END STOP_AT");
        std::process::exit(2);
    };
    let stats = match design.lock_kind() {
        None if design.durability().is_some() => journal_worker(design, &path, start, end, stop_at),
        None => {
            let limiter = Limiter::open(&path, &rates()).expect("open the limiter");
            hammer(
                start,
                end,
                u64::MAX,
                || limiter.try_acquire(1).is_ok(),
                || {},
            )
        }
        Some(kind) => {
            let log = LockedLog::open(&path, kind, &rates()).expect("open the log");
            let stop_at = if stop_at == 0 { u64::MAX } else { stop_at };
            hammer(
                start,
                end,
                stop_at,
                || log.try_acquire(1).is_ok(),
                || {
                    let guard = log.lock();
                    raise(Signal::SIGSTOP).expect("raise SIGSTOP");
                    drop(guard);
                },
            )
        }
    };
    print!("{}", stats.encode());
}

/// A journal design's worker: hostlimit with the journal the parent named. With STOP_AT > 0,
/// a second thread takes the write lock of the journal file this process writes to at
/// STOP_AT (waiting its turn, as a journal write would) and raises `SIGSTOP`, which stops the
/// whole process holding it; the calling thread may be anywhere, even waiting for SQLite.
#[cfg(feature = "journal")]
fn journal_worker(design: Design, path: &Path, start: u64, end: u64, stop_at: u64) -> Stats {
    let journal = PathBuf::from(std::env::var_os(JOURNAL_ENV).expect(JOURNAL_ENV));
    let durability = design.durability().expect("a journal design");
    let limiter = Limiter::builder(&rates())
        .journal(&journal, durability)
        .open(path)
        .expect("open the limiter with its journal");
    if stop_at > 0 {
        let file = limiter.journal_file().expect("a journal").to_path_buf();
        std::thread::spawn(move || {
            sleep_until(stop_at);
            let holder = rusqlite::Connection::open(&file).expect("open the journal");
            holder
                .busy_timeout(Duration::from_secs(60))
                .expect("set a busy timeout");
            holder
                .execute_batch("BEGIN IMMEDIATE")
                .expect("the write lock");
            raise(Signal::SIGSTOP).expect("raise SIGSTOP");
            holder
                .execute_batch("COMMIT")
                .expect("release the write lock");
        });
    }
    hammer(
        start,
        end,
        u64::MAX,
        || limiter.try_acquire(1).is_ok(),
        || {},
    )
}

#[cfg(not(feature = "journal"))]
fn journal_worker(_: Design, _: &Path, _: u64, _: u64, _: u64) -> Stats {
    eprintln!("hostlimit-bench was built without the journal feature");
    std::process::exit(2);
}

/// The measuring loop: `call` until `end`, one clock read per call.
#[inline(never)]
fn hammer(
    start: u64,
    end: u64,
    mut stop_at: u64,
    mut call: impl FnMut() -> bool,
    mut stop_self: impl FnMut(),
) -> Stats {
    let slices = (end.saturating_sub(start) / SLICE_NS + 1) as usize;
    let mut stats = Stats::new(slices);
    sleep_until(start);
    let mut before = now();
    loop {
        let admitted = call();
        let after = now();
        stats.record(after - before, after.saturating_sub(start), admitted);
        before = after;
        if after >= end {
            break;
        }
        if after >= stop_at {
            stop_at = u64::MAX;
            stop_self();
            before = now();
        }
    }
    stats
}

// ---------------------------------------------------------------------------------------
// Parent

struct Case {
    design: Design,
    processes: usize,
    seconds: f64,
    per_process: Vec<Stats>,
    total: Stats,
    stop: Option<StopResult>,
}

struct StopResult {
    before: f64,
    during: f64,
    others_max_ns: u64,
    stopped_for: f64,
}

/// The stop to apply in a case: after `after` ns, for `length` ns.
#[derive(Clone, Copy)]
struct Stop {
    after: u64,
    length: u64,
}

/// Where a case's files go: the limiter files (a tmpfs), the journals (a disk).
struct Dirs {
    shm: PathBuf,
    journal: PathBuf,
}

fn spawn_worker(
    exe: &Path,
    design: Design,
    (path, journal): (&Path, &Path),
    start: u64,
    end: u64,
    stop_at: u64,
) -> std::io::Result<Child> {
    Command::new(exe)
        .env(JOURNAL_ENV, journal)
        .arg("worker")
        .arg(design.name())
        .arg(path)
        .args([start.to_string(), end.to_string(), stop_at.to_string()])
        .stdout(Stdio::piped())
        .spawn()
}

fn run_case(
    dirs: &Dirs,
    design: Design,
    processes: usize,
    seconds: f64,
    stop: Option<Stop>,
) -> Result<Case, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let name = format!(
        "{}-{processes}{}",
        design.name(),
        if stop.is_some() { "-stop" } else { "" }
    );
    let path = dirs.shm.join(&name);
    let journal = dirs.journal.join(format!("{name}.journal"));
    let _ = std::fs::remove_file(&path);
    match design.lock_kind() {
        None => drop(Limiter::open(&path, &rates()).map_err(|e| e.to_string())?),
        Some(kind) => drop(
            LockedLog::create(&path, kind, &rates())
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
    }
    let length = (seconds * 1e9) as u64;
    let start = now() + 300_000_000 + 30_000_000 * processes as u64;
    let end = start + length;
    let mut children = Vec::with_capacity(processes);
    for index in 0..processes {
        let stop_at = match stop {
            Some(stop) if index == 0 && design.stops_itself() => start + stop.after,
            _ => 0,
        };
        let child = spawn_worker(&exe, design, (&path, &journal), start, end, stop_at)
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        children.push(child);
    }
    let stopped = match stop {
        Some(stop) => Some(stop_victim(
            &children[0],
            design,
            (start + stop.after, stop.length),
            end,
        )?),
        None => None,
    };
    let mut per_process = Vec::with_capacity(processes);
    for child in children {
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "a {} worker failed: {}",
                design.name(),
                output.status
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        per_process.push(Stats::decode(&text).ok_or("unreadable worker output")?);
    }
    let _ = std::fs::remove_file(&path);
    remove_journal(&journal);
    let mut total = Stats::new(1);
    for stats in &per_process {
        total.merge(stats);
    }
    let stop = stopped.map(|(t_stop, t_cont)| stop_result(&per_process, start, t_stop, t_cont));
    Ok(Case {
        design,
        processes,
        seconds,
        per_process,
        total,
        stop,
    })
}

/// Removes a journal (a file with its `-wal` and `-shm`, or a directory).
fn remove_journal(journal: &Path) {
    let _ = std::fs::remove_dir_all(journal);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = journal.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Stops the victim at `at` for `length` ns; returns when it was stopped and continued.
fn stop_victim(
    victim: &Child,
    design: Design,
    (at, length): (u64, u64),
    end: u64,
) -> Result<(u64, u64), String> {
    let pid = Pid::from_raw(victim.id() as i32);
    sleep_until(at);
    if !design.stops_itself() {
        kill(pid, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP: {e}"))?;
    }
    // A lock design's victim stops itself once it holds the lock.
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
        Ok(WaitStatus::Stopped(..)) => {}
        other => return Err(format!("the stopped worker: {other:?}")),
    }
    let t_stop = now();
    if t_stop + length > end {
        let _ = kill(pid, Signal::SIGCONT);
        return Err(format!(
            "the {} victim stopped {:.2} s late, too late to measure a {:.2} s stop; run again \
             on a quieter machine",
            design.name(),
            t_stop.saturating_sub(at) as f64 / 1e9,
            length as f64 / 1e9
        ));
    }
    sleep_until(t_stop + length);
    let t_cont = now();
    kill(pid, Signal::SIGCONT).map_err(|e| format!("SIGCONT: {e}"))?;
    Ok((t_stop, t_cont))
}

/// The other workers' rate before and during the stop, from their time slices.
fn stop_result(per_process: &[Stats], start: u64, t_stop: u64, t_cont: u64) -> StopResult {
    let others = &per_process[1..];
    // Slices wholly inside [from, to), and their calls per second.
    let rate = |from: u64, to: u64| {
        let first = (from.saturating_sub(start)).div_ceil(SLICE_NS) as usize;
        let first = first.min(others.iter().map(|s| s.slices.len()).min().unwrap_or(0));
        let last = (to.saturating_sub(start) / SLICE_NS) as usize;
        if last <= first {
            return 0.0;
        }
        let calls: u64 = others
            .iter()
            .map(|s| {
                s.slices[first..last.min(s.slices.len())]
                    .iter()
                    .sum::<u64>()
            })
            .sum();
        calls as f64 / ((last - first) as f64 * SLICE_NS as f64 / 1e9)
    };
    StopResult {
        before: rate(start + 100_000_000, t_stop.saturating_sub(20_000_000)),
        during: rate(t_stop, t_cont),
        others_max_ns: others.iter().map(|s| s.max_ns).max().unwrap_or(0),
        stopped_for: (t_cont - t_stop) as f64 / 1e9,
    }
}

fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.0} k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn run(args: &Args) -> Result<(), String> {
    if args.processes.is_empty() || args.processes.contains(&0) || args.duration <= 0.0 {
        return Err("process counts must be positive, and the duration too".into());
    }
    let name = format!("hostlimit-bench-{}", std::process::id());
    let dirs = Dirs {
        shm: args.dir.join(&name),
        journal: args.journal_dir.join(&name),
    };
    for dir in [&dirs.shm, &dirs.journal] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let result = run_in(args, &dirs);
    let _ = std::fs::remove_dir_all(&dirs.shm);
    let _ = std::fs::remove_dir_all(&dirs.journal);
    result
}

fn run_in(args: &Args, dirs: &Dirs) -> Result<(), String> {
    let mut summary = String::new();
    let mut out = String::new();
    eprintln!("machine: {}", machine());
    let mut cases: Vec<Case> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let mut index = 0;
        for &processes in &args.processes {
            for &design in &args.designs {
                eprintln!("round {round}: {} × {processes} ...", design.name());
                let case = run_case(dirs, design, processes, args.duration, None)?;
                if round == 1 {
                    cases.push(case);
                } else if case.total.calls > cases[index].total.calls {
                    cases[index] = case;
                }
                index += 1;
            }
        }
    }
    let _ = writeln!(
        out,
        "#### Contended: P processes on one limiter ({}; {RATES_TEXT}; {} s per case, best of {} round(s))\n",
        machine(),
        args.duration,
        args.rounds.max(1)
    );
    out.push_str(
        "| design | processes | calls/s (all processes) | vs robust mutex | fairness (min/max calls) | p50 | p99 | p99.9 | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in &cases {
        let per_second = case.total.calls as f64 / case.seconds;
        let mutex = cases.iter().find(|c| {
            c.design == Design::RobustMutex && c.processes == case.processes && c.stop.is_none()
        });
        let versus = mutex.map_or("".into(), |m| {
            format!(
                "{:.2}x",
                case.total.calls as f64 / m.total.calls.max(1) as f64
            )
        });
        let counts = case.per_process.iter().map(|s| s.calls);
        let fairness =
            counts.clone().min().unwrap_or(0) as f64 / counts.max().unwrap_or(1).max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            case.design.label(),
            case.processes,
            fmt_rate(per_second),
            versus,
            fairness,
            fmt_ns(case.total.percentile(0.50)),
            fmt_ns(case.total.percentile(0.99)),
            fmt_ns(case.total.percentile(0.999)),
            fmt_ns(case.total.max_ns),
        );
        let _ = writeln!(
            summary,
            "contended {} {} {per_second:.0} {fairness:.3}",
            case.design.name(),
            case.processes
        );
        if case.total.admitted != case.total.calls {
            let _ = writeln!(
                out,
                "\n(note: {} of {} calls were denied: the limits bound on this machine)\n",
                case.total.calls - case.total.admitted,
                case.total.calls
            );
        }
    }
    if args.stop > 0.0 && args.stop_processes >= 2 {
        let stop = Stop {
            after: 1_000_000_000,
            length: (args.stop * 1e9) as u64,
        };
        // A second after the stop, and one more for a victim that has to wait for a lock.
        let seconds = 1.0 + args.stop + 2.0;
        let mut stops = Vec::new();
        for &design in &args.designs {
            eprintln!(
                "{} × {} with a stop ...",
                design.name(),
                args.stop_processes
            );
            stops.push(run_case(
                dirs,
                design,
                args.stop_processes,
                seconds,
                Some(stop),
            )?);
        }
        let _ = writeln!(
            out,
            "\n#### One of {} processes stopped (SIGSTOP) for {} s\n",
            args.stop_processes, args.stop
        );
        out.push_str(
            "| design | how the victim was stopped | others' calls/s before | during the stop | kept | others' max latency |\n\
             |---|---|---:|---:|---:|---:|\n",
        );
        for case in &stops {
            let Some(result) = &case.stop else { continue };
            let kept = if result.before > 0.0 {
                result.during / result.before
            } else {
                0.0
            };
            let how = case.design.how_stopped();
            let _ = writeln!(
                out,
                "| {} | {how} | {} | {} | {:.0} % | {} |",
                case.design.label(),
                fmt_rate(result.before),
                fmt_rate(result.during),
                kept * 100.0,
                fmt_ns(result.others_max_ns),
            );
            let _ = writeln!(
                summary,
                "stop {} {} {:.0} {:.0} {kept:.3} {:.3}",
                case.design.name(),
                case.processes,
                result.before,
                result.during,
                result.stopped_for
            );
        }
        for case in &stops {
            if case.total.admitted != case.total.calls {
                let _ = writeln!(
                    out,
                    "\n(note: {}: {} of {} calls were denied)",
                    case.design.label(),
                    case.total.calls - case.total.admitted,
                    case.total.calls
                );
            }
        }
    }
    print!("{out}");
    if let Some(path) = &args.summary {
        std::fs::write(path, summary).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let index = bucket(ns);
            assert!(index >= last && index < HIST_LEN, "{ns}");
            last = index;
            let mid = bucket_value(index) as f64;
            assert!(
                (mid - ns as f64).abs() <= ns as f64 / 16.0 + 1.0,
                "{ns} -> {mid}"
            );
        }
    }

    #[test]
    fn stats_round_trip() {
        let mut stats = Stats::new(3);
        stats.record(40, 0, true);
        stats.record(1_000_000, 25_000_000, false);
        let back = Stats::decode(&stats.encode()).unwrap();
        assert_eq!((back.calls, back.admitted, back.max_ns), (2, 1, 1_000_000));
        assert_eq!(back.hist, stats.hist);
        assert_eq!(back.slices, vec![1, 0, 1]);
        assert_eq!(back.percentile(0.5), bucket_value(bucket(40)));
    }
}
