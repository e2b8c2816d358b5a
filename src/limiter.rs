//! [`Limiter`]: wires the shared file (`region`), the commit protocol and the clock together.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{Clock, ClockIdentity, HostClock, Nanos};
use crate::error::{DenialKind, Denied, Error};
#[cfg(feature = "journal")]
use crate::journal::{self, Durability, Journal, JournalConfig, WallClock};
use crate::layout::{self, Header};
use crate::protocol::{self, Hints, MAX_RATES, NoHook, Outcome, Rule};
use crate::rate::Rate;
use crate::region::{OpenSpec, Region, SwapCell};
use crate::sync::{Ordering, StdAtomicU32, StdAtomicU64};

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
    /// Requests this rate refused since the file was created (all processes).
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
}

/// Options for opening a limiter; see [`Limiter::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    rates: Option<Vec<Rate>>,
    mode: u32,
    clock: Time,
    check_interval: Duration,
    #[cfg(feature = "journal")]
    journal: JournalConfig,
}

impl Builder {
    /// Permission bits of a file this builder creates (default `0o600`). The directory, if
    /// created, gets search permission wherever the mode grants read (`0o660` -> `0o770`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// The clock (default: [`HostClock`], `CLOCK_BOOTTIME`). A file records the clock it was
    /// made with, and only processes with the same clock may join it.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Time::Custom(clock);
        self
    }

    /// How often a limiter checks that its path still names the file it maps (default 1 s).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Also journals admissions to the SQLite database at `journal` (created if missing), so
    /// that the limits survive a reboot: when this limiter has to create the shared file
    /// (after a reboot, or after the file was deleted), the new file starts with every
    /// admission of the journal that is still inside a window. See [`Durability`] for what
    /// a crash may forget, and [`journal`](crate::journal) for the details.
    ///
    /// Every process of the limiter should open it with the same journal: the first one to
    /// create the shared file restores the history, and a process that creates it without
    /// the journal starts it empty.
    ///
    /// A journal that cannot be used makes [`Builder::open`] fail with [`Error::Journal`];
    /// nothing falls back silently. To go on without the journal (and without its
    /// history), open the limiter again with a builder that has no `.journal(...)`; to start a
    /// new history, move the journal file away first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use hostlimit::{Durability, Limiter, Rate};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (path, journal_path) = (dir.path().join("api"), dir.path().join("api.sqlite"));
    /// let rates = [Rate::new(10_000, Duration::from_secs(86_400))];
    /// let limiter = match Limiter::builder(&rates)
    ///     .journal(&journal_path, Durability::Periodic(Duration::from_secs(1)))
    ///     .open(&path)
    /// {
    ///     Ok(limiter) => limiter,
    ///     // The explicit way to go on without a broken journal.
    ///     Err(hostlimit::Error::Journal { .. }) => Limiter::open(&path, &rates)?,
    ///     Err(e) => return Err(e),
    /// };
    /// assert!(limiter.try_acquire(1).is_ok());
    /// # Ok::<(), hostlimit::Error>(())
    /// ```
    #[cfg(feature = "journal")]
    pub fn journal(mut self, journal: impl AsRef<Path>, durability: Durability) -> Self {
        self.journal.target = Some((journal.as_ref().to_path_buf(), durability));
        self
    }

    /// The wall clock the journal converts timestamps with (default: the system's); for
    /// tests that step it. Has an effect only with [`Builder::journal`].
    #[cfg(feature = "journal")]
    pub fn journal_wall_clock(mut self, wall: Arc<dyn WallClock>) -> Self {
        self.journal.wall = wall;
        self
    }

    /// How long a journal write waits for another process's write lock before it fails
    /// (default 5 s). Has an effect only with [`Builder::journal`].
    #[cfg(feature = "journal")]
    pub fn journal_busy_timeout(mut self, timeout: Duration) -> Self {
        self.journal.busy_timeout = timeout;
        self
    }

    /// Opens (creating if needed) the limiter file at `path`.
    ///
    /// # Errors
    ///
    /// An invalid rate or rate list; a file with other rates ([`Error::ConfigMismatch`]); a
    /// corrupt, truncated or foreign file; a clock this process cannot share; an I/O failure
    /// (unwritable directory, ...); an unusable journal ([`Error::Journal`]). Nothing is
    /// changed on error.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Limiter, Error> {
        let path = path.as_ref().to_path_buf();
        let identity = self
            .clock
            .as_dyn()
            .identity()
            .map_err(|e| Error::io(&path, "read clock identity", e))?;
        let rules = match &self.rates {
            Some(rates) => Some(rules_for(rates)?),
            None => None,
        };
        let template = rules
            .as_ref()
            .map(|r| new_header(r, identity, self.clock.as_dyn()))
            .transpose()?;
        #[cfg(feature = "journal")]
        // A journal belongs to a set of rates; `Limiter::attach` (no rates) takes none.
        let journal = match (&self.journal.target, &rules) {
            (Some((journal_path, durability)), Some(rules)) => Some(Journal::open(
                journal_path,
                *durability,
                &self.journal,
                rules,
                self.clock.shared(),
                &identity,
            )?),
            _ => None,
        };
        // What a file created now starts with: the journal's history.
        #[cfg(feature = "journal")]
        let history = match (&journal, &template) {
            (Some(journal), Some(template)) => journal.restore(template.capacity)?,
            _ => Vec::new(),
        };
        #[cfg(not(feature = "journal"))]
        let history: Vec<protocol::Record> = Vec::new();
        let region = Region::open_with_history(
            &path,
            &OpenSpec {
                create: template.as_ref(),
                mode: self.mode,
            },
            &history,
        )?;
        let attached = Attached::check(region, rules.as_deref(), &identity, self.rates.as_deref())?;
        let attached = Arc::new(SwapCell::new(attached));
        #[cfg(feature = "journal")]
        let (journal, strict) = match journal {
            Some(journal) => {
                let journal = Arc::new(journal);
                let strict = journal.is_strict().then(|| journal.clone());
                (
                    Some(journal::Handle::start(journal, attached.clone())?),
                    strict,
                )
            }
            None => (None, None),
        };
        Ok(Limiter {
            next_check: StdAtomicU64::new(
                self.clock.now().saturating_add(nanos(self.check_interval)),
            ),
            attached,
            path,
            mode: self.mode,
            clock: self.clock,
            identity,
            check_interval: nanos(self.check_interval),
            #[cfg(feature = "journal")]
            strict,
            #[cfg(feature = "journal")]
            journal,
        })
    }

    /// Opens the limiter called `name` in [`default_dir`].
    pub fn open_named(self, name: &str) -> Result<Limiter, Error> {
        let path = path_for(&default_dir(), name)?;
        self.open(path)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Validates a rate list and turns it into protocol rules.
fn rules_for(rates: &[Rate]) -> Result<Vec<Rule>, Error> {
    if rates.is_empty() {
        return Err(Error::InvalidRates("at least one rate is needed".into()));
    }
    if rates.len() > MAX_RATES {
        return Err(Error::InvalidRates(format!(
            "at most {MAX_RATES} rates, got {}",
            rates.len()
        )));
    }
    for (i, a) in rates.iter().enumerate() {
        if rates[..i].contains(a) {
            return Err(Error::InvalidRates(format!("{a} is given twice")));
        }
    }
    rates.iter().map(Rate::rule).collect()
}

fn new_header(rules: &[Rule], clock: ClockIdentity, time: &dyn Clock) -> Result<Header, Error> {
    let capacity = layout::capacity_for(rules).map_err(|needed| Error::TooLarge {
        needed_slots: needed,
        max_slots: layout::MAX_SLOTS,
    })?;
    Ok(Header {
        capacity,
        rules: rules.to_vec(),
        clock,
        created_wall_ns: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, nanos),
        created_clock_ns: time.now(),
        creator_pid: u64::from(std::process::id()),
        creator_uid: u64::from(nix::unistd::getuid().as_raw()),
    })
}

