//! [`Limiter`]: wires the shared file (`region`), the commit protocol and the clock together.
//!
//! The concerns live in submodules: `file` (the file backend: one limiter on a shared file),
//! `builder` (options and opening), `attached` (one mapped
//! file checked against our rates, one acquire on it), `reattach` (following a replaced or
//! deleted file), `wait` (blocking acquires), `leased` (strict journal mode), `admin`
//! (reset and remove) and `reconfigure` (changing the rates of a limiter in use).

mod admin;
mod attached;
mod builder;
mod counters;
mod file;
#[cfg(feature = "journal")]
mod leased;
mod pacing;
mod reattach;
mod reconfigure;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, ClockIdentity, HostClock, Nanos};
use crate::denied::Denied;
use crate::error::Error;
#[cfg(feature = "journal")]
use crate::journal::JournalConfig;
use crate::rate::Rate;

pub use admin::{OldFile, remove, remove_keeping_journal, reset};
pub use builder::Builder;
#[cfg(any(feature = "journal", feature = "redis"))]
pub(crate) use builder::rules_for;
pub use counters::Counters;
use counters::Refusal;
use file::FileLimiter;
pub use pacing::Pacing;
pub use reconfigure::{Reconfigured, reconfigure};
#[doc(hidden)]
pub use wait::Jitter;
#[cfg(all(feature = "redis", any(feature = "tokio", test)))]
pub(crate) use wait::random_seed;

/// Where [`Limiter::named`] keeps its files unless `HOSTLIMIT_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm/hostlimit";

/// The environment variable that overrides [`DEFAULT_DIR`].
pub const DIR_ENV: &str = "HOSTLIMIT_DIR";

/// The directory named limiters live in: `$HOSTLIMIT_DIR`, or [`DEFAULT_DIR`].
pub fn default_dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// The path of the limiter called `name` in `dir`, after checking the name.
pub fn path_for(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let ok = (1..=200).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(dir.join(name))
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// One rate's state at one moment, from [`Limiter::usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateUsage {
    /// The rate.
    pub rate: Rate,
    /// Weight (or requests) admitted inside the current window.
    pub used: u64,
    /// What is left in the current window: `limit - used`.
    pub remaining: u64,
    /// When the oldest admission in the window leaves it, freeing room; `None` if the window
    /// is empty.
    pub next_free: Option<Duration>,
    /// Requests this rate refused since the file was created (all processes), as
    /// [`Counters::denied`] counts them; `u64::MAX` if the file's counter is implausible
    /// (garbage: see [`Limiter::counters`]).
    pub denied: u64,
}

/// How an admission was recorded in the shared log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The recorded timestamp: nanoseconds of the file's clock (`CLOCK_BOOTTIME` for real
    /// limiters). It lies between the caller's clock read and the moment of the commit, and
    /// never decreases along the log.
    pub timestamp: Nanos,
    /// The admission's sequence number in the log, modulo 2^32 (1 for the first).
    pub sequence: u32,
}

/// What a limiter file records about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file.
    pub path: PathBuf,
    /// The rates, in the file's order.
    pub rates: Vec<Rate>,
    /// Ring slots (records of history kept).
    pub capacity: u64,
    /// File size in bytes.
    pub size: u64,
    /// When the file was created (wall clock).
    pub created: SystemTime,
    /// Process that created it.
    pub creator_pid: u64,
    /// User that created it.
    pub creator_uid: u64,
    /// The clock its timestamps come from.
    pub clock: ClockIdentity,
    /// The file was made by a process with a journal (its header says so; where the journal
    /// is, `hostlimit::journal::recorded` says). False for files made
    /// without one, and for files of versions before the flag.
    pub journaled: bool,
}

/// A host-wide rate limiter: every process that opens the same file shares its limits.
///
/// `Limiter` is `Send + Sync`; share one per process (an `Arc` or a static) rather than
/// opening the file once per thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use hostlimit::{Limiter, Rate};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("api");
/// let limiter = Limiter::open(&path, &[
///     Rate::new(2, Duration::from_secs(1)),
///     Rate::new(100, Duration::from_secs(60)),
/// ])?;
/// assert!(limiter.try_acquire(1).is_ok());
/// assert!(limiter.try_acquire(1).is_ok());
/// let denied = limiter.try_acquire(1).unwrap_err();
/// assert_eq!(denied.rate(), Some(Rate::new(2, Duration::from_secs(1))));
/// assert!(denied.retry_after().unwrap() <= Duration::from_secs(1));
/// # Ok::<(), hostlimit::Error>(())
/// ```
#[derive(Debug)]
pub struct Limiter {
    backend: Backend,
}

