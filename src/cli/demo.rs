//! `hostlimit demo`: worker processes share one two-rate limiter for a few seconds, then the
//! parent checks every sliding window exactly against the admissions the workers recorded.
//!
//! The parent creates `demo-PID` in the limiter directory, starts the workers (this same
//! binary, hidden subcommand `__demo-worker`), prints a progress line per second read from the
//! shared file, and collects each worker's stamps (recorded timestamp and sequence number of
//! every admission, from `try_acquire_stamped`) through the worker's stdout. The check needs
//! nothing but the stamps: for every rate, the most admissions in any window `(t - window, t]`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hostlimit::{Clock, HostClock, Limiter, Nanos, Rate, Stamp};
use serde::Serialize;

use crate::cli::chart;
use crate::cli::exit::{Exit, Failure};
use crate::cli::mappers;
use crate::cli::report::{count_text, table};
use crate::cli::target::{self, Target};
use crate::cli::time::format_duration;
use crate::cli::{print_err, print_json, print_out, program};

/// The demo's rates unless `--rate` says otherwise: the per-second rate binds at once, the
/// 10-second one after four seconds.
pub const DEFAULT_RATES: &[&str] = &["50/s", "200/10s"];

/// What `hostlimit demo` was asked for.
#[derive(Debug)]
pub struct Options {
    /// Worker processes.
    pub workers: usize,
    /// How long they run.
    pub duration: Duration,
    /// The limiter's rates.
    pub rates: Vec<Rate>,
    /// Whether to use a scratch directory under `$TMPDIR` if the limiter directory is
    /// unusable (it was not chosen explicitly).
    pub may_fall_back: bool,
    /// One JSON document at the end instead of the text report.
    pub json: bool,
    /// Where to write the run's chart as an SVG (`--plot`).
    pub plot: Option<PathBuf>,
}

/// Removes the demo's limiter file when the demo ends, however it ends (short of a signal),
/// and the scratch directory it was made in, if any.
struct RemoveOnDrop {
    path: PathBuf,
    scratch: Option<PathBuf>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = hostlimit::remove(&self.path);
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir(scratch);
        }
    }
}

/// A running worker and the thread draining its stdout.
struct Worker {
    child: Child,
    output: JoinHandle<std::io::Result<String>>,
}

/// What one worker reported.
#[derive(Debug, Default)]
struct WorkerReport {
    stamps: Vec<Stamp>,
    calls: u64,
    denied: u64,
}

/// `hostlimit demo`.
pub fn demo(dir: &Path, options: &Options) -> Result<Exit, Failure> {
    let (target, limiter, cleanup) = match create(dir, &options.rates, None) {
        Ok(created) => created,
        Err(failure)
            if options.may_fall_back && matches!(failure.exit, Exit::NoPerm | Exit::Io) =>
        {
            let scratch =
                std::env::temp_dir().join(format!("hostlimit-demo-{}", std::process::id()));
            print_err(&format!("{failure}; using {} instead", scratch.display()));
            create(&scratch, &options.rates, Some(scratch.clone()))?
        }
        Err(failure) => return Err(failure),
    };
    let rates = limiter.rates();
    let rate_list = rates
        .iter()
        .map(Rate::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let out = |text: &str| {
        if options.json {
            Ok(())
        } else {
            print_out(text)
        }
    };
    out(&format!(
        "hostlimit demo: {} worker processes share the limiter {} ({rate_list}) for {}.\n\
         Watch it from another terminal:  {} watch {}\n\n",
        options.workers,
        target.path.display(),
        format_duration(options.duration),
        program::ours(),
        target.path.display(),
    ))?;

    let until = HostClock.now() + time_nanos(options.duration);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(options.workers);
    for _ in 0..options.workers {
        workers.push(spawn_worker(&target.path, until)?);
    }
    progress(&limiter, &rates, started, options.duration, &out)?;

    let mut reports = Vec::with_capacity(workers.len());
    for (index, worker) in workers.into_iter().enumerate() {
        reports.push(collect(index, worker)?);
    }
    let elapsed = started.elapsed();
    let counted = limiter.admitted()?;
    drop(limiter);
    let (verdict, document) = report(&rates, &reports, counted, elapsed, &out)?;
    let stamps: Vec<Nanos> = reports
        .iter()
        .flat_map(|r| r.stamps.iter().map(|s| s.timestamp))
        .collect();
    chart::show(
        &rates,
        &stamps,
        until - time_nanos(options.duration),
        until,
        options.plot.as_deref(),
        &out,
    )?;
    drop(cleanup);
    let removed = !target.path.exists();
    out(&format!(
        "{} {}\n",
        target.path.display(),
        if removed {
            "removed"
        } else {
            "could not be removed"
        }
    ))?;
    if options.json {
        print_json(&DemoJson {
            ok: verdict == Exit::Success,
            limiter: target.path.display().to_string(),
            removed,
            ..document
        })?;
    }
    Ok(verdict)
}

/// Creates the demo's limiter, `demo-PID` in `dir`.
fn create(
    dir: &Path,
    rates: &[Rate],
    scratch: Option<PathBuf>,
) -> Result<(Target, Limiter, RemoveOnDrop), Failure> {
    remove_stale_demos(dir);
    let target = target::resolve(dir, &format!("demo-{}", std::process::id()))?;
    // A file with our name is a leftover from an earlier process with our pid.
    let _ = hostlimit::remove(&target.path);
    let cleanup = RemoveOnDrop {
        path: target.path.clone(),
        scratch,
    };
    // The scratch directory is ours to make; the limiter directory is made only if it is the
    // directory of named limiters (shared).
    let limiter = Limiter::builder(rates)
        .create_dirs(cleanup.scratch.is_some())
        .open(&target.path)?;
    Ok((target, limiter, cleanup))
}

fn time_nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn spawn_worker(path: &Path, until: Nanos) -> Result<Worker, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(Exit::Software, format!("cannot find this program: {e}")))?;
    let mut child = Command::new(&exe)
        .arg("__demo-worker")
        .arg(path)
        .arg("--until-ns")
        .arg(until.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::new(
                Exit::Software,
                format!("{}: cannot start a worker: {e}", exe.display()),
            )
        })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    // Drained as the worker writes, so that a full pipe never stalls it.
    let output = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    Ok(Worker { child, output })
}

