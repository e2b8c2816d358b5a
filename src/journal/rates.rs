//! A journal's rates following a change of its limiter's rates
//! ([`reconfigure`](crate::reconfigure)): the rates its databases record, and the rates an
//! open journal counts against ([`Journal::adopt`]).

use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::limiter::rules_for;
use crate::protocol::Rule;
use crate::rate::Rate;

use super::files::Directory;
use super::schema::{self, Kind, describe, open_other, rates_text};
use super::state::{self, JournalRecord};
use super::{Journal, name};

/// Records `new` as the rates of every database of the journal directory `journal` that
/// records `old`, after the limiter's rates were changed from `old` to `new`
/// ([`reconfigure`](crate::reconfigure)), so that processes open the limiter with the new
/// rates and this journal, and a file restored from it counts its admissions against them.
/// Returns how many databases changed. A database of other rates is refused before any is
/// changed; one that has no tables yet is left alone.
///
/// A process that has the journal open counts against the rates it opened it with until its
/// limiter adopts the reconfigured file (`Journal::adopt`); its admissions stay in its
/// database, and count once they are restored with the new rates.
///
/// # Errors
///
/// [`Error::InvalidRates`] for invalid rates; [`Error::Journal`] if the directory cannot be
/// read, a database of it records other rates than `old` or `new`, or cannot be written.
pub fn follow_rates(journal: &Path, old: &[Rate], new: &[Rate]) -> Result<usize, Error> {
    let (from, to) = (rates_text(&rules_for(old)?), rates_text(&rules_for(new)?));
    let failed = |reason: String| Error::Journal {
        path: journal.to_path_buf(),
        reason,
    };
    let busy = Duration::from_secs(5);
    let dir = Directory::open(journal).map_err(failed)?;
    let databases = dir
        .databases()
        .map_err(|e| failed(format!("cannot list the directory: {e}")))?;
    let mut connections = Vec::new();
    for database in &databases {
        let named = |reason: String| failed(format!("{}: {reason}", name(database)));
        let conn = open_other(database, busy).map_err(|e| named(describe(&e, busy)))?;
        match schema::check(&conn, &from, false).map_err(|e| named(describe(&e, busy)))? {
            Kind::Ours => connections.push((database, conn)),
            Kind::Empty => {}
            Kind::Foreign(reason) => {
                // Already following (a run of this that stopped half-way) is fine.
                if !matches!(schema::check(&conn, &to, false), Ok(Kind::Ours)) {
                    return Err(named(reason));
                }
            }
        }
    }
    let mut changed = 0;
    for (database, conn) in connections {
        if schema::follow_rates(&conn, &from, &to)
            .map_err(|e| failed(format!("{}: {}", name(database), describe(&e, busy))))?
        {
            changed += 1;
        }
    }
    Ok(changed)
}

/// After the rates of the journaled limiter of `record` were changed to `rates`: its journal
/// and its record follow (the record first names the rates an attach re-creates the file
/// with after a reboot). Done again after a failure, it finishes what is left.
pub(crate) fn follow_change(record: &JournalRecord, rates: &[Rate]) -> Result<(), Error> {
    if record.journal.is_dir() {
        follow_rates(&record.journal, &record.rates, rates)?;
    }
    if record.rates != rates {
        state::rewrite(&JournalRecord {
            rates: rates.to_vec(),
            ..record.clone()
        })?;
    }
    Ok(())
}

/// The rates an open journal counts admissions against, as it needs them.
#[derive(Debug)]
pub(super) struct Rules {
    pub(super) rules: Vec<Rule>,
    /// The longest window: how far back a restore and a compaction keep admissions.
    pub(super) longest: u64,
    /// The text of the rates, as every database of the directory records it.
    pub(super) text: String,
}

impl Rules {
    pub(super) fn new(rules: &[Rule], text: String) -> Rules {
        Rules {
            rules: rules.to_vec(),
            longest: rules.iter().map(|r| r.window).max().unwrap_or(0),
            text,
        }
    }
}

impl Journal {
    /// The rates this journal counts against now.
    pub(super) fn rules(&self) -> crate::region::Pinned<'_, Rules> {
        self.rules.get()
    }

    /// Counts against `rules` from now on: called when the limiter adopts a file whose rates
    /// were changed ([`reconfigure`](crate::reconfigure), which made every database of the
    /// directory record them), so that a file this process re-creates later is restored, the
    /// journal compacted and strict mode's leases sized by the new rates, not by the ones the
    /// process was opened with.
    pub fn adopt(&self, rules: &[Rule]) {
        let text = rates_text(rules);
        if self.rules().text != text {
            self.rules.replace(Rules::new(rules, text));
        }
    }
}

#[cfg(test)]
mod tests;
