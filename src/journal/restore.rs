//! Restoring: the journal's admissions and lease remainders, converted to the file's clock,
//! become the history a new file's ring starts with.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::Connection;

use crate::clock::Nanos;
use crate::error::Error;
use crate::protocol::{Record, Rule};

use super::files::stem;
use super::schema::{Kind, check, describe, open_other};
use super::{Journal, lock, name, unsql};

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

/// The ring history that restores `entries` for `rules` at `now` in a ring of `capacity`
/// slots: records `1..=m`, oldest first, with timestamps in `[1, now]`.
///
/// The journal's rows can be denser than the rates allow: rows of another boot older than
/// this boot's uptime all convert to timestamp 1, a wall clock that stepped back stacks rows
/// at `now`, crashed processes' lease remainders come on top of what was admitted, and two
/// files that lived side by side each respected the rates alone. The ring's size bound holds
/// only for a log that respects the rates, so the history is built to respect them, and to
/// count no less than the journal wherever that could change a decision.
///
/// # How
///
/// One rate bounds the ring ([`RingBound`]): `L0` records per window `w0`, with
/// `L0 × ⌈W / w0⌉ <= capacity - 2` for the longest window `W`. The entries are taken newest
/// first, one record each (a lease remainder of `n` requests is `n` records, one carrying its
/// weight), with per-rate budgets (a request-counting rate's limit in records, a weight
/// rate's limit in weight), for the rates whose window at `now` holds the record:
///
/// 1. It is *needed* as a record if some such request-counting rate still has budget, and its
///    weight is kept up to the largest such weight budget.
/// 2. It is placed at its own timestamp if the bounding rate has room there: fewer than `L0`
///    placed records in `[ts, ts + w0)` (every placed record is newer, so at `ts` or later).
///    A record needed for neither requests nor weight is dropped.
/// 3. Otherwise its weight is added to the oldest placed record (at `ts` or later, inside
///    that full window) and its request is dropped.
///
/// Budgets are charged for what was placed (requests) or kept (weight).
///
/// # Why the ring is long enough
///
/// Every window of length `w0` holds at most `L0` placed records: the oldest record of such a
/// window saw all the others in `[ts, ts + w0)` when it was placed. A record committed later
/// was checked against every rate, the bounding one among them, over a window that holds every
/// older record (a weight-counting bounding rate bounds records too: every record weighs at
/// least 1, and a history without request-counting rates has no weight-0 record). So every
/// window of the whole log holds at most `L0` records per `w0`, at most
/// `L0 × ⌈W / w0⌉ <= capacity - 2` per longest window: the ring always reaches back over it.
///
/// # Why nothing is under-counted
///
/// For every window that ends at `now` or later (the only ones a decision reads):
///
/// * Weight-counting rates count at least `min(limit, what the journal holds)`: no weight is
///   lost except beyond a budget (the rate is then full from newer weight alone), and weight
///   only moves later (step 3), which keeps it in every window it was in.
/// * A request-counting rate that drops a record for lack of budget holds `limit` newer
///   records, which stay in its window as long as the dropped one would have.
/// * A record dropped in step 3 would have counted, for a rate of window `w <= w0`, only until
///   `ts + w <= ts + w0`; until then the `L0` placed records of `[ts, ts + w0)` are in the
///   bounding rate's window, which refuses everything: no decision changes.
/// * A request-counting rate with a window longer than `w0` exists only if it cannot bound the
///   ring itself (its limit × `⌈W / w⌉` exceeds `capacity - 2`). When its limit is at least
///   `L0 × ⌈w / w0⌉` (always so for the longest window, or when `w0` divides `w`), it cannot
///   refuse what the bounding rate admits over the real history, which respects the bounding
///   rate: it needs no record of its own. The exception is a rate that neither bounds the ring
///   nor is implied by the bounding rate, which only rounding allows (`100req/5s` with
///   `150req/6s` and `1000req/10s`): there, a history denser than the bounding rate (rows of
///   another boot within the rate's window of the boot, rows stacked at `now`) can be
///   under-counted by that rate by what step 3 dropped.
///
/// Every kept record is inside some window at `now`, so at most `capacity - 2` are kept, and
/// the total kept weight is at most the largest weight limit (each kept unit lowers the largest
/// budget by as much), which keeps every window total below 2^32.
pub(crate) fn build_history(
    entries: &[Restored],
    rules: &[Rule],
    capacity: u64,
    now: Nanos,
) -> Vec<Record> {
    let Some(bound) = RingBound::choose(rules, capacity) else {
        return Vec::new();
    };
    let most = capacity.saturating_sub(2);
    // One unit per record, newest first; the first record of an entry carries its weight.
    let mut units: Vec<(Nanos, u64)> = Vec::new();
    for entry in entries {
        for index in 0..entry.records.min(most) {
            units.push((entry.ts, if index == 0 { entry.weight } else { 0 }));
        }
    }
    units.sort_by_key(|&(ts, _)| std::cmp::Reverse(ts));
    let mut budgets: Vec<u64> = rules.iter().map(|rule| rule.limit).collect();
    // Placed records, newest first; `placed[first..]` are those before `ts + w0`.
    let mut placed: Vec<(Nanos, u64)> = Vec::new();
    let mut first = 0;
    for (ts, weight) in units {
        let inside = |rule: &Rule| ts > now.saturating_sub(rule.window);
        if !rules.iter().any(inside) {
            break; // Every later unit is older still.
        }
        let mut needed = false;
        let mut weight_budget = 0;
        for (rule, &budget) in rules.iter().zip(&budgets).filter(|(r, _)| inside(r)) {
            if rule.requests {
                needed |= budget > 0;
            } else {
                weight_budget = weight_budget.max(budget);
            }
        }
        let kept = weight.min(weight_budget);
        if !needed && kept == 0 {
            continue;
        }
        while first < placed.len() && placed[first].0 >= ts.saturating_add(bound.window) {
            first += 1;
        }
        let room = ((placed.len() - first) as u64) < bound.limit;
        if room {
            placed.push((ts, kept));
        } else if let Some(oldest) = placed.last_mut() {
            oldest.1 += kept;
        }
        for (rule, budget) in rules.iter().zip(budgets.iter_mut()) {
            if !inside(rule) {
                continue;
            }
            let charge = if rule.requests { u64::from(room) } else { kept };
            *budget -= charge.min(*budget);
        }
    }
    debug_assert!(
        placed.len() as u64 <= most,
        "the bounding rate bounds the ring"
    );
    placed.truncate(most as usize);
    let mut cum = 0u32;
    placed
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &(ts, weight))| {
            // At most the largest limit, below 2^32 (rate.rs).
            cum = cum.wrapping_add(weight as u32);
            Record {
                ts,
                seq: index as u32 + 1,
                cum,
            }
        })
        .collect()
}

