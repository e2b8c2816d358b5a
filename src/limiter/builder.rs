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
use crate::region::{Dirs, OpenSpec, Region, SwapCell};
use crate::sync::StdAtomicU64;

use super::attached::Attached;
use super::file::Files;
use super::{FileLimiter, Limiter, Time, default_dir, nanos, path_for};

/// Options for opening a limiter; see [`Limiter::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    pub(super) rates: Option<Vec<Rate>>,
    pub(super) mode: u32,
    pub(super) group: Option<u32>,
    pub(super) create_dirs: bool,
    pub(super) clock: Time,
    pub(super) check_interval: Duration,
    pub(super) pacing: super::Pacing,
    #[cfg(feature = "journal")]
    pub(super) journal: JournalConfig,
}

impl Builder {
    /// Permission bits of a file this builder creates (default `0o600`). A directory created
    /// with [`Builder::create_dirs`] gets search permission wherever the mode grants read
    /// (`0o660` -> `0o770`). To share a limiter between users, give it a group too
    /// ([`Builder::group`]) and a mode that lets the group write (`0o660`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// The group (a gid) of a file this builder creates (default: whatever the directory
    /// gives a new file, usually the creator's own group): the way to share a limiter
    /// between users, with [`Builder::mode`] `0o660`. The creator must be a member of the
    /// group (or root).
    ///
    /// In a directory anyone may write to (the default directory is one), an existing file
    /// owned by another user (not root) is used only if it has this group: only the group's
    /// members can give a file a group, so such a file is the limiter shared with them, and
    /// any other may have been planted. An existing file's group and mode are never changed.
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }

    /// Whether opening may create the limiter's missing directory and its missing parents
    /// (default `false`: a missing directory is an error, so that a typo creates nothing).
    /// The directory of named limiters ([`default_dir`]) is created
    /// without it, shared (`01777`, sticky like `/tmp`) so that every user of the host can
    /// use it.
    pub fn create_dirs(mut self, create: bool) -> Self {
        self.create_dirs = create;
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
    ///     // The explicit way to go on without a broken journal: give its history up.
    ///     Err(hostlimit::Error::Journal { .. }) => {
    ///         hostlimit::journal::forget(&path)?;
    ///         Limiter::open(&path, &rates)?
    ///     }
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
        // Where the limiter's journal is, if it has one, from its record on disk.
        #[cfg(feature = "journal")]
        let resolved = if self.journal.ignore_record {
            journal::Resolved {
                target: None,
                record: None,
            }
        } else {
            journal::resolve(&path, self.journal.target.as_ref())?
        };
        #[cfg(feature = "journal")]
        if self.rates.is_none()
            && let Some(record) = &resolved.record
        {
            self.rates = Some(file_rates(&path).unwrap_or_else(|| record.rates.clone()));
        }
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
        // A journal belongs to a set of rates: `Limiter::attach` (no rates) takes the file's,
        // or the record's when there is no file.
        #[cfg(feature = "journal")]
        let opened = match &rules {
            Some(rules) => Journal::open_resolved(
                &path,
                &resolved,
                &self.journal,
                rules,
                self.clock.shared(),
                &identity,
            ),
            None => Ok(None),
        };
        // A recorded journal this process cannot open (another user's, not writable for it;
        // or broken) is needed only to create the file. While the file exists, the process
        // attaches without it (never creating the file), and says so in `journal_status`:
        // its admissions reach the journal through the limiter's journaled processes.
        #[cfg(feature = "journal")]
        let (journal, journal_problem) = match opened {
            Ok(journal) => (journal, None),
            Err(error) if self.journal.target.is_none() && path.exists() => {
                let problem = format!(
                    "this process could not open the limiter's recorded journal, so it attached \
                     to the existing file without it and journals nothing itself (the \
                     limiter's journaled processes journal its admissions; if the file is \
                     deleted, it is not re-created by this process): {error}"
                );
                (None, Some((problem, error)))
            }
            Err(error) => return Err(error),
        };
        #[cfg(feature = "journal")]
        let template = template.map(|header| Header {
            flags: header.flags | journal.as_ref().map_or(0, |_| layout::FLAG_JOURNALED),
            ..header
        });
        #[cfg(not(feature = "journal"))]
        let journal_problem: Option<(String, Error)> = None;
        let opened = (|| {
            // What a file created now starts with: the journal's history.
            #[cfg(feature = "journal")]
            let history = match (&journal, &template) {
                (Some(journal), Some(template)) => journal.restore(template.capacity)?,
                _ => Vec::new(),
            };
            #[cfg(not(feature = "journal"))]
            let history: Vec<crate::protocol::Record> = Vec::new();
            let create = if journal_problem.is_some() {
                None
            } else {
                template.as_ref()
            };
            let region = Region::open_with_history(
                &path,
                &OpenSpec {
                    create,
                    mode: self.mode,
                    group: self.group,
                    dirs: self.dirs(&path),
                },
                &history,
            );
            // Gone meanwhile: what is wrong is the journal that could not restore it.
            let (region, journal_problem) = match (region, journal_problem) {
                (Err(_), Some((_, error))) if !path.exists() => return Err(error),
                (region, problem) => (region, problem.map(|(text, _)| text)),
            };
            let attached =
                Attached::check(region?, rules.as_deref(), &identity, self.rates.as_deref())?;
            #[cfg(feature = "journal")]
            if journal.is_some() {
                resolved.record(&path, &attached.rates)?;
            }
            Ok((attached, journal_problem))
        })();
        let (attached, journal_problem) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                // Nothing was admitted through it: its database goes, so that it does not
                // stand in the way of the next open (made for other rates, say).
                #[cfg(feature = "journal")]
                if let Some(journal) = journal {
                    journal.discard();
                }
                return Err(error);
            }
        };
        #[cfg(not(feature = "journal"))]
        let _ = journal_problem;
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
            files: Files {
                mode: self.mode,
                group: self.group,
                dirs: self.dirs(&path),
                read_only: false,
            },
            path,
            clock: self.clock,
            identity,
            check_interval: nanos(self.check_interval),
            #[cfg(feature = "journal")]
            strict,
            #[cfg(feature = "journal")]
            journal,
            #[cfg(feature = "journal")]
            journal_problem,
        }))
    }

    /// Attaches to the existing limiter file at `path`, adopting whatever rates it has (the
    /// builder's rates, and its pacing, are not used; nothing is created), with the rest of
    /// the builder's options: the group trusted in a shared directory
    /// ([`Builder::group`]), the clock, the check interval. [`Limiter::attach`] is this with
    /// the default options.
    ///
    /// # Errors
    ///
    /// As [`Builder::open`], and a missing file ([`Error::Io`], not found).
    pub fn attach(self, path: impl AsRef<Path>) -> Result<Limiter, Error> {
        Builder {
            rates: None,
            pacing: super::Pacing::none(),
            ..self
        }
        .open(path)
    }

    /// Opens the limiter called `name` in [`default_dir`].
    pub fn open_named(self, name: &str) -> Result<Limiter, Error> {
        let path = path_for(&default_dir(), name)?;
        self.open(path)
    }

    /// Which missing directories creating the file at `path` may make: its parents if asked
    /// for, else the directory of named limiters (shared), else none.
    fn dirs(&self, path: &Path) -> Dirs {
        if self.create_dirs {
            Dirs::Parents
        } else if path.parent() == Some(default_dir().as_path()) {
            Dirs::Shared
        } else {
            Dirs::Existing
        }
    }
}

