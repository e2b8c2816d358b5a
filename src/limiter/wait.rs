//! Blocking acquires: sleep until the log says the request fits, with jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::clock::{Clock, HostClock};
use crate::error::Denied;

use super::{Limiter, Refusal, Stamp, nanos};

impl Limiter {
    /// Waits until `weight` can be admitted, at most `timeout`; see [`Limiter::acquire_until`].
    ///
    /// # Errors
    ///
    /// As [`Limiter::acquire_until`].
    pub fn acquire(&self, weight: u64, timeout: Duration) -> Result<(), Denied> {
        self.acquire_stamped(weight, timeout).map(|_| ())
    }

    /// Waits until `weight` can be admitted, or until `deadline`.
    ///
    /// It does not poll: after a denial it sleeps until the moment the log says the request
    /// could fit (plus a small random delay, so that many waiters do not all wake at the same
    /// instant), then tries again. If that moment is past the deadline it gives up at once,
    /// since nothing short of a reset could admit it sooner.
    ///
    /// # Errors
    ///
    /// The last [`Denied`]: for a timeout its `retry_after` says how far off admission was;
    /// a final denial (never fits, unusable file) is returned immediately.
    pub fn acquire_until(&self, weight: u64, deadline: Instant) -> Result<(), Denied> {
        self.acquire_until_stamped(weight, deadline).map(|_| ())
    }

    /// [`Limiter::acquire`], returning the admission's [`Stamp`] as
    /// [`Limiter::try_acquire_stamped`] does.
    ///
    /// # Errors
    ///
    /// As [`Limiter::acquire_until`].
    pub fn acquire_stamped(&self, weight: u64, timeout: Duration) -> Result<Option<Stamp>, Denied> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32));
        self.acquire_until_stamped(weight, deadline)
    }

    /// [`Limiter::acquire_until`], returning the admission's [`Stamp`] as
    /// [`Limiter::try_acquire_stamped`] does.
    ///
    /// # Errors
    ///
    /// As [`Limiter::acquire_until`].
    pub fn acquire_until_stamped(
        &self,
        weight: u64,
        deadline: Instant,
    ) -> Result<Option<Stamp>, Denied> {
        let mut jitter = Jitter::new();
        loop {
            // The tries are not refusals; giving up is one, counted once.
            let denied = match self.try_once(weight) {
                Ok(stamp) => return Ok(stamp),
                Err(denied) => denied,
            };
            let Some(wait) = denied.retry_after() else {
                self.count_refusal(&denied, Refusal::Try);
                return Err(denied);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // `left` zero: the deadline has passed. Only garbage in the file gives a zero
            // `wait` (a real denial frees at least a nanosecond later), and without this
            // check such a denial would spin past the deadline.
            if wait > left || left.is_zero() {
                self.count_refusal(&denied, Refusal::Wait);
                return Err(denied);
            }
            std::thread::sleep((wait + jitter.next(wait)).min(left));
        }
    }
}

/// Small random delays for waiters, so that those told the same retry-after spread out.
/// Public (hidden) for the Python binding, whose interruptible wait uses the same policy.
#[doc(hidden)]
#[derive(Debug)]
pub struct Jitter {
    state: u64,
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

impl Jitter {
    /// A generator seeded from the clock and the process's hash seed.
    pub fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(HostClock.now());
        Jitter {
            state: hasher.finish() | 1,
        }
    }

    /// A delay in `[0, wait / 8 + 200 µs)`, at most 50 ms.
    pub fn next(&mut self, wait: Duration) -> Duration {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let random = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = nanos(wait / 8 + Duration::from_micros(200)).min(50_000_000);
        Duration::from_nanos(random % span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waiters told the same retry-after must not all wake at the same instant.
    #[test]
    fn jitter_spreads_waiters_within_its_bound() {
        for wait in [
            Duration::ZERO,
            Duration::from_millis(8),
            Duration::from_secs(10),
        ] {
            let bound = (wait / 8 + Duration::from_micros(200)).min(Duration::from_millis(50));
            let delays: Vec<Duration> = (0..64).map(|_| Jitter::new().next(wait)).collect();
            assert!(delays.iter().all(|d| *d < bound), "{wait:?}: {delays:?}");
            let mut distinct = delays.clone();
            distinct.sort();
            distinct.dedup();
            assert!(
                distinct.len() > 48,
                "{wait:?}: only {} distinct delays",
                distinct.len()
            );
        }
    }
}
