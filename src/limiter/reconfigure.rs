//! Changing the rates of a limiter in use ([`reconfigure`]), keeping the admissions that are
//! still inside the new windows.
//!
//! The log does not depend on the rates (a record is a time and a weight), so the new file
//! starts with the old file's records, kept at the density the new rates allow
//! (`history::build_history`, as a journal's restore does). Records committed to the old file
//! while the new one is made must not be lost, so the old file's log is closed first (its
//! tombstone is its final head: nothing is committed after it), then read to that head, and
//! only then is the new file made and put in its place by an exchange of names, as `reset`
//! does. From before the close until after the exchange this process holds the old file
//! (`region/hold.rs`); a process that meets the closed log while it is held waits for the new
//! file (`reattach::await_replacement`), so between the close and the exchange it is refused
//! nothing, and two changes of one limiter exclude each other. The new file records that it is the next configuration of the same limiter
//! (`layout::Lineage`): every process on the old file adopts its rates at its next call, and
//! re-creates the file, should it be deleted, with those rates.

use std::path::Path;

use crate::clock::{Clock, HostClock};
use crate::error::Error;
use crate::history::{Restored, build_history};
use crate::layout::{self, Header};
use crate::protocol::{self, NoHook, Record, Rule};
use crate::rate::Rate;
use crate::region::{self, Kind, OpenSpec, Region};

use super::admin::{OldFile, host_clock_of, retire_and_delete};
use super::builder::{new_header, rules_for};

/// What [`reconfigure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconfigured {
    /// The rates the file had, in its order.
    pub old_rates: Vec<Rate>,
    /// The rates it has now, in the order given.
    pub new_rates: Vec<Rate>,
    /// False if the file already had these rates: then nothing was changed.
    pub changed: bool,
    /// Admissions of the old file's log (all its ring held) that the new file was built from.
    pub read: u64,
    /// Records the new file starts with: those inside a new window, at most as dense as the
    /// new rates allow (an admission that did not fit as a record of its own has its weight
    /// carried by a later one).
    pub kept: u64,
    /// When the old file's log was closed (nanoseconds of the file's clock,
    /// `CLOCK_BOOTTIME`): every admission of the old file is stamped before it, every
    /// admission a single-threaded process makes on the new file after it.
    pub closed_at: crate::clock::Nanos,
    /// Ring slots before and after.
    pub capacity: (u64, u64),
    /// What the exchange displaced: the file whose rates were changed, unless a reset or
    /// remove came in between (then the file it had put there, retired as well).
    pub displaced: OldFile,
}

