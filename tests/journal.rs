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

const SCRIPT_ENV: &str = "HOSTLIMIT_JOURNAL_SCRIPT";
const PATH_ENV: &str = "HOSTLIMIT_JOURNAL_PATH";
const DB_ENV: &str = "HOSTLIMIT_JOURNAL_DB";
const MODE_ENV: &str = "HOSTLIMIT_JOURNAL_MODE";
const OUT_ENV: &str = "HOSTLIMIT_JOURNAL_OUT";
const RATES_ENV: &str = "HOSTLIMIT_JOURNAL_RATES";

const HOUR: Duration = Duration::from_secs(3600);

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

#[test]
fn strict_restart_after_sigkill_restores_exactly_what_was_admitted_plus_held_leases() {
    let setup = Setup::new();
    let names: Vec<String> = (0..4).map(|i| format!("ready{i}")).collect();
    let mut workers: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn(
                name,
                "strict:60000",
                &format!("acquire 50 3; flush; ready {name}; hold"),
            )
        })
        .collect();
    setup.wait_for(&mut workers, &names);
    for worker in &mut workers {
        worker.kill();
    }
    for worker in &workers {
        worker.assert_no_denial();
        assert_eq!(worker.admissions().len(), 50);
    }
    let before = setup.usage_of_the_file();
    assert_eq!((before[0].used, before[1].used), (600, 200));
    setup.reboot();
    // Each worker still held its current lease when it was killed: counted whole (less what
    // the journal holds for it), as if used up.
    let leases = setup.unsettled();
    assert_eq!(
        leases.len(),
        4,
        "one held lease per killed worker: {leases:?}"
    );
    let lease_weight: u64 = leases.iter().map(|l| l.0).sum();
    let lease_records: u64 = leases.iter().map(|l| l.1.max(u64::from(l.0 > 0))).sum();
    assert!(lease_weight <= 4 * (5_000 / 64) && lease_records <= 4 * (400 / 64 + 1));
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "strict: admitted before: weight {} requests {}; held leases: weight {lease_weight} \
         requests {lease_records}; restored: weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    assert_eq!(after[0].used, 600 + lease_weight);
    assert_eq!(after[1].used, 200 + lease_records);
    let more = count_admissions(&limiter, 3);
    assert_eq!(more, ((5_000 - after[0].used) / 3).min(400 - after[1].used));
}

#[test]
fn strict_restart_after_sigkill_in_the_middle_forgets_nothing() {
    let setup = Setup::new();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| setup.spawn(&format!("w{i}"), "strict:200", "hammer 7"))
        .collect();
    // Let them take and settle a few leases, then kill them wherever they are.
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers.iter().map(|w| w.admissions().len()).sum::<usize>() < 150 {
        assert!(Instant::now() < deadline, "the workers do not admit");
        std::thread::sleep(Duration::from_millis(5));
    }
    for worker in &mut workers {
        worker.kill();
    }
    let before = setup.usage_of_the_file();
    setup.reboot();
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "strict, killed mid-flight: admitted weight {} requests {}; restored weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    // Nothing admitted is forgotten; more is counted only for the lease each worker held
    // (a lease is settled in the transaction that takes the next one): at most 78 weight
    // (5000 / 64) and 6 requests (400 / 64), or 1 record for weight left without requests.
    for (rate, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a.used >= b.used,
            "rate {rate}: {} admitted, {} restored",
            b.used,
            a.used
        );
        let lease = if rate == 0 { 78 } else { 6 };
        assert!(a.used <= b.used + 3 * lease, "rate {rate}: {b:?} {a:?}");
    }
}