/// A mapped file with its rates, checked against what the caller wants.
#[derive(Debug)]
struct Attached {
    region: Region,
    rules: Vec<Rule>,
    rates: Vec<Rate>,
    /// Where each rate's window search starts (see `protocol::Hints`); process-local.
    hints: [StdAtomicU32; MAX_RATES],
}

impl Attached {
    fn check(
        region: Region,
        rules: Option<&[Rule]>,
        identity: &ClockIdentity,
        requested: Option<&[Rate]>,
    ) -> Result<Attached, Error> {
        let header = region.header();
        if let Some(reason) = header.clock.mismatch(identity) {
            return Err(Error::ClockMismatch {
                path: region.path().to_path_buf(),
                reason,
            });
        }
        let file_rates: Vec<Rate> = header.rules.iter().map(Rate::from_rule).collect();
        if let (Some(rules), Some(requested)) = (rules, requested) {
            // The same rates in another order are the same limiter.
            let mut ours = rules.to_vec();
            let mut theirs = header.rules.clone();
            let key = |r: &Rule| (r.window, r.limit, r.requests);
            ours.sort_by_key(key);
            theirs.sort_by_key(key);
            if ours != theirs {
                return Err(Error::ConfigMismatch {
                    path: region.path().to_path_buf(),
                    file: file_rates,
                    requested: requested.to_vec(),
                });
            }
        }
        Ok(Attached {
            rules: header.rules.clone(),
            rates: file_rates,
            region,
            hints: Default::default(),
        })
    }
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
    /// Shared with the journal's background thread, which reads the ring of whatever file
    /// is attached.
    attached: Arc<SwapCell<Attached>>,
    path: PathBuf,
    mode: u32,
    clock: Time,
    identity: ClockIdentity,
    next_check: StdAtomicU64,
    check_interval: u64,
    /// The journal when it is in strict mode: every acquire goes through its leases.
    #[cfg(feature = "journal")]
    strict: Option<Arc<Journal>>,
    /// The journal and its background thread (stopped, after a last flush, on drop).
    #[cfg(feature = "journal")]
    journal: Option<journal::Handle>,
}

