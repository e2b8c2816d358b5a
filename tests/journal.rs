//! The SQLite journal: restarts (every process killed with SIGKILL, the shared file deleted as
//! a reboot would), several processes journaling at once, bad journals, other boots and wall
//! clocks that step.
//!
//! Workers are this test binary re-executed with `--exact journal::journal_worker`; their
//! script is in [`SCRIPT_ENV`] (steps separated by `;`):
//!
//! | step | what it does |
//! |------|--------------|
//! | `acquire N W` | `try_acquire_stamped(W)` N times |
//! | `hammer W` | `try_acquire_stamped(W)` with short pauses, until killed |
//! | `flush` | `journal_flush()` |
//! | `sleep MS` | sleep |
//! | `ready NAME` | create the signal file `NAME` next to the output |
//! | `hold` | sleep until killed |
//! | `stoplocked` | take the write lock of the journal file this process writes to, raise `SIGSTOP` on itself, release the lock once continued |
//!
//! The rates are [`rates`] unless [`RATES_ENV`] names others (`10/s,60req/min`).
//!
//! Output lines, each one `write` (a killed worker leaves whole lines only):
//! `A <seq> <timestamp> <weight> <done>` (admitted; `done` is the clock when the call
//! returned), `D <reason>` (denied), `S <status>` (the journal status when the script ends),
//! `E <error>` (open failed).
//!
//! Here the worker, the fixture (`Setup`, `Worker`), the wall clocks (`ManualWall`,
//! `SteppedWall`) and the helpers the tests share; the tests by concern: `restarts`, `clocks`
//! (other boots, wall clocks that step), `errors` (bad journals, failures), `locks` (waiting
//! for the journal's lock) and `databases` (compaction, folding a dead process's database).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hostlimit::{
    Clock, Durability, Error, HostClock, Limiter, ManualClock, Rate, RateUsage, WallClock,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rusqlite::Connection;

use crate::support;

mod clocks;
mod databases;
mod errors;
mod locks;
mod restarts;

const SCRIPT_ENV: &str = "HOSTLIMIT_JOURNAL_SCRIPT";
const PATH_ENV: &str = "HOSTLIMIT_JOURNAL_PATH";
const DB_ENV: &str = "HOSTLIMIT_JOURNAL_DB";
const MODE_ENV: &str = "HOSTLIMIT_JOURNAL_MODE";
const OUT_ENV: &str = "HOSTLIMIT_JOURNAL_OUT";
const RATES_ENV: &str = "HOSTLIMIT_JOURNAL_RATES";

const HOUR: Duration = Duration::from_secs(3600);
const SEC: Duration = Duration::from_secs(1);

/// The rates of the restart tests: 5000 weight and 400 requests per hour.
fn rates() -> [Rate; 2] {
    [Rate::new(5_000, HOUR), Rate::requests(400, HOUR)]
}

/// The entry point of worker processes; does nothing in the test process itself.
#[test]
fn journal_worker() {
    let Some(script) = std::env::var_os(SCRIPT_ENV) else {
        return;
    };
    let script = script.into_string().expect("UTF-8 script");
    let var = |name: &str| PathBuf::from(std::env::var_os(name).expect(name));
    let (path, db, out) = (var(PATH_ENV), var(DB_ENV), var(OUT_ENV));
    let mode = parse_mode(&std::env::var(MODE_ENV).expect(MODE_ENV));
    let mut output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .expect("worker output");
    let mut line = |text: String| {
        output
            .write_all(format!("{text}\n").as_bytes())
            .expect("write a line");
    };
    let rates: Vec<Rate> = match std::env::var(RATES_ENV) {
        Ok(text) => text
            .split(',')
            .map(|r| r.parse().expect("a rate"))
            .collect(),
        Err(_) => rates().to_vec(),
    };
    let limiter = match Limiter::builder(&rates).journal(&db, mode).open(&path) {
        Ok(limiter) => limiter,
        Err(e) => return line(format!("E {e}")),
    };
    let acquire = |weight: u64, line: &mut dyn FnMut(String)| {
        let result = limiter.try_acquire_stamped(weight);
        let done = HostClock.now();
        match result {
            Ok(Some(stamp)) => line(format!(
                "A {} {} {weight} {done}",
                stamp.sequence, stamp.timestamp
            )),
            Ok(None) => line(format!("A - - 0 {done}")),
            Err(denied) => line(format!("D {denied}")),
        }
    };
    for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let words: Vec<&str> = step.split_whitespace().collect();
        let number = |i: usize| words[i].parse::<u64>().expect("a number");
        match words[0] {
            "acquire" => {
                for _ in 0..number(1) {
                    acquire(number(2), &mut line);
                }
            }
            "hammer" => loop {
                acquire(number(1), &mut line);
                std::thread::sleep(Duration::from_millis(2));
            },
            "flush" => {
                if let Err(e) = limiter.journal_flush() {
                    line(format!("D flush: {e}"));
                }
            }
            "sleep" => std::thread::sleep(Duration::from_millis(number(1))),
            "ready" => {
                File::create(out.with_file_name(words[1])).expect("signal file");
            }
            "hold" => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            "stoplocked" => {
                let file = limiter.journal_file().expect("a journal");
                let holder = Connection::open(file).expect("open the journal");
                holder
                    .busy_timeout(Duration::from_secs(30))
                    .expect("busy timeout");
                holder.execute_batch("BEGIN IMMEDIATE").expect("the lock");
                nix::sys::signal::raise(Signal::SIGSTOP).expect("SIGSTOP");
                holder.execute_batch("COMMIT").expect("release the lock");
            }
            other => panic!("unknown step {other}"),
        }
    }
    if let Err(e) = limiter.journal_flush() {
        line(format!("D flush: {e}"));
    }
    line(format!("S {:?}", limiter.journal_status()));
}