#[test]
fn periodic_restart_after_sigkill_forgets_at_most_the_last_interval() {
    let setup = Setup::new();
    let names: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
    let mut workers: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn(
                name,
                "periodic:100",
                &format!("acquire 40 3; sleep 600; acquire 10 3; ready {name}; hold"),
            )
        })
        .collect();
    setup.wait_for(&mut workers, &names);
    for worker in &mut workers {
        worker.kill();
    }
    let before = setup.usage_of_the_file();
    assert_eq!((before[0].used, before[1].used), (450, 150));
    setup.reboot();
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "periodic: admitted weight {} requests {}; restored weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    // The first 40 per worker were admitted 600 ms (six intervals) before the kill.
    assert!(after[1].used >= 120 && after[1].used <= 150, "{after:?}");
    assert_eq!(after[0].used, 3 * after[1].used);
    assert_eq!(
        count_admissions(&limiter, 3),
        ((5_000 - after[0].used) / 3).min(400 - after[1].used)
    );
}

#[test]
fn concurrent_journaling_writes_every_admission_exactly_once() {
    let setup = Setup::new();
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| {
            let mode = if i % 2 == 0 {
                "periodic:5"
            } else {
                "strict:50"
            };
            setup.spawn(
                &format!("c{i}"),
                mode,
                &format!("acquire 40 {}; sleep 20; acquire 40 1", i + 1),
            )
        })
        .collect();
    for worker in &mut workers {
        worker.wait();
        worker.assert_no_denial();
        assert_eq!(
            worker.lines().last().map(String::as_str),
            Some("S Ok(())"),
            "the journal never failed"
        );
    }
    let mut admitted: Vec<(u32, u64, u64)> = workers.iter().flat_map(|w| w.admissions()).collect();
    admitted.sort_unstable();
    assert_eq!(admitted.len(), 320);
    // Every admission, each once: a row two processes both wrote (each in its own database)
    // is the same row, and no admission has two.
    let journaled = setup.journaled();
    let mut rows: Vec<(u32, u64, u64)> = journaled.iter().map(|r| (r.1, r.2, r.3)).collect();
    rows.sort_unstable();
    assert_eq!(rows, admitted, "every admission, each once");
    let files: BTreeSet<&String> = journaled.iter().map(|r| &r.0).collect();
    assert_eq!(files.len(), 1, "one shared file");
    // Clean exits settle every lease: a restart is then exact in strict mode too.
    assert!(setup.unsettled().is_empty(), "{:?}", setup.unsettled());
    let before = setup.usage_of_the_file();
    setup.reboot();
    let after = setup.reopen().usage().unwrap();
    assert_eq!(
        after.iter().map(|u| u.used).collect::<Vec<_>>(),
        before.iter().map(|u| u.used).collect::<Vec<_>>()
    );
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

