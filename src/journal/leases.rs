//! Strict mode's leases: capacity reserved in the journal before it is handed out.

use crate::clock::Nanos;
use crate::limiter::Stamp;
use crate::protocol::Rule;
use crate::region::Region;

use super::restore::wall_at;
use super::{FileKey, Journal, lock};

/// A lease reserves this fraction (1/LEASE_DIVISOR) of the smallest limit.
const LEASE_DIVISOR: u64 = 64;

/// A lease as this process keeps it.
#[derive(Debug)]
pub(super) struct Lease {
    id: i64,
    /// End of the lease, file clock.
    until: Nanos,
    left_weight: u64,
    left_requests: u64,
    /// What admissions under the lease used so far.
    used_weight: u64,
    used_requests: u64,
    /// Reservations handed out and not yet committed or returned.
    in_flight: u32,
    /// The file its admissions went to.
    file: FileTag,
}

/// Which file a lease's admissions were committed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileTag {
    None,
    One(FileKey),
    /// Several (the file was replaced meanwhile): the lease is never settled, only compacted.
    Mixed,
}

#[derive(Debug, Default)]
pub(super) struct Leases {
    pub(super) current: Option<Lease>,
    /// Leases no longer handed out, settled once nothing is in flight and the journal holds
    /// their admissions.
    pub(super) retired: Vec<Lease>,
}

impl Leases {
    fn find(&mut self, id: i64) -> Option<&mut Lease> {
        self.current
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|lease| lease.id == id)
    }
}

/// A reservation out of a lease, for one acquire.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Ticket {
    /// The clock, read after every wait of the reservation.
    pub now: Nanos,
    lease: i64,
    until: Nanos,
    weight: u64,
    requests: u64,
}

/// A lease to commit.
pub(super) struct NewLease {
    pub(super) until: Nanos,
    pub(super) until_wall: u64,
    pub(super) weight: u64,
    pub(super) requests: u64,
}

/// A lease's state to write in one flush.
pub(super) struct LeaseUpdate {
    pub(super) id: i64,
    pub(super) used_weight: u64,
    pub(super) used_requests: u64,
    pub(super) settle: bool,
}

impl Journal {
    /// Does an acquire of `weight` need a lease? Not if it charges nothing, nor if it can
    /// never fit (the protocol refuses it without a record).
    pub fn needs_lease(&self, weight: u64) -> bool {
        let units = |rule: &Rule| if rule.requests { 1 } else { weight };
        let rules = &self.rules().rules;
        rules.iter().any(|rule| units(rule) > 0)
            && rules.iter().all(|rule| units(rule) <= rule.limit)
    }