/// Where a limiter's log lives. Every public method of [`Limiter`] is one `match` here: a
/// new backend is a new arm, not a branch inside another backend's code.
#[derive(Debug)]
enum Backend {
    /// A file every process on this host maps.
    File(FileLimiter),
    /// A file mapped read-only ([`Limiter::observe`]): readings only; every acquire is
    /// refused, and nothing is counted in the file.
    Observer(FileLimiter),
    /// A Redis server every host of a fleet reaches (feature `redis`).
    #[cfg(feature = "redis")]
    Redis(Box<crate::redis::RedisLimiter>),
}

impl Limiter {
    /// Opens the limiter file at `path` with `rates`, creating it if it does not exist, or
    /// attaching to it if it does. A missing directory is created only if it is the
    /// directory of named limiters ([`default_dir`], made shared); see
    /// [`Builder::create_dirs`] for others.
    ///
    /// # Errors
    ///
    /// See [`Builder::open`].
    pub fn open(path: impl AsRef<Path>, rates: &[Rate]) -> Result<Limiter, Error> {
        Limiter::builder(rates).open(path)
    }

    /// Opens the limiter called `name` in [`default_dir`] (`/dev/shm/hostlimit` unless
    /// `HOSTLIMIT_DIR` is set).
    pub fn named(name: &str, rates: &[Rate]) -> Result<Limiter, Error> {
        Limiter::builder(rates).open_named(name)
    }

    /// Attaches to an existing limiter file, adopting whatever rates it has.
    ///
    /// A journaled limiter (one with a journal record, see `hostlimit::journal`) is
    /// opened with its journal, and if its file is gone (a reboot), created again with the
    /// recorded rates and the journal's history; without a record, a missing file is an
    /// error.
    pub fn attach(path: impl AsRef<Path>) -> Result<Limiter, Error> {
        Limiter::builder(&[]).attach(path)
    }

    /// Observes an existing limiter file without any right to change it: the file is opened
    /// read-only and mapped read-only, so read permission on it is enough (a monitoring
    /// account needs nothing more). [`usage`](Limiter::usage),
    /// [`admitted`](Limiter::admitted), [`counters`](Limiter::counters),
    /// [`info`](Limiter::info) and [`rates`](Limiter::rates) work as on any limiter, and follow
    /// the file when it is reset or replaced; every acquire is refused
    /// ([`DenialKind::Unavailable`](crate::DenialKind::Unavailable), saying the limiter is
    /// observed read-only), and nothing is written to the file, not even the counters. A file
    /// that is gone is not re-created.
    ///
    /// # Errors
    ///
    /// As [`Limiter::attach`] (a missing, corrupt or foreign file, a symbolic link, no read
    /// permission: the error names the file's owner and mode), and [`Error::Unsupported`] on
    /// a CPU whose 16-byte atomic loads write (x86_64 without AVX; aarch64 before LSE2, such
    /// as Graviton2 or a Raspberry Pi 4): there, observe with [`Limiter::attach`], which needs
    /// write permission.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use hostlimit::{Limiter, Rate};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("api");
    /// let limiter = Limiter::open(&path, &[Rate::new(10, Duration::from_secs(1))])?;
    /// limiter.try_acquire(3).unwrap();
    /// # if hostlimit::Limiter::observe(&path).is_err() { return Ok(()); } // loads that write
    /// let observer = Limiter::observe(&path)?;
    /// assert_eq!(observer.usage()?[0].used, 3);
    /// assert!(observer.try_acquire(1).is_err());
    /// # Ok::<(), hostlimit::Error>(())
    /// ```
    pub fn observe(path: impl AsRef<Path>) -> Result<Limiter, Error> {
        Ok(Limiter {
            backend: Backend::Observer(builder::observe(path.as_ref())?),
        })
    }

    /// Attaches to an existing limiter file without opening its journal, for a process that
    /// only looks (`hostlimit status`): no journal database of its own, no journal thread.
    /// It never creates the file (a missing one is an error), and if the file is deleted
    /// while it is attached, it re-creates it as any limiter does: with the recorded journal's
    /// history, or not at all.
    #[cfg(feature = "journal")]
    pub fn attach_without_journal(path: impl AsRef<Path>) -> Result<Limiter, Error> {
        let mut builder = Builder {
            rates: None,
            ..Limiter::builder(&[])
        };
        builder.journal.ignore_record = true;
        builder.open(path)
    }

    /// Options beyond the rates: permissions, clock, re-attach interval.
    pub fn builder(rates: &[Rate]) -> Builder {
        Builder {
            rates: Some(rates.to_vec()),
            mode: 0o600,
            group: None,
            create_dirs: false,
            clock: Time::Host,
            check_interval: Duration::from_secs(1),
            pacing: Pacing::none(),
            #[cfg(feature = "journal")]
            journal: JournalConfig::default(),
        }
    }