fn restore_with_wall(setup: &Setup, rates: &[Rate], wall: Arc<dyn WallClock>) -> Vec<RateUsage> {
    setup.reboot();
    Limiter::builder(rates)
        .journal(setup.db(), Durability::Periodic(HOUR))
        .journal_wall_clock(wall)
        .open(setup.path())
        .unwrap()
        .usage()
        .unwrap()
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

#[test]
fn another_boot_restores_through_the_wall_clock() {
    let setup = Setup::new();
    let rates = [Rate::new(100, TEN_MINUTES)];
    let first = journal_some(&setup, &rates, 10);
    // Long enough that rows taken as new (2 s younger than they are) fail the check below even
    // with a second of scheduling noise on a loaded machine.
    std::thread::sleep(Duration::from_secs(2));
    // Simulate another boot: the rows' clock is not this boot's.
    let changed = setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    assert_eq!(changed, 10);
    let usage = restore_with_wall(&setup, &rates, SteppedWall::new(0));
    assert_eq!(usage[0].used, 10);
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    // Converted through the wall clock: as old as it really is, to within clock-read noise.
    assert!(
        next_free.abs_diff(true_left) < Duration::from_secs(1),
        "{next_free:?} vs {true_left:?}"
    );
}

#[test]
fn a_wall_clock_stepped_back_never_makes_restored_entries_expire_early() {
    let setup = Setup::new();
    let rates = [Rate::new(100, TEN_MINUTES)];
    let first = journal_some(&setup, &rates, 10);
    std::thread::sleep(Duration::from_millis(300));
    setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    // The wall clock went back an hour between the two boots.
    let back = SteppedWall::new(-3_600_000_000_000);
    let usage = restore_with_wall(&setup, &rates, back.clone());
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    assert_eq!(usage[0].used, 10);
    assert!(next_free >= true_left, "{next_free:?} < {true_left:?}");
    // Restored as of now: they expire a whole window from now.
    assert!(
        next_free > TEN_MINUTES - Duration::from_secs(5),
        "{next_free:?}"
    );
    // In the same boot the wall clock plays no part: exact, whatever it says.
    let setup = Setup::new();
    let first = journal_some(&setup, &rates, 10);
    let usage = restore_with_wall(&setup, &rates, back);
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    assert!(
        next_free >= true_left && next_free - true_left < Duration::from_millis(100),
        "{next_free:?} vs {true_left:?}"
    );
}

fn journal_error(result: Result<Limiter, Error>) -> String {
    match result {
        Err(Error::Journal { reason, .. }) => reason,
        Err(other) => panic!("expected Error::Journal, got {other}"),
        Ok(_) => panic!("expected Error::Journal, got a limiter"),
    }
}

#[test]
fn a_garbage_journal_is_an_error_and_the_limiter_opens_without_it() {
    let setup = Setup::new();
    // A journal is a directory: a file where it should be is refused, in those words.
    std::fs::write(setup.db(), b"not a directory").unwrap();
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.path()),
    );
    assert!(reason.contains("not a journal directory"), "{reason}");
    std::fs::remove_file(setup.db()).unwrap();
    // A garbage database in the directory: restores would have to read it.
    std::fs::create_dir(setup.db()).unwrap();
    std::fs::write(setup.db().join("1-garbage.sqlite"), vec![0x5a; 8192]).unwrap();
    let result = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path());
    let error = result.as_ref().err().map(ToString::to_string);
    let reason = journal_error(result);
    assert!(
        reason.contains("1-garbage.sqlite: not a SQLite database"),
        "{reason}"
    );
    assert!(error.unwrap().contains("journal::forget"));
    // Never recorded (the open failed before it could record it): the limiter opens
    // without `.journal(...)`.
    Limiter::open(setup.path(), &rates())
        .unwrap()
        .try_acquire(1)
        .unwrap();
    assert_eq!(hostlimit::journal::recorded(setup.path()).unwrap(), None);
}

#[test]
fn a_recorded_journal_that_broke_is_given_up_only_by_forgetting_it() {
    let setup = Setup::new();
    journal_some(&setup, &rates(), 3);
    let record = hostlimit::journal::recorded(setup.path())
        .unwrap()
        .expect("the journal is recorded");
    assert_eq!(record.journal, std::path::absolute(setup.db()).unwrap());
    assert!(Limiter::attach(setup.path()).unwrap().info().journaled);
    std::fs::remove_file(setup.path()).unwrap();
    std::fs::write(setup.db().join("1-garbage.sqlite"), vec![0x5a; 8192]).unwrap();
    // Recorded: an open without `.journal(...)` uses the journal, and fails with it.
    let reason = journal_error(Limiter::open(setup.path(), &rates()));
    assert!(reason.contains("not a SQLite database"), "{reason}");
    assert!(!setup.path().exists(), "nothing was created empty");
    // Forgotten: journal and record are deleted, and the limiter starts empty.
    assert_eq!(
        hostlimit::journal::forget(setup.path()).unwrap(),
        Some(record)
    );
    assert!(!setup.db().exists());
    let fresh = Limiter::open(setup.path(), &rates()).unwrap();
    assert_eq!(fresh.usage().unwrap()[0].used, 0);
    assert!(!fresh.info().journaled);
}