/// The rate whose density a restored history keeps: at most `limit` records in any window
/// of length `window`, chosen so that `limit × ⌈longest window / window⌉` fits the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RingBound {
    pub limit: u64,
    pub window: u64,
}

impl RingBound {
    /// Of the rates that bound the ring's records (`layout::capacity_for`: those that count
    /// requests, or all of them when none does), one that alone fits `capacity` (the ring is
    /// sized for the smallest bound, so one always does), with the longest window, and of
    /// those the largest limit: the loosest density to respect.
    pub fn choose(rules: &[Rule], capacity: u64) -> Option<RingBound> {
        let longest = u128::from(rules.iter().map(|r| r.window).max()?);
        let any_requests = rules.iter().any(|r| r.requests);
        rules
            .iter()
            .filter(|r| r.requests || !any_requests)
            .filter(|r| {
                u128::from(r.limit) * longest.div_ceil(u128::from(r.window.max(1)))
                    <= u128::from(capacity.saturating_sub(2))
            })
            .max_by_key(|r| (r.window, r.limit))
            .map(|r| RingBound {
                limit: r.limit,
                window: r.window,
            })
    }
}

/// What a restore collected from the journal's databases, each row once.
#[derive(Default)]
struct Collected {
    entries: Vec<Restored>,
    /// Admissions seen: `(file_id, seq, boot_ns)`.
    admissions: HashSet<(String, i64, i64)>,
    /// Leases seen: the database they were taken in, and their id there.
    leases: HashSet<(String, i64)>,
}

impl Journal {
    /// The ring history a file created now starts with: every admission and every unsettled
    /// lease remainder still inside the longest window, in this file's clock, from every
    /// database of the journal directory (each row once, wherever it was copied).
    pub fn restore(&self, capacity: u64) -> Result<Vec<Record>, Error> {
        let own = lock(&self.conn);
        let now = self.clock.now();
        let now_wall = self.wall.now();
        let failed = |database: &Path, reason: String| Error::Journal {
            path: self.path.clone(),
            reason: format!("{}: {reason}", name(database)),
        };
        // A database folded into another and removed between the listing and its reading
        // would be missed: list and read again then (its rows are in the other one by then).
        for _ in 0..8 {
            let mut collected = Collected::default();
            let mut vanished = false;
            let databases = self.dir.databases().map_err(|e| Error::Journal {
                path: self.path.clone(),
                reason: format!("cannot list the directory: {e}"),
            })?;
            for database in &databases {
                let stem = stem(database);
                let result = if database == self.dir.own() {
                    self.read(&own, &stem, (now, now_wall), &mut collected)
                } else {
                    let read =
                        open_other(database, self.busy_timeout).and_then(|conn| {
                            match check(&conn, &self.rates_text, false)? {
                                Kind::Ours => {
                                    self.read(&conn, &stem, (now, now_wall), &mut collected)?;
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
                    &self.rules,
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
        (now, now_wall): (Nanos, u64),
        collected: &mut Collected,
    ) -> rusqlite::Result<()> {
        let counts_requests = self.rules.iter().any(|r| r.requests);
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
            let key = (row.get(4)?, row.get(5)?, row.get(1)?);
            if collected.admissions.insert(key) {
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
