//! Strict journal mode: every admission is covered by a journal lease taken before it.

use crate::denied::{DenialKind, Denied};
use crate::journal::{self, Journal};
use crate::region::{Pinned, Region, SwapCell};

use super::attached::Attached;
use super::{FileLimiter, Stamp};

impl FileLimiter {
    /// An acquire in strict journal mode: reserve out of a lease (taking a new one from the
    /// journal if needed, before anything is admitted), admit, then account for it.
    ///
    /// Every step that can wait (the path check, which may re-attach; the lease, which may
    /// write the journal; a re-attach after a reset) is followed by a fresh clock reading, so
    /// the admission is stamped, and a denial's retry time counted, from after the wait.
    #[inline(never)]
    pub(super) fn try_acquire_leased(
        &self,
        journal: &Journal,
        weight: u64,
    ) -> Result<Option<Stamp>, Denied> {
        let mut now = self.clock.now();
        if !journal.needs_lease(weight) {
            return self.acquire_at(now, weight);
        }
        let mut attached = self.current(&mut now)?;
        let ticket = journal
            .reserve(&attached.region, weight)
            .map_err(|reason| {
                attached.denied(
                    usize::MAX,
                    DenialKind::Unavailable {
                        reason: format!("no journal lease: {reason}"),
                    },
                )
            })?;
        now = ticket.now;
        let mut result = None;
        for _ in 0..4 {
            match attached.try_acquire(now, weight, None) {
                Some(outcome) => {
                    result = Some(outcome);
                    break;
                }
                None => match self.reattach(now) {
                    Ok(fresh) => {
                        attached = fresh;
                        now = self.clock.now();
                    }
                    Err(denied) => {
                        let _ = journal.finish(ticket, None);
                        return Err(denied);
                    }
                },
            }
        }
        let result = result.unwrap_or_else(|| {
            Err(attached.denied(
                usize::MAX,
                DenialKind::Unavailable {
                    reason: format!("{} keeps being reset", self.path.display()),
                },
            ))
        });
        let Ok(Some(stamp)) = result else {
            let _ = journal.finish(ticket, None);
            return result;
        };
        let key = journal::FileKey::of(attached.region.header());
        if journal.finish(ticket, Some((key, stamp))) {
            // Recorded after the lease's end, which is where a crash would count the lease:
            // journal it before reporting it. Should that fail, the caller is told no (the
            // capacity stays charged, the safe side).
            if let Err(error) = journal.flush(&attached.region, false) {
                return Err(attached.denied(
                    usize::MAX,
                    DenialKind::Unavailable {
                        reason: format!("admitted late but not journaled: {error}"),
                    },
                ));
            }
        }
        result
    }
}

impl journal::Source for SwapCell<Attached> {
    fn region(&self) -> Pinned<'_, Region> {
        Pinned::map(self.get(), |attached| &attached.region)
    }
}
