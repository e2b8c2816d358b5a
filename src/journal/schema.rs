//! The journal's SQLite side: the schema, opening checks, and SQLite failures in words.

use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

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

/// Creates the schema in an empty database, or checks the one there: version and rates.
/// The outer error is SQLite's, the inner one says what is wrong with the journal.
pub(super) fn ensure_schema(
    conn: &mut Connection,
    ours: &str,
) -> rusqlite::Result<Result<(), String>> {
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
