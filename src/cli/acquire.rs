//! `acquire` and `run`: take capacity from a limiter, then exit 0 or run a command.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use hostlimit::{DenialKind, Denied, Limiter, Rate, Stamp};
use serde::Serialize;

use crate::cli::exit::{Exit, Failure};
use crate::cli::print_out;
use crate::cli::target::Target;
use crate::cli::time::{format_duration, nanos};

/// The environment variable `run` sets to the admission's recorded timestamp (nanoseconds of
/// the limiter's clock, `CLOCK_BOOTTIME`).
pub const TIMESTAMP_ENV: &str = "HOSTLIMIT_TIMESTAMP";

/// The environment variable `run` sets to the admission's sequence number in the log.
pub const SEQUENCE_ENV: &str = "HOSTLIMIT_SEQUENCE";

/// What `acquire` and `run` ask for.
#[derive(Debug)]
pub struct Request<'a> {
    /// The limiter.
    pub target: &'a Target,
    /// The weight to admit.
    pub weight: u64,
    /// How long to wait for admission; `None` tries once.
    pub timeout: Option<Duration>,
    /// Rates to create the limiter with if it does not exist (and to check it against if it
    /// does); empty to attach to an existing one only.
    pub rates: &'a [Rate],
    /// Permission bits for a file created here.
    pub mode: u32,
}

impl Request<'_> {
    fn open(&self) -> Result<Limiter, Failure> {
        let path = &self.target.path;
        if !self.rates.is_empty() {
            return Ok(Limiter::builder(self.rates).mode(self.mode).open(path)?);
        }
        Limiter::attach(path).map_err(|error| {
            let failure = Failure::from(error);
            if failure.exit == Exit::NoInput {
                Failure::new(
                    Exit::NoInput,
                    format!(
                        "{}: no such limiter; create it with `hostlimit create {} --rate RATE`, \
                         or pass --rate",
                        path.display(),
                        self.target.name
                    ),
                )
            } else {
                failure
            }
        })
    }

    /// Admits the weight: one try without a timeout, else waits up to it (the library's
    /// `acquire_stamped`: no polling, gives up at once when admission is past the deadline).
    fn admit(&self, limiter: &Limiter) -> Result<Option<Stamp>, Denied> {
        match self.timeout {
            None => limiter.try_acquire_stamped(self.weight),
            Some(timeout) => limiter.acquire_stamped(self.weight, timeout),
        }
    }

    fn refused(&self, denied: &Denied) -> Failure {
        let what = match self.timeout {
            Some(timeout) => format!(
                "{}: not admitted within {}",
                self.target.path.display(),
                format_duration(timeout)
            ),
            None => format!("{}: denied", self.target.path.display()),
        };
        Failure::denied(&what, denied)
    }
}

#[derive(Serialize)]
struct AcquireJson<'a> {
    limiter: &'a str,
    path: String,
    weight: u64,
    admitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    waited_ns: u64,
}

/// `hostlimit acquire`.
pub fn acquire(request: &Request<'_>, json: bool) -> Result<Exit, Failure> {
    let limiter = request.open()?;
    let started = Instant::now();
    let outcome = request.admit(&limiter);
    if json {
        let mut document = AcquireJson {
            limiter: &request.target.name,
            path: request.target.path.display().to_string(),
            weight: request.weight,
            admitted: outcome.is_ok(),
            timestamp_ns: None,
            sequence: None,
            rate: None,
            reason: None,
            retry_after_ns: None,
            message: None,
            waited_ns: nanos(started.elapsed()),
        };
        match &outcome {
            Ok(stamp) => {
                document.timestamp_ns = stamp.map(|s| s.timestamp);
                document.sequence = stamp.map(|s| s.sequence);
            }
            Err(denied) => {
                document.rate = denied.rate().map(|r| r.to_string());
                document.reason = Some(match denied.kind() {
                    DenialKind::Exhausted { .. } => "exhausted",
                    DenialKind::NeverFits { .. } => "never_fits",
                    _ => "unavailable",
                });
                document.retry_after_ns = denied.retry_after().map(nanos);
                document.message = Some(denied.to_string());
            }
        }
        let text = serde_json::to_string(&document).expect("plain structs serialize");
        print_out(&format!("{text}\n"))?;
    }
    match outcome {
        Ok(_) => Ok(Exit::Success),
        Err(denied) => Err(request.refused(&denied)),
    }
}

/// `hostlimit run`: admits, then replaces this process by the command, which inherits the
/// admission's timestamp and sequence number in `HOSTLIMIT_TIMESTAMP` and
/// `HOSTLIMIT_SEQUENCE`. Returns only if the command cannot be run or was not admitted.
pub fn run(request: &Request<'_>, command: &[OsString]) -> Result<Exit, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::new(Exit::Usage, "no command given after --"));
    };
    let limiter = request.open()?;
    let stamp = request
        .admit(&limiter)
        .map_err(|denied| request.refused(&denied))?;
    // The mapping and its descriptor would not survive the exec anyway (the descriptor is
    // close-on-exec); unmapping first keeps this explicit.
    drop(limiter);
    let mut child = Command::new(program);
    child.args(args);
    if let Some(stamp) = stamp {
        child.env(TIMESTAMP_ENV, stamp.timestamp.to_string());
        child.env(SEQUENCE_ENV, stamp.sequence.to_string());
    }
    let error = child.exec();
    let exit = if error.kind() == std::io::ErrorKind::NotFound {
        Exit::CommandNotFound
    } else {
        Exit::CannotExecute
    };
    Err(Failure::new(
        exit,
        format!("{}: {error}", program.to_string_lossy()),
    ))
}
