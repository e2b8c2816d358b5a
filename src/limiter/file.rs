//! The file backend: a limiter on one shared file (mapped, checked against our rates,
//! followed when it is replaced), its acquires and its readings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{ClockIdentity, Nanos};
use crate::denied::{DenialKind, Denied};
use crate::error::Error;
#[cfg(feature = "journal")]
use crate::journal::{self, Journal};
use crate::protocol::{self, NoHook, Rule};
use crate::rate::Rate;
use crate::region::{Dirs, Pinned, SwapCell};
use crate::sync::StdAtomicU64;

use super::attached::{Answer, Attached};
use super::counters::Refusal;
use super::{FileInfo, RateUsage, Stamp, Time};

/// A limiter on a shared file: the file backend behind [`Limiter`](super::Limiter).
#[derive(Debug)]
pub(crate) struct FileLimiter {
    /// Shared with the journal's background thread, which reads the ring of whatever file
    /// is attached.
    pub(super) attached: Arc<SwapCell<Attached>>,
    pub(super) path: PathBuf,
    /// How the file is opened again when it is replaced (and created, if it is gone).
    pub(super) files: Files,
    pub(super) clock: Time,
    pub(super) identity: ClockIdentity,
    pub(super) next_check: StdAtomicU64,
    pub(super) check_interval: u64,
    /// The journal when it is in strict mode: every acquire goes through its leases.
    #[cfg(feature = "journal")]
    pub(super) strict: Option<Arc<Journal>>,
    /// The journal and its background thread (stopped, after a last flush, on drop).
    #[cfg(feature = "journal")]
    pub(super) journal: Option<journal::Handle>,
    /// Why the limiter's recorded journal could not be opened by this process, which then
    /// attached to the existing file without it (see `Builder::open`).
    #[cfg(feature = "journal")]
    pub(super) journal_problem: Option<String>,
}

/// How a limiter opens its file: how it creates a missing one (mode, group, directories), or
/// only observes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Files {
    pub(super) mode: u32,
    pub(super) group: Option<u32>,
    pub(super) dirs: Dirs,
    /// Opened with [`Limiter::observe`](super::Limiter::observe): read-only, never created.
    pub(super) read_only: bool,
}

impl FileLimiter {
    /// One try, not counted as a refusal (a waiting acquire counts once, at its end).
    #[inline]
    pub(super) fn try_once(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        #[cfg(feature = "journal")]
        if let Some(journal) = &self.strict {
            return self.try_acquire_leased(journal, weight);
        }
        self.acquire_at(self.clock.now(), weight)
    }

    /// The denial of every acquire on an observer ([`Limiter::observe`](super::Limiter::observe)).
    #[cold]
    pub(super) fn observer_denial(&self) -> Denied {
        Denied::new(
            usize::MAX,
            None,
            DenialKind::Unavailable {
                reason: format!(
                    "{} is observed read-only (`Limiter::observe`), which never acquires: open \
                     it with `Limiter::open` or `Limiter::attach` (write permission needed) to \
                     acquire",
                    self.path.display()
                ),
            },
        )
    }

    /// One try of `try_acquire`: a refusal is counted, in the file that refused it.
    #[inline]
    pub(super) fn try_counted<A: Answer>(&self, weight: u64) -> Result<A, Denied> {
        #[cfg(feature = "journal")]
        if let Some(journal) = &self.strict {
            return self.try_leased_counted(journal, weight);
        }
        self.acquire_in(self.clock.now(), weight, Some(Refusal::Try))
    }

    /// `try_counted` in strict journal mode.
    #[cfg(feature = "journal")]
    #[inline(never)]
    fn try_leased_counted<A: Answer>(&self, journal: &Journal, weight: u64) -> Result<A, Denied> {
        self.try_acquire_leased(journal, weight)
            .map(A::admitted)
            .inspect_err(|denied| self.count_refusal(denied, Refusal::Try))
    }

