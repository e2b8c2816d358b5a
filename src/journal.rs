//! The SQLite journal: quotas that survive a reboot, kept off the hot path.
//!
//! The shared file lives on a tmpfs and is gone after a reboot; a limiter opened with
//! [`Builder::journal`](crate::Builder::journal) also writes its admissions to SQLite on disk,
//! in a journal directory. When a limiter has to *create* the shared file (after a reboot, or
//! after the file was deleted), it first reads the journal and starts the new file's ring
//! with the admissions that are still inside the longest window, so what was left before the
//! restart is what is left after it: nothing more, plus only what expired meanwhile.
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
//! # One database per process (schema version [`SCHEMA_VERSION`])
//!
//! The journal is a directory, and every process (every open journal) writes a SQLite
//! database of its own in it, `PID-TAG.sqlite`
//! ([`Limiter::journal_file`](crate::Limiter::journal_file)), holding an
//! exclusive `flock` on `PID-TAG.lock` while it has it open. No process ever waits for
//! another's write lock, so one that is stopped (`SIGSTOP`) or killed anywhere, even inside a
//! journal write, delays nobody's journal writes: in strict mode, nobody's leases, so nobody's
//! `try_acquire` (behind one shared database's lock, as in schema version 1, the others
//! waited for it and were then denied).
//! Readers read every database: opening a journal checks them all, and restoring reads them
//! all. SQLite's WAL mode lets a reader read what a writer committed without waiting for it,
//! with one exception: a process stopped in the instant it switches its new database to WAL
//! mode (when it opens the journal) holds a lock that reading that database waits for, up to
//! the busy timeout; an open or a restore that meets it then fails with a clear error (a
//! restore inside `try_acquire`, after the shared file was deleted or replaced, is then an
//! [`Unavailable`](crate::DenialKind::Unavailable) denial).
//!
//! A database whose lock is free has no live writer; the next compaction of any process
//! copies what it still holds inside the window into its own database and deletes it, so a
//! directory holds about one database per live process.
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)      -- schema_version, rates
//! admissions(file_id TEXT, seq INTEGER, clock TEXT, boot_ns INTEGER, wall_ns INTEGER,
//!            weight INTEGER, PRIMARY KEY(file_id, seq, boot_ns))
//! leases(id INTEGER PRIMARY KEY AUTOINCREMENT, clock TEXT, until_boot_ns INTEGER,
//!        until_wall_ns INTEGER, weight INTEGER, requests INTEGER, used_weight INTEGER,
//!        used_requests INTEGER, settled INTEGER, pid INTEGER, origin TEXT, origin_id INTEGER,
//!        UNIQUE(origin, origin_id))
//! ```
//!
//! * `file_id` names the shared file's incarnation (`created_wall_ns-creator_pid-created_clock_ns`
//!   from its header), `seq` the record's sequence number in it; with `boot_ns` (the recorded
//!   timestamp) they identify an admission. A word of the shared file (`journaled`, see
//!   `layout.rs`) holds the newest record known to be journaled, so that of several processes
//!   only one writes each record; a race makes two of them write the same row, each in its own
//!   database, and a restore counts it once.
//! * `clock` is the clock `boot_ns` comes from: clock id, boot id and time namespace, as
//!   `7:BOOT-ID:NAMESPACE` for `CLOCK_BOOTTIME`. `wall_ns` is the same instant on the wall
//!   clock (ns since the Unix epoch), for restoring in another boot.
//! * A lease copied out of a dead process's database keeps where it was taken: `origin` (that
//!   database's `PID-TAG`) and `origin_id` (its id there), empty for a lease of this database;
//!   a lease copied twice (a crash between the copy and the delete) counts once.
//! * A journal belongs to one set of rates (`meta.rates` of every database); opening it with
//!   others is an [`Error::Journal`] naming both.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction on the process's own database; threads of
//! one process take turns. A busy timeout (default 5 s) bounds a wait for an outside
//! connection (a `sqlite3` shell, say), after which the write fails with a clear error. In
//! periodic mode only the background thread writes, so `try_acquire` never waits for SQLite.
//! Every process of a limiter that journals must use the same journal directory (they share
//! the `journaled` word), and be able to read and write every database in it.
//!
//! # Restoring
//!
//! When the shared file must be created, the journal's admissions and the remainders of its
//! unsettled leases are converted to the file's clock: rows of the same clock (same boot,
//! same time namespace) keep their timestamp exactly; rows of another boot get
//! `now - max(0, wall_now - wall_ns)`, at least 1 (rows older than this boot's uptime count
//! as if admitted at the boot, so they expire later than they would have, never earlier). A
//! wall clock that stepped backwards only makes them younger (they expire later); one that
//! stepped *forwards* between the two boots makes them older, which no program can tell from
//! a real gap.
//!
//! Rows converted that way can be denser than the rates allow (every row older than the
//! uptime lands on the same instant), and the ring's size bound holds only for a log that
//! respects the rates. So the history a new ring starts with is built to respect them: one
//! rate that bounds the ring keeps its density, and where a row finds no room at its
//! instant, its weight is carried by a newer record (later, so it stays in every window it
//! was in) and its request is dropped only where that rate is full anyway. The result counts,
//! in every window a decision reads, at least what the journal holds (up to each limit),
//! and the ring always reaches back over the longest window. The argument, and the one
//! configuration shape where a request-counting rate can count less (a rate that neither
//! bounds the ring nor is implied by the rate that does, such as `150req/6s` beside
//! `100req/5s` and `1000req/10s`), are in `journal/restore.rs`. Rows outside the longest
//! window are dropped.
//!
//! # Durability belongs to the limiter
//!
//! A limiter opened once with a journal stays journaled, whoever opens it next. The open
//! writes a *journal record* on disk, in the state directory (`$HOSTLIMIT_STATE_DIR`, else
//! `/var/lib/hostlimit` for root, else `$XDG_STATE_HOME/hostlimit` or
//! `~/.local/state/hostlimit`), keyed by the limiter's absolute path, naming the journal
//! directory, the durability and the rates ([`JournalRecord`], [`recorded`]), and sets the
//! journaled flag in the header of the file it creates ([`FileInfo::journaled`](crate::FileInfo::journaled)).
//! Every open looks for the record before it may create the file:
//!
//! * [`Builder::open`](crate::Builder::open) without `.journal` opens the recorded journal
//!   (with the recorded durability) and, when it creates the file, restores its history;
//!   with `.journal` naming another directory, it fails: every process of a limiter uses
//!   the same journal.
//! * [`Limiter::attach`](crate::Limiter::attach) does the same with the file's rates, or,
//!   when the file is gone (a reboot), creates it with the recorded rates and the history.
//! * A running process whose file was deleted re-creates it with the history too, even if
//!   it was opened without a journal (it reads the recorded journal once).
//! * A recorded journal that is missing or cannot be read makes the open fail
//!   ([`Error::Journal`]) wherever the file would have to be created; nothing starts empty
//!   silently. [`forget`] (or `hostlimit rm`) gives the history up. While the file exists
//!   (nothing to restore), a process opening without `.journal` that cannot open the
//!   recorded journal (another user's, not writable for it) attaches without it, never
//!   creates the file, and says why in
//!   [`Limiter::journal_status`](crate::Limiter::journal_status); the ring's records reach
//!   the journal through the limiter's journaled processes.
//!
//! Root's records are found by every user; a limiter shared by several users should be
//! journaled by root, or every user should set the same `HOSTLIMIT_STATE_DIR`. The key is
//! the path as given, made absolute, without resolving symbolic links: name the limiter by
//! the same path everywhere. A build without the `journal` feature knows nothing of records.
//!
//! [`reset`](crate::reset) keeps the journal, and marks it so that no restore brings back what
//! was admitted before the reset. [`remove`](crate::remove) deletes the journal and its
//! record; [`remove_keeping_journal`](crate::remove_keeping_journal) keeps both (the next
//! opener re-creates the limiter with its history, as after a reboot).
//!
//! # Compaction
//!
//! The background thread deletes from its own database, once a minute, admissions and leases
//! that have left the longest window (plus a minute), and settled leases; then it folds in
//! the databases without a live writer (their rows still inside that window) and deletes
//! them.
//!
//! # Failures
//!
//! A journal that cannot be opened (a file where the directory should be, a database in it
//! that is not one, corrupt, of another schema version or other rates, locked for longer
//! than the busy timeout, not writable) is an [`Error::Journal`]
//! when the limiter is opened; nothing falls back silently. A write that fails later is kept:
//! [`Limiter::journal_status`](crate::Limiter::journal_status) reports it until a write
//! succeeds again, and in strict mode a lease that cannot be written makes `try_acquire`
//! return a [`DenialKind::Unavailable`](crate::DenialKind::Unavailable) denial.

