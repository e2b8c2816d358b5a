//! The SQLite journal: quotas that survive a reboot, kept off the hot path.
//!
//! The shared file lives on a tmpfs and is gone after a reboot; a limiter opened with
//! [`Builder::journal`](crate::Builder::journal) also writes its admissions to a SQLite
//! database on disk. When a limiter has to *create* the shared file (after a reboot, or after
//! the file was deleted), it first reads the journal and starts the new file's ring with the
//! admissions that are still inside the longest window, so what was left before the restart
//! is what is left after it: nothing more, plus only what expired meanwhile.
//!
//! # Durability modes
//!
//! * [`Durability::Periodic`]: a background thread writes, once per interval, every record
//!   committed to the shared ring since the last write (by any process, journaled or not).
//!   `try_acquire` never waits for SQLite. A crash of every process forgets at most the
//!   admissions of the last interval (plus the duration of one write).
//! * [`Durability::Strict`]: nothing admitted by a strict-mode process is ever forgotten.
//!   Before admitting anything a process *leases* capacity: it commits (`synchronous=FULL`)
//!   "weight X and N requests, until T" to the journal, then admits out of the lease without
//!   touching SQLite until the lease is used up or expires (T = now + the lease length). The
//!   transaction that takes the next lease also journals the ring's new records, writes how
//!   much of the old lease they account for, and settles it; the background thread does the
//!   same for the current lease once per lease length, and dropping the limiter settles
//!   every lease. After a crash, a lease that was not settled counts as used up, less what
//!   the journal holds for it, at T (or at the restore, if earlier): never less than was
//!   really admitted under it, and never earlier. The price of a crash is therefore the
//!   unused part of the lease each crashed process held (plus, with several threads, leases
//!   that still had reservations in flight when the next one was taken): at most
//!   `max(weight, limit / 64)` of the smallest weight limit and `max(1, limit / 64)` requests
//!   of the smallest request limit per lease.
//!
//! What is journaled are the shared ring's records, so admissions by processes that opened
//! the limiter without a journal are journaled too, by the next flush of any journaling
//! process (once per interval); strict mode's guarantee covers the strict processes' own
//! admissions.
//!
//! # The database (schema version [`SCHEMA_VERSION`])
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)      -- schema_version, rates
//! admissions(file_id TEXT, seq INTEGER, clock TEXT, boot_ns INTEGER, wall_ns INTEGER,
//!            weight INTEGER, PRIMARY KEY(file_id, seq, boot_ns))
//! leases(id INTEGER PRIMARY KEY AUTOINCREMENT, clock TEXT, until_boot_ns INTEGER,
//!        until_wall_ns INTEGER, weight INTEGER, requests INTEGER, used_weight INTEGER,
//!        used_requests INTEGER, settled INTEGER, pid INTEGER)
//! ```
//!
//! * `file_id` names the shared file's incarnation (`created_wall_ns-creator_pid-created_clock_ns`
//!   from its header), `seq` the record's sequence number in it; with `boot_ns` (the recorded
//!   timestamp) they identify an admission, so rows are written with `INSERT OR IGNORE` and
//!   no admission is ever journaled twice, however many processes write it.
//! * `clock` is the clock `boot_ns` comes from: clock id, boot id and time namespace, as
//!   `7:BOOT-ID:NAMESPACE` for `CLOCK_BOOTTIME`. `wall_ns` is the same instant on the wall
//!   clock (ns since the Unix epoch), for restoring in another boot.
//! * A journal belongs to one set of rates (`meta.rates`); opening it with others is an
//!   [`Error::Journal`] naming both.
//!
//! # Many processes, one journal
//!
//! The database is in WAL mode: readers never wait. Every write is one `BEGIN IMMEDIATE`
//! transaction, so SQLite's own write lock makes exactly one writer at a time; a busy timeout
//! (default 5 s) bounds the wait, after which the write fails with a clear error. In
//! periodic mode only the background thread writes, so `try_acquire` never waits for the
//! lock. A word of the shared file (`journaled`, see `layout.rs`) holds the newest record
//! known to be in the journal, so that of several processes only one writes each record; a
//! race only makes two of them write the same rows, which `INSERT OR IGNORE` drops. Every
//! process of a limiter that journals must use the same journal file (they share that word).
//!
//! # Restoring
//!
//! When the shared file must be created, the journal's admissions and the remainders of its
//! unsettled leases are converted to the file's clock: rows of the same clock (same boot,
//! same time namespace) keep their timestamp exactly; rows of another boot get
//! `now - max(0, wall_now - wall_ns)`, at least 1. A wall clock that stepped backwards only
//! makes them younger (they expire later); one that stepped *forwards* between the two
//! boots makes them older, which no program can tell from a real gap. Records outside the
//! longest window are dropped; the rest start the ring in timestamp order. Should more
//! records remain than the ring can hold (`capacity - 2`, possible only when many crashed
//! processes left lease remainders), the newest are kept. A restore happens only when the
//! file is created: a process that opens the limiter *without* the journal after a reboot
//! creates an empty file, and the journal's history is then not applied. Open every
//! process with the journal.
//!
//! [`reset`](crate::reset) and [`remove`](crate::remove) do not touch journals: a journal
//! restores its history at the next creation. Delete the journal file too to forget it.
//!
//! # Compaction
//!
//! The background thread deletes, once a minute, admissions and leases that have left the
//! longest window (plus a minute), and settled leases.
//!
//! # Failures
//!
//! A journal that cannot be opened (not a database, corrupt, another schema version, other
//! rates, locked for longer than the busy timeout, not writable) is an [`Error::Journal`]
//! when the limiter is opened; nothing falls back silently. A write that fails later is kept:
//! [`Limiter::journal_status`](crate::Limiter::journal_status) reports it until a write
//! succeeds again, and in strict mode a lease that cannot be written makes `try_acquire`
//! return a [`DenialKind::Unavailable`](crate::DenialKind::Unavailable) denial.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use crate::clock::{Clock, ClockIdentity, Nanos};
use crate::error::Error;
use crate::layout::Header;
use crate::limiter::Stamp;
use crate::protocol::{self, NoHook, Record, Rule};
use crate::rate::Rate;
use crate::region::Region;
use crate::sync::{Ordering, StdAtomicU64};