fn parse_mode(text: &str) -> Durability {
    let (kind, ms) = text.split_once(':').expect("MODE:MS");
    let length = Duration::from_millis(ms.parse().expect("milliseconds"));
    match kind {
        "strict" => Durability::Strict { lease: length },
        "periodic" => Durability::Periodic(length),
        other => panic!("unknown mode {other}"),
    }
}

/// A limiter file on tmpfs and a journal on disk, in temporary directories.
struct Setup {
    shm: tempfile::TempDir,
    disk: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let shm = if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        Setup {
            shm,
            disk: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn path(&self) -> PathBuf {
        self.shm.path().join("limiter")
    }

    fn db(&self) -> PathBuf {
        self.disk.path().join("journal.sqlite")
    }

    fn spawn(&self, name: &str, mode: &str, script: &str) -> Worker {
        self.spawn_with_rates(name, mode, script, None)
    }

    /// Like [`Setup::spawn`], with other rates than [`rates`] (`10/s,60req/min`).
    fn spawn_with_rates(
        &self,
        name: &str,
        mode: &str,
        script: &str,
        rates: Option<&str>,
    ) -> Worker {
        let out = self.disk.path().join(format!("{name}.out"));
        let mut command = support::command(std::env::current_exe().expect("test binary"));
        if let Some(rates) = rates {
            command.env(RATES_ENV, rates);
        }
        let child = command
            .args([
                "--exact",
                "journal::journal_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SCRIPT_ENV, script)
            .env(PATH_ENV, self.path())
            .env(DB_ENV, self.db())
            .env(MODE_ENV, mode)
            .env(OUT_ENV, &out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a worker");
        Worker { child, out }
    }

    fn signal(&self, name: &str) -> PathBuf {
        self.disk.path().join(name)
    }

    /// Waits until every worker has created its signal file (`names`, in order).
    fn wait_for(&self, workers: &mut [Worker], names: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (worker, name) in workers.iter_mut().zip(names) {
            while !self.signal(name).exists() {
                if let Ok(Some(status)) = worker.child.try_wait() {
                    panic!("worker {name} ended ({status}): {:?}", worker.lines());
                }
                assert!(Instant::now() < deadline, "{name} never came");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// The truth: every rate's use in the shared file as the killed workers left it.
    fn usage_of_the_file(&self) -> Vec<RateUsage> {
        Limiter::attach(self.path())
            .expect("attach")
            .usage()
            .expect("usage")
    }

    /// What a reboot leaves: no shared file.
    fn reboot(&self) {
        std::fs::remove_file(self.path()).expect("remove the shared file");
    }

    /// Opens the limiter with the journal, restoring from it.
    fn reopen(&self) -> Limiter {
        Limiter::builder(&rates())
            .journal(self.db(), Durability::Periodic(HOUR))
            .open(self.path())
            .expect("reopen with the journal")
    }

    /// Every database of the journal directory, opened.
    fn databases(&self) -> Vec<Connection> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.db())
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        paths.retain(|p| p.extension().is_some_and(|e| e == "sqlite"));
        paths.sort();
        paths
            .iter()
            .map(|p| Connection::open(p).expect("open a journal database"))
            .collect()
    }

    /// Runs `sql` on every database of the journal; the rows it changed, in all.
    fn execute_everywhere(&self, sql: &str) -> usize {
        self.databases()
            .iter()
            .map(|db| db.execute(sql, []).unwrap())
            .sum()
    }

    /// Every admission journaled, in any database, each once: (file_id, seq, boot_ns, weight).
    fn journaled(&self) -> BTreeSet<(String, u32, u64, u64)> {
        let mut rows = BTreeSet::new();
        for db in self.databases() {
            let mut query = db
                .prepare("SELECT file_id, seq, boot_ns, weight FROM admissions")
                .unwrap();
            let found = query
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as u32,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, i64>(3)? as u64,
                    ))
                })
                .unwrap();
            rows.extend(found.map(Result::unwrap));
        }
        rows
    }

    /// Unsettled leases' remainders, each lease once (wherever it was copied): (weight,
    /// requests) each.
    fn unsettled(&self) -> Vec<(u64, u64)> {
        let mut leases = BTreeMap::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.db())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sqlite"))
            .collect();
        paths.sort();
        for path in paths {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let db = Connection::open(&path).unwrap();
            let mut query = db
                .prepare(
                    "SELECT CASE WHEN origin = '' THEN ?1 ELSE origin END, \
                     CASE WHEN origin = '' THEN id ELSE origin_id END, \
                     weight - used_weight, requests - used_requests FROM leases \
                     WHERE settled = 0",
                )
                .unwrap();
            let found = query
                .query_map([&stem], |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, i64>(1)?),
                        (r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64),
                    ))
                })
                .unwrap();
            leases.extend(found.map(Result::unwrap));
        }
        leases.into_values().collect()
    }
}

