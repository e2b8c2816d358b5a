//! Restoring: the journal's admissions and lease remainders, converted to the file's clock,
//! become the history a new file's ring starts with.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::Connection;

use crate::clock::Nanos;
use crate::error::Error;
use crate::protocol::Record;

use super::files::stem;
use super::rates::Rules;
use super::schema::{Kind, check, describe, open_other};
use super::{Journal, lock, name, unsql};

#[cfg(test)]
pub(crate) use crate::history::RingBound;
pub(crate) use crate::history::{Restored, build_history};

/// The wall-clock instant of file-clock instant `ts`, given one reading of both clocks.
pub(super) fn wall_at(ts: Nanos, now: Nanos, now_wall: u64) -> u64 {
    if ts >= now {
        now_wall.saturating_add(ts - now)
    } else {
        now_wall.saturating_sub(now - ts)
    }
}

/// A journaled instant in this file's clock: exact for the same clock, else through the
/// wall clock; never later than `now`, never earlier than 1, and never earlier than the wall
/// clock says (a wall clock that stepped back makes it later, never earlier).
pub(super) fn to_file_clock(
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

/// What a restore collected from the journal's databases, each row once.
#[derive(Default)]
struct Collected {
    entries: Vec<Restored>,
    /// Admissions seen: `(file_id, seq, boot_ns)`.
    admissions: HashSet<(String, i64, i64)>,
    /// Leases seen: the database they were taken in, and their id there.
    leases: HashSet<(String, i64)>,
    /// The last reset: admissions before it are not restored.
    reset: Option<super::reset::Mark>,
}

impl Journal {
    /// The ring history a file created now starts with: every admission and every unsettled
    /// lease remainder still inside the longest window, in this file's clock, from every
    /// database of the journal directory (each row once, wherever it was copied).
    pub fn restore(&self, capacity: u64) -> Result<Vec<Record>, Error> {
        let own = lock(&self.conn);
        let rules = self.rules();
        let now = self.clock.now();
        let now_wall = self.wall.now();
        let failed = |database: &Path, reason: String| Error::Journal {
            path: self.path.clone(),
            reason: format!("{}: {reason}", name(database)),
        };
        // A database folded into another and removed between the listing and its reading
        // would be missed: list and read again then (its rows are in the other one by then).
        for _ in 0..8 {
            let mut collected = Collected {
                reset: super::reset::read(&self.path)?,
                ..Collected::default()
            };
            let mut vanished = false;
            let databases = self.dir.databases().map_err(|e| Error::Journal {
                path: self.path.clone(),
                reason: format!("cannot list the directory: {e}"),
            })?;
            for database in &databases {
                let stem = stem(database);
                let result = if database == self.dir.own() {
                    self.read(&own, &stem, &rules, (now, now_wall), &mut collected)
                } else {
                    let read =
                        open_other(database, self.busy_timeout).and_then(|conn| {
                            match check(&conn, &rules.text, false)? {
                                Kind::Ours => {
                                    self.read(
                                        &conn,
                                        &stem,
                                        &rules,
                                        (now, now_wall),
                                        &mut collected,
                                    )?;
                                    Ok(None)
                                }
                                Kind::Empty => Ok(None),
                                Kind::Foreign(reason) => Ok(Some(reason)),
                            }
                        });
                    match read {
                        Ok(None) => Ok(()),
                        Ok(Some(reason)) => return Err(failed(database, reason)),
                        Err(_) if !database.exists() => {
                            vanished = true;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                };
                result.map_err(|e| failed(database, describe(&e, self.busy_timeout)))?;
            }
            if !vanished {
                return Ok(build_history(
                    &collected.entries,
                    &rules.rules,
                    capacity,
                    now,
                ));
            }
        }
        Err(Error::Journal {
            path: self.path.clone(),
            reason: "its databases keep being merged away while being read".into(),
        })
    }

    /// Adds the rows of one database (`stem` names it) not seen yet to `collected`, converted
    /// to the file's clock at `now` (file clock, wall clock).
    fn read(
        &self,
        conn: &Connection,
        stem: &str,
        rules: &Rules,
        (now, now_wall): (Nanos, u64),
        collected: &mut Collected,
    ) -> rusqlite::Result<()> {
        let counts_requests = rules.rules.iter().any(|r| r.requests);
        // Columns `first..first + 3` of `row`: clock, boot_ns, wall_ns.
        let instant = |row: &rusqlite::Row<'_>, first: usize| -> rusqlite::Result<Nanos> {
            Ok(to_file_clock(
                &row.get::<_, String>(first)?,
                unsql(row.get(first + 1)?),
                unsql(row.get(first + 2)?),
                &self.clock_text,
                now,
                now_wall,
            ))
        };
        let mut rows =
            conn.prepare("SELECT clock, boot_ns, wall_ns, weight, file_id, seq FROM admissions")?;
        let mut admissions = rows.query([])?;
        while let Some(row) = admissions.next()? {
            let key: (String, i64, i64) = (row.get(4)?, row.get(5)?, row.get(1)?);
            let (clock, wall_ns): (String, i64) = (row.get(0)?, row.get(2)?);
            let reset = collected
                .reset
                .as_ref()
                .is_some_and(|mark| mark.drops(&key.0, &clock, unsql(key.2), unsql(wall_ns)));
            if !reset && collected.admissions.insert(key) {
                collected.entries.push(Restored {
                    ts: instant(row, 0)?,
                    weight: unsql(row.get(3)?),
                    records: 1,
                });
            }
        }
        let mut rows = conn.prepare(
            "SELECT clock, until_boot_ns, until_wall_ns, weight - used_weight, \
             requests - used_requests, CASE WHEN origin = '' THEN ?1 ELSE origin END, \
             CASE WHEN origin = '' THEN id ELSE origin_id END FROM leases WHERE settled = 0",
        )?;
        let mut leases = rows.query([stem])?;
        while let Some(row) = leases.next()? {
            let weight = unsql(row.get(3)?);
            let requests = unsql(row.get(4)?);
            // Requests need one record each; left-over weight needs a record too.
            let records = if counts_requests {
                requests.max(u64::from(weight > 0))
            } else {
                u64::from(weight > 0)
            };
            if records > 0 && collected.leases.insert((row.get(5)?, row.get(6)?)) {
                collected.entries.push(Restored {
                    ts: instant(row, 0)?,
                    weight,
                    records,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