/// Prints one line per second, read from the shared file, until `duration` has passed.
fn progress(
    limiter: &Limiter,
    rates: &[Rate],
    started: Instant,
    duration: Duration,
    out: &dyn Fn(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut header = vec![
        "time".to_string(),
        "admitted".into(),
        "denied".into(),
        "calls/s".into(),
    ];
    header.extend(rates.iter().map(|r| format!("used {r}")));
    let widths: Vec<usize> = header.iter().map(|h| h.len().max(8)).collect();
    let line = |cells: &[String]| {
        let mut text = String::from(" ");
        for (cell, width) in cells.iter().zip(&widths) {
            text.push_str(&format!(" {cell:>width$}"));
        }
        text.push('\n');
        text
    };
    out(&line(&header))?;
    let (mut last_calls, mut last_time) = (0u64, started);
    for second in 1.. {
        let at = started + Duration::from_secs(second).min(duration);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let usage = limiter.usage()?;
        let admitted = limiter.admitted()?;
        let denied = limiter.counters()?.denied_total();
        let now = Instant::now();
        let calls = admitted.saturating_add(denied.unwrap_or(0));
        let per_second = calls.saturating_sub(last_calls) as f64
            / now.duration_since(last_time).as_secs_f64().max(1e-9);
        (last_calls, last_time) = (calls, now);
        let mut cells = vec![
            format_duration(now.duration_since(started)),
            admitted.to_string(),
            count_text(denied),
            format!("{per_second:.0}"),
        ];
        cells.extend(
            usage
                .iter()
                .map(|u| format!("{}/{}", u.used, u.rate.limit())),
        );
        out(&line(&cells))?;
        if now.duration_since(started) >= duration {
            return Ok(());
        }
    }
    Ok(())
}

/// Waits for a worker and parses what it sent.
fn collect(index: usize, mut worker: Worker) -> Result<WorkerReport, Failure> {
    let failed = |why: String| Failure::new(Exit::Software, format!("demo worker {index}: {why}"));
    let status = worker
        .child
        .wait()
        .map_err(|e| failed(format!("wait: {e}")))?;
    let text = worker
        .output
        .join()
        .map_err(|_| failed("reader thread panicked".into()))?
        .map_err(|e| failed(format!("read: {e}")))?;
    if !status.success() {
        return Err(failed(format!("exited with {status}")));
    }
    parse_worker_output(&text).map_err(failed)
}

/// Parses `A TIMESTAMP SEQUENCE` lines (one per admission) and a final `S CALLS DENIED`.
fn parse_worker_output(text: &str) -> Result<WorkerReport, String> {
    let mut report = WorkerReport::default();
    let mut summary = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("unreadable line {line:?}"))
        };
        match fields.first() {
            Some(&"A") => report.stamps.push(Stamp {
                timestamp: number(1)?,
                sequence: u32::try_from(number(2)?).map_err(|e| e.to_string())?,
            }),
            Some(&"S") => {
                report.calls = number(1)?;
                report.denied = number(2)?;
                summary = true;
            }
            _ => return Err(format!("unreadable line {line:?}")),
        }
    }
    if summary {
        Ok(report)
    } else {
        Err("no summary line".into())
    }
}