#[test]
fn a_journal_of_another_schema_version_or_other_rates_is_an_error() {
    let setup = Setup::new();
    journal_some(&setup, &rates(), 1);
    let reason = journal_error(
        Limiter::builder(&[Rate::new(7, HOUR)])
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.shm.path().join("other")),
    );
    assert!(
        reason.contains("[400req/h, 5000/h]") && reason.contains("[7/h]"),
        "{reason}"
    );
    setup.execute_everywhere("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.path()),
    );
    assert!(reason.contains("schema version 99"), "{reason}");
}

#[test]
fn a_journal_locked_for_too_long_is_an_error() {
    let setup = Setup::new();
    // A database of the directory in rollback mode, held by an exclusive lock: reading it
    // needs that lock.
    std::fs::create_dir(setup.db()).unwrap();
    let holder = Connection::open(setup.db().join("1-locked.sqlite")).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; CREATE TABLE t (x);")
        .unwrap();
    let started = Instant::now();
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .journal_busy_timeout(Duration::from_millis(200))
            .open(setup.path()),
    );
    assert!(reason.contains("locked"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_strict_lease_that_cannot_be_written_is_an_unavailable_denial() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Strict { lease: HOUR })
        .journal_busy_timeout(Duration::from_millis(100))
        .open(setup.path())
        .unwrap();
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let denied = limiter.try_acquire(1).unwrap_err();
    assert!(
        matches!(denied.kind(), hostlimit::DenialKind::Unavailable { reason } if reason.contains("lease")),
        "{denied:?}"
    );
    assert!(limiter.journal_status().unwrap_err().contains("locked"));
    // Nothing was admitted.
    assert_eq!(limiter.usage().unwrap()[1].used, 0);
    holder.execute_batch("COMMIT").unwrap();
    limiter.try_acquire(1).unwrap();
    assert_eq!(limiter.journal_status(), Ok(()));
}

#[test]
fn compaction_deletes_what_left_the_longest_window() {
    let setup = Setup::new();
    let clock = Arc::new(ManualClock::new(1_000_000_000_000));
    let wall = SteppedWall::new(0);
    let rates = [Rate::new(100, Duration::from_secs(10))];
    let limiter = Limiter::builder(&rates)
        .clock(clock.clone())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(5)))
        .journal_wall_clock(wall.clone())
        .open(setup.path())
        .unwrap();
    for _ in 0..5 {
        limiter.try_acquire(1).unwrap();
    }
    limiter.journal_flush().unwrap();
    let rows = |setup: &Setup| setup.journaled().len();
    assert_eq!(rows(&setup), 5);
    // The window (10 s) and the margin (60 s) pass on both clocks.
    let step = Duration::from_secs(71);
    clock.advance(step);
    wall.offset_ns
        .store(step.as_nanos() as i64, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&setup) != 0 {
        assert!(Instant::now() < deadline, "never compacted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(limiter.journal_status(), Ok(()));
}

#[test]
fn a_file_deleted_under_a_live_limiter_is_recreated_from_the_journal() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .check_interval(Duration::from_millis(10))
        .open(setup.path())
        .unwrap();
    for _ in 0..20 {
        limiter.try_acquire(5).unwrap();
    }
    // Nothing journaled yet (the interval is an hour): the re-attach journals the old file's
    // records, then restores them into the new one.
    setup.reboot();
    std::thread::sleep(Duration::from_millis(20));
    limiter.try_acquire(5).unwrap();
    assert!(setup.path().exists());
    let usage = limiter.usage().unwrap();
    assert_eq!((usage[0].used, usage[1].used), (105, 21));
    // And another process sees the restored file.
    assert_eq!(setup.usage_of_the_file()[1].used, 21);
}

