//! `acquire` and `run`: take capacity from a limiter, waiting as flock(1) waits for a lock,
//! then exit 0 or run a command.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use hostlimit::{DenialKind, Denied, Limiter, Stamp};
use serde::Serialize;

use crate::cli::admin::with_journal;
use crate::cli::args::{AdmitArgs, JournalArgs, RateArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::target::Target;
use crate::cli::time::{format_duration, format_timeout, nanos};
use crate::cli::{print_json, program};

/// The environment variable `run` sets to the admission's recorded timestamp (nanoseconds of
/// the limiter's clock, `CLOCK_BOOTTIME`).
pub const TIMESTAMP_ENV: &str = "HOSTLIMIT_TIMESTAMP";

/// The environment variable `run` sets to the admission's sequence number in the log.
pub const SEQUENCE_ENV: &str = "HOSTLIMIT_SEQUENCE";

/// How long to wait for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// One try (`-n`).
    Once,
    /// Wait at most this long ([`Duration::MAX`]: as long as it takes).
    Until(Duration),
}

/// What `acquire` and `run` ask for.
#[derive(Debug)]
pub struct Request<'a> {
    /// The limiter.
    pub target: &'a Target,
    /// The weight to admit.
    pub weight: u64,
    /// How long to wait.
    pub wait: Wait,
    /// Rates to create the limiter with if it does not exist (and to check it against if it
    /// does), and their shaping; no rates to use an existing limiter as it is.
    pub rates: &'a RateArgs,
    /// The journal asked for (a journaled limiter uses its recorded journal anyway).
    pub journal: &'a JournalArgs,
}

impl<'a> Request<'a> {
    /// The request the arguments describe.
    pub fn new(args: &'a AdmitArgs, target: &'a Target) -> Request<'a> {
        let wait = match (args.nonblock, args.timeout) {
            (true, _) => Wait::Once,
            (false, timeout) => Wait::Until(timeout.unwrap_or(Duration::MAX)),
        };
        Request {
            target,
            weight: args.weight,
            wait,
            rates: &args.rates,
            journal: &args.journal,
        }
    }

    fn open(&self) -> Result<Limiter, Failure> {
        let path = &self.target.path;
        #[cfg(feature = "redis")]
        if let Some((url, name)) = self.target.remote() {
            return Limiter::redis(url, name, &self.rates.rates)
                .connect()
                .map_err(|e| Failure::about(self.target, e));
        }
        if !self.rates.rates.is_empty() {
            return with_journal(self.rates.builder(), self.journal, self.target)?
                .open(path)
                .map_err(|e| Failure::about(self.target, e));
        }
        // A journaled limiter is opened with its journal by `attach` itself; `--journal`
        // without `--rate` journals one that was not, with its own rates.
        let attached = match self.target.remote_limiter() {
            Some(remote) => remote,
            None => self.rates.builder().attach(path),
        }
        .map_err(|error| {
            let failure = Failure::about(self.target, error);
            if failure.exit == Exit::NoInput {
                Failure::missing(self.target, true)
            } else {
                failure
            }
        })?;
        #[cfg(feature = "journal")]
        let journaled = attached.journal_file().is_some();
        #[cfg(not(feature = "journal"))]
        let journaled = false;
        if !self.journal.wanted() || journaled {
            return Ok(attached);
        }
        let rates = attached.rates();
        drop(attached);
        with_journal(self.rates.builder_with(&rates), self.journal, self.target)?
            .open(path)
            .map_err(|e| Failure::about(self.target, e))
    }

    /// Admits the weight: one try, or waits (the library's `acquire_stamped`: no polling,
    /// gives up at once when admission is past the deadline or can never be).
    fn admit(&self, limiter: &Limiter) -> Result<Option<Stamp>, Denied> {
        match self.wait {
            Wait::Once => limiter.try_acquire_stamped(self.weight),
            Wait::Until(timeout) => limiter.acquire_stamped(self.weight, timeout),
        }
    }

    /// The failure for a refusal after `waited`, with its JSON fields.
    fn refused(&self, denied: &Denied, waited: Duration) -> Failure {
        let path = self.target.path.display();
        let rate = denied
            .rate()
            .map_or_else(|| "?".to_string(), |r| r.to_string());
        let failure = match (denied.kind(), self.wait) {
            (DenialKind::Exhausted { retry_after }, Wait::Until(timeout)) => Failure::new(
                Exit::TempFail,
                format!(
                    "{path}: not admitted within --timeout {}: rate {rate} has room for weight \
                     {} again in {}, {}",
                    format_timeout(timeout),
                    self.weight,
                    format_duration(retry_after),
                    if waited < Duration::from_millis(1) {
                        "so it gave up at once".to_string()
                    } else {
                        format!("and it gave up after waiting {}", format_duration(waited))
                    }
                ),
            ),
            (DenialKind::Exhausted { .. }, Wait::Once) => {
                Failure::denied(&format!("{path}: refused (-n)"), denied)
            }
            (DenialKind::NeverFits { weight }, _) => Failure::new(
                Exit::Data,
                format!(
                    "{path}: weight {weight} can never fit rate {rate}, whose limit is {}; \
                     nothing was taken and waiting cannot help",
                    denied.rate().map_or(0, |r| r.limit())
                ),
            ),
            _ => Failure::denied(&path.to_string(), denied),
        };
        failure
            .with("limiter", self.target.name.as_str())
            .with("path", path.to_string())
            .with("weight", self.weight)
            .with("admitted", false)
            .with("rate", denied.rate().map(|r| r.to_string()))
            .with(
                "reason",
                match denied.kind() {
                    DenialKind::Exhausted { .. } => "exhausted",
                    DenialKind::NeverFits { .. } => "never_fits",
                    _ => "unavailable",
                },
            )
            .with("retry_after_ns", denied.retry_after().map(nanos))
            .with("waited_ns", nanos(waited))
    }

    /// Opens the limiter and admits the weight, or fails saying why.
    fn take(&self) -> Result<Admitted<'_>, Failure> {
        let limiter = self.open()?;
        let started = Instant::now();
        let outcome = self.admit(&limiter);
        let waited = started.elapsed();
        match outcome {
            Ok(stamp) => Ok(Admitted {
                ok: true,
                limiter: &self.target.name,
                path: self.target.path.display().to_string(),
                weight: self.weight,
                admitted: true,
                timestamp_ns: stamp.map(|s| s.timestamp),
                sequence: stamp.map(|s| s.sequence),
                waited_ns: nanos(waited),
                command: None,
            }),
            Err(denied) => Err(self.refused(&denied, waited)),
        }
    }
}