    /// Admits `weight` now if every rate has room for it, committing to all rates at once;
    /// otherwise changes nothing and says which rate refused and when to retry.
    ///
    /// A rate built with [`Rate::new`] counts `weight`; one built with [`Rate::requests`]
    /// counts 1 per call. The cost does not depend on the weight.
    ///
    /// # Errors
    ///
    /// A [`Denied`]: the rate is full (with the exact retry-after), the weight can never fit,
    /// or the shared state is unusable.
    #[inline]
    pub fn try_acquire(&self, weight: u64) -> Result<(), Denied> {
        match &self.backend {
            // Built in place: no copy of a denial out of a stamped result (`Answer`).
            Backend::File(file) => file.try_counted::<()>(weight),
            _ => self.try_acquire_stamped(weight).map(|_| ()),
        }
    }

    /// Like [`Limiter::try_acquire`], and on admission says how it was recorded: its
    /// timestamp and sequence number in the shared log (for audit logs, or to check the
    /// guarantee from outside). `None` for a weight-0 call that charged nothing.
    ///
    /// # Errors
    ///
    /// As [`Limiter::try_acquire`].
    #[inline]
    pub fn try_acquire_stamped(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        // A refusal is counted by the backend, once (`counters.rs`).
        match &self.backend {
            Backend::File(file) => file.try_counted::<Option<Stamp>>(weight),
            // An observer may not write to the file, and refuses only for that.
            Backend::Observer(file) => Err(file.observer_denial()),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => self
                .try_once(weight)
                .inspect_err(|denied| self.count_refusal(denied, Refusal::Try)),
        }
    }

    fn file(file: FileLimiter) -> Limiter {
        Limiter {
            backend: Backend::File(file),
        }
    }

    /// Connects to the limiter called `name` on the Redis (or Valkey) server at `url`
    /// (`redis://[user:password@]host:port/db`, `rediss://` for TLS is not built in), with
    /// `rates`: the same limiter as a file's, shared by every host that reaches the server.
    /// The per-call timeout is [`DEFAULT_TIMEOUT`](crate::redis::DEFAULT_TIMEOUT) and an
    /// unreachable server denies; [`Limiter::redis`] sets both.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use hostlimit::{Limiter, Rate};
    ///
    /// let limiter = Limiter::connect("redis://10.0.0.5:6379/0", "openai", &[
    ///     Rate::requests(60, Duration::from_secs(60)),
    ///     Rate::new(90_000, Duration::from_secs(60)),
    /// ])?;
    /// limiter.try_acquire(1200)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`RedisBuilder::connect`](crate::redis::RedisBuilder::connect).
    #[cfg(feature = "redis")]
    pub fn connect(url: &str, name: &str, rates: &[Rate]) -> Result<Limiter, Error> {
        Limiter::redis(url, name, rates).connect()
    }

