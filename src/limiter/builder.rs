//! [`Builder`]: the options of a limiter, and opening (or creating) its file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, ClockIdentity};
use crate::error::Error;
#[cfg(feature = "journal")]
use crate::journal::{self, Durability, Journal, JournalConfig, WallClock};
use crate::layout::{self, Header};
use crate::protocol::{MAX_RATES, Rule};
use crate::rate::Rate;
use crate::region::{OpenSpec, Region, SwapCell};
use crate::sync::StdAtomicU64;

use super::attached::Attached;
use super::{FileLimiter, Limiter, Time, default_dir, nanos, path_for};

/// Options for opening a limiter; see [`Limiter::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    pub(super) rates: Option<Vec<Rate>>,
    pub(super) mode: u32,
    pub(super) clock: Time,
    pub(super) check_interval: Duration,
    pub(super) pacing: super::Pacing,
    #[cfg(feature = "journal")]
    pub(super) journal: JournalConfig,
}

impl Builder {
    /// Permission bits of a file this builder creates (default `0o600`). The directory, if
    /// created, gets search permission wherever the mode grants read (`0o660` -> `0o770`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// The clock (default: [`HostClock`](crate::HostClock), `CLOCK_BOOTTIME`). A file records the clock it was
    /// made with, and only processes with the same clock may join it.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Time::Custom(clock);
        self
    }

    /// Shapes the rates for what a downstream service sees (default: none): a margin on
    /// every window and evenly spaced admissions; see [`Pacing`](super::Pacing). The file
    /// holds the shaped rates, so every process that opens it with the same rates and the
    /// same pacing shares it, and all of them pace.
    pub fn pace(mut self, pacing: super::Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// How often a limiter checks that its path still names the file it maps (default 1 s).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Also journals admissions to SQLite in the journal directory `journal` (created if
    /// missing; each process writes a database of its own in it), so that the limits survive
    /// a reboot: when this limiter has to create the shared file (after a reboot, or after the
    /// file was deleted), the new file starts with every admission of the journal that is
    /// still inside a window. See [`Durability`] for what a crash may forget, and
    /// [`journal`](crate::journal) for the details.
    ///
    /// Every process of the limiter should open it with the same journal directory: the
    /// first one to create the shared file restores the history, and a process that creates
    /// it without the journal starts it empty.
    ///
    /// A journal that cannot be used makes [`Builder::open`] fail with [`Error::Journal`];
    /// nothing falls back silently. To go on without the journal (and without its
    /// history), open the limiter again with a builder that has no `.journal(...)`; to start a
    /// new history, move the journal directory away first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use hostlimit::{Durability, Limiter, Rate};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (path, journal_path) = (dir.path().join("api"), dir.path().join("api.journal"));
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

    /// How long a journal read or write waits for a lock held by another connection before it
    /// fails (default 5 s): an outside connection to this process's database, or a process
    /// that is creating its database while this one reads it. Has an effect only with
    /// [`Builder::journal`].
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
    pub fn open(mut self, path: impl AsRef<Path>) -> Result<Limiter, Error> {
        let path = path.as_ref().to_path_buf();
        let identity = self
            .clock
            .as_dyn()
            .identity()
            .map_err(|e| Error::io(&path, "read clock identity", e))?;
        if let Some(rates) = &mut self.rates
            && !self.pacing.is_none()
        {
            *rates = self.pacing.apply(rates)?;
        }
        let rules = match &self.rates {
            Some(rates) => Some(rules_for(rates)?),
            None => None,
        };
        let template = rules
            .as_ref()
            .map(|r| new_header(r, identity, self.clock.as_dyn()))
            .transpose()?
            .map(|header| Header {
                labels: layout::pack_units(self.rates.iter().flatten().map(|r| r.unit())),
                ..header
            });
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
        let history: Vec<crate::protocol::Record> = Vec::new();
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
        Ok(Limiter::file(FileLimiter {
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
        }))
    }

    /// Opens the limiter called `name` in [`default_dir`].
    pub fn open_named(self, name: &str) -> Result<Limiter, Error> {
        let path = path_for(&default_dir(), name)?;
        self.open(path)
    }
}

/// Validates a rate list and turns it into protocol rules.
pub(crate) fn rules_for(rates: &[Rate]) -> Result<Vec<Rule>, Error> {
    if rates.is_empty() {
        return Err(Error::InvalidRates("at least one rate is needed".into()));
    }
    if rates.len() > MAX_RATES {
        return Err(Error::InvalidRates(format!(
            "at most {MAX_RATES} rates, got {}",
            rates.len()
        )));
    }
    let rules = rates
        .iter()
        .map(Rate::rule)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (rule, rate)) in rules.iter().zip(rates).enumerate() {
        // The same limit and window twice, whatever the unit names.
        if let Some(same) = rules[..i].iter().position(|r| r == rule) {
            let first = rates[same];
            return Err(Error::InvalidRates(if first == *rate {
                format!("{rate} is given twice")
            } else {
                format!("{first} and {rate} are the same rate")
            }));
        }
    }
    Ok(rules)
}

pub(super) fn new_header(
    rules: &[Rule],
    clock: ClockIdentity,
    time: &dyn Clock,
) -> Result<Header, Error> {
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
        labels: 0,
    })
}