#[test]
fn a_failed_background_flush_is_reported_and_retried() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(10)))
        .journal_busy_timeout(Duration::from_millis(20))
        .open(setup.path())
        .unwrap();
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    for _ in 0..7 {
        limiter.try_acquire(1).unwrap();
    }
    let wait = |done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait(&|| limiter.journal_status().is_err());
    let reason = limiter.journal_status().unwrap_err();
    assert!(reason.contains("locked"), "{reason}");
    assert!(limiter.journal_flush().is_err());
    holder.execute_batch("COMMIT").unwrap();
    // The next round writes what the failed ones could not.
    wait(&|| limiter.journal_status().is_ok());
    assert_eq!(setup.journaled().len(), 7);
}

#[test]
fn many_processes_opening_a_new_journal_at_once_all_succeed() {
    for round in 0..10 {
        let setup = Setup::new();
        let mut workers: Vec<Worker> = (0..6)
            .map(|i| {
                let mode = if i % 2 == 0 {
                    "periodic:5"
                } else {
                    "strict:50"
                };
                setup.spawn(&format!("o{i}"), mode, "acquire 20 1")
            })
            .collect();
        for worker in &mut workers {
            worker.wait();
            worker.assert_no_denial();
        }
        assert_eq!(setup.journaled().len(), 120, "round {round}");
    }
}

const SEC: Duration = Duration::from_secs(1);

/// Issue 9, item 2: rows of another boot older than the uptime were all restored at one
/// instant, a history denser than the rates allow, which overflowed the ring: with 10/s and
/// 1,000,000 per 1000 s (16,384 slots) and 10,000 admissions of a previous boot, every call
/// was "unavailable" after 6,384 new admissions while both rates had room.
#[test]
fn a_previous_boot_restores_without_overflowing_the_ring_or_forgetting_anything() {
    let setup = Setup::new();
    let long = Duration::from_secs(1_000);
    let rates = [Rate::new(10, SEC), Rate::new(1_000_000, long)];
    let tick = Duration::from_millis(100);
    // The previous boot: 10,000 admissions at 10/s, journaled.
    let wall = ManualWall::new(1_700_000_000 * 1_000_000_000);
    let open = |clock: &Arc<ManualClock>| {
        Limiter::builder(&rates)
            .clock(clock.clone())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .journal_wall_clock(wall.clone())
            .open(setup.path())
            .unwrap()
    };
    {
        let clock = Arc::new(ManualClock::new(5_000 * 1_000_000_000));
        let limiter = open(&clock);
        for _ in 0..10_000 {
            limiter.try_acquire(1).unwrap();
            clock.advance(tick);
            wall.advance(tick);
        }
        limiter.journal_flush().unwrap();
    }
    let changed = setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    assert_eq!(changed, 10_000);
    setup.reboot();
    // The machine was down for 30 s; the service starts 60 s after boot.
    wall.advance(Duration::from_secs(90));
    let clock = Arc::new(ManualClock::new(60 * 1_000_000_000));
    let limiter = open(&clock);
    // The admissions of the last 1000 s (the last one 90 s ago, one every 100 ms): 9,099;
    // those older than the uptime count as if admitted at the boot, so up to all 10,000.
    let inside = 9_099;
    let used = limiter.usage().unwrap()[1].used;
    assert!(
        (inside..=10_000).contains(&used),
        "restored {used}, at least {inside} must count"
    );
    // 10/s from now on: every call fits both rates, for longer than the ring's slack.
    for call in 0..8_000 {
        clock.advance(tick);
        if let Err(denied) = limiter.try_acquire(1) {
            panic!("call {call} denied: {denied}");
        }
    }
    // Still nothing forgotten: the restored weight is in the long window until it expires.
    assert!(limiter.usage().unwrap()[1].used >= inside + 8_000 - 10);
}

/// Takes the write lock of the journal database `limiter` writes to, and releases it after
/// `length` from another thread, which returns the clock reading just before the release.
fn hold_the_journal_lock(limiter: &Limiter, length: Duration) -> std::thread::JoinHandle<u64> {
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(length);
        let at = HostClock.now();
        holder.execute_batch("COMMIT").unwrap();
        at
    })
}