mod files;
mod flusher;
mod leases;
mod rates;
mod reset;
mod restore;
mod schema;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use crate::clock::{Clock, ClockIdentity};
use crate::error::Error;
use crate::layout::Header;
use crate::protocol::Rule;
use crate::region::{Region, SwapCell};
use crate::sync::StdAtomicU64;

use files::Directory;
pub(crate) use flusher::Handle;
use leases::Leases;
use rates::Rules;
pub(crate) use rates::follow_change;
pub use rates::follow_rates;
use schema::{Kind, check, clock_text, create_own, describe, open_other, rates_text};
pub use state::{
    JournalRecord, MAX_RECORD, ROOT_STATE_DIR, STATE_DIR_ENV, default_journal_dir, recorded,
    state_dir,
};

/// The journal schema this library reads and writes.
///
/// Version 1 was a single database shared by every process; version 2 is a directory of one
/// database per process, and a version-1 file where the directory should be is refused.
pub const SCHEMA_VERSION: u32 = 2;

/// The busy timeout unless [`Builder::journal_busy_timeout`](crate::Builder::journal_busy_timeout)
/// says otherwise.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Do not look for the limiter's journal record (observers that never create the file).
    pub ignore_record: bool,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            target: None,
            wall: Arc::new(SystemWallClock),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            ignore_record: false,
        }
    }
}