/// The busiest window of one rate.
#[derive(Debug, PartialEq, Eq)]
struct Busiest {
    /// Admissions in it.
    count: u64,
    /// Its end: the timestamp of its last admission.
    end: Nanos,
}

/// The most admissions (weight 1 each) in any window `(t - window, t]`, from timestamps in
/// ascending order. Such a window holds the most when `t` is an admission's timestamp, so it
/// suffices to look at each admission as the end of a window: a two-pointer sweep.
fn busiest_window(sorted: &[Nanos], window: Nanos) -> Busiest {
    let mut busiest = Busiest { count: 0, end: 0 };
    let mut first = 0;
    for (last, &end) in sorted.iter().enumerate() {
        while sorted[first].saturating_add(window) <= end {
            first += 1;
        }
        let count = (last - first + 1) as u64;
        if count > busiest.count {
            busiest = Busiest { count, end };
        }
    }
    busiest
}

/// The `--json` document of the demo.
#[derive(Serialize, Default)]
struct DemoJson {
    ok: bool,
    limiter: String,
    removed: bool,
    workers: usize,
    elapsed_ns: u64,
    admitted: u64,
    denied: u64,
    calls: u64,
    rates: Vec<DemoRateJson>,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct DemoRateJson {
    rate: String,
    limit: u64,
    max_in_any_window: u64,
    ok: bool,
}

/// Prints the report and returns the verdict's exit code, and the JSON document's figures.
fn report(
    rates: &[Rate],
    reports: &[WorkerReport],
    counted: u64,
    elapsed: Duration,
    out: &dyn Fn(&str) -> Result<(), Failure>,
) -> Result<(Exit, DemoJson), Failure> {
    let mut document = DemoJson {
        workers: reports.len(),
        elapsed_ns: crate::cli::time::nanos(elapsed),
        ..DemoJson::default()
    };
    let mut stamps: Vec<Stamp> = reports
        .iter()
        .flat_map(|r| r.stamps.iter().copied())
        .collect();
    let admitted = stamps.len() as u64;
    let denied: u64 = reports.iter().map(|r| r.denied).sum();
    let calls: u64 = reports.iter().map(|r| r.calls).sum();
    let mut text = format!(
        "\nreport: {} workers, {}: admitted {admitted}, denied {denied}, calls {calls} ({:.0}/s)\n\
         \x20 admitted per worker: {}\n",
        reports.len(),
        format_duration(elapsed),
        calls as f64 / elapsed.as_secs_f64().max(1e-9),
        reports
            .iter()
            .map(|r| r.stamps.len().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );

    // The log itself: sequence numbers 1..=n each once, timestamps never decreasing.
    stamps.sort_by_key(|s| s.sequence);
    let mut problems = Vec::new();
    let gapless = stamps
        .iter()
        .enumerate()
        .all(|(i, s)| u64::from(s.sequence) == i as u64 + 1);
    let monotonic = stamps.windows(2).all(|w| w[0].timestamp <= w[1].timestamp);
    if !monotonic {
        problems.push("a recorded timestamp is earlier than the one before it in the log".into());
    }
    if counted != admitted {
        text.push_str(&format!(
            "  note: the file counted {counted} admissions, the workers {admitted}: other \
             processes used the limiter too, and the check below covers the workers' only\n"
        ));
    } else if !gapless {
        problems.push("the sequence numbers have gaps or repeats".into());
    } else {
        text.push_str(&format!(
            "  log: the workers' {admitted} admissions are the file's sequence numbers 1..{admitted}, \
             each once; timestamps never decrease\n"
        ));
    }

    // Every sliding window of every rate, exactly.
    let mut timestamps: Vec<Nanos> = stamps.iter().map(|s| s.timestamp).collect();
    timestamps.sort_unstable();
    let origin = timestamps.first().copied().unwrap_or(0);
    let mut rows = vec![vec![
        "rate".to_string(),
        "limit".into(),
        "max in any window".into(),
        "busiest window ends".into(),
        "".into(),
    ]];
    for rate in rates {
        let busiest = busiest_window(&timestamps, time_nanos(rate.window()));
        let ok = busiest.count <= rate.limit();
        document.rates.push(DemoRateJson {
            rate: rate.to_string(),
            limit: rate.limit(),
            max_in_any_window: busiest.count,
            ok,
        });
        if !ok {
            problems.push(format!(
                "{rate} admitted {} in the window ending {} after the first admission",
                busiest.count,
                format_duration(Duration::from_nanos(busiest.end - origin))
            ));
        }
        rows.push(vec![
            rate.to_string(),
            rate.limit().to_string(),
            busiest.count.to_string(),
            format!(
                "+{}",
                format_duration(Duration::from_nanos(busiest.end.saturating_sub(origin)))
            ),
            if ok { "ok" } else { "EXCEEDED" }.into(),
        ]);
    }
    text.push_str(&table(&rows, "  "));
    let exit = if problems.is_empty() {
        text.push_str("verdict: no window exceeded: every sliding window held at most its limit\n");
        Exit::Success
    } else {
        text.push_str(&format!("verdict: FAILED: {}\n", problems.join("; ")));
        Exit::Exceeded
    };
    out(&text)?;
    document.admitted = admitted;
    document.denied = denied;
    document.calls = calls;
    document.problems = problems;
    Ok((exit, document))
}

/// `hostlimit __demo-worker PATH --until-ns T`: acquires weight 1 until the host clock reads
/// `T`, sleeping a little after each admission (the "work") and until the retry-after after
/// each denial; then writes its stamps and counts to stdout for the parent.
pub fn worker(path: &Path, until: Nanos) -> Result<Exit, Failure> {
    let limiter = Limiter::attach(path)?;
    let mut random = Random::new();
    let mut report = WorkerReport::default();
    loop {
        let now = HostClock.now();
        if now >= until {
            break;
        }
        let left = Duration::from_nanos(until - now);
        report.calls += 1;
        match limiter.try_acquire_stamped(1) {
            Ok(stamp) => {
                report.stamps.extend(stamp);
                let work = Duration::from_micros(1_000 + random.next() % 9_000);
                std::thread::sleep(work.min(left));
            }
            Err(denied) => {
                report.denied += 1;
                let Some(wait) = denied.retry_after() else {
                    return Err(Failure::denied(&path.display().to_string(), &denied));
                };
                // Spread the wake-ups a little, as the library's `acquire` does.
                let spread = Duration::from_micros(random.next() % 1_000);
                std::thread::sleep((wait + spread).min(left));
            }
        }
    }
    let mut text = String::new();
    for stamp in &report.stamps {
        text.push_str(&format!("A {} {}\n", stamp.timestamp, stamp.sequence));
    }
    text.push_str(&format!("S {} {}\n", report.calls, report.denied));
    print_out(&text)?;
    Ok(Exit::Success)
}

/// Removes `demo-PID` files left by demos that were interrupted: the process that created
/// the file is gone and nothing maps it any more.
fn remove_stale_demos(dir: &Path) {
    let Ok(targets) = target::list(dir) else {
        return;
    };
    for Target { name, path } in targets {
        let Some(pid) = name
            .strip_prefix("demo-")
            .and_then(|p| p.parse::<u64>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Ok(limiter) = Limiter::attach(&path) else {
            continue;
        };
        let created_by_it = limiter.info().creator_pid == pid;
        drop(limiter);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if created_by_it
            && mappers::scan(&meta).mappers.is_empty()
            && hostlimit::remove(&path).is_ok()
        {
            print_err(&format!(
                "removed {}, left by an interrupted demo",
                path.display()
            ));
        }
    }
}

/// Pseudo-random numbers for the workers' simulated work (xorshift64*).
struct Random {
    state: u64,
}

impl Random {
    fn new() -> Random {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        Random {
            state: hasher.finish() | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_window_counts_half_open_windows() {
        // (t - 10, t]: 0 leaves the window ending at 10, so at most 2 are together.
        assert_eq!(
            busiest_window(&[0, 5, 10, 15], 10),
            Busiest { count: 2, end: 5 }
        );
        assert_eq!(busiest_window(&[0, 5, 9, 15], 10).count, 3);
        assert_eq!(busiest_window(&[3, 3, 3], 1).count, 3);
        assert_eq!(busiest_window(&[], 1).count, 0);
    }

    #[test]
    fn parses_worker_output() {
        let report = parse_worker_output("A 100 1\nA 200 3\nS 10 8\n").unwrap();
        assert_eq!(report.stamps.len(), 2);
        assert_eq!(report.stamps[1].sequence, 3);
        assert_eq!((report.calls, report.denied), (10, 8));
        assert!(parse_worker_output("A 100 1\n").is_err());
        assert!(parse_worker_output("B\nS 1 1\n").is_err());
    }
}