impl Limiter {
    /// Opens the limiter file at `path` with `rates`, creating it (and its directory) if it
    /// does not exist, or attaching to it if it does.
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
    pub fn attach(path: impl AsRef<Path>) -> Result<Limiter, Error> {
        Builder {
            rates: None,
            ..Limiter::builder(&[])
        }
        .open(path)
    }

    /// Options beyond the rates: permissions, clock, re-attach interval.
    pub fn builder(rates: &[Rate]) -> Builder {
        Builder {
            rates: Some(rates.to_vec()),
            mode: 0o600,
            clock: Time::Host,
            check_interval: Duration::from_secs(1),
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
        self.try_acquire_stamped(weight).map(|_| ())
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
        let now = self.clock.now();
        #[cfg(feature = "journal")]
        if let Some(journal) = &self.strict {
            return self.try_acquire_leased(journal, now, weight);
        }
        self.acquire_at(now, weight)
    }

    /// One acquire at `now`, with no journal lease.
    #[inline(always)]
    fn acquire_at(&self, now: Nanos, weight: u64) -> Result<Option<Stamp>, Denied> {
        let mut attached = self.current(now)?;
        // A retired file (reset or removed) sends us to its replacement; a file that keeps
        // being retired under us is reported rather than chased forever.
        for _ in 0..4 {
            match attached.try_acquire(now, weight) {
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
            let denied = match self.try_acquire_stamped(weight) {
                Ok(stamp) => return Ok(stamp),
                Err(denied) => denied,
            };
            let Some(wait) = denied.retry_after() else {
                return Err(denied);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if wait > left {
                return Err(denied);
            }
            std::thread::sleep((wait + jitter.next(wait)).min(left));
        }
    }

    /// Every rate's use now, read on one consistent state without consuming anything.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub fn usage(&self) -> Result<Vec<RateUsage>, Error> {
        let now = self.clock.now();
        let (attached, usage) = self.read_usage(now, true)?;
        Ok(attached
            .rules
            .iter()
            .zip(usage.rates.iter())
            .enumerate()
            .map(|(index, (rule, used))| RateUsage {
                rate: Rate::from_rule(rule),
                used: used.used,
                remaining: rule.limit.saturating_sub(used.used),
                next_free: used
                    .next_free_at
                    .map(|at| Duration::from_nanos(at.saturating_sub(now))),
                denied: attached.region.denials(index),
            })
            .collect())
    }

    /// Admissions since the file was created, by all processes.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the shared state is unusable.
    pub fn admitted(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let (attached, usage) = self.read_usage(now, false)?;
        Ok(attached.region.words().admitted(usage.head))
    }

    /// Reads a consistent usage snapshot, following a reset to the new file.
    fn read_usage(
        &self,
        now: Nanos,
        with_rates: bool,
    ) -> Result<(&Attached, protocol::Usage), Error> {
        let unusable = |d: Denied| Error::corrupt(&self.path, d.to_string());
        let mut attached = self.current(now).map_err(unusable)?;
        for _ in 0..4 {
            let rules: &[Rule] = if with_rates { &attached.rules } else { &[] };
            let Ok(result) = protocol::usage(&attached.region.words(), rules, now, &NoHook);
            match result {
                Ok(usage) => return Ok((attached, usage)),
                Err(protocol::RETIRED) => attached = self.reattach(now).map_err(unusable)?,
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
    pub fn journal_status(&self) -> Result<(), String> {
        self.journal
            .as_ref()
            .map_or(Ok(()), |handle| handle.journal().status())
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
        match &self.journal {
            Some(handle) => handle.journal().flush(&self.attached.get().region, false),
            None => Ok(()),
        }
    }

    /// The rates, in the file's order.
    pub fn rates(&self) -> Vec<Rate> {
        self.attached.get().rates.clone()
    }

    /// The file this limiter maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file records about itself.
    pub fn info(&self) -> FileInfo {
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
        }
    }

    /// The attached file, re-attaching first if the check interval has passed and the path
    /// now names another file (or none).
    #[inline]
    fn current(&self, now: Nanos) -> Result<&Attached, Denied> {
        // Relaxed: only a timer; the file itself is published through the SwapCell.
        let next = self.next_check.load(Ordering::Relaxed);
        if now >= next {
            self.recheck(now, next)?;
        }
        Ok(self.attached.get())
    }

    #[cold]
    fn recheck(&self, now: Nanos, next: u64) -> Result<(), Denied> {
        // One thread per interval does the check.
        let later = now.saturating_add(self.check_interval);
        if self
            .next_check
            .compare_exchange(next, later, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Ok(());
        }
        if matches!(self.attached.get().region.still_linked(), Ok(true)) {
            return Ok(());
        }
        self.reattach(now).map(|_| ())
    }

    /// Attaches to whatever file the path names now, creating it with our rates if it is
    /// gone, and makes it current.
    #[cold]
    fn reattach(&self, now: Nanos) -> Result<&Attached, Denied> {
        let old = self.attached.get();
        match self.reopen(old) {
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
    /// with the journal's history if there is a journal).
    fn reopen(&self, old: &Attached) -> Result<Attached, Error> {
        let header = new_header(&old.rules, self.identity, self.clock.as_dyn())?;
        #[cfg(feature = "journal")]
        let history = match &self.journal {
            Some(handle) => {
                // First journal what the old file holds, so that a new file restores it. A
                // failure is kept in the journal's status.
                let _ = handle.journal().flush(&old.region, false);
                handle.journal().restore(header.capacity)?
            }
            None => Vec::new(),
        };
        #[cfg(not(feature = "journal"))]
        let history: Vec<protocol::Record> = Vec::new();
        let region = Region::open_with_history(
            &self.path,
            &OpenSpec {
                create: Some(&header),
                mode: self.mode,
            },
            &history,
        )?;
        Attached::check(region, Some(&old.rules), &self.identity, Some(&old.rates))
    }
}

#[cfg(feature = "journal")]
impl Limiter {
    /// An acquire in strict journal mode: reserve out of a lease (taking a new one from the
    /// journal if needed, before anything is admitted), admit, then account for it.
    #[inline(never)]
    fn try_acquire_leased(
        &self,
        journal: &Journal,
        now: Nanos,
        weight: u64,
    ) -> Result<Option<Stamp>, Denied> {
        if !journal.needs_lease(weight) {
            return self.acquire_at(now, weight);
        }
        let mut attached = self.current(now)?;
        let ticket = journal
            .reserve(&attached.region, now, weight)
            .map_err(|reason| {
                attached.denied(
                    usize::MAX,
                    DenialKind::Unavailable {
                        reason: format!("no journal lease: {reason}"),
                    },
                )
            })?;
        let mut result = None;
        for _ in 0..4 {
            match attached.try_acquire(now, weight) {
                Some(outcome) => {
                    result = Some(outcome);
                    break;
                }
                None => match self.reattach(now) {
                    Ok(fresh) => attached = fresh,
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

#[cfg(feature = "journal")]
impl journal::Source for SwapCell<Attached> {
    fn region(&self) -> &Region {
        &self.get().region
    }
}

/// Resets the limiter at `path`: every window becomes empty, for every process using it.
///
/// A fresh file with the same rates, permissions and clock atomically replaces the old one,
/// and the old one's log is closed, so each process still using it moves to the new file at
/// its next call. Counters start again from zero.
///
/// # Errors
///
/// The file cannot be opened or validated (see [`Builder::open`]), or the directory is not
/// writable.
pub fn reset(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let old = Region::existing(path)?;
    let identity = HostClock
        .identity()
        .map_err(|e| Error::io(path, "read clock identity", e))?;
    if let Some(reason) = old.header().clock.mismatch(&identity) {
        return Err(Error::ClockMismatch {
            path: path.to_path_buf(),
            reason,
        });
    }
    let header = new_header(&old.header().rules, identity, &HostClock)?;
    Region::replace(path, &header, old.mode()?)?;
    retire(&old)
}

/// Removes the limiter file at `path`, closing its log first so that processes still using
/// it notice at their next call. Such a process re-creates the file with its own rates (as
/// it does after any deletion), so stop the users first if the limiter should stay gone.
///
/// # Errors
///
/// The file cannot be opened or validated, or cannot be unlinked.
pub fn remove(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let old = Region::existing(path)?;
    retire(&old)?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, "remove", e))
}

fn retire(region: &Region) -> Result<(), Error> {
    let Ok(result) = protocol::retire(&region.words(), &NoHook);
    result
        .map(|_| ())
        .map_err(|reason| Error::corrupt(region.path(), reason))
}

impl Attached {
    /// One acquire on this file; `None` if the file was retired.
    #[inline]
    fn try_acquire(&self, now: Nanos, weight: u64) -> Option<Result<Option<Stamp>, Denied>> {
        let words = self.region.words();
        let mut hints = Hints::default();
        let rates = self.rules.len();
        for (hint, kept) in hints.0[..rates].iter_mut().zip(&self.hints[..rates]) {
            // Relaxed: a search hint; every value is safe.
            *hint = kept.load(Ordering::Relaxed);
        }
        let Ok(outcome) = protocol::acquire(&words, &self.rules, now, weight, &mut hints, &NoHook);
        for (hint, kept) in hints.0[..rates].iter().zip(&self.hints[..rates]) {
            // Written only when it moved, so that threads sharing a limiter do not bounce the
            // line for nothing.
            if kept.load(Ordering::Relaxed) != *hint {
                kept.store(*hint, Ordering::Relaxed);
            }
        }
        Some(match outcome {
            Outcome::Admitted(record) => Ok(Some(Stamp {
                timestamp: record.ts,
                sequence: record.seq,
            })),
            Outcome::Free => Ok(None),
            Outcome::Denied { rate, retry_at } => {
                // Relaxed: a statistic; no other memory depends on it.
                self.region
                    .denial_counter(rate)
                    .fetch_add(1, Ordering::Relaxed);
                let retry_after = Duration::from_nanos(retry_at.saturating_sub(now));
                Err(self.denied(rate, DenialKind::Exhausted { retry_after }))
            }
            Outcome::NeverFits { rate } => {
                let units = if self.rules.get(rate).is_some_and(|r| r.requests) {
                    1
                } else {
                    weight
                };
                Err(self.denied(rate, DenialKind::NeverFits { weight: units }))
            }
            Outcome::Corrupt(reason) => Err(self.denied(
                usize::MAX,
                DenialKind::Unavailable {
                    reason: reason.to_string(),
                },
            )),
            Outcome::Retired => return None,
        })
    }

    fn denied(&self, rate_index: usize, kind: DenialKind) -> Denied {
        Denied {
            rate_index,
            rate: self.rates.get(rate_index).copied(),
            kind,
        }
    }
}

/// The limiter's clock: the host clock called directly (inlined, no virtual call on the hot
/// path), or a caller's clock.
#[derive(Debug, Clone)]
enum Time {
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

/// Small random delays for waiters, so that those told the same retry-after spread out.
struct Jitter {
    state: u64,
}

impl Jitter {
    fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(HostClock.now());
        Jitter {
            state: hasher.finish() | 1,
        }
    }

    /// A delay in `[0, wait / 8 + 200 µs)`, at most 50 ms.
    fn next(&mut self, wait: Duration) -> Duration {
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
