//! The reset mark: a journal forgets what was admitted before the limiter was reset.
//!
//! [`reset`](crate::reset) replaces the shared file by an empty one; its journal must not
//! bring the old admissions back after a reboot. Deleting their rows is not enough: a process
//! still attached to the old file may journal more of its records after the reset. So the
//! reset writes a mark, `RESET` in the journal directory (atomically):
//!
//! ```text
//! FILE_ID CLOCK BOOT_NS WALL_NS
//! ```
//!
//! the new file's identity, and the moment just after the old file's log was closed, on the
//! file's clock and on the wall clock. A restore skips every admission row of another file
//! recorded at or before that moment (same clock: `boot_ns <= BOOT_NS`; another clock:
//! `wall_ns <= WALL_NS`). Rows of the new file, and of files created after it, are kept.
//! Unsettled leases are kept whatever their age: counting one again can only deny more. A
//! later reset replaces the mark (its moment is later, so it drops everything the earlier one
//! dropped). A mark that cannot be read makes the restore fail.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::Error;

/// The mark's file name in the journal directory.
pub(super) const MARK: &str = "RESET";

/// A parsed reset mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mark {
    /// The file the reset made (`FileKey::text`).
    pub file_id: String,
    /// The clock `boot_ns` comes from (`schema::clock_text`).
    pub clock: String,
    pub boot_ns: u64,
    pub wall_ns: u64,
}

impl Mark {
    /// True if an admission row was recorded before the reset, in another file than the one
    /// it made.
    pub fn drops(&self, file_id: &str, clock: &str, boot_ns: u64, wall_ns: u64) -> bool {
        file_id != self.file_id
            && if clock == self.clock {
                boot_ns <= self.boot_ns
            } else {
                wall_ns <= self.wall_ns
            }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.file_id, self.clock, self.boot_ns, self.wall_ns
        )
    }

    fn parse(text: &str) -> Option<Mark> {
        let mut words = text.trim_end_matches('\n').split(' ');
        let mark = Mark {
            file_id: words.next().filter(|w| !w.is_empty())?.to_string(),
            clock: words.next().filter(|w| !w.is_empty())?.to_string(),
            boot_ns: words.next()?.parse().ok()?,
            wall_ns: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(mark)
    }
}

/// The journal's reset mark, if any.
pub(super) fn read(journal: &Path) -> Result<Option<Mark>, Error> {
    let path = journal.join(MARK);
    let failed = |reason: String| Error::Journal {
        path: journal.to_path_buf(),
        reason: format!("{MARK}: {reason}"),
    };
    let text = match fs::read(&path) {
        Ok(bytes) if bytes.len() <= 4096 => {
            String::from_utf8(bytes).map_err(|_| failed("the reset mark is not text".into()))?
        }
        Ok(_) => return Err(failed("the reset mark is too long".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(format!("cannot read the reset mark: {e}"))),
    };
    Mark::parse(&text)
        .map(Some)
        .ok_or_else(|| failed(format!("not a reset mark: {:?}", text.trim_end())))
}

/// Writes (or replaces) the journal's reset mark.
pub(super) fn write(journal: &Path, mark: &Mark) -> Result<(), Error> {
    super::state::install(journal, &journal.join(MARK), mark.text().as_bytes()).map_err(
        |(op, e)| Error::Journal {
            path: journal.to_path_buf(),
            reason: format!("{MARK}: cannot write the reset mark ({op}: {e})"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> Mark {
        Mark {
            file_id: "5-6-7".into(),
            clock: "7:b:1".into(),
            boot_ns: 1000,
            wall_ns: 9000,
        }
    }

    #[test]
    fn drops_only_older_rows_of_other_files() {
        let m = mark();
        // Same clock: by the boot clock.
        assert!(m.drops("1-2-3", "7:b:1", 1000, u64::MAX));
        assert!(!m.drops("1-2-3", "7:b:1", 1001, 0));
        // The file the reset made keeps everything.
        assert!(!m.drops("5-6-7", "7:b:1", 1, 1));
        // Another clock (boot): by the wall clock.
        assert!(m.drops("1-2-3", "7:other:1", u64::MAX, 9000));
        assert!(!m.drops("1-2-3", "7:other:1", 0, 9001));
    }

    #[test]
    fn the_mark_round_trips_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &mark()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(mark()));
        for garbage in ["", "a b c", "a b 1 x", "a b 1 2 3", "a  1 2"] {
            fs::write(dir.path().join(MARK), garbage).unwrap();
            let error = read(dir.path()).unwrap_err();
            assert!(
                error.to_string().contains("reset mark"),
                "{garbage:?}: {error}"
            );
        }
    }
}