/// Issue 9, item 4: strict mode stamped an admission with a clock reading taken before its
/// wait for the journal; with the journal locked for 1.5 s, a 1/s limit admitted two calls
/// 3.8 ms apart.
#[test]
fn strict_mode_reads_the_clock_after_waiting_for_the_journal() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&[Rate::new(1, SEC)])
        .journal(setup.db(), Durability::Strict { lease: HOUR })
        .journal_busy_timeout(Duration::from_secs(20))
        .open(setup.path())
        .unwrap();
    let release = hold_the_journal_lock(&limiter, Duration::from_millis(1_500));
    let first = limiter.try_acquire_stamped(1).unwrap().unwrap();
    let released = release.join().unwrap();
    assert!(
        first.timestamp >= released,
        "stamped {:?} before the journal was free",
        Duration::from_nanos(released - first.timestamp)
    );
    // A second call right away is refused, and told to wait what is left of the second.
    let denied = limiter.try_acquire(1).unwrap_err();
    let left =
        Duration::from_nanos((first.timestamp + 1_000_000_000).saturating_sub(HostClock.now()));
    let retry = denied.retry_after().expect("a retry time");
    assert!(
        retry <= SEC && retry + Duration::from_millis(50) >= left,
        "{retry:?} vs {left:?}"
    );
}

/// Issue 9, item 4, on the re-attach path: a limiter that finds its file deleted journals the
/// old file's records before restoring them into a new one; when that waits for the journal,
/// the acquire is decided at the moment after the wait, not at the stale reading before it.
#[test]
fn a_reattach_that_waits_for_the_journal_decides_after_the_wait() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&[Rate::new(1, SEC)])
        .journal(setup.db(), Durability::Periodic(HOUR))
        .journal_busy_timeout(Duration::from_secs(20))
        .check_interval(Duration::from_millis(10))
        .open(setup.path())
        .unwrap();
    let first = limiter.try_acquire_stamped(1).unwrap().unwrap();
    setup.reboot();
    let release = hold_the_journal_lock(&limiter, Duration::from_millis(1_500));
    std::thread::sleep(Duration::from_millis(20));
    // The first admission is restored into the new file, and has left the 1 s window by the
    // time the journal is free.
    let second = limiter.try_acquire_stamped(1);
    let released = release.join().unwrap();
    let second = second.unwrap().unwrap();
    assert!(second.timestamp >= released && second.timestamp >= first.timestamp + 1_000_000_000);
    assert_eq!(limiter.usage().unwrap()[0].used, 1);
    assert!(limiter.try_acquire(1).is_err());
}

