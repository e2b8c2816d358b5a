//! A journal's recorded rates following a change of its limiter's rates
//! ([`reconfigure`](crate::reconfigure)).

use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::limiter::rules_for;
use crate::rate::Rate;

use super::files::Directory;
use super::name;
use super::schema::{self, Kind, describe, open_other, rates_text};
use super::state::{self, JournalRecord};

/// Records `new` as the rates of every database of the journal directory `journal` that
/// records `old`, after the limiter's rates were changed from `old` to `new`
/// ([`reconfigure`](crate::reconfigure)), so that processes open the limiter with the new
/// rates and this journal, and a file restored from it counts its admissions against them.
/// Returns how many databases changed. A database of other rates is refused before any is
/// changed; one that has no tables yet is left alone.
///
/// Processes that have the journal open keep the rates they opened it with: run this when
/// none does (their admissions stay in their databases, and count once they are restored
/// with the new rates), and open the journal afterwards with the new rates.
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