    /// The rest of an acquire on `attached` (pinned by the caller) that its memo (`memo`, as
    /// read) did not answer.
    #[inline(never)]
    fn unanswered<A: Answer>(
        &self,
        attached: &Attached,
        memo: u128,
        now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Result<A, Denied> {
        match attached.unanswered(memo, now, weight, count) {
            Some(result) => result,
            // The retired file stays pinned until the caller returns: it is freed at a later
            // re-attach or reclaim.
            None => self.follow_retired(now, weight, count),
        }
    }

    /// One acquire at `now` (a clock reading just taken), with no journal lease.
    #[inline(always)]
    pub(super) fn acquire_at(&self, now: Nanos, weight: u64) -> Result<Option<Stamp>, Denied> {
        self.acquire_in(now, weight, None)
    }

    /// One acquire at `now`, with no journal lease; a refusal counted as `count` says, while
    /// the file that refused is still pinned.
    ///
    /// A repeat of the last denial (`Attached::repeat`) is answered here, in the caller's
    /// frame, with nothing but the pin, the memo and one slot: the rest of an acquire, which
    /// needs many more registers, is out of line (`FileLimiter::unanswered`), so that a
    /// denial does not pay for its frame.
    #[inline(always)]
    fn acquire_in<A: Answer>(
        &self,
        mut now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Result<A, Denied> {
        // The guard stays here: passed by value, its words were stored in pieces and copied
        // whole, a store-forwarding stall on every admission.
        let attached = self.current(&mut now)?;
        match attached.repeat(now, weight, count) {
            Ok(denied) => Err(denied),
            Err(memo) => self.unanswered(&attached, memo, now, weight, count),
        }
    }

    /// An acquire whose file was retired (reset or removed) at `now`: it goes on on the
    /// file's replacement; a file that keeps being retired under us is reported rather than
    /// chased forever.
    ///
    /// Re-attaching can wait (file I/O, and with a journal its SQLite writes and reads), so
    /// after it the clock is read again: an admission is never stamped, nor a retry time
    /// counted, from a reading older than a wait.
    #[cold]
    #[inline(never)]
    fn follow_retired<A: Answer>(
        &self,
        now: Nanos,
        weight: u64,
        count: Option<Refusal>,
    ) -> Result<A, Denied> {
        let mut attached = self.reattach(now)?;
        // Three more tries: four in all, each after a re-attach but the first.
        for _ in 0..3 {
            let now = self.clock.now();
            match attached.try_acquire(now, weight, count) {
                Some(result) => return result,
                None => attached = self.reattach(now)?,
            }
        }
        Err(attached.denied(
            usize::MAX,
            DenialKind::Unavailable {
                reason: format!("{} keeps being reset", self.path.display()),
            },
        ))
    }

    /// Every rate's use now, read on one consistent state without consuming anything.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub(super) fn usage(&self) -> Result<Vec<RateUsage>, Error> {
        let mut now = self.clock.now();
        let (attached, usage) = self.read_usage(&mut now, true)?;
        Ok(attached
            .rules
            .iter()
            .zip(usage.rates.iter())
            .enumerate()
            .map(|(index, (rule, used))| RateUsage {
                rate: attached.rates[index],
                used: used.used,
                remaining: rule.limit.saturating_sub(used.used),
                next_free: used
                    .next_free_at
                    .map(|at| Duration::from_nanos(at.saturating_sub(now))),
                denied: attached.denials(index).unwrap_or(u64::MAX),
            })
            .collect())
    }

    /// Admissions since the file was created, by all processes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub(super) fn admitted(&self) -> Result<u64, Error> {
        let mut now = self.clock.now();
        let (attached, usage) = self.read_usage(&mut now, false)?;
        Ok(attached.region.read_words().admitted(usage.head))
    }

    /// Reads a consistent usage snapshot, following a reset to the new file. `now` is read
    /// again after any re-attach (a wait), so the snapshot is as of the moment it was taken.
    pub(super) fn read_usage(
        &self,
        now: &mut Nanos,
        with_rates: bool,
    ) -> Result<(Pinned<'_, Attached>, protocol::Usage), Error> {
        let unusable = |d: Denied| Error::corrupt(&self.path, d.to_string());
        let mut attached = self.current(now).map_err(unusable)?;
        for _ in 0..4 {
            let rules: &[Rule] = if with_rates { &attached.rules } else { &[] };
            let Ok(result) = protocol::usage(&attached.region.read_words(), rules, *now, &NoHook);
            match result {
                Ok(usage) => return Ok((attached, usage)),
                Err(protocol::RETIRED) => {
                    attached = self.reattach(*now).map_err(unusable)?;
                    *now = self.clock.now();
                }
                Err(reason) => return Err(Error::corrupt(&self.path, reason)),
            }
        }
        Err(Error::corrupt(&self.path, "the file keeps being reset"))
    }

    /// The state of the journal: `Err` with the reason while the last journal write failed
    /// (a background flush, a lease, a compaction), until one succeeds again. Always `Ok`
    /// without a journal. A failure is never dropped silently: admissions not yet journaled
    /// stay in the shared ring and are written at the next successful flush, as long as the
    /// ring still holds them.
    #[cfg(feature = "journal")]
    pub(super) fn journal_status(&self) -> Result<(), String> {
        match (&self.journal, &self.journal_problem) {
            (Some(handle), _) => handle.journal().status(),
            (None, Some(problem)) => Err(problem.clone()),
            (None, None) => Ok(()),
        }
    }

    /// The SQLite database this limiter journals to: its own, in the journal directory given
    /// to [`Builder::journal`] (every process, every open journal, writes one of its own;
    /// see [`journal`](crate::journal)). `None` without a journal.
    #[cfg(feature = "journal")]
    pub(super) fn journal_file(&self) -> Option<&Path> {
        self.journal.as_ref().map(|handle| handle.journal().file())
    }

    /// Journals now, synchronously, every admission the shared ring holds that the journal
    /// does not, and the use of this process's leases; settles the leases that are done.
    /// The background thread does the same once per interval. Without a journal, does
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] if the journal cannot be written; [`Error::Corrupt`] if the shared
    /// ring is unusable.
    #[cfg(feature = "journal")]
    pub(super) fn journal_flush(&self) -> Result<(), Error> {
        match &self.journal {
            Some(handle) => handle.journal().flush(&self.attached.get().region, false),
            None => Ok(()),
        }
    }

    /// The rates, in the file's order.
    pub(super) fn rates(&self) -> Vec<Rate> {
        self.attached.get().rates.clone()
    }

    /// The file this limiter maps.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What the file records about itself.
    pub(super) fn info(&self) -> FileInfo {
        let attached = self.attached.get();
        let header = attached.region.header();
        FileInfo {
            path: self.path.clone(),
            rates: attached.rates.clone(),
            capacity: header.capacity,
            size: header.file_size(),
            created: SystemTime::UNIX_EPOCH + Duration::from_nanos(header.created_wall_ns),
            creator_pid: header.creator_pid,
            creator_uid: header.creator_uid,
            clock: header.clock,
            journaled: header.flags & crate::layout::FLAG_JOURNALED != 0,
        }
    }
}
