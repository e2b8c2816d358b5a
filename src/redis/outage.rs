//! The outage policy: what a Redis limiter does when its server is out of reach (down, slow
//! past the call's timeout, loading, failing over), and the counts of what it did.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a Redis limiter does when its server cannot be reached within the call's timeout.
///
/// Whatever the policy, the outcome is visible: a denial of kind
/// [`DenialKind::Unreachable`](crate::DenialKind::Unreachable), and a count in
/// [`Limiter::outages`](crate::Limiter::outages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnOutage {
    /// Deny (the default): nothing is admitted while the server is unreachable.
    #[default]
    Deny,
    /// Admit without counting: the limit is not enforced while the server is unreachable.
    Allow,
    /// Fall back to the host-wide file limiter of the same name and rates
    /// ([`Limiter::named`](crate::Limiter::named)): the limit holds per host, not across
    /// the fleet, while the server is unreachable. The file is opened at connect.
    FallBack,
}

/// What the outage policy decided in this process, from
/// [`Limiter::outages`](crate::Limiter::outages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outages {
    /// Calls denied because the server was unreachable ([`OnOutage::Deny`]).
    pub denied: u64,
    /// Calls admitted without counting ([`OnOutage::Allow`]).
    pub allowed: u64,
    /// Calls decided by the host-wide file limiter instead ([`OnOutage::FallBack`]).
    pub fell_back: u64,
    /// Connections made again after a failure.
    pub reconnects: u64,
}

/// The counts, process-local.
#[derive(Debug, Default)]
pub(super) struct Counts {
    denied: AtomicU64,
    allowed: AtomicU64,
    fell_back: AtomicU64,
}

impl Counts {
    /// Counts one decision of `policy`.
    pub(super) fn count(&self, policy: OnOutage) {
        let counter = match policy {
            OnOutage::Deny => &self.denied,
            OnOutage::Allow => &self.allowed,
            OnOutage::FallBack => &self.fell_back,
        };
        // Relaxed: statistics.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with the link's reconnections.
    pub(super) fn read(&self, reconnects: u64) -> Outages {
        Outages {
            denied: self.denied.load(Ordering::Relaxed),
            allowed: self.allowed.load(Ordering::Relaxed),
            fell_back: self.fell_back.load(Ordering::Relaxed),
            reconnects,
        }
    }
}