    /// Options for a Redis limiter beyond [`Limiter::connect`]'s: the per-call timeout and
    /// the outage policy. No rates (`&[]`) adopts those stored beside an existing limiter's
    /// log, as [`Limiter::attach`] does for a file.
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, name: &str, rates: &[Rate]) -> crate::redis::RedisBuilder {
        crate::redis::RedisBuilder::new(url, name, rates)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis_backend(redis: crate::redis::RedisLimiter) -> Limiter {
        Limiter {
            backend: Backend::Redis(Box::new(redis)),
        }
    }

    /// The Redis backend, for its tests.
    #[cfg(all(test, feature = "redis"))]
    pub(crate) fn as_redis(&self) -> Option<&crate::redis::RedisLimiter> {
        match &self.backend {
            Backend::Redis(redis) => Some(redis),
            Backend::File(_) | Backend::Observer(_) => None,
        }
    }

    /// What the outage policy of a Redis limiter decided so far in this process; `None`
    /// for a file limiter (it has no server to lose).
    #[cfg(feature = "redis")]
    pub fn outages(&self) -> Option<crate::redis::Outages> {
        match &self.backend {
            Backend::File(_) | Backend::Observer(_) => None,
            Backend::Redis(redis) => Some(redis.outages()),
        }
    }

    /// Empties the limiter: every process (every host, on Redis) starts from an empty log
    /// at its next call. For a file this is [`reset`](crate::reset) of its path (a new file
    /// replaces it); for Redis the log is emptied and the rates kept. True if there was a
    /// history to drop (always true for a file).
    ///
    /// # Errors
    ///
    /// As [`reset`](crate::reset) for a file; [`Error::Redis`] if the server cannot be
    /// reached.
    pub fn reset(&self) -> Result<bool, Error> {
        match &self.backend {
            // A reset is an operation on the path, as `hostlimit::reset` is: an observer's
            // handle writes nothing to its file, but whoever may replace it may reset it.
            Backend::File(file) | Backend::Observer(file) => {
                admin::reset(file.path()).map(|_| true)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.reset(),
        }
    }

    /// The file's counters now.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub fn counters(&self) -> Result<Counters, Error> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.counters(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.counters(),
        }
    }

    /// Counts a request refused for good (never for an inner try of a waiting acquire).
    #[cold]
    fn count_refusal(&self, denied: &Denied, how: Refusal) {
        match &self.backend {
            Backend::File(file) => file.count_refusal(denied, how),
            // An observer may not write to the file, and refuses only for that.
            Backend::Observer(_) => {}
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.count_refusal(denied, how == Refusal::Wait),
        }
    }

    /// One try, not counted as a refusal (a waiting acquire counts once, at its end).
    #[inline]
    pub(crate) fn try_once(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        match &self.backend {
            Backend::File(file) => file.try_once(weight),
            Backend::Observer(file) => Err(file.observer_denial()),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.try_once(weight),
        }
    }

    /// [`try_once`](Self::try_once) for [`acquire_async`](Self::acquire_async): on Redis
    /// the round trip is async (the task yields, no thread waits); a file needs none.
    #[cfg(feature = "tokio")]
    pub(crate) async fn try_once_async(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.try_once_async(weight).await,
            _ => self.try_once(weight),
        }
    }

    /// [`count_refusal`](Self::count_refusal) for [`acquire_async`](Self::acquire_async).
    #[cfg(feature = "tokio")]
    #[cold]
    async fn count_refusal_async(&self, denied: &Denied, how: Refusal) {
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => {
                redis
                    .count_refusal_async(denied, how == Refusal::Wait)
                    .await
            }
            _ => self.count_refusal(denied, how),
        }
    }

    /// Every rate's use now, read on one consistent state without consuming anything.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub fn usage(&self) -> Result<Vec<RateUsage>, Error> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.usage(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.usage(),
        }
    }

    /// Admissions since the file was created, by all processes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub fn admitted(&self) -> Result<u64, Error> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.admitted(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.admitted(),
        }
    }

    /// The state of the journal: `Err` with the reason while the last journal write failed
    /// (a background flush, a lease, a compaction), until one succeeds again. Always `Ok`
    /// without a journal. A failure is never dropped silently: admissions not yet journaled
    /// stay in the shared ring and are written at the next successful flush, as long as the
    /// ring still holds them.
    #[cfg(feature = "journal")]
    pub fn journal_status(&self) -> Result<(), String> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.journal_status(),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => Ok(()),
        }
    }

    /// The SQLite database this limiter journals to: its own, in the journal directory given
    /// to [`Builder::journal`] (every process, every open journal, writes one of its own;
    /// see [`journal`](crate::journal)). `None` without a journal.
    #[cfg(feature = "journal")]
    pub fn journal_file(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.journal_file(),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        }
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
    pub fn journal_flush(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.journal_flush(),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => Ok(()),
        }
    }

    /// The rates, in the file's order.
    pub fn rates(&self) -> Vec<Rate> {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.rates(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.rates(),
        }
    }

    /// The file this limiter maps.
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.path(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.path(),
        }
    }

    /// What the file records about itself.
    ///
    /// On Redis (feature `redis`) there is no file: `path` is the target,
    /// `redis://HOST:PORT/DB#NAME` without credentials, and `rates` the limiter's rates (the
    /// server's, checked at connect); the other fields describe a file and mean nothing
    /// there: `capacity`, `size`, `creator_pid` and `creator_uid` are 0, `created` is the
    /// Unix epoch, `journaled` is false and `clock` is all zeros (the server's clock stamps
    /// the log). The log's state is in [`usage`](Self::usage),
    /// [`admitted`](Self::admitted) and [`counters`](Self::counters).
    pub fn info(&self) -> FileInfo {
        match &self.backend {
            Backend::File(file) | Backend::Observer(file) => file.info(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.info(),
        }
    }
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The limiter's clock: the host clock called directly (inlined, no virtual call on the hot
/// path), or a caller's clock.
#[derive(Debug, Clone)]
pub(super) enum Time {
    Host,
    Custom(Arc<dyn Clock>),
}

impl Time {
    /// The clock as a shared trait object (for the journal's thread).
    #[cfg(feature = "journal")]
    fn shared(&self) -> Arc<dyn Clock> {
        match self {
            Time::Host => Arc::new(HostClock),
            Time::Custom(clock) => clock.clone(),
        }
    }

    #[inline(always)]
    fn now(&self) -> Nanos {
        match self {
            Time::Host => HostClock.now(),
            Time::Custom(clock) => clock.now(),
        }
    }

    fn as_dyn(&self) -> &dyn Clock {
        match self {
            Time::Host => &HostClock,
            Time::Custom(clock) => &**clock,
        }
    }
}

// `Limiter` is shared between threads: keep it `Send + Sync`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Limiter>();
};