/// The journal schema this library reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The busy timeout unless [`Builder::journal_busy_timeout`](crate::Builder::journal_busy_timeout)
/// says otherwise.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows older than the longest window by more than this are deleted.
const COMPACTION_MARGIN: u64 = 60_000_000_000;

/// How often the background thread compacts, at most.
const COMPACTION_EVERY: u64 = 60_000_000_000;

/// A lease reserves this fraction (1/LEASE_DIVISOR) of the smallest limit.
const LEASE_DIVISOR: u64 = 64;

/// How admissions reach the journal; see the [module docs](self) for the guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Nothing this process admits is ever forgotten by a crash: capacity is leased from the
    /// journal (a synchronous SQLite commit) before it is handed out, for at most `lease`;
    /// `try_acquire` waits for SQLite only when it needs a new lease. After a crash, an
    /// unsettled lease counts as used up, at its end. The background thread runs every
    /// `lease`.
    Strict {
        /// How long a lease may be used (and how far in the future its end lies).
        lease: Duration,
    },
    /// A background thread journals every record of the shared ring once per interval;
    /// `try_acquire` never waits for SQLite. A crash forgets at most the last interval.
    Periodic(Duration),
}

impl Durability {
    /// How often the background thread runs.
    fn interval(self) -> Duration {
        match self {
            Durability::Strict { lease } => lease,
            Durability::Periodic(interval) => interval,
        }
    }
}

/// The wall clock the journal converts timestamps with, injectable for tests.
pub trait WallClock: Send + Sync + fmt::Debug {
    /// Now, in nanoseconds since the Unix epoch. May step either way (NTP, an administrator).
    fn now(&self) -> u64;
}

/// The system's wall clock (`CLOCK_REALTIME`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// What `Builder::journal` and its companions collected.
#[derive(Debug, Clone)]
pub(crate) struct JournalConfig {
    /// The journal file and its mode; `None`: no journal.
    pub target: Option<(PathBuf, Durability)>,
    pub wall: Arc<dyn WallClock>,
    pub busy_timeout: Duration,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            target: None,
            wall: Arc::new(SystemWallClock),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// Where the background thread finds the shared file the limiter is attached to now.
pub(crate) trait Source: Send + Sync {
    /// The region currently attached, held (not freed by a re-attach) while the guard lives.
    fn region(&self) -> crate::region::Pinned<'_, Region>;
}

/// The identity of one incarnation of a shared file, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileKey {
    created_wall_ns: u64,
    creator_pid: u64,
    created_clock_ns: u64,
}

impl FileKey {
    pub fn of(header: &Header) -> FileKey {
        FileKey {
            created_wall_ns: header.created_wall_ns,
            creator_pid: header.creator_pid,
            created_clock_ns: header.created_clock_ns,
        }
    }

    fn text(self) -> String {
        format!(
            "{}-{}-{}",
            self.created_wall_ns, self.creator_pid, self.created_clock_ns
        )
    }
}

/// The text a journal records for a clock: `clock id:boot id:time namespace`.
fn clock_text(identity: &ClockIdentity) -> String {
    format!(
        "{}:{}:{}",
        identity.clock_id,
        identity.boot_id_text(),
        identity.time_namespace
    )
}