struct Worker {
    child: Child,
    out: PathBuf,
}

impl Worker {
    fn kill(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn wait(&mut self) {
        let status = self.child.wait().expect("wait for a worker");
        assert!(status.success(), "worker failed: {status}");
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (sequence, timestamp, weight) of every admission it reported.
    fn admissions(&self) -> Vec<(u32, u64, u64)> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("A "))
            .map(|rest| {
                let f: Vec<&str> = rest.split(' ').collect();
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect()
    }

    /// When each call that was admitted returned (clock ns), in order.
    fn done_times(&self) -> Vec<u64> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("A "))
            .map(|rest| rest.split(' ').nth(3).unwrap().parse().unwrap())
            .collect()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Is it stopped (by SIGSTOP)? Reads `/proc/PID/stat`.
    fn is_stopped(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'T' || state == 't')
    }

    fn assert_no_denial(&self) {
        let bad: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| l.starts_with('D') || l.starts_with('E'))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// A wall clock that moves only when told to.
#[derive(Debug)]
struct ManualWall {
    now: AtomicU64,
}

impl ManualWall {
    fn new(start: u64) -> Arc<ManualWall> {
        Arc::new(ManualWall {
            now: AtomicU64::new(start),
        })
    }

    fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl WallClock for ManualWall {
    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// Counts how many more acquires of `weight` are admitted, until the first denial.
fn count_admissions(limiter: &Limiter, weight: u64) -> u64 {
    let mut admitted = 0;
    while limiter.try_acquire(weight).is_ok() {
        admitted += 1;
        assert!(admitted < 100_000);
    }
    admitted
}

/// A wall clock `offset_ns` away from the system's.
#[derive(Debug)]
struct SteppedWall {
    offset_ns: AtomicI64,
}

impl SteppedWall {
    fn new(offset: i64) -> Arc<SteppedWall> {
        Arc::new(SteppedWall {
            offset_ns: AtomicI64::new(offset),
        })
    }
}

impl WallClock for SteppedWall {
    fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        (real + self.offset_ns.load(Ordering::Relaxed)) as u64
    }
}

/// Admits `count` of weight 1 at ten-minute rates with the journal, returns when the first
/// was recorded, and closes the limiter (which journals them).
fn journal_some(setup: &Setup, rates: &[Rate], count: u64) -> u64 {
    let limiter = Limiter::builder(rates)
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path())
        .unwrap();
    let first = limiter.try_acquire_stamped(1).unwrap().unwrap().timestamp;
    for _ in 1..count {
        limiter.try_acquire(1).unwrap();
    }
    first
}