/// Issue 9, item 5: a strict-mode process stopped while it holds its journal's write lock
/// must not hold up anybody else's admissions.
#[test]
fn a_strict_process_stopped_holding_its_journal_lock_blocks_nobody() {
    let setup = Setup::new();
    let rates = Some("1000000req/h,1000000000/h");
    // Leases of 20 ms: the others need a new lease every 20 ms while the victim is stopped.
    let mut victim = setup.spawn_with_rates(
        "victim",
        "strict:20",
        "acquire 5 1; ready victim-ready; stoplocked; hold",
        rates,
    );
    let names: Vec<String> = (0..3).map(|i| format!("other{i}")).collect();
    let mut others: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn_with_rates(name, "strict:20", &format!("ready {name}; hammer 1"), rates)
        })
        .collect();
    setup.wait_for(std::slice::from_mut(&mut victim), &["victim-ready".into()]);
    setup.wait_for(&mut others, &names);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !victim.is_stopped() {
        assert!(Instant::now() < deadline, "the victim never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped = HostClock.now();
    std::thread::sleep(Duration::from_millis(1_500));
    let resumed = HostClock.now();
    kill(victim.pid(), Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for other in &mut others {
        other.kill();
    }
    for (name, other) in names.iter().zip(&others) {
        other.assert_no_denial();
        let during: Vec<u64> = other
            .done_times()
            .into_iter()
            .filter(|&t| t >= stopped && t <= resumed)
            .collect();
        let mut longest = during.first().map_or(resumed - stopped, |t| t - stopped);
        for pair in during.windows(2) {
            longest = longest.max(pair[1] - pair[0]);
        }
        println!(
            "{name}: {} admissions during the 1.5 s stop, longest wait {:?}",
            during.len(),
            Duration::from_nanos(longest)
        );
        // Every 20 ms a lease, each an fsync of its own database: on a loaded machine some
        // take a while, never the whole stop (on one shared journal: all of it, and nothing
        // admitted).
        assert!(during.len() >= 20, "{name}: {} admissions", during.len());
        assert!(
            longest < 1_000_000_000,
            "{name} waited {:?} while the victim was stopped",
            Duration::from_nanos(longest)
        );
    }
}

/// The files of a journal database: the database, its `-wal` and its `-shm`.
fn database_files(database: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|p| p.exists())
        .collect()
}

/// A process that died leaves its database; a live process's compaction folds it into its
/// own and deletes it, and a lease copied twice (a crash between the copy and the delete)
/// still counts once.
#[test]
fn a_dead_processs_database_is_folded_into_a_live_one_and_counted_once() {
    let setup = Setup::new();
    let mut dead = setup.spawn(
        "dead",
        "strict:3600000",
        "acquire 10 3; flush; ready dead; hold",
    );
    setup.wait_for(std::slice::from_mut(&mut dead), &["dead".into()]);
    dead.kill();
    let database = std::fs::read_dir(setup.db())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .expect("the dead process's database");
    let backup = setup.disk.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    for file in database_files(&database) {
        std::fs::copy(&file, backup.join(file.file_name().unwrap())).unwrap();
    }
    let leases = setup.unsettled();
    let admissions = setup.journaled();
    assert_eq!((leases.len(), admissions.len()), (1, 10));
    // A live process compacts at its first round, at once: the dead database is folded in.
    let live = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(5)))
        .open(setup.path())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while database.exists() {
        assert!(Instant::now() < deadline, "never folded");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(live.journal_status(), Ok(()));
    assert_eq!(setup.databases().len(), 1);
    assert_eq!(
        (setup.unsettled(), setup.journaled()),
        (leases.clone(), admissions.clone())
    );
    drop(live);
    // As if the fold had crashed before deleting it: both databases hold the lease.
    for file in std::fs::read_dir(&backup).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, setup.db().join(file.file_name().unwrap())).unwrap();
    }
    assert_eq!(setup.databases().len(), 2);
    assert_eq!(
        (setup.unsettled(), setup.journaled()),
        (leases.clone(), admissions)
    );
    // A restore counts the lease once: 30 weight and 10 requests admitted, plus the lease.
    setup.reboot();
    let usage = setup.reopen().usage().unwrap();
    let (weight, requests) = leases[0];
    assert_eq!(
        (usage[0].used, usage[1].used),
        (30 + weight, 10 + requests.max(u64::from(weight > 0)))
    );
}

#[test]
fn an_open_that_fails_records_no_journal() {
    let setup = Setup::new();
    let plain = Limiter::open(setup.path(), &rates()).unwrap();
    // Other rates than the file's: the open fails, and the limiter is not journaled.
    let other = Limiter::builder(&[Rate::new(7, HOUR)])
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path());
    assert!(
        matches!(other, Err(Error::ConfigMismatch { .. })),
        "{other:?}"
    );
    assert_eq!(hostlimit::journal::recorded(setup.path()).unwrap(), None);
    // With its own rates, it is recorded, with the file's rates.
    let journaled = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path())
        .unwrap();
    let record = hostlimit::journal::recorded(setup.path()).unwrap().unwrap();
    assert_eq!(record.rates, plain.rates());
    assert_eq!(record.durability, Durability::Periodic(HOUR));
    // The file was made without a journal; the record says it is journaled now.
    assert!(!journaled.info().journaled);
}