/// The text a journal records for a set of rates: the same rates in any order are the same.
fn rates_text(rules: &[Rule]) -> String {
    let mut sorted = rules.to_vec();
    sorted.sort_by_key(|r| (r.window, r.limit, r.requests));
    sorted
        .iter()
        .map(|r| Rate::from_rule(r).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The wall-clock instant of file-clock instant `ts`, given one reading of both clocks.
fn wall_at(ts: Nanos, now: Nanos, now_wall: u64) -> u64 {
    if ts >= now {
        now_wall.saturating_add(ts - now)
    } else {
        now_wall.saturating_sub(now - ts)
    }
}

/// A journaled instant in this file's clock: exact for the same clock, else through the
/// wall clock; never later than `now`, never earlier than 1, and never earlier than the wall
/// clock says (a wall clock that stepped back makes it later, never earlier).
fn to_file_clock(
    row_clock: &str,
    boot_ns: u64,
    wall_ns: u64,
    current_clock: &str,
    now: Nanos,
    now_wall: u64,
) -> Nanos {
    let ts = if row_clock == current_clock {
        boot_ns
    } else {
        now.saturating_sub(now_wall.saturating_sub(wall_ns))
    };
    ts.clamp(1, now.max(1))
}

/// One thing to restore: `records` ring records at `ts` carrying `weight` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restored {
    pub ts: Nanos,
    pub weight: u64,
    pub records: u64,
}

/// The ring history that restores `entries` for `rules` at `now`: records `1..=m`, oldest
/// first, inside the longest window, at most `capacity - 2` of them (the newest).
///
/// The total weight is capped at the largest weight limit, keeping the newest weight: a
/// window that holds a reduced record holds every newer one, whose weight already fills it,
/// so the cap changes no decision and keeps every window total below 2^32.
pub(crate) fn build_history(
    entries: &[Restored],
    rules: &[Rule],
    capacity: u64,
    now: Nanos,
) -> Vec<Record> {
    let longest = rules.iter().map(|r| r.window).max().unwrap_or(0);
    let threshold = now.saturating_sub(longest);
    let counts_requests = rules.iter().any(|r| r.requests);
    let max_weight = rules
        .iter()
        .filter(|r| !r.requests)
        .map(|r| r.limit)
        .max()
        .unwrap_or(0);
    let keep = capacity.saturating_sub(2) as usize;
    let mut records: Vec<(Nanos, u64)> = Vec::new();
    for entry in entries.iter().filter(|e| e.ts > threshold) {
        // More records than the ring holds are never needed.
        let count = entry.records.min(keep as u64 + 1);
        for index in 0..count {
            records.push((entry.ts, if index == 0 { entry.weight } else { 0 }));
        }
    }
    records.sort_by_key(|&(ts, _)| ts);
    let mut budget = max_weight;
    for (_, weight) in records.iter_mut().rev() {
        *weight = (*weight).min(budget);
        budget -= *weight;
    }
    if !counts_requests {
        // Without a rate that counts requests, a record of weight 0 counts nothing.
        records.retain(|&(_, weight)| weight > 0);
    }
    if records.len() > keep {
        records.drain(..records.len() - keep);
    }
    let mut cum = 0u32;
    records
        .iter()
        .enumerate()
        .map(|(index, &(ts, weight))| {
            cum = cum.wrapping_add(weight as u32);
            Record {
                ts,
                seq: index as u32 + 1,
                cum,
            }
        })
        .collect()
}

/// A lease as this process keeps it.
#[derive(Debug)]
struct Lease {
    id: i64,
    /// End of the lease, file clock.
    until: Nanos,
    left_weight: u64,
    left_requests: u64,
    /// What admissions under the lease used so far.
    used_weight: u64,
    used_requests: u64,
    /// Reservations handed out and not yet committed or returned.
    in_flight: u32,
    /// The file its admissions went to.
    file: FileTag,
}

/// Which file a lease's admissions were committed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileTag {
    None,
    One(FileKey),
    /// Several (the file was replaced meanwhile): the lease is never settled, only compacted.
    Mixed,
}

#[derive(Debug, Default)]
struct Leases {
    current: Option<Lease>,
    /// Leases no longer handed out, settled once nothing is in flight and the journal holds
    /// their admissions.
    retired: Vec<Lease>,
}

impl Leases {
    fn find(&mut self, id: i64) -> Option<&mut Lease> {
        self.current
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|lease| lease.id == id)
    }
}

/// A reservation out of a lease, for one acquire.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Ticket {
    lease: i64,
    until: Nanos,
    weight: u64,
    requests: u64,
}

/// A lease to commit.
struct NewLease {
    until: Nanos,
    until_wall: u64,
    weight: u64,
    requests: u64,
}

/// A lease's state to write in one flush.
struct LeaseUpdate {
    id: i64,
    used_weight: u64,
    used_requests: u64,
    settle: bool,
}