/// Changes the rates of the limiter at `path` to `rates`, for every process using it.
///
/// The admissions the old file's ring still holds that are inside a window of the new rates
/// keep counting against the new rates (a ring that the new rates need larger is grown). No
/// admission committed to the old file is lost: its log is closed before it is read. Every
/// process using the limiter adopts the new rates at its next call (a process that meets the
/// closed file waits, for as long as it takes to make the new one); it re-creates the file,
/// should it be deleted, with the new rates. A process that opens it later with the old rates
/// gets [`Error::ConfigMismatch`], which names both configurations.
///
/// A journaled limiter (one with a journal record, see `hostlimit::journal`) keeps its
/// journal: the journal's databases and its record follow the new rates, so that the file
/// restored after a reboot has them and counts the journal's admissions against them.
/// Processes that have the journal open keep the rates they opened it with for its
/// accounting (their admissions follow the new file's rates).
///
/// The owner, group, mode and clock of the file are kept; the denial counters start again
/// from zero. An admission older than what the old ring held (possible only when a new
/// window is longer than the old ring reaches back) is not known, and does not count.
///
/// # Errors
///
/// Nothing is changed on error, except when the new file cannot be put in place after the
/// old file was closed: then the old file stays in place, closed, and every process using it
/// is refused (after waiting) until this is run again or the limiter is reset. The rates are
/// invalid or need too large a ring; the file is missing, damaged or not a hostlimit file
/// ([`Error::Corrupt`], [`Error::Truncated`]); it was made with another clock
/// ([`Error::ClockMismatch`]); the directory is not writable, or this process cannot give the
/// new file the old one's owner and group.
pub fn reconfigure(path: impl AsRef<Path>, rates: &[Rate]) -> Result<Reconfigured, Error> {
    let path = path.as_ref();
    region::check_machine()?;
    let rules = rules_for(rates)?;
    // A journaled limiter's record, read before anything changes (an unreadable one is an
    // error then).
    #[cfg(feature = "journal")]
    let record = crate::journal::recorded(path)?;
    let examined = Region::examine(path)?;
    match examined.kind {
        Kind::Limiter(_) => {}
        Kind::Foreign(reason) => return Err(Error::corrupt(path, reason)),
        Kind::Damaged(reason) => {
            return Err(Error::corrupt(
                path,
                format!(
                    "{reason}; its log cannot be read, so its rates cannot be changed: remove \
                     it and create it with the new rates"
                ),
            ));
        }
    }
    let old = Region::open_with_history(
        path,
        &OpenSpec {
            create: None,
            mode: 0,
            group: None,
            dirs: crate::region::Dirs::Existing,
        },
        &[],
    )?;
    let header = old.header().clone();
    let identity = host_clock_of(path, &header)?;
    let labels = layout::pack_units(rates.iter().map(|r| r.unit()));
    let old_rates = rates_of(&header);
    let mut report = Reconfigured {
        old_rates,
        new_rates: rates.to_vec(),
        changed: false,
        read: 0,
        kept: 0,
        closed_at: 0,
        capacity: (header.capacity, header.capacity),
        displaced: OldFile::Limiter,
    };
    // A closed log at the path is a change that did not finish: finish it, even to the rates
    // the file has.
    let closed_already = matches!(
        protocol::usage(&old.read_words(), &[], 0, &NoHook),
        Ok(Err(protocol::RETIRED))
    );
    if same_rates(&header, &rules, labels) && !closed_already {
        // A change whose journal did not follow is finished here.
        #[cfg(feature = "journal")]
        if let Some(record) = &record {
            crate::journal::follow_change(record, rates)?;
        }
        return Ok(report);
    }
    let fresh = Header {
        labels,
        flags: header.flags,
        lineage: header.lineage.next(),
        ..new_header(&rules, identity, &HostClock)?
    };
    // Held from before the close until the new file is in place: a process that meets the
    // closed log meanwhile waits for the new file rather than being refused.
    let _hold = old.hold_for_replacement()?.ok_or_else(|| {
        Error::io(
            path,
            "change the rates (another process is changing them, or the file was just \
             replaced; try again)",
            std::io::Error::from(std::io::ErrorKind::WouldBlock),
        )
    })?;
    // Close the old log: from here on nothing is committed to it, so what is read next is all
    // it will ever hold. Already closed (a change of rates that died before its exchange) is
    // fine: its history is read the same way.
    let Ok(closed) = protocol::retire(&old.words(), &NoHook);
    closed.map_err(|reason| Error::corrupt(path, format!("corrupt ring: {reason}")))?;
    report.closed_at = HostClock.now();
    let entries = read_log(&old)?;
    // The old file's timestamps come from this clock (checked above), so none is later than
    // now; a newest one later still is a clock that went back, and keeps its place.
    let newest = entries.last().map_or(0, |e| e.ts);
    let now = report.closed_at.max(newest);
    let history = build_history(&entries, &rules, fresh.capacity, now);
    let displaced = Region::replace_with_history(path, &fresh, &examined.owner, &history)?;
    report.changed = true;
    report.read = entries.len() as u64;
    report.kept = history.len() as u64;
    report.capacity.1 = fresh.capacity;
    report.displaced = retire_and_delete(displaced)?;
    #[cfg(feature = "journal")]
    if let Some(record) = &record {
        // The new file's history counts as journaled: what the old file held that no
        // journaled process journaled yet (the last interval, processes without a journal)
        // is journaled first (a failure only leaves it out, as a crash would).
        let _ = crate::journal::flush_into(record, &old);
        crate::journal::follow_change(record, rates).map_err(|error| Error::Journal {
            path: record.journal.clone(),
            reason: format!(
                "the rates were changed, but the journal and its record did not follow \
                 ({error}); change them again to finish"
            ),
        })?;
    }
    Ok(report)
}

/// Every admission a closed log holds, oldest first, one entry per record. The sentinel and a
/// new ring's fake records (timestamp 0, before every admission) are not admissions.
fn read_log(old: &Region) -> Result<Vec<Restored>, Error> {
    let corrupt = |reason: &str| Error::corrupt(old.path(), format!("corrupt ring: {reason}"));
    // The final head first (the log is closed, so it stays the head), then everything the
    // ring holds up to it.
    let Ok(since) = protocol::records_since(&old.read_words(), 0, &NoHook, |_, _| {});
    let head = since.map_err(corrupt)?.head;
    let mut entries = Vec::new();
    let after = head.wrapping_sub(old.header().capacity as u32);
    let Ok(read) = protocol::records_since(&old.read_words(), after, &NoHook, |record, weight| {
        if record.ts >= Record::FIRST_TS {
            entries.push(Restored {
                ts: record.ts,
                weight: u64::from(weight),
                records: 1,
            });
        }
    });
    let _: protocol::Since = read.map_err(corrupt)?;
    Ok(entries)
}

/// The rates a header records, in its order, with their units.
fn rates_of(header: &Header) -> Vec<Rate> {
    header
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| Rate::from_rule_with_unit(rule, layout::unit_of(header.labels, i)))
        .collect()
}

/// Does the file have exactly `rules` already, in this order, with the same unit names?
fn same_rates(header: &Header, rules: &[Rule], labels: u64) -> bool {
    header.rules == rules && header.labels == labels
}

// Real files: Miri (whose isolation has no `mkdir`) runs the protocol tests, not these.
#[cfg(all(test, not(miri)))]
mod tests;
