//! Setup and I/O failures ([`Error`]). Denials are values, not errors (`denied.rs`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::rate::Rate;

/// Why a limiter could not be opened, created or read.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// A rate is unusable (zero limit, zero window, limit too large, ...).
    InvalidRate {
        /// The rate as given.
        rate: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The list of rates is empty or too long, or two rates are the same.
    InvalidRates(String),
    /// A limiter name that cannot be a file name in the limiter directory.
    InvalidName(String),
    /// The rates would need a ring larger than hostlimit accepts.
    TooLarge {
        /// Slots the configuration needs.
        needed_slots: u128,
        /// The most slots accepted.
        max_slots: u64,
    },
    /// The file exists with other rates than the ones asked for.
    ConfigMismatch {
        /// The limiter file.
        path: PathBuf,
        /// Rates recorded in the file.
        file: Vec<Rate>,
        /// Rates the caller asked for.
        requested: Vec<Rate>,
        /// How often the limiter's rates were changed since it was created
        /// ([`reconfigure`](crate::reconfigure), `hostlimit set`); 0 if never.
        reconfigured: u32,
    },
    /// The file is not a hostlimit file, or its header is damaged.
    Corrupt {
        /// The limiter file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// The limiter file.
        path: PathBuf,
        /// Its size on disk.
        size: u64,
        /// The size it must have.
        expected: u64,
    },
    /// The file has another layout version.
    Version {
        /// The limiter file.
        path: PathBuf,
        /// Version found in the file.
        found: u64,
        /// Version this library writes.
        expected: u64,
    },
    /// The file was made with a clock this process cannot share (other boot, other time
    /// namespace, other clock).
    ClockMismatch {
        /// The limiter file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// This machine lacks a lock-free 128-bit compare-exchange.
    Unsupported(String),
    /// The SQLite journal (see `Builder::journal`) cannot be used: not a SQLite database,
    /// corrupt, another schema version, made for other rates, locked by another process for
    /// longer than the busy timeout, or not writable.
    ///
    /// Also: a journaled limiter's journal record that cannot be read, a recorded journal
    /// that is missing, or a journal other than the recorded one.
    ///
    /// Nothing falls back silently: a journaled limiter (see `hostlimit::journal`)
    /// is journaled for every process that opens it, with or without `.journal(...)`. To go
    /// on without the history, forget the journal (`hostlimit::journal::forget`,
    /// `hostlimit rm`).
    Journal {
        /// The journal directory (the journal record, for a record that cannot be read).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A Redis limiter (feature `redis`) could not be used: a URL the client cannot parse, a
    /// server that cannot be reached at connect, or a limiter key that another layout
    /// version wrote or that holds garbage.
    Redis {
        /// The limiter: its server (without credentials) and name.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The Redis limiter exists with other rates than the ones asked for.
    RedisMismatch {
        /// The limiter: its server (without credentials) and name.
        target: String,
        /// The rates stored beside its log, as their owner wrote them.
        stored: String,
        /// The rates asked for.
        requested: Vec<Rate>,
    },
    /// A system call failed.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source: source.into(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

fn list(rates: &[Rate]) -> String {
    rates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRate { rate, reason } => write!(f, "invalid rate {rate}: {reason}"),
            Error::InvalidRates(reason) => write!(f, "invalid rates: {reason}"),
            Error::InvalidName(name) => write!(
                f,
                "invalid limiter name {name:?}: use 1 to 200 of A-Z a-z 0-9 . _ -, not starting with ."
            ),
            Error::TooLarge {
                needed_slots,
                max_slots,
            } => write!(
                f,
                "these rates need a ring of {needed_slots} slots, more than the {max_slots} accepted; \
                 add a rate that counts requests, or use fewer, heavier admissions"
            ),
            Error::ConfigMismatch {
                path,
                file,
                requested,
                reconfigured,
            } => {
                write!(
                    f,
                    "{}: the file limits [{}] but [{}] was asked for",
                    path.display(),
                    list(file),
                    list(requested)
                )?;
                let gone: Vec<Rate> = requested
                    .iter()
                    .filter(|r| !file.contains(r))
                    .copied()
                    .collect();
                let new: Vec<Rate> = file
                    .iter()
                    .filter(|r| !requested.contains(r))
                    .copied()
                    .collect();
                if *reconfigured > 0 {
                    let times = if *reconfigured == 1 { "once" } else { "times" };
                    let count = if *reconfigured == 1 {
                        String::new()
                    } else {
                        format!("{reconfigured} ")
                    };
                    write!(
                        f,
                        "; its rates were changed {count}{times} since it was created                          (`hostlimit::reconfigure`, `hostlimit set`)"
                    )?;
                }
                match (gone.is_empty(), new.is_empty()) {
                    (false, false) => write!(f, ": [{}] became [{}]", list(&gone), list(&new))?,
                    (false, true) => write!(f, ": it has no [{}]", list(&gone))?,
                    (true, false) => write!(f, ": it also limits [{}]", list(&new))?,
                    (true, true) => {}
                }
                write!(
                    f,
                    "; open it with the file's rates (or with `Limiter::attach`, which adopts                      them), or change them (`hostlimit::reconfigure`)"
                )
            }
            Error::Corrupt { path, reason } => {
                write!(f, "{}: not a usable limiter file: {reason}", path.display())
            }
            Error::Truncated {
                path,
                size,
                expected,
            } => write!(
                f,
                "{}: truncated limiter file: {size} bytes, expected {expected}",
                path.display()
            ),
            Error::Version {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: limiter file has layout version {found}, this library reads version {expected}",
                path.display()
            ),
            Error::ClockMismatch { path, reason } => {
                write!(
                    f,
                    "{}: cannot share this limiter's clock: {reason}",
                    path.display()
                )
            }
            Error::Unsupported(reason) => write!(f, "unsupported machine: {reason}"),
            Error::Journal { path, reason } => write!(
                f,
                "{}: unusable limiter journal: {reason}; a journaled limiter is not opened \
                 without its history: repair the journal, or give the history up with \
                 `hostlimit rm LIMITER` (hostlimit::journal::forget), which deletes the journal \
                 and its record",
                path.display()
            ),
            Error::Redis { target, reason } => write!(f, "{target}: {reason}"),
            Error::RedisMismatch {
                target,
                stored,
                requested,
            } => write!(
                f,
                "{target}: the limiter on the server limits [{stored}] but [{}] was asked for; \
                 connect with the same rates, or reset it to change them",
                list(requested)
            ),
            Error::Io { path, op, source } => write!(f, "{}: {op}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
