//! Operator actions on a limiter file: reset and remove.
//!
//! Both displace the file at the path in one atomic step that tells them exactly which file
//! they displaced (an exchange of names for `reset`, a rename for `remove`; see
//! `region/files.rs`), and only then close that file's log. So two of them racing never
//! leave a process on a file nobody else sees (each retires what it replaced, even a file
//! the other had just installed), and one that fails changes nothing.

use std::fmt;
use std::path::Path;

use crate::clock::{Clock, ClockIdentity, HostClock};
use crate::error::Error;
use crate::layout::Header;
use crate::protocol::{self, NoHook};
use crate::region::{self, Displaced, Kind, Region};

use super::builder::new_header;

/// What [`reset`] or [`remove`] found at the path, and replaced or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OldFile {
    /// A limiter in working order. Every process still using it moves on at its next call.
    Limiter,
    /// A hostlimit file that could not be used, and what was wrong with it: `corrupt ring:
    /// ...`, `truncated: ...`, `damaged header: ...`, `layout version ...`, `empty file`.
    /// Its log could not be closed; a process still mapping it notices that the path names
    /// another file within its check interval (one second by default).
    Damaged(String),
}

impl fmt::Display for OldFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OldFile::Limiter => f.write_str("a limiter"),
            OldFile::Damaged(reason) => write!(f, "a damaged limiter file ({reason})"),
        }
    }
}

/// Resets the limiter at `path`: every window becomes empty, for every process using it.
///
/// A fresh file with the same rates, owner, group, permissions and clock atomically replaces
/// the old one, and the log of the file it replaced is closed, so each process still using
/// that file moves to the new one at its next call. Counters start again from zero. A
/// damaged file is replaced too, as long as its header (and so its rates) can be read: a
/// ring of garbage, a truncated file. Returns what the old file was.
///
/// # Errors
///
/// Nothing is changed on error. The file is missing, is not a hostlimit file
/// ([`Error::Corrupt`], "not a hostlimit file"), or its rates cannot be read (a damaged
/// header, another layout version: remove it and create it again); it was made with another
/// clock ([`Error::ClockMismatch`]); the directory is not writable; or this process cannot
/// give the new file the old one's owner and group (only they or root may reset it).
///
/// # Journal
///
/// A journaled limiter (one with a journal record, see `hostlimit::journal`) stays
/// journaled, and its journal forgets the old file's admissions: the reset writes a mark in
/// the journal directory, and no restore brings back what was admitted before it (after a
/// reboot, the limiter comes back as the reset left it, plus what was admitted since). A
/// mark that cannot be written is an [`Error::Journal`] that says the file was reset
/// nevertheless. An unreadable record is an error before anything is changed.
pub fn reset(path: impl AsRef<Path>) -> Result<OldFile, Error> {
    let path = path.as_ref();
    region::check_machine()?;
    #[cfg(feature = "journal")]
    let record = crate::journal::recorded(path)?;
    let examined = Region::examine(path)?;
    let header = match examined.kind {
        Kind::Limiter(header) => header,
        Kind::Foreign(reason) => return Err(Error::corrupt(path, reason)),
        Kind::Damaged(reason) => {
            return Err(Error::corrupt(
                path,
                format!(
                    "{reason}; its rates cannot be read, so it cannot be reset: remove it and \
                     create it again"
                ),
            ));
        }
    };
    let identity = host_clock_of(path, &header)?;
    let fresh = crate::layout::Header {
        labels: header.labels,
        flags: header.flags,
        // Still the same limiter: a process that slept through a reconfiguration and this
        // reset adopts the rates (`reconfigure.rs`).
        lineage: header.lineage,
        ..new_header(&header.rules, identity, &HostClock)?
    };
    let displaced = Region::replace(path, &fresh, &examined.owner)?;
    let old = retire_and_delete(displaced)?;
    // After the old log was closed: nothing of the old file is stamped later than this.
    #[cfg(feature = "journal")]
    if let Some(record) = record {
        crate::journal::mark_reset(&record.journal, &fresh, &identity, HostClock.now()).map_err(
            |error| Error::Journal {
                path: record.journal.clone(),
                reason: format!(
                    "{} was reset, but its journal could not be told, so a restore would \
                     bring the old admissions back: {error}",
                    path.display()
                ),
            },
        )?;
    }
    Ok(old)
}