/// An open journal: the connection, the leases (strict mode) and the last failure.
pub(crate) struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
    durability: Durability,
    wall: Arc<dyn WallClock>,
    clock: Arc<dyn Clock>,
    clock_text: String,
    rules: Vec<Rule>,
    longest: u64,
    busy_timeout: Duration,
    leases: Mutex<Leases>,
    /// The last flush (or compaction) failure, until a flush succeeds again.
    flush_status: Mutex<Option<String>>,
    /// The last lease failure, until a lease is written again.
    lease_status: Mutex<Option<String>>,
    next_compaction: StdAtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Journal {
    /// Opens (creating if needed) the journal for `rules`, and checks it: a SQLite database,
    /// in WAL mode, with our schema version and these rates, passing `PRAGMA quick_check`.
    pub fn open(
        path: &Path,
        durability: Durability,
        config: &JournalConfig,
        rules: &[Rule],
        clock: Arc<dyn Clock>,
        identity: &ClockIdentity,
    ) -> Result<Journal, Error> {
        let journal_error = |reason: String| Error::Journal {
            path: path.to_path_buf(),
            reason,
        };
        if durability.interval() < Duration::from_millis(1) {
            return Err(journal_error(
                "the lease or flush interval must be at least 1 ms".into(),
            ));
        }
        let failed = |step: &'static str| {
            move |e: rusqlite::Error| {
                journal_error(format!("{step}: {}", describe(&e, config.busy_timeout)))
            }
        };
        let mut conn = Connection::open(path).map_err(failed("open"))?;
        conn.busy_timeout(config.busy_timeout)
            .map_err(failed("open"))?;
        // Switching a new database to WAL needs an exclusive lock; of several processes doing
        // it at once, SQLite answers some "busy" at once, without waiting (it would be a
        // deadlock): those try again, until the busy timeout.
        let deadline = Instant::now() + config.busy_timeout;
        let mode: String = retry_busy(deadline, || {
            conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        })
        .map_err(failed("switch to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(journal_error(format!(
                "cannot use WAL mode on this file system (journal mode stays {mode:?})"
            )));
        }
        // FULL in both modes: a commit survives a power cut, so "at most the last interval"
        // holds across a reboot too. Periodic mode commits once per interval.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(failed("set synchronous=FULL"))?;
        let ours = rates_text(rules);
        retry_busy(deadline, || ensure_schema(&mut conn, &ours))
            .map_err(failed("read or create the schema"))?
            .map_err(journal_error)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(failed("check the database"))?;
        if check != "ok" {
            return Err(journal_error(format!("corrupt database: {check}")));
        }
        Ok(Journal {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            durability,
            wall: config.wall.clone(),
            clock,
            clock_text: clock_text(identity),
            rules: rules.to_vec(),
            longest: rules.iter().map(|r| r.window).max().unwrap_or(0),
            busy_timeout: config.busy_timeout,
            leases: Mutex::new(Leases::default()),
            flush_status: Mutex::new(None),
            lease_status: Mutex::new(None),
            next_compaction: StdAtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn error(&self, e: &rusqlite::Error) -> Error {
        Error::Journal {
            path: self.path.clone(),
            reason: describe(e, self.busy_timeout),
        }
    }

    /// True in strict mode: `try_acquire` goes through [`Journal::reserve`].
    pub fn is_strict(&self) -> bool {
        matches!(self.durability, Durability::Strict { .. })
    }

    /// The ring history a file created now starts with: every journaled admission and every
    /// unsettled lease remainder still inside the longest window, in this file's clock.
    pub fn restore(&self, capacity: u64) -> Result<Vec<Record>, Error> {
        let conn = lock(&self.conn);
        let now = self.clock.now();
        let now_wall = self.wall.now();
        let counts_requests = self.rules.iter().any(|r| r.requests);
        let mut entries = Vec::new();
        let read = |conn: &Connection, entries: &mut Vec<Restored>| -> rusqlite::Result<()> {
            let mut rows =
                conn.prepare("SELECT clock, boot_ns, wall_ns, weight FROM admissions")?;
            let admissions = rows.query_map([], |row| {
                Ok(Restored {
                    ts: to_file_clock(
                        &row.get::<_, String>(0)?,
                        unsql(row.get(1)?),
                        unsql(row.get(2)?),
                        &self.clock_text,
                        now,
                        now_wall,
                    ),
                    weight: unsql(row.get(3)?),
                    records: 1,
                })
            })?;
            for entry in admissions {
                entries.push(entry?);
            }
            let mut rows = conn.prepare(
                "SELECT clock, until_boot_ns, until_wall_ns, weight - used_weight, \
                 requests - used_requests FROM leases WHERE settled = 0",
            )?;
            let leases = rows.query_map([], |row| {
                let weight = unsql(row.get(3)?);
                let requests = unsql(row.get(4)?);
                Ok(Restored {
                    ts: to_file_clock(
                        &row.get::<_, String>(0)?,
                        unsql(row.get(1)?),
                        unsql(row.get(2)?),
                        &self.clock_text,
                        now,
                        now_wall,
                    ),
                    weight,
                    // Requests need one record each; left-over weight needs a record too.
                    records: if counts_requests {
                        requests.max(u64::from(weight > 0))
                    } else {
                        u64::from(weight > 0)
                    },
                })
            })?;
            for entry in leases {
                let entry = entry?;
                if entry.records > 0 {
                    entries.push(entry);
                }
            }
            Ok(())
        };
        read(&conn, &mut entries).map_err(|e| self.error(&e))?;
        Ok(build_history(&entries, &self.rules, capacity, now))
    }

    /// Writes every record of `region`'s ring not yet journaled, and the leases' use, in one
    /// transaction; settles the leases that are done. `finishing` (shutdown) retires the
    /// current lease first, so that everything can be settled.
    pub fn flush(&self, region: &Region, finishing: bool) -> Result<(), Error> {
        let key = FileKey::of(region.header());
        let updates = {
            let mut leases = lock(&self.leases);
            if finishing && let Some(current) = leases.current.take() {
                leases.retired.push(current);
            }
            lease_updates(&mut leases, key)
        };
        let result = self.write(region, &updates, None).map(|_| ());
        if result.is_ok() {
            forget_settled(&mut lock(&self.leases), &updates);
        }
        *lock(&self.flush_status) = result.as_ref().err().map(ToString::to_string);
        result
    }

    /// One transaction: the records of `region`'s ring not yet journaled, the leases' use
    /// (and settlement), and `lease` if given; returns the new lease's id.
    ///
    /// The caller takes `updates` before calling, so every admission counted in them was
    /// committed before the ring is read here: this very transaction journals it.
    fn write(
        &self,
        region: &Region,
        updates: &[LeaseUpdate],
        lease: Option<&NewLease>,
    ) -> Result<Option<i64>, Error> {
        // Relaxed: the journal (SQLite), not this word, holds the data; a stale value only
        // makes this write rows again, which INSERT OR IGNORE drops.
        let after = region.journaled().load(Ordering::Relaxed) as u32;
        let mut rows: Vec<(u32, Nanos, u32)> = Vec::new();
        let Ok(since) =
            protocol::records_since(&region.words(), after, &NoHook, |record, weight| {
                rows.push((record.seq, record.ts, weight));
            });
        let since = since.map_err(|reason| Error::corrupt(region.path(), reason))?;
        let mut id = None;
        if !rows.is_empty() || !updates.is_empty() || lease.is_some() {
            let now = self.clock.now();
            let now_wall = self.wall.now();
            let file_id = FileKey::of(region.header()).text();
            let mut conn = lock(&self.conn);
            let write = |conn: &mut Connection| -> rusqlite::Result<Option<i64>> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO admissions \
                         (file_id, seq, clock, boot_ns, wall_ns, weight) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for &(seq, ts, weight) in &rows {
                        insert.execute(params![
                            file_id,
                            seq,
                            self.clock_text,
                            sql(ts),
                            sql(wall_at(ts, now, now_wall)),
                            weight,
                        ])?;
                    }
                    let mut used = tx.prepare_cached(
                        "UPDATE leases SET used_weight = ?2, used_requests = ?3, \
                         settled = max(settled, ?4) WHERE id = ?1",
                    )?;
                    for update in updates {
                        used.execute(params![
                            update.id,
                            sql(update.used_weight),
                            sql(update.used_requests),
                            update.settle,
                        ])?;
                    }
                }
                let id = match lease {
                    Some(lease) => {
                        tx.execute(
                            "INSERT INTO leases (clock, until_boot_ns, until_wall_ns, weight, \
                             requests, used_weight, used_requests, settled, pid) \
                             VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, 0, ?6)",
                            params![
                                self.clock_text,
                                sql(lease.until),
                                sql(lease.until_wall),
                                sql(lease.weight),
                                sql(lease.requests),
                                std::process::id(),
                            ],
                        )?;
                        Some(tx.last_insert_rowid())
                    }
                    None => None,
                };
                tx.commit()?;
                Ok(id)
            };
            id = write(&mut conn).map_err(|e| self.error(&e))?;
        }
        advance(region.journaled(), since.head);
        Ok(id)
    }

    /// Deletes what has left the longest window (plus a margin), and settled leases; at most
    /// once per [`COMPACTION_EVERY`].
    fn compact(&self) -> Result<(), Error> {
        let now = self.clock.now();
        // Relaxed: only the background thread compacts; this is a timer.
        if now < self.next_compaction.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.next_compaction
            .store(now.saturating_add(COMPACTION_EVERY), Ordering::Relaxed);
        let age = self.longest.saturating_add(COMPACTION_MARGIN);
        let boot_cut = sql(now.saturating_sub(age));
        let wall_cut = sql(self.wall.now().saturating_sub(age));
        let mut conn = lock(&self.conn);
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM admissions WHERE (clock = ?1 AND boot_ns <= ?2) \
                 OR (clock <> ?1 AND wall_ns <= ?3)",
                params![self.clock_text, boot_cut, wall_cut],
            )?;
            tx.execute(
                "DELETE FROM leases WHERE settled = 1 OR (clock = ?1 AND until_boot_ns <= ?2) \
                 OR (clock <> ?1 AND until_wall_ns <= ?3)",
                params![self.clock_text, boot_cut, wall_cut],
            )?;
            tx.commit()
        };
        write(&mut conn).map_err(|e| self.error(&e))
    }

    /// The last flush failure if no flush succeeded since, else the last lease failure if no
    /// lease was written since.
    pub fn status(&self) -> Result<(), String> {
        let flush = lock(&self.flush_status).clone();
        match flush.or_else(|| lock(&self.lease_status).clone()) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Does an acquire of `weight` need a lease? Not if it charges nothing, nor if it can
    /// never fit (the protocol refuses it without a record).
    pub fn needs_lease(&self, weight: u64) -> bool {
        let units = |rule: &Rule| if rule.requests { 1 } else { weight };
        self.rules.iter().any(|rule| units(rule) > 0)
            && self.rules.iter().all(|rule| units(rule) <= rule.limit)
    }

    /// Reserves `weight` (and one request) for an acquire at `now` on `region`, taking a new
    /// lease if the current one cannot cover it. The new lease is committed to the journal
    /// before any of it is handed out (this call then waits for SQLite), in one transaction
    /// with the ring's records not yet journaled and the settlement of the old lease, so that
    /// a crash never finds more than the current lease unsettled.
    pub fn reserve(&self, region: &Region, now: Nanos, weight: u64) -> Result<Ticket, String> {
        let weight_limit = self
            .rules
            .iter()
            .filter(|r| !r.requests)
            .map(|r| r.limit)
            .min();
        let request_limit = self
            .rules
            .iter()
            .filter(|r| r.requests)
            .map(|r| r.limit)
            .min();
        let need_weight = if weight_limit.is_some() { weight } else { 0 };
        let need_requests = u64::from(request_limit.is_some());
        let mut leases = lock(&self.leases);
        let covers = |lease: &Lease| {
            now < lease.until
                && lease.left_weight >= need_weight
                && lease.left_requests >= need_requests
        };
        if !leases.current.as_ref().is_some_and(covers) {
            let length = u64::try_from(self.durability.interval().as_nanos()).unwrap_or(u64::MAX);
            let until = now.saturating_add(length);
            let lease = NewLease {
                until,
                until_wall: wall_at(until, now, self.wall.now()),
                weight: weight_limit.map_or(0, |limit| {
                    (limit / LEASE_DIVISOR).max(need_weight).clamp(1, limit)
                }),
                requests: request_limit.map_or(0, |limit| (limit / LEASE_DIVISOR).max(1)),
            };
            if let Some(old) = leases.current.take() {
                leases.retired.push(old);
            }
            let updates = lease_updates(&mut leases, FileKey::of(region.header()));
            let written = self.write(region, &updates, Some(&lease));
            *lock(&self.lease_status) = written.as_ref().err().map(ToString::to_string);
            let id = match written {
                Ok(Some(id)) => id,
                Ok(None) => unreachable!("a transaction with a lease returns its id"),
                Err(e) => return Err(e.to_string()),
            };
            forget_settled(&mut leases, &updates);
            leases.current = Some(Lease {
                id,
                until,
                left_weight: lease.weight,
                left_requests: lease.requests,
                used_weight: 0,
                used_requests: 0,
                in_flight: 0,
                file: FileTag::None,
            });
        }
        let Some(lease) = leases.current.as_mut() else {
            unreachable!("a lease was just taken");
        };
        lease.left_weight -= need_weight;
        lease.left_requests -= need_requests;
        lease.in_flight += 1;
        Ok(Ticket {
            lease: lease.id,
            until: lease.until,
            weight: need_weight,
            requests: need_requests,
        })
    }

    /// Ends a reservation: `admitted` says where and how the acquire was recorded, `None`
    /// gives the reservation back. Returns true if the admission was recorded after the
    /// lease's end: the caller must then journal it before reporting it.
    pub fn finish(&self, ticket: Ticket, admitted: Option<(FileKey, Stamp)>) -> bool {
        let mut leases = lock(&self.leases);
        let Some(lease) = leases.find(ticket.lease) else {
            return admitted.is_some_and(|(_, stamp)| stamp.timestamp > ticket.until);
        };
        lease.in_flight = lease.in_flight.saturating_sub(1);
        match admitted {
            Some((key, stamp)) => {
                lease.used_weight += ticket.weight;
                lease.used_requests += ticket.requests;
                lease.file = match lease.file {
                    FileTag::None => FileTag::One(key),
                    FileTag::One(file) if file == key => FileTag::One(key),
                    _ => FileTag::Mixed,
                };
                stamp.timestamp > ticket.until
            }
            None => {
                lease.left_weight += ticket.weight;
                lease.left_requests += ticket.requests;
                false
            }
        }
    }

    /// Asks the background thread to stop (after a last flush).
    fn request_stop(&self) {
        *lock(&self.stop) = true;
        self.wake.notify_all();
    }

    /// Waits one interval or until asked to stop; true if asked to stop.
    fn wait(&self) -> bool {
        let stop = lock(&self.stop);
        let (stop, _) = self
            .wake
            .wait_timeout_while(stop, self.durability.interval(), |stop| !*stop)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stop
    }
}

