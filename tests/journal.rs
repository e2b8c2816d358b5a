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
//!
//! Output lines, each one `write` (a killed worker leaves whole lines only):
//! `A <seq> <timestamp> <weight>` (admitted), `D <reason>` (denied), `S <status>` (the
//! journal status when the script ends), `E <error>` (open failed).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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
    let limiter = match Limiter::builder(&rates()).journal(&db, mode).open(&path) {
        Ok(limiter) => limiter,
        Err(e) => return line(format!("E {e}")),
    };
    let acquire =
        |weight: u64, line: &mut dyn FnMut(String)| match limiter.try_acquire_stamped(weight) {
            Ok(Some(stamp)) => line(format!("A {} {} {weight}", stamp.sequence, stamp.timestamp)),
            Ok(None) => line("A - - 0".into()),
            Err(denied) => line(format!("D {denied}")),
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
        let out = self.disk.path().join(format!("{name}.out"));
        let child = support::command(std::env::current_exe().expect("test binary"))
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

    fn sql(&self) -> Connection {
        Connection::open(self.db()).expect("open the journal")
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

/// Unsettled leases' remainders: (weight, requests) each.
fn unsettled(db: &Connection) -> Vec<(u64, u64)> {
    let mut rows = db
        .prepare(
            "SELECT weight - used_weight, requests - used_requests FROM leases WHERE settled = 0",
        )
        .unwrap();
    rows.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
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
    let leases = unsettled(&setup.sql());
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
    let db = setup.sql();
    let mut journaled: Vec<(u32, u64, u64)> = db
        .prepare("SELECT seq, boot_ns, weight FROM admissions ORDER BY seq, boot_ns")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u32,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    journaled.sort_unstable();
    assert_eq!(journaled, admitted, "every admission, each once");
    let twice: i64 = db
        .query_row(
            "SELECT count(*) FROM (SELECT file_id, seq FROM admissions GROUP BY file_id, seq \
             HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(twice, 0);
    // Clean exits settle every lease: a restart is then exact in strict mode too.
    assert!(unsettled(&db).is_empty(), "{:?}", unsettled(&db));
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
    std::thread::sleep(Duration::from_millis(300));
    // Simulate another boot: the rows' clock is not this boot's.
    let changed = setup
        .sql()
        .execute("UPDATE admissions SET clock = '7:another-boot:0'", [])
        .unwrap();
    assert_eq!(changed, 10);
    let usage = restore_with_wall(&setup, &rates, SteppedWall::new(0));
    assert_eq!(usage[0].used, 10);
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    // Converted through the wall clock: as old as it really is, to within clock-read noise.
    assert!(
        next_free.abs_diff(true_left) < Duration::from_millis(100),
        "{next_free:?} vs {true_left:?}"
    );
}

#[test]
fn a_wall_clock_stepped_back_never_makes_restored_entries_expire_early() {
    let setup = Setup::new();
    let rates = [Rate::new(100, TEN_MINUTES)];
    let first = journal_some(&setup, &rates, 10);
    std::thread::sleep(Duration::from_millis(300));
    setup
        .sql()
        .execute("UPDATE admissions SET clock = '7:another-boot:0'", [])
        .unwrap();
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
    std::fs::write(setup.db(), vec![0x5a; 8192]).unwrap();
    let result = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path());
    let error = result.as_ref().err().map(ToString::to_string);
    let reason = journal_error(result);
    assert!(reason.contains("not a SQLite database"), "{reason}");
    assert!(error.unwrap().contains("without a journal"));
    // The documented way on: open without `.journal(...)`.
    Limiter::open(setup.path(), &rates())
        .unwrap()
        .try_acquire(1)
        .unwrap();
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
    setup
        .sql()
        .execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
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
    // A fresh database in rollback mode, held by an exclusive lock: switching it to WAL
    // needs that lock.
    let holder = setup.sql();
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
    let holder = setup.sql();
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
    let rows = |setup: &Setup| -> i64 {
        setup
            .sql()
            .query_row("SELECT count(*) FROM admissions", [], |r| r.get(0))
            .unwrap()
    };
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
    let holder = setup.sql();
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
    let rows: i64 = setup
        .sql()
        .query_row("SELECT count(*) FROM admissions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 7);
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
        let rows: i64 = setup
            .sql()
            .query_row("SELECT count(*) FROM admissions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 120, "round {round}");
    }
}
