//! Waiting acquires, blocking and async: one retry policy (sleep until the log says the
//! request fits, with jitter).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::clock::{Clock, HostClock};
use crate::denied::Denied;

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
        self.acquire_until_stamped(weight, deadline_after(timeout))
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
        let mut retry = Retry::new(deadline);
        loop {
            let denied = match self.try_once(weight) {
                Ok(stamp) => return Ok(stamp),
                Err(denied) => denied,
            };
            match retry.after(&denied) {
                Ok(sleep) => std::thread::sleep(sleep),
                Err(how) => {
                    self.count_refusal(&denied, how);
                    return Err(denied);
                }
            }
        }
    }

    /// [`Limiter::acquire`] for async code (feature `tokio`): waits on tokio's timer, never
    /// blocking a thread while it waits, with the same retry policy (it sleeps until the
    /// moment the log says the request fits, plus jitter, and gives up at once when that
    /// moment is past the timeout).
    ///
    /// Cancel-safe while it sleeps: the future holds nothing then, so dropping it (a
    /// `tokio::time::timeout`, a `select!`) leaves the limiter as it was. A try on a file
    /// is one synchronous step that cannot be interrupted. On Redis (features `redis` and
    /// `tokio`) each try is one async round trip on a multiplexed connection, bounded by the
    /// per-call timeout, during which the task yields and no thread waits. Dropped during
    /// that round trip (or timed out), the try is taken back: an undo follows it on the same
    /// connection, and the server removes its admission if it made one, unless another
    /// client's admission came in between (then both stay, counted as `kept` beside the
    /// log). The outage policy decides about a call the server does not answer in time, as
    /// for [`Limiter::acquire`].
    ///
    /// Needs a tokio runtime with the time driver (`enable_time`, or `enable_all`), and on
    /// Redis the IO driver too (`enable_io`).
    ///
    /// # Errors
    ///
    /// As [`Limiter::acquire_until`].
    #[cfg(feature = "tokio")]
    pub async fn acquire_async(&self, weight: u64, timeout: Duration) -> Result<(), Denied> {
        let mut retry = Retry::new(deadline_after(timeout));
        loop {
            let denied = match self.try_once_async(weight).await {
                Ok(_) => return Ok(()),
                Err(denied) => denied,
            };
            match retry.after(&denied) {
                Ok(sleep) => tokio::time::sleep(sleep).await,
                Err(how) => {
                    self.count_refusal_async(&denied, how).await;
                    return Err(denied);
                }
            }
        }
    }
}

/// `timeout` from now, or a deadline far away for a timeout too long to add.
fn deadline_after(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32))
}

/// The retry policy every waiting acquire shares, blocking or async: after a denial, sleep
/// until the moment the log says the request fits, plus [`Jitter`], unless that moment is
/// past the deadline (nothing short of a reset could admit it sooner), or the denial has no
/// retry time (never fits, unusable, unreachable), or the deadline has passed.
struct Retry {
    deadline: Instant,
    jitter: Jitter,
}

impl Retry {
    fn new(deadline: Instant) -> Retry {
        Retry {
            deadline,
            jitter: Jitter::new(),
        }
    }

    /// How long to sleep before the next try after `denied`, or how the wait ends (the
    /// refusal to count, once).
    fn after(&mut self, denied: &Denied) -> Result<Duration, Refusal> {
        let Some(wait) = denied.retry_after() else {
            return Err(Refusal::Try);
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        // `left` zero: the deadline has passed. Only garbage in the file gives a zero
        // `wait` (a real denial frees at least a nanosecond later), and without this
        // check such a denial would spin past the deadline.
        if wait > left || left.is_zero() {
            return Err(Refusal::Wait);
        }
        Ok((wait + self.jitter.next(wait)).min(left))
    }
}

/// A random 64-bit number, from the clock and the process's hash seed (random per process,
/// and per call within it): the seed of [`Jitter`] and of the Redis backend's nonces.
pub(crate) fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(HostClock.now());
    hasher.finish()
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
    /// A generator seeded by [`random_seed`].
    pub fn new() -> Self {
        Jitter {
            state: random_seed() | 1,
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

    #[cfg(feature = "tokio")]
    mod async_wait {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        use crate::rate::Rate;

        use super::*;

        fn runtime() -> tokio::runtime::Runtime {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        }

        fn full(dir: &tempfile::TempDir, window: Duration) -> Limiter {
            let limiter = Limiter::open(dir.path().join("l"), &[Rate::new(2, window)]).unwrap();
            limiter.try_acquire(2).unwrap();
            limiter
        }

        /// It waits for the retry time on the runtime's timer, and the one thread keeps
        /// running other tasks meanwhile: a blocking sleep would leave the ticker at 0.
        #[test]
        fn it_waits_for_the_retry_time_without_blocking_the_thread() {
            let dir = tempfile::tempdir().unwrap();
            let limiter = full(&dir, Duration::from_millis(300));
            let retry = limiter.try_once(1).unwrap_err().retry_after().unwrap();
            let ticks = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            runtime().block_on(async {
                let ticker = {
                    let ticks = ticks.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            ticks.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                };
                limiter
                    .acquire_async(1, Duration::from_secs(30))
                    .await
                    .unwrap();
                ticker.abort();
            });
            assert!(started.elapsed() >= retry, "admitted before the retry time");
            assert!(ticks.load(Ordering::Relaxed) > 0, "the thread was blocked");
            assert_eq!(limiter.admitted().unwrap(), 2);
            assert_eq!(limiter.counters().unwrap().timed_out, Some(0));
        }

        /// A retry time past the timeout gives up at once, counted once as timed out.
        #[test]
        fn it_gives_up_at_once_when_the_retry_time_is_past_the_timeout() {
            let dir = tempfile::tempdir().unwrap();
            let limiter = full(&dir, Duration::from_secs(60));
            let denied = runtime()
                .block_on(limiter.acquire_async(1, Duration::from_millis(50)))
                .unwrap_err();
            assert!(denied.retry_after().unwrap() > Duration::from_secs(50));
            let counters = limiter.counters().unwrap();
            assert_eq!((counters.timed_out, counters.denied[0]), (Some(1), Some(1)));
            let never = runtime()
                .block_on(limiter.acquire_async(3, Duration::from_secs(60)))
                .unwrap_err();
            assert!(matches!(never.kind(), crate::DenialKind::NeverFits { .. }));
        }

        /// Dropping the future while it sleeps leaves the limiter as it was: nothing
        /// admitted, nothing counted; a later wait is admitted.
        #[test]
        fn dropping_it_while_it_waits_changes_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let limiter = full(&dir, Duration::from_millis(200));
            let rt = runtime();
            let dropped = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_millis(20),
                    limiter.acquire_async(1, Duration::from_secs(30)),
                )
                .await
            });
            assert!(dropped.is_err(), "the wait was still sleeping");
            assert_eq!(limiter.admitted().unwrap(), 1);
            assert_eq!(limiter.counters().unwrap().denied_total(), Some(0));
            rt.block_on(limiter.acquire_async(2, Duration::from_secs(30)))
                .unwrap();
            assert_eq!(limiter.admitted().unwrap(), 2);
        }
    }
}