/// What the next write records about the leases whose admissions all went to `key`: their
/// use, and settlement for those retired with nothing in flight.
fn lease_updates(leases: &mut Leases, key: FileKey) -> Vec<LeaseUpdate> {
    let ours = |lease: &Lease| lease.file == FileTag::None || lease.file == FileTag::One(key);
    // A finished lease whose admissions went (also) to another file cannot be vouched for by
    // this file's ring: it stays unsettled in the journal (counted whole after a crash, the
    // safe side) until compaction, and is forgotten here.
    leases
        .retired
        .retain(|lease| lease.in_flight > 0 || ours(lease));
    let current = leases.current.iter().map(|lease| (lease, false));
    let retired = leases.retired.iter().map(|lease| (lease, true));
    current
        .chain(retired)
        .filter(|(lease, _)| ours(lease))
        .map(|(lease, retired)| LeaseUpdate {
            id: lease.id,
            used_weight: lease.used_weight,
            used_requests: lease.used_requests,
            settle: retired && lease.in_flight == 0,
        })
        .collect()
}

/// Forgets the leases a successful write settled.
fn forget_settled(leases: &mut Leases, updates: &[LeaseUpdate]) {
    leases
        .retired
        .retain(|lease| !updates.iter().any(|u| u.settle && u.id == lease.id));
}

