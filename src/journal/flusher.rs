//! Writing the journal: the ring's new records and the leases' use in one transaction, the
//! background thread that does it once per interval, and compaction.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::clock::Nanos;
use crate::error::Error;
use crate::protocol::{self, NoHook};
use crate::region::Region;
use crate::sync::Ordering;

use super::files::Claim;
use super::leases::{LeaseUpdate, NewLease, forget_settled, lease_updates};
use super::restore::wall_at;
use super::schema::{Kind, check, describe, open_other};
use super::{FileKey, Journal, Source, lock, name, sql};

/// Rows older than the longest window by more than this are deleted.
const COMPACTION_MARGIN: u64 = 60_000_000_000;

/// How often the background thread compacts, at most.
const COMPACTION_EVERY: u64 = 60_000_000_000;

impl Journal {
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
    pub(super) fn write(
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

    /// Deletes from this journal's own database what has left the longest window (plus a
    /// margin), and settled leases; then folds the databases that no live process writes any
    /// more into it. At most once per [`COMPACTION_EVERY`]; not while the database records
    /// other rates than the journal counts against (a change of rates not adopted yet).
    pub(super) fn compact(&self) -> Result<(), Error> {
        let now = self.clock.now();
        // Relaxed: only the background thread compacts; this is a timer.
        if now < self.next_compaction.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.next_compaction
            .store(now.saturating_add(COMPACTION_EVERY), Ordering::Relaxed);
        let rules = self.rules();
        let age = rules.longest.saturating_add(COMPACTION_MARGIN);
        let cut = Cut {
            boot: sql(now.saturating_sub(age)),
            wall: sql(self.wall.now().saturating_sub(age)),
        };
        let mut conn = lock(&self.conn);
        // Whether this database records our rates, read in the transaction that deletes (a
        // change of rates rewrites them in a transaction of its own).
        let write = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !matches!(check(&tx, &rules.text, false)?, Kind::Ours) {
                // A change of rates rewrote the directory and this process has not adopted
                // it yet (it does at its next call): the new windows may be longer than ours,
                // so nothing is deleted or folded until then.
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM admissions WHERE (clock = ?1 AND boot_ns <= ?2) \
                 OR (clock <> ?1 AND wall_ns <= ?3)",
                params![self.clock_text, cut.boot, cut.wall],
            )?;
            tx.execute(
                "DELETE FROM leases WHERE settled = 1 OR (clock = ?1 AND until_boot_ns <= ?2) \
                 OR (clock <> ?1 AND until_wall_ns <= ?3)",
                params![self.clock_text, cut.boot, cut.wall],
            )?;
            tx.commit().map(|()| true)
        };
        if !write(&mut conn).map_err(|e| self.error(&e))? {
            return Ok(());
        }
        self.fold_dead(&mut conn, &rules.text, cut)
    }

    /// Moves what each database without a live writer still holds inside the window (its
    /// admissions, its unsettled leases) into this journal's own database `conn`, in one
    /// transaction, and then deletes it. A lease keeps where it was taken (`origin`), so that
    /// one copied twice (a crash between the copy and the delete) counts once.
    fn fold_dead(&self, conn: &mut Connection, rates: &str, cut: Cut) -> Result<(), Error> {
        let databases = self.dir.databases().map_err(|e| Error::Journal {
            path: self.path.clone(),
            reason: format!("cannot list the directory: {e}"),
        })?;
        for database in databases {
            let Some(claim) = self.dir.claim(&database) else {
                continue;
            };
            let failed = |reason: String| Error::Journal {
                path: self.path.clone(),
                reason: format!("{}: {reason}", name(&database)),
            };
            let kind = open_other(claim.database(), self.busy_timeout)
                .and_then(|other| check(&other, rates, false))
                .map_err(|e| failed(describe(&e, self.busy_timeout)))?;
            match kind {
                Kind::Ours => self
                    .fold(conn, &claim, cut)
                    .map_err(|e| failed(describe(&e, self.busy_timeout)))?,
                Kind::Empty => {}
                // Left where it is: every restore reports it too.
                Kind::Foreign(reason) => return Err(failed(reason)),
            }
            claim
                .remove()
                .map_err(|e| failed(format!("cannot delete it: {e}")))?;
        }
        Ok(())
    }

    /// Copies the rows of `claim`'s database still inside `cut` into `conn`.
    fn fold(&self, conn: &mut Connection, claim: &Claim, cut: Cut) -> rusqlite::Result<()> {
        conn.execute(
            "ATTACH DATABASE ?1 AS dead",
            [claim.database().to_string_lossy()],
        )?;
        let copied = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT OR IGNORE INTO main.admissions \
                 (file_id, seq, clock, boot_ns, wall_ns, weight) \
                 SELECT file_id, seq, clock, boot_ns, wall_ns, weight FROM dead.admissions \
                 WHERE (clock = ?1 AND boot_ns > ?2) OR (clock <> ?1 AND wall_ns > ?3)",
                params![self.clock_text, cut.boot, cut.wall],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO main.leases (clock, until_boot_ns, until_wall_ns, \
                 weight, requests, used_weight, used_requests, settled, pid, origin, origin_id) \
                 SELECT clock, until_boot_ns, until_wall_ns, weight, requests, used_weight, \
                 used_requests, settled, pid, CASE WHEN origin = '' THEN ?4 ELSE origin END, \
                 CASE WHEN origin = '' THEN id ELSE origin_id END FROM dead.leases \
                 WHERE settled = 0 AND ((clock = ?1 AND until_boot_ns > ?2) \
                 OR (clock <> ?1 AND until_wall_ns > ?3))",
                params![self.clock_text, cut.boot, cut.wall, claim.stem()],
            )?;
            tx.commit()
        })();
        let detached = conn.execute("DETACH DATABASE dead", []);
        copied.and(detached.map(drop))
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

/// What compaction keeps: rows of this clock with a timestamp after `boot`, rows of another
/// clock with a wall-clock time after `wall`.
#[derive(Debug, Clone, Copy)]
struct Cut {
    boot: i64,
    wall: i64,
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
                    // A failure is kept in the status; the next round tries again. The last
                    // round compacts too (if it is due), so that short-lived processes (the
                    // command line) fold their predecessors' databases and a directory keeps
                    // about one database per live process.
                    if background.flush(&region, stopping).is_ok() {
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
