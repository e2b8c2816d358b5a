//! Operator actions on a limiter file: reset and remove.

use std::path::Path;

use crate::clock::{Clock, HostClock};
use crate::error::Error;
use crate::protocol::{self, NoHook};
use crate::region::Region;

use super::builder::new_header;

/// Resets the limiter at `path`: every window becomes empty, for every process using it.
///
/// A fresh file with the same rates, permissions and clock atomically replaces the old one,
/// and the old one's log is closed, so each process still using it moves to the new file at
/// its next call. Counters start again from zero.
///
/// # Errors
///
/// The file cannot be opened or validated (see [`Builder::open`](super::Builder::open)), or the directory is not
/// writable.
pub fn reset(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let old = Region::existing(path)?;
    let identity = HostClock
        .identity()
        .map_err(|e| Error::io(path, "read clock identity", e))?;
    if let Some(reason) = old.header().clock.mismatch(&identity) {
        return Err(Error::ClockMismatch {
            path: path.to_path_buf(),
            reason,
        });
    }
    let header = crate::layout::Header {
        labels: old.header().labels,
        ..new_header(&old.header().rules, identity, &HostClock)?
    };
    Region::replace(path, &header, old.mode()?)?;
    retire(&old)
}

/// Removes the limiter file at `path`, closing its log first so that processes still using
/// it notice at their next call. Such a process re-creates the file with its own rates (as
/// it does after any deletion), so stop the users first if the limiter should stay gone.
///
/// # Errors
///
/// The file cannot be opened or validated, or cannot be unlinked.
pub fn remove(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let old = Region::existing(path)?;
    retire(&old)?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, "remove", e))
}

fn retire(region: &Region) -> Result<(), Error> {
    let Ok(result) = protocol::retire(&region.words(), &NoHook);
    result
        .map(|_| ())
        .map_err(|reason| Error::corrupt(region.path(), reason))
}