/// Raises the journaled word to `head` (sequence numbers compare modulo 2^32).
fn advance(word: &crate::sync::AtomicU64, head: u32) {
    // Relaxed: see `flush_inner`; the word is only a shortcut.
    let mut current = word.load(Ordering::Relaxed);
    while (head.wrapping_sub(current as u32) as i32) > 0 {
        match word.compare_exchange_weak(
            current,
            u64::from(head),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Runs `op` again while SQLite answers "busy" without having waited, until `deadline`.
fn retry_busy<T>(
    deadline: Instant,
    mut op: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    loop {
        match op() {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            result => return result,
        }
    }
}

/// Creates the schema in an empty database, or checks the one there: version and rates.
/// The outer error is SQLite's, the inner one says what is wrong with the journal.
fn ensure_schema(conn: &mut Connection, ours: &str) -> rusqlite::Result<Result<(), String>> {
    let tables = |conn: &Connection| -> rusqlite::Result<(i64, i64)> {
        conn.query_row(
            "SELECT count(*), coalesce(sum(name = 'meta'), 0) FROM sqlite_master \
             WHERE type = 'table'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
    };
    let (count, meta) = tables(conn)?;
    if meta == 0 {
        if count > 0 {
            return Ok(Err(
                "not a hostlimit journal (a SQLite database with other tables)".into(),
            ));
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have created it meanwhile.
        let (count, meta) = tables(&tx)?;
        if meta == 0 && count == 0 {
            tx.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE admissions (
                     file_id TEXT NOT NULL,
                     seq INTEGER NOT NULL,
                     clock TEXT NOT NULL,
                     boot_ns INTEGER NOT NULL,
                     wall_ns INTEGER NOT NULL,
                     weight INTEGER NOT NULL,
                     PRIMARY KEY (file_id, seq, boot_ns)
                 ) WITHOUT ROWID;
                 CREATE INDEX admissions_by_wall ON admissions (wall_ns);
                 CREATE TABLE leases (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     clock TEXT NOT NULL,
                     until_boot_ns INTEGER NOT NULL,
                     until_wall_ns INTEGER NOT NULL,
                     weight INTEGER NOT NULL,
                     requests INTEGER NOT NULL,
                     used_weight INTEGER NOT NULL,
                     used_requests INTEGER NOT NULL,
                     settled INTEGER NOT NULL,
                     pid INTEGER NOT NULL
                 );",
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('rates', ?2)",
                params![SCHEMA_VERSION.to_string(), ours],
            )?;
        } else if meta == 0 {
            return Ok(Err(
                "not a hostlimit journal (a SQLite database with other tables)".into(),
            ));
        }
        tx.commit()?;
    }
    let value = |key: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
    };
    let version = value("schema_version")?;
    if version.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
        return Ok(Err(format!(
            "schema version {}, this library reads version {SCHEMA_VERSION}",
            version.as_deref().unwrap_or("(none)")
        )));
    }
    let theirs = value("rates")?.unwrap_or_default();
    if theirs != ours {
        return Ok(Err(format!(
            "the journal was made for rates [{theirs}] but [{ours}] were asked for; use another \
             journal file for these rates"
        )));
    }
    Ok(Ok(()))
}

/// A SQLite failure in words a user can act on.
fn describe(e: &rusqlite::Error, busy: Duration) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("locked by another connection (waited up to the busy timeout, {busy:?})")
        }
        Some(ErrorCode::NotADatabase) => format!("not a SQLite database ({e})"),
        Some(ErrorCode::DatabaseCorrupt) => format!("corrupt database ({e})"),
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure,
        ) => format!("cannot write the journal ({e})"),
        _ => e.to_string(),
    }
}