    /// Reserves `weight` (and one request) for an acquire on `region`, taking a new lease if
    /// the current one cannot cover it. The new lease is committed to the journal before any
    /// of it is handed out (this call then waits for SQLite), in one transaction with the
    /// ring's records not yet journaled and the settlement of the old lease, so that a crash
    /// never finds more than the current lease unsettled.
    ///
    /// The clock is read after each wait (for the leases' lock, for the journal): the
    /// ticket's `now` is the reading the acquire must use.
    pub fn reserve(&self, region: &Region, weight: u64) -> Result<Ticket, String> {
        let rules = self.rules();
        let weight_limit = rules
            .rules
            .iter()
            .filter(|r| !r.requests)
            .map(|r| r.limit)
            .min();
        let request_limit = rules
            .rules
            .iter()
            .filter(|r| r.requests)
            .map(|r| r.limit)
            .min();
        let need_weight = if weight_limit.is_some() { weight } else { 0 };
        let need_requests = u64::from(request_limit.is_some());
        let mut leases = lock(&self.leases);
        let mut now = self.clock.now();
        let covers = |lease: &Lease| {
            now < lease.until
                && lease.left_weight >= need_weight
                && lease.left_requests >= need_requests
        };
        if !leases.current.as_ref().is_some_and(covers) {
            let length = u64::try_from(self.durability.interval().as_nanos()).unwrap_or(u64::MAX);
            let until = now.saturating_add(length);
            let lease = NewLease {
                until,
                until_wall: wall_at(until, now, self.wall.now()),
                weight: weight_limit.map_or(0, |limit| {
                    (limit / LEASE_DIVISOR).max(need_weight).clamp(1, limit)
                }),
                requests: request_limit.map_or(0, |limit| (limit / LEASE_DIVISOR).max(1)),
            };
            if let Some(old) = leases.current.take() {
                leases.retired.push(old);
            }
            let updates = lease_updates(&mut leases, FileKey::of(region.header()));
            let written = self.write(region, &updates, Some(&lease));
            now = self.clock.now();
            *lock(&self.lease_status) = written.as_ref().err().map(ToString::to_string);
            let id = match written {
                Ok(Some(id)) => id,
                Ok(None) => unreachable!("a transaction with a lease returns its id"),
                Err(e) => return Err(e.to_string()),
            };
            forget_settled(&mut leases, &updates);
            leases.current = Some(Lease {
                id,
                until,
                left_weight: lease.weight,
                left_requests: lease.requests,
                used_weight: 0,
                used_requests: 0,
                in_flight: 0,
                file: FileTag::None,
            });
        }
        let Some(lease) = leases.current.as_mut() else {
            unreachable!("a lease was just taken");
        };
        lease.left_weight -= need_weight;
        lease.left_requests -= need_requests;
        lease.in_flight += 1;
        Ok(Ticket {
            now,
            lease: lease.id,
            until: lease.until,
            weight: need_weight,
            requests: need_requests,
        })
    }

    /// Ends a reservation: `admitted` says where and how the acquire was recorded, `None`
    /// gives the reservation back. Returns true if the admission was recorded after the
    /// lease's end: the caller must then journal it before reporting it.
    pub fn finish(&self, ticket: Ticket, admitted: Option<(FileKey, Stamp)>) -> bool {
        let mut leases = lock(&self.leases);
        let Some(lease) = leases.find(ticket.lease) else {
            return admitted.is_some_and(|(_, stamp)| stamp.timestamp > ticket.until);
        };
        lease.in_flight = lease.in_flight.saturating_sub(1);
        match admitted {
            Some((key, stamp)) => {
                lease.used_weight += ticket.weight;
                lease.used_requests += ticket.requests;
                lease.file = match lease.file {
                    FileTag::None => FileTag::One(key),
                    FileTag::One(file) if file == key => FileTag::One(key),
                    _ => FileTag::Mixed,
                };
                stamp.timestamp > ticket.until
            }
            None => {
                lease.left_weight += ticket.weight;
                lease.left_requests += ticket.requests;
                false
            }
        }
    }
}

/// What the next write records about the leases whose admissions all went to `key`: their
/// use, and settlement for those retired with nothing in flight.
pub(super) fn lease_updates(leases: &mut Leases, key: FileKey) -> Vec<LeaseUpdate> {
    let ours = |lease: &Lease| lease.file == FileTag::None || lease.file == FileTag::One(key);
    // A finished lease whose admissions went (also) to another file cannot be vouched for by
    // this file's ring: it stays unsettled in the journal (counted whole after a crash, the
    // safe side) until compaction, and is forgotten here.
    leases
        .retired
        .retain(|lease| lease.in_flight > 0 || ours(lease));
    let current = leases.current.iter().map(|lease| (lease, false));
    let retired = leases.retired.iter().map(|lease| (lease, true));
    current
        .chain(retired)
        .filter(|(lease, _)| ours(lease))
        .map(|(lease, retired)| LeaseUpdate {
            id: lease.id,
            used_weight: lease.used_weight,
            used_requests: lease.used_requests,
            settle: retired && lease.in_flight == 0,
        })
        .collect()
}

/// Forgets the leases a successful write settled.
pub(super) fn forget_settled(leases: &mut Leases, updates: &[LeaseUpdate]) {
    leases
        .retired
        .retain(|lease| !updates.iter().any(|u| u.settle && u.id == lease.id));
}