/// Where the background thread finds the shared file the limiter is attached to now.
pub(crate) trait Source: Send + Sync {
    /// The region currently attached.
    /// (Held, not freed by a re-attach, while the guard lives.)
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

/// An open journal: the connection, the leases (strict mode) and the last failure.
pub(crate) struct Journal {
    /// The journal directory.
    path: PathBuf,
    /// This journal's own database (declared before `dir`: closed before its lock is let go).
    conn: Mutex<Connection>,
    dir: Directory,
    durability: Durability,
    wall: Arc<dyn WallClock>,
    clock: Arc<dyn Clock>,
    clock_text: String,
    /// The rates admissions are counted against (restore, compaction, lease sizes): those it
    /// was opened with, until the limiter adopts a change of rates ([`Journal::adopt`]).
    /// Read without a lock.
    rules: SwapCell<Rules>,
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

/// A database's file name, for messages.
fn name(database: &Path) -> String {
    database.file_name().map_or_else(
        || database.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn unsql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Journal {
    /// Opens (creating if needed) the journal directory for `rules`, checks every database in
    /// it (a journal of our schema version and these rates, passing `PRAGMA quick_check`), and
    /// creates this journal's own database (WAL mode).
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
        let dir = Directory::open(path).map_err(journal_error)?;
        let ours = rates_text(rules);
        // Every restore reads every database of the directory: each must be a journal of
        // ours (or still empty), and readable.
        let databases = dir
            .databases()
            .map_err(|e| journal_error(format!("cannot list the directory: {e}")))?;
        for database in databases {
            let named = |reason: String| journal_error(format!("{}: {reason}", name(&database)));
            match open_other(&database, config.busy_timeout)
                .and_then(|conn| check(&conn, &ours, true))
            {
                Ok(Kind::Ours | Kind::Empty) => {}
                Ok(Kind::Foreign(reason)) => return Err(named(reason)),
                // Merged into another database and removed meanwhile.
                Err(_) if !database.exists() => {}
                Err(e) => return Err(named(describe(&e, config.busy_timeout))),
            }
        }
        let conn = create_own(dir.own(), config.busy_timeout, &ours)
            .map_err(|reason| journal_error(format!("{}: {reason}", name(dir.own()))))?;
        Ok(Journal {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            dir,
            durability,
            wall: config.wall.clone(),
            clock,
            clock_text: clock_text(identity),
            rules: SwapCell::new(Rules::new(rules, ours)),
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

    /// Closes this journal and deletes its own database, which nothing was journaled to yet
    /// (an open that failed after the journal was opened).
    pub fn discard(self) {
        let own = self.dir.own().to_path_buf();
        drop(self.conn);
        for suffix in ["-wal", "-shm", ""] {
            let mut name = own.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }

    /// The journal directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This journal's own database, the only one it writes.
    pub fn file(&self) -> &Path {
        self.dir.own()
    }

    /// True in strict mode: `try_acquire` goes through [`Journal::reserve`].
    pub fn is_strict(&self) -> bool {
        matches!(self.durability, Durability::Strict { .. })
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
}

/// Which journal an open uses, and whether it must record it.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The journal directory and how to write it; `None`: no journal.
    pub target: Option<(PathBuf, Durability)>,
    /// The record found, if any.
    pub record: Option<JournalRecord>,
}

/// Decides which journal an open of the limiter at `limiter` uses: the record's, whether or
/// not the builder named one (a builder that names another is an error: every process of a
/// limiter must use the same journal), else the builder's, else none.
pub(crate) fn resolve(
    limiter: &Path,
    explicit: Option<&(PathBuf, Durability)>,
) -> Result<Resolved, Error> {
    let record = recorded(limiter)?;
    let target = match (explicit, &record) {
        (Some((journal, durability)), Some(record)) => {
            if state::absolute(journal)? != record.journal {
                return Err(Error::Journal {
                    path: journal.clone(),
                    reason: format!(
                        "{} is journaled in {} (recorded in {}); every process of a limiter \
                         must use the same journal",
                        limiter.display(),
                        record.journal.display(),
                        record.record.display()
                    ),
                });
            }
            Some((record.journal.clone(), *durability))
        }
        (Some(explicit), None) => Some(explicit.clone()),
        (None, Some(record)) => Some((record.journal.clone(), record.durability)),
        (None, None) => None,
    };
    Ok(Resolved { target, record })
}

impl Journal {
    /// Opens the journal an open [`resolve`]d: a recorded journal must exist (it is never
    /// made again empty). A journal named by the builder and not recorded yet is recorded by
    /// [`Resolved::record`] once the limiter is open.
    pub(crate) fn open_resolved(
        limiter: &Path,
        resolved: &Resolved,
        config: &JournalConfig,
        rules: &[Rule],
        clock: Arc<dyn Clock>,
        identity: &ClockIdentity,
    ) -> Result<Option<Journal>, Error> {
        let Some((path, durability)) = &resolved.target else {
            return Ok(None);
        };
        if let Some(record) = &resolved.record
            && !path.is_dir()
        {
            return Err(Error::Journal {
                path: path.clone(),
                reason: format!(
                    "missing, but {} is journaled there (recorded in {}); put the journal back",
                    limiter.display(),
                    record.record.display()
                ),
            });
        }
        Journal::open(path, *durability, config, rules, clock, identity).map(Some)
    }
}

impl Resolved {
    /// Records the journal a builder named, if it is not recorded yet: called once the
    /// limiter is open (an open that fails, on other rates say, records nothing).
    pub(crate) fn record(&self, limiter: &Path, rates: &[crate::rate::Rate]) -> Result<(), Error> {
        match (&self.target, &self.record) {
            (Some((path, durability)), None) => {
                state::write(&state::absolute(limiter)?, path, *durability, rates).map(drop)
            }
            _ => Ok(()),
        }
    }
}

/// Tells the journal of a limiter that was just reset that the admissions before `now`
/// (the file's clock, `identity`) belong to no file any more, except those of `fresh`, the
/// file the reset made: a restore skips them (see `journal/reset.rs`). Creates the journal
/// directory if it is gone (it then holds only the mark: an empty history, as the reset
/// left the limiter).
pub(crate) fn mark_reset(
    journal: &Path,
    fresh: &Header,
    identity: &ClockIdentity,
    now: crate::clock::Nanos,
) -> Result<(), Error> {
    std::fs::create_dir_all(journal).map_err(|e| Error::Journal {
        path: journal.to_path_buf(),
        reason: format!("cannot create the directory: {e}"),
    })?;
    reset::write(
        journal,
        &reset::Mark {
            file_id: FileKey::of(fresh).text(),
            clock: clock_text(identity),
            boot_ns: now,
            wall_ns: SystemWallClock.now(),
        },
    )
}

/// Forgets that the limiter at `limiter` is journaled: deletes its journal (the journal's
/// own files; the directory too if nothing else is in it) and its record, so that its next
/// opener without `.journal` starts it empty. The way to give up a lost or broken journal's
/// history; [`remove`](crate::remove) does the same after removing the file. Returns the
/// record that was deleted, `None` if there was none.
///
/// # Errors
///
/// An unreadable record, or a journal file or the record that cannot be deleted.
pub fn forget(limiter: impl AsRef<Path>) -> Result<Option<JournalRecord>, Error> {
    let Some(record) = recorded(limiter.as_ref())? else {
        return Ok(None);
    };
    state::forget(&record)?;
    Ok(Some(record))
}

/// Journals what the closed log of `file`, a file of the journaled limiter of `record`,
/// holds that is not journaled yet, through a journal opened for this once (with the file's
/// rates and clock).
pub(crate) fn flush_into(record: &JournalRecord, file: &Region) -> Result<(), Error> {
    let header = file.header();
    let journal = Journal::open(
        &record.journal,
        record.durability,
        &JournalConfig::default(),
        &header.rules,
        Arc::new(crate::clock::HostClock),
        &header.clock,
    )?;
    journal.flush(file, false)
}
