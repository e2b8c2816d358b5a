//! The journal's SQLite side: the schema, opening checks, and SQLite failures in words.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::clock::ClockIdentity;
use crate::protocol::Rule;
use crate::rate::Rate;

use super::SCHEMA_VERSION;

/// The text a journal records for a clock: `clock id:boot id:time namespace`.
pub(super) fn clock_text(identity: &ClockIdentity) -> String {
    format!(
        "{}:{}:{}",
        identity.clock_id,
        identity.boot_id_text(),
        identity.time_namespace
    )
}

/// The text a journal records for a set of rates: the same rates in any order are the same.
pub(super) fn rates_text(rules: &[Rule]) -> String {
    let mut sorted = rules.to_vec();
    sorted.sort_by_key(|r| (r.window, r.limit, r.requests));
    sorted
        .iter()
        .map(|r| Rate::from_rule(r).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `op` again while SQLite answers "busy" without having waited, until `deadline`.
pub(super) fn retry_busy<T>(
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

/// The tables of a journal database, schema version [`SCHEMA_VERSION`].
const TABLES: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
        pid INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        origin_id INTEGER,
        UNIQUE (origin, origin_id)
    );";

/// Creates this journal's own database at `path` (WAL mode, `synchronous=FULL`) with the
/// schema and `rates` (the text of [`rates_text`]); the error says at which step, in words.
pub(super) fn create_own(path: &Path, busy: Duration, rates: &str) -> Result<Connection, String> {
    let step =
        |step: &'static str| move |e: rusqlite::Error| format!("{step}: {}", describe(&e, busy));
    let mut conn = Connection::open(path).map_err(step("open"))?;
    conn.busy_timeout(busy).map_err(step("open"))?;
    // Nobody else writes this database; an outside connection may still hold it for a while.
    let deadline = Instant::now() + busy;
    let mode: String = retry_busy(deadline, || {
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
    })
    .map_err(step("switch to WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "cannot use WAL mode on this file system (journal mode stays {mode:?})"
        ));
    }
    // FULL in both modes: a commit survives a power cut, so "at most the last interval"
    // holds across a reboot too. Periodic mode commits once per interval.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(step("set synchronous=FULL"))?;
    retry_busy(deadline, || {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(TABLES)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('rates', ?2)",
            params![SCHEMA_VERSION.to_string(), rates],
        )?;
        tx.commit()
    })
    .map_err(step("create the schema"))?;
    Ok(conn)
}

/// Opens another process's database at `path` to read it (never creating it).
pub(super) fn open_other(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

/// What a database of the directory is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A journal of this schema version and these rates.
    Ours,
    /// No tables yet: its writer died before it made the schema.
    Empty,
    /// Not one we can use: why.
    Foreign(String),
}

/// Checks a database of the directory against our schema version and `ours` (the rates'
/// text), and, if `thorough` (a scan of the whole database, done when a journal is opened),
/// that it is sound (`PRAGMA quick_check`).
pub(super) fn check(conn: &Connection, ours: &str, thorough: bool) -> rusqlite::Result<Kind> {
    let (count, meta): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(name = 'meta'), 0) FROM sqlite_master \
         WHERE type = 'table'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if count == 0 {
        return Ok(Kind::Empty);
    }
    if meta == 0 {
        return Ok(Kind::Foreign(
            "not a hostlimit journal (a SQLite database with other tables)".into(),
        ));
    }
    let value = |key: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
    };
    let version = value("schema_version")?;
    if version.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
        return Ok(Kind::Foreign(format!(
            "schema version {}, this library reads version {SCHEMA_VERSION}",
            version.as_deref().unwrap_or("(none)")
        )));
    }
    let theirs = value("rates")?.unwrap_or_default();
    if theirs != ours {
        return Ok(Kind::Foreign(format!(
            "the journal was made for rates [{theirs}] but [{ours}] were asked for; use another \
             journal for these rates"
        )));
    }
    if thorough {
        let sound: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if sound != "ok" {
            return Ok(Kind::Foreign(format!("corrupt database: {sound}")));
        }
    }
    Ok(Kind::Ours)
}

/// Records `to` (a [`rates_text`]) as the rates of the database `conn` if it records `from`:
/// the rates of a journal follow a change of its limiter's rates. Returns whether it did.
pub(super) fn follow_rates(conn: &Connection, from: &str, to: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE meta SET value = ?2 WHERE key = 'rates' AND value = ?1",
        params![from, to],
    )?;
    Ok(changed > 0)
}

/// A SQLite failure in words a user can act on.
pub(super) fn describe(e: &rusqlite::Error, busy: Duration) -> String {
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
