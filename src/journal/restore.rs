//! Restoring: the journal's admissions and lease remainders, converted to the file's clock,
//! become the history a new file's ring starts with.

use rusqlite::Connection;

use crate::clock::Nanos;
use crate::error::Error;
use crate::protocol::{Record, Rule};

use super::{Journal, lock, unsql};

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

impl Journal {
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
}