/// The `--json` document of an admission.
#[derive(Serialize)]
struct Admitted<'a> {
    ok: bool,
    limiter: &'a str,
    path: String,
    weight: u64,
    admitted: bool,
    /// `None` for a weight that charged nothing.
    timestamp_ns: Option<u64>,
    sequence: Option<u32>,
    waited_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
}

/// `hostlimit acquire`.
pub fn acquire(request: &Request<'_>, json: bool) -> Result<Exit, Failure> {
    let admitted = request.take()?;
    if json {
        print_json(&admitted)?;
    }
    Ok(Exit::Success)
}

/// `hostlimit run`: finds the program, admits, then replaces this process by the command,
/// which inherits the admission's timestamp and sequence number in `HOSTLIMIT_TIMESTAMP` and
/// `HOSTLIMIT_SEQUENCE`. Returns only if the command cannot be run or was not admitted.
pub fn run(request: &Request<'_>, command: &[OsString], json: bool) -> Result<Exit, Failure> {
    let Some((name, args)) = command.split_first() else {
        return Err(Failure::new(Exit::Usage, "no command given"));
    };
    // Before anything is taken: a command that cannot run must not use up capacity.
    let program = program::find(name)?;
    let mut admitted = request.take()?;
    if json {
        admitted.command = Some(
            command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        );
        print_json(&admitted)?;
    }
    let mut child = Command::new(&program);
    child.arg0(name).args(args);
    if let (Some(timestamp), Some(sequence)) = (admitted.timestamp_ns, admitted.sequence) {
        child.env(TIMESTAMP_ENV, timestamp.to_string());
        child.env(SEQUENCE_ENV, sequence.to_string());
    }
    // The limiter's mapping and descriptor do not survive the exec (close-on-exec).
    let error = child.exec();
    let exit = if error.kind() == std::io::ErrorKind::NotFound {
        Exit::CommandNotFound
    } else {
        Exit::CannotExecute
    };
    Err(Failure::new(
        exit,
        format!(
            "{}: {error} (the admission was already taken from the limiter)",
            program.display()
        ),
    ))
}