/// This host's clock, which must be the one the file at `path` (its header `header`) was made
/// with: a file made in another boot or time namespace cannot be given a new file.
pub(super) fn host_clock_of(path: &Path, header: &Header) -> Result<ClockIdentity, Error> {
    let identity = HostClock
        .identity()
        .map_err(|e| Error::io(path, "read clock identity", e))?;
    match header.clock.mismatch(&identity) {
        Some(reason) => Err(Error::ClockMismatch {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(identity),
    }
}

/// Removes the limiter file at `path`, closing its log so that processes still using it
/// notice at their next call. Such a process re-creates the file with its own rates (as it
/// does after any deletion), so stop the users first if the limiter should stay gone. A
/// damaged limiter file (a ring of garbage, a truncated file, a damaged header, another
/// layout version) is removed too. Returns what the file was.
///
/// A journaled limiter's journal goes too: its record and the journal directory's files
/// (see `hostlimit::journal::forget`), so that the limiter does not come back
/// with its history. [`remove_keeping_journal`] keeps them.
///
/// # Errors
///
/// Nothing is changed on error. The file is missing or is not a hostlimit file
/// ([`Error::Corrupt`], "not a hostlimit file"), or cannot be removed (the directory is not
/// writable); the journal record cannot be read. A journal that cannot be deleted after the
/// file was removed is an [`Error::Journal`] saying so.
pub fn remove(path: impl AsRef<Path>) -> Result<OldFile, Error> {
    remove_file(path.as_ref(), false)
}

/// Removes the limiter file at `path` as [`remove`] does, but keeps its journal and its
/// journal record: the next process that opens the limiter creates it again with the
/// journal's history, as after a reboot.
///
/// # Errors
///
/// As [`remove`].
pub fn remove_keeping_journal(path: impl AsRef<Path>) -> Result<OldFile, Error> {
    remove_file(path.as_ref(), true)
}

fn remove_file(path: &Path, keep_journal: bool) -> Result<OldFile, Error> {
    region::check_machine()?;
    #[cfg(feature = "journal")]
    let record = crate::journal::recorded(path)?;
    if let Kind::Foreign(reason) = Region::examine(path)?.kind {
        return Err(Error::corrupt(path, reason));
    }
    let displaced = Region::take_away(path)?;
    // Kept, the journal must hold everything the file held: what no journaled process
    // journaled yet is journaled now (a failure only leaves it out, as a crash would).
    #[cfg(feature = "journal")]
    let old = match &record {
        Some(record) if keep_journal => retire_then(displaced, |closed| {
            let _ = crate::journal::flush_into(record, closed);
        })?,
        _ => retire_and_delete(displaced)?,
    };
    #[cfg(not(feature = "journal"))]
    let old = retire_and_delete(displaced)?;
    #[cfg(feature = "journal")]
    if let Some(record) = record
        && !keep_journal
    {
        crate::journal::forget(path).map_err(|error| Error::Journal {
            path: record.journal.clone(),
            reason: format!(
                "{} was removed, but its journal could not be: {error}",
                path.display()
            ),
        })?;
    }
    #[cfg(not(feature = "journal"))]
    let _ = keep_journal;
    Ok(old)
}

/// Closes the displaced file's log (if it is a usable limiter), then deletes it. What was
/// displaced is not necessarily what the caller examined (another reset or remove, or a
/// process re-creating the file, may have come in between): it is what the path named, and
/// so what must be retired.
pub(super) fn retire_and_delete(displaced: Displaced) -> Result<OldFile, Error> {
    retire_then(displaced, |_| {})
}

/// [`retire_and_delete`], running `closed` on the old file once its log is closed (nothing
/// more is committed to it), before it is deleted.
fn retire_then(displaced: Displaced, closed: impl FnOnce(&Region)) -> Result<OldFile, Error> {
    let path = displaced.path().to_path_buf();
    let kind = match displaced.fd() {
        Some(fd) => region::examine_file(&path, fd)?.kind,
        None => Kind::Foreign("not a regular file".into()),
    };
    let old = match kind {
        Kind::Foreign(reason) => {
            // Something else took the limiter's place meanwhile: give it back.
            let error = Error::corrupt(&path, format!("{reason}; it is left as it was"));
            displaced.put_back()?;
            return Err(error);
        }
        Kind::Damaged(reason) => OldFile::Damaged(reason),
        Kind::Limiter(_) => match Region::displaced(&displaced) {
            Ok(old) => {
                let Ok(retired) = protocol::retire(&old.words(), &NoHook);
                match retired {
                    Ok(_) => {
                        closed(&old);
                        OldFile::Limiter
                    }
                    Err(reason) => OldFile::Damaged(format!("corrupt ring: {reason}")),
                }
            }
            Err(Error::Truncated { size, expected, .. }) => {
                OldFile::Damaged(format!("truncated: {size} bytes, expected {expected}"))
            }
            Err(error) => OldFile::Damaged(error.to_string()),
        },
    };
    displaced.delete()?;
    Ok(old)
}
