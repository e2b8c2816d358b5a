//! A worker: this binary re-executed with `worker` as its first argument; it hammers one
//! limiter (or a baseline) from a common start instant, and prints its `Stats`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hostlimit::{Clock, HostClock, Limiter};
use nix::sys::signal::{Signal, raise};

use crate::baselines::LockedLog;
use crate::stats::Stats;
use crate::{Design, JOURNAL_ENV, SLICE_NS, rates};

pub(crate) fn now() -> u64 {
    HostClock.now()
}

pub(crate) fn sleep_until(at: u64) {
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
pub(crate) fn worker(args: &[String]) {
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