/// A running journal: the background thread, stopped (after a last flush that settles every
/// lease it can) when the limiter is dropped.
pub(crate) struct Handle {
    journal: Arc<Journal>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.journal.fmt(f)
    }
}

impl Handle {
    /// Starts the background thread over whatever `source` is attached to.
    pub fn start(journal: Arc<Journal>, source: Arc<dyn Source>) -> Result<Handle, Error> {
        let background = journal.clone();
        let thread = std::thread::Builder::new()
            .name("hostlimit-journal".into())
            .spawn(move || {
                loop {
                    let stopping = background.wait();
                    let region = source.region();
                    // A failure is kept in the status; the next round tries again.
                    if background.flush(&region, stopping).is_ok() && !stopping {
                        let compacted = background.compact();
                        if let Err(e) = compacted {
                            *lock(&background.flush_status) = Some(e.to_string());
                        }
                    }
                    if stopping {
                        return;
                    }
                }
            })
            .map_err(|e| Error::io(&journal.path, "start the journal thread", e))?;
        Ok(Handle {
            journal,
            thread: Some(thread),
        })
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.journal.request_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Hints, Outcome, Words};
    use crate::sync::{AtomicPair, AtomicU64};

    const SEC: u64 = 1_000_000_000;

    fn rule(limit: u64, window: u64, requests: bool) -> Rule {
        Rule {
            limit,
            window,
            requests,
        }
    }

    #[test]
    fn same_clock_is_exact_other_clock_goes_through_the_wall_clock() {
        let now = 1_000 * SEC;
        let wall = 50_000 * SEC;
        // Same clock: the timestamp itself.
        assert_eq!(to_file_clock("a", 900 * SEC, 0, "a", now, wall), 900 * SEC);
        // Never in the future (a lease's end).
        assert_eq!(to_file_clock("a", 2_000 * SEC, 0, "a", now, wall), now);
        // Another boot: as old as the wall clock says.
        assert_eq!(
            to_file_clock("b", 5, wall - 30 * SEC, "a", now, wall),
            now - 30 * SEC
        );
        // Older than this boot: clamped to 1 (younger than it was: expires later).
        assert_eq!(to_file_clock("b", 5, wall - 5_000 * SEC, "a", now, wall), 1);
        // A wall clock that stepped back: the row looks younger, never older.
        let stepped_back = wall - 3_600 * SEC;
        assert_eq!(
            to_file_clock("b", 5, wall - 30 * SEC, "a", now, stepped_back),
            now
        );
        for back in [0, 1, 10 * SEC, 3_600 * SEC] {
            assert!(
                to_file_clock("b", 5, wall - 30 * SEC, "a", now, wall - back) >= now - 30 * SEC
            );
        }
    }

    #[test]
    fn wall_at_goes_both_ways() {
        assert_eq!(wall_at(90, 100, 1_000), 990);
        assert_eq!(wall_at(110, 100, 1_000), 1_010);
        assert_eq!(wall_at(0, 100, 50), 0);
    }

    #[test]
    fn history_keeps_the_window_in_order_with_cumulative_weights() {
        let rules = [rule(100, 10 * SEC, false)];
        let now = 100 * SEC;
        let entries = [
            Restored {
                ts: 95 * SEC,
                weight: 3,
                records: 1,
            },
            Restored {
                ts: 80 * SEC, // outside the window
                weight: 50,
                records: 1,
            },
            Restored {
                ts: 91 * SEC,
                weight: 2,
                records: 1,
            },
            Restored {
                ts: 90 * SEC, // exactly at the edge: outside
                weight: 7,
                records: 1,
            },
        ];
        let history = build_history(&entries, &rules, 16, now);
        assert_eq!(
            history,
            vec![
                Record {
                    ts: 91 * SEC,
                    seq: 1,
                    cum: 2
                },
                Record {
                    ts: 95 * SEC,
                    seq: 2,
                    cum: 5
                },
            ]
        );
    }

    #[test]
    fn lease_remainders_become_one_record_per_request() {
        let rules = [rule(10, 10 * SEC, true), rule(1_000, 10 * SEC, false)];
        let entries = [Restored {
            ts: 5 * SEC,
            weight: 40,
            records: 3,
        }];
        let history = build_history(&entries, &rules, 16, 6 * SEC);
        assert_eq!(history.len(), 3);
        assert_eq!(history[2].cum, 40);
        assert!(history.iter().all(|r| r.ts == 5 * SEC));
        // Without a request rate, a weight-0 record counts nothing and is dropped.
        let weights = [rule(1_000, 10 * SEC, false)];
        assert_eq!(build_history(&entries, &weights, 16, 6 * SEC).len(), 1);
    }