/// Opens the file at `path` read-only, as [`Limiter::observe`] does.
pub(super) fn observe(path: &Path) -> Result<FileLimiter, Error> {
    let clock = Time::Host;
    let identity = clock
        .as_dyn()
        .identity()
        .map_err(|e| Error::io(path, "read clock identity", e))?;
    let attached = Attached::check(Region::observe(path)?, None, &identity, None)?;
    let check_interval = Duration::from_secs(1);
    Ok(FileLimiter {
        next_check: StdAtomicU64::new(clock.now().saturating_add(nanos(check_interval))),
        attached: Arc::new(SwapCell::new(attached)),
        path: path.to_path_buf(),
        files: Files {
            mode: 0,
            group: None,
            dirs: Dirs::Existing,
            read_only: true,
        },
        clock,
        identity,
        check_interval: nanos(check_interval),
        #[cfg(feature = "journal")]
        strict: None,
        #[cfg(feature = "journal")]
        journal: None,
        #[cfg(feature = "journal")]
        journal_problem: None,
    })
}

/// The rates of the limiter file at `path`, if it is one whose header can be read.
#[cfg(feature = "journal")]
fn file_rates(path: &Path) -> Option<Vec<Rate>> {
    match crate::region::Region::examine(path).ok()?.kind {
        crate::region::Kind::Limiter(header) => Some(
            header
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| Rate::from_rule_with_unit(rule, layout::unit_of(header.labels, i)))
                .collect(),
        ),
        _ => None,
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
    let created_wall_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, nanos);
    let created_clock_ns = time.now();
    let creator_pid = u64::from(std::process::id());
    let creator_uid = u64::from(nix::unistd::getuid().as_raw());
    Ok(Header {
        capacity,
        rules: rules.to_vec(),
        clock,
        created_wall_ns,
        created_clock_ns,
        creator_pid,
        creator_uid,
        labels: 0,
        flags: 0,
        lineage: layout::Lineage::new(created_wall_ns, created_clock_ns, creator_pid, creator_uid),
    })
}
