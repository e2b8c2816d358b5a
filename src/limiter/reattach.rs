//! Following a file that was replaced, reset or deleted: re-attach, or re-create it.

use crate::clock::Nanos;
use crate::denied::{DenialKind, Denied};
use crate::error::Error;
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
    ///
    /// A file that a reconfiguration of ours put in place (`layout::Lineage::succeeds`) is adopted
    /// with its rates; any other file must have ours. A file we re-create keeps the lineage
    /// (and the rates, adopted or not) of the one we were on, so that the processes still on
    /// an older configuration adopt it too.
    pub(super) fn reopen(&self, old: &Attached) -> Result<Attached, Error> {
        // An observer too: it would otherwise read the closed log again until it gave up.
        self.await_replacement(old)?;
        if self.files.read_only {
            return Attached::check(Region::observe(&self.path)?, None, &self.identity, None);
        }
        // First journal what the old file holds, so that the file that follows it (re-created
        // from the journal, or another process's) finds it journaled. A failure is kept in
        // the journal's status.
        #[cfg(feature = "journal")]
        if let Some(handle) = &self.journal
            && handle.journal().path().exists()
        {
            let _ = handle.journal().flush(&old.region, false);
        }
        // A file at the path (another process's, or one a change of rates put there) is
        // attached as it is, with no history to restore: a restore would count against the
        // rates we had, which the journal no longer records after a change of rates.
        let region = match Region::open_with_history(&self.path, &self.spec(None), &[]) {
            Ok(region) => region,
            Err(error) if std::fs::symlink_metadata(&self.path).is_ok() => return Err(error),
            Err(_) => self.recreate(old)?,
        };
        if region
            .header()
            .lineage
            .succeeds(old.region.header().lineage)
        {
            let adopted = Attached::check(region, None, &self.identity, None)?;
            // The journal counts against the new rates too (`set` made its databases record
            // them): a file this process re-creates later is restored by them.
            #[cfg(feature = "journal")]
            if let Some(handle) = &self.journal {
                handle.journal().adopt(&adopted.rules);
            }
            return Ok(adopted);
        }
        Attached::check(region, Some(&old.rules), &self.identity, Some(&old.rates))
    }

    /// Creates the file at the path, gone since `old` was attached: with `old`'s rates and
    /// lineage, and with the journal's history if there is a journal (or attaches to the one
    /// another process created meanwhile).
    fn recreate(&self, old: &Attached) -> Result<Region, Error> {
        let header = crate::layout::Header {
            labels: crate::layout::pack_units(old.rates.iter().map(|r| r.unit())),
            lineage: old.region.header().lineage,
            ..new_header(&old.rules, self.identity, self.clock.as_dyn())?
        };
        #[cfg(feature = "journal")]
        let (history, header) = {
            let history = match &self.journal {
                // Removed with its journal (`remove`): the limiter is forgotten, and comes
                // back as anyone re-creates it, empty.
                Some(handle)
                    if !handle.journal().path().exists()
                        && crate::journal::recorded(&self.path)?.is_none() =>
                {
                    None
                }
                // What the old file held was journaled first (`reopen`).
                Some(handle) => Some(handle.journal().restore(header.capacity)?),
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
        Region::open_with_history(&self.path, &self.spec(Some(&header)), &history)
    }

    /// How this limiter opens its file, creating it with `create` if given.
    fn spec<'a>(&self, create: Option<&'a crate::layout::Header>) -> OpenSpec<'a> {
        OpenSpec {
            create,
            mode: self.files.mode,
            group: self.files.group,
            dirs: self.files.dirs,
        }
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
            &old.rules,
            self.clock.shared(),
            &self.identity,
        )?;
        journal
            .map(|journal| {
                // As a journaled process does: the old file's records first (a failure only
                // leaves them to the next flush of another process).
                let _ = journal.flush(&old.region, false);
                journal.restore(capacity)
            })
            .transpose()
    }

    /// Waits while the path still names `old` after its log was closed and a change of rates
    /// holds it (`region/hold.rs`): only a change of rates closes a log before its file is
    /// displaced (a reset or remove displaces it first), and it holds the file until the new
    /// one is in its place, which takes as long as making the new file. A closed log that
    /// nobody holds (the change's process died, or garbage reads as a closed log) is reported
    /// at once; a hold is waited on for at most [`REPLACEMENT_WAIT`].
    fn await_replacement(&self, old: &Attached) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            if !matches!(old.region.still_linked(), Ok(true)) {
                return Ok(());
            }
            let Ok(Err(crate::protocol::RETIRED)) =
                crate::protocol::usage(&old.region.read_words(), &[], 0, &crate::protocol::NoHook)
            else {
                return Ok(());
            };
            let held = old.region.held_for_replacement();
            if !held || started.elapsed() >= REPLACEMENT_WAIT {
                // The hold may have gone because the new file just took the path.
                if !matches!(old.region.still_linked(), Ok(true)) {
                    return Ok(());
                }
                let why = if held {
                    format!(
                        "a change of its rates has not put the new file in place after {REPLACEMENT_WAIT:?}"
                    )
                } else {
                    "no new file took its place (a change of its rates that did not finish)".into()
                };
                return Err(Error::corrupt(
                    &self.path,
                    format!(
                        "its log is closed and {why}; change the rates again (`hostlimit set`) \
                         or reset the limiter (`hostlimit reset`)"
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }
}

/// How long a process waits for a change of rates to put its new file in place.
pub(super) const REPLACEMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