    #[test]
    fn history_keeps_the_newest_that_fit_and_caps_weight() {
        let rules = [rule(100, 10 * SEC, false)];
        let entries: Vec<Restored> = (1..=20)
            .map(|i| Restored {
                ts: i * 100,
                weight: 30,
                records: 1,
            })
            .collect();
        let history = build_history(&entries, &rules, 16, SEC);
        // The weight is capped at the limit, newest first: four records (30+30+30+10).
        assert_eq!(history.len(), 4);
        assert_eq!(history[0].ts, 1_700);
        assert_eq!(history[3].cum, 100);
        let requests = [rule(100, 10 * SEC, true)];
        let history = build_history(&entries, &requests, 16, SEC);
        assert_eq!(history.len(), 14);
        assert_eq!(history[0].ts, 700);
    }

    /// A heap ring that starts as a restored file would.
    struct Heap {
        hint: AtomicU64,
        laps: AtomicU64,
        ring: Vec<AtomicPair>,
    }

    impl Heap {
        fn new(capacity: u32, history: &[Record]) -> Heap {
            Heap {
                hint: AtomicU64::new(history.len() as u64),
                laps: AtomicU64::new(0),
                ring: (0..capacity)
                    .map(|i| {
                        let record = match (i as usize).checked_sub(1).and_then(|k| history.get(k))
                        {
                            Some(r) => *r,
                            None => Record::initial(i, capacity),
                        };
                        AtomicPair::new(record.pack())
                    })
                    .collect(),
            }
        }

        fn words(&self) -> Words<'_> {
            Words::new(&self.hint, &self.laps, &self.ring).unwrap()
        }

        fn since(&self, after: u32) -> (Vec<(u32, u64, u32)>, u32) {
            let mut seen = Vec::new();
            let Ok(result) = protocol::records_since(&self.words(), after, &NoHook, |r, w| {
                seen.push((r.seq, r.ts, w));
            });
            (seen, result.unwrap().head)
        }
    }

    #[test]
    fn a_restored_ring_counts_its_history_and_takes_new_records_after_it() {
        let rules = [rule(10, 10 * SEC, false)];
        let entries = [
            Restored {
                ts: 2 * SEC,
                weight: 4,
                records: 1,
            },
            Restored {
                ts: 3 * SEC,
                weight: 5,
                records: 1,
            },
        ];
        let history = build_history(&entries, &rules, 16, 4 * SEC);
        let heap = Heap::new(16, &history);
        let mut hints = Hints::default();
        let acquire = |now, weight, hints: &mut Hints| {
            let Ok(outcome) = protocol::acquire(&heap.words(), &rules, now, weight, hints, &NoHook);
            outcome
        };
        assert!(matches!(acquire(4 * SEC, 1, &mut hints), Outcome::Admitted(r) if r.seq == 3));
        // 4 + 5 + 1 = 10: full until the first restored record leaves, at 12 s.
        assert_eq!(
            acquire(5 * SEC, 1, &mut hints),
            Outcome::Denied {
                rate: 0,
                retry_at: 12 * SEC
            }
        );
        assert!(matches!(
            acquire(12 * SEC, 4, &mut hints),
            Outcome::Admitted(_)
        ));
        // The restored records are not read again; the new ones are, with their weights.
        let (seen, head) = heap.since(2);
        assert_eq!(seen, vec![(3, 4 * SEC, 1), (4, 12 * SEC, 4)]);
        assert_eq!(head, 4);
        assert_eq!(heap.since(4).0, vec![]);
    }

    #[test]
    fn records_since_skips_what_the_ring_no_longer_holds() {
        let rules = [rule(1_000, SEC, false)];
        let heap = Heap::new(8, &[]);
        let mut hints = Hints::default();
        for i in 1..=20u64 {
            let Ok(outcome) =
                protocol::acquire(&heap.words(), &rules, i * SEC, i, &mut hints, &NoHook);
            assert!(matches!(outcome, Outcome::Admitted(_)));
        }
        // Head 20; the ring holds 13..=20, so 14..=20 can be given with their weights.
        let (seen, head) = heap.since(0);
        assert_eq!(head, 20);
        assert_eq!(
            seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
            (14..=20).map(|i| (i, i)).collect::<Vec<_>>()
        );
        assert_eq!(heap.since(18).0.len(), 2);
        assert_eq!(heap.since(20).0.len(), 0);
    }

    #[test]
    fn records_since_stops_at_a_tombstone() {
        let rules = [rule(1_000, SEC, false)];
        let heap = Heap::new(8, &[]);
        let mut hints = Hints::default();
        let Ok(_) = protocol::acquire(&heap.words(), &rules, SEC, 2, &mut hints, &NoHook);
        let Ok(retired) = protocol::retire(&heap.words(), &NoHook);
        assert_eq!(retired, Ok(true));
        let Ok(result) = protocol::records_since(&heap.words(), 0, &NoHook, |_, _| {});
        let since = result.unwrap();
        assert!(since.retired);
        assert_eq!(heap.since(0).0, vec![(1, SEC, 2)]);
    }

    #[test]
    fn rates_text_ignores_order() {
        let a = [rule(10, SEC, false), rule(60, 60 * SEC, true)];
        let b = [rule(60, 60 * SEC, true), rule(10, SEC, false)];
        assert_eq!(rates_text(&a), rates_text(&b));
        assert_eq!(rates_text(&a), "10/s, 60req/min");
    }
}
