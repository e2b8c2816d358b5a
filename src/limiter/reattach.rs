//! Following a file that was replaced, reset or deleted: re-attach, or re-create it.

use crate::clock::Nanos;
use crate::error::{DenialKind, Denied, Error};
use crate::region::{OpenSpec, Pinned, Region};
use crate::sync::Ordering;

use super::FileLimiter;
use super::attached::Attached;
use super::builder::new_header;

impl FileLimiter {
    /// The attached file, re-attaching first if the check interval has passed and the path
    /// now names another file (or none). The guard keeps it mapped, however often the
    /// limiter re-attaches meanwhile. `now` is a clock reading just taken; when the path was
    /// checked (which may re-attach: a wait) it is read again, so that nothing is stamped or
    /// timed from a reading older than a wait.
    #[inline(always)]
    pub(super) fn current(&self, now: &mut Nanos) -> Result<Pinned<'_, Attached>, Denied> {
        // Relaxed: only a timer; the file itself is published through the SwapCell.
        let next = self.next_check.load(Ordering::Relaxed);
        if *now >= next {
            self.recheck(*now, next)?;
            *now = self.clock.now();
        }
        Ok(self.attached.get())
    }

    #[cold]
    pub(super) fn recheck(&self, now: Nanos, next: u64) -> Result<(), Denied> {
        // One thread per interval does the check.
        let later = now.saturating_add(self.check_interval);
        if self
            .next_check
            .compare_exchange(next, later, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Ok(());
        }
        // Frees the files replaced at earlier re-attaches that no call still holds.
        self.attached.reclaim();
        if matches!(self.attached.get().region.still_linked(), Ok(true)) {
            return Ok(());
        }
        self.reattach(now).map(|_| ())
    }

    /// Attaches to whatever file the path names now, creating it with our rates if it is
    /// gone, and makes it current.
    #[cold]
    pub(super) fn reattach(&self, now: Nanos) -> Result<Pinned<'_, Attached>, Denied> {
        let old = self.attached.get();
        match self.reopen(&old) {
            Ok(fresh) => {
                self.attached.replace(fresh);
                Ok(self.attached.get())
            }
            Err(error) => {
                // Try again on the next call rather than keep using a file nobody else sees.
                self.next_check.store(now, Ordering::Relaxed);
                Err(old.denied(
                    usize::MAX,
                    DenialKind::Unavailable {
                        reason: format!(
                            "{} was replaced and cannot be re-attached: {error}",
                            self.path.display()
                        ),
                    },
                ))
            }
        }
    }

    /// Opens whatever file the path names now (creating it with our rates if it is gone, and
    /// with the journal's history if there is a journal). An observer only attaches, to
    /// whatever rates the file has now.
    pub(super) fn reopen(&self, old: &Attached) -> Result<Attached, Error> {
        if self.files.read_only {
            return Attached::check(Region::observe(&self.path)?, None, &self.identity, None);
        }
        let header = crate::layout::Header {
            labels: crate::layout::pack_units(old.rates.iter().map(|r| r.unit())),
            ..new_header(&old.rules, self.identity, self.clock.as_dyn())?
        };
        #[cfg(feature = "journal")]
        let (history, header) = {
            let history = match &self.journal {
                Some(handle) => {
                    // First journal what the old file holds, so that a new file restores it.
                    // A failure is kept in the journal's status.
                    let _ = handle.journal().flush(&old.region, false);
                    Some(handle.journal().restore(header.capacity)?)
                }
                // Journaled since this process opened it (or opened by an observer): the
                // record says where the history is, and a file is never made without it.
                None => self.recorded_history(old, header.capacity)?,
            };
            let journaled = history.is_some();
            let history = history.unwrap_or_default();
            let flags = if journaled {
                header.flags | crate::layout::FLAG_JOURNALED
            } else {
                header.flags
            };
            (history, crate::layout::Header { flags, ..header })
        };
        #[cfg(not(feature = "journal"))]
        let history: Vec<crate::protocol::Record> = Vec::new();
        let region = Region::open_with_history(
            &self.path,
            &OpenSpec {
                create: Some(&header),
                mode: self.files.mode,
                group: self.files.group,
                dirs: self.files.dirs,
            },
            &history,
        )?;
        Attached::check(region, Some(&old.rules), &self.identity, Some(&old.rates))
    }

    /// The history a file re-created by a process without a journal starts with: the
    /// recorded journal's, read through a journal opened for this once; none without a
    /// record (`None`).
    #[cfg(feature = "journal")]
    fn recorded_history(
        &self,
        old: &Attached,
        capacity: u64,
    ) -> Result<Option<Vec<crate::protocol::Record>>, Error> {
        let resolved = crate::journal::resolve(&self.path, None)?;
        let journal = crate::journal::Journal::open_resolved(
            &self.path,
            &resolved,
            &crate::journal::JournalConfig::default(),
            &old.rates,
            &old.rules,
            self.clock.shared(),
            &self.identity,
        )?;
        journal.map(|journal| journal.restore(capacity)).transpose()
    }
}
