//! Exit codes, and the one error type every command returns.
//!
//! The codes are part of the command's interface: scripts branch on them, so they never change
//! meaning. They follow `sysexits.h` where it has a fitting code, and the shells' convention
//! for a command that cannot be run:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success; for `acquire` and `run`, admitted (`run` then exits with the command's own status) |
//! | 1    | `demo`: the verdict failed: some sliding window held more than its limit, or the admission log contradicted itself |
//! | 64   | usage: bad arguments, a bad rate, duration, weight or mode, an invalid limiter name |
//! | 65   | data: the file is not a usable limiter (not a hostlimit file, corrupt, truncated, other version or boot), it has other rates than `--rate` asked for, or the weight can never fit a limit |
//! | 66   | no such limiter (and no `--rate` to create it with) |
//! | 70   | internal: a demo worker failed |
//! | 74   | system or I/O error (unreadable directory, failed mapping, unsupported machine) |
//! | 75   | try again later: refused with `-n`, or not admitted within `--timeout` (at once if it could fit only later); `reset`/`rm`: the file is still mapped by other processes |
//! | 77   | permission denied |
//! | 126  | `run`: the command was found but could not be executed |
//! | 127  | `run`: the command was not found |

use std::fmt;
use std::io;
use std::process::ExitCode;

use hostlimit::{DenialKind, Denied, Error};
use serde_json::{Map, Value};

use crate::cli::program;
use crate::cli::target::Target;

/// The exit codes; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success, or admitted.
    Success = 0,
    /// The demo's verdict failed.
    Exceeded = 1,
    /// Bad command line or input text (`EX_USAGE`).
    Usage = 64,
    /// The file or the request does not fit (`EX_DATAERR`).
    Data = 65,
    /// No such limiter (`EX_NOINPUT`).
    NoInput = 66,
    /// A bug or a failed helper process (`EX_SOFTWARE`).
    Software = 70,
    /// A system or I/O error (`EX_IOERR`).
    Io = 74,
    /// Denied, timed out, or busy: try again later (`EX_TEMPFAIL`).
    TempFail = 75,
    /// Permission denied (`EX_NOPERM`).
    NoPerm = 77,
    /// `run`: the command could not be executed.
    CannotExecute = 126,
    /// `run`: the command was not found.
    CommandNotFound = 127,
}

impl Exit {
    /// The code's meaning as a JSON consumer reads it.
    pub fn kind(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Exceeded => "window_exceeded",
            Exit::Usage => "usage",
            Exit::Data => "data",
            Exit::NoInput => "no_such_limiter",
            Exit::Software => "internal",
            Exit::Io => "io",
            Exit::TempFail => "try_again",
            Exit::NoPerm => "permission_denied",
            Exit::CannotExecute => "cannot_execute",
            Exit::CommandNotFound => "command_not_found",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// The exit-code table as shown by `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success; acquire/run: admitted (run then exits with the command's status)
  1    demo: the verdict failed (a sliding window held more than its limit)
  64   bad arguments: a bad rate, duration, weight, mode or limiter name
  65   not a usable limiter (not a hostlimit file, corrupt, other version or
       boot), other rates than --rate asked for, or a weight that never fits
  66   no such limiter (and no --rate to create it with)
  70   internal error (a demo worker failed)
  74   system or I/O error
  75   try again later: refused with -n, or not admitted within --timeout;
       reset/rm: the file is still mapped by other processes
  77   permission denied
  126  run: the command could not be executed
  127  run: the command was not found";

/// A command that failed: the exit code, the message for stderr, and what a JSON consumer
/// gets besides.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, naming the file where there is one.
    pub message: String,
    /// More fields for the `--json` document.
    pub details: Map<String, Value>,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// The same failure with one more field in its JSON document.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Failure {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// A denial: try later (75) if retrying can help, a data error (65) if it never can.
    pub fn denied(what: &str, denied: &Denied) -> Failure {
        let exit = match denied.kind() {
            DenialKind::Exhausted { .. } => Exit::TempFail,
            _ => Exit::Data,
        };
        Failure::new(exit, format!("{what}: {denied}"))
    }

    /// A library error about the limiter `target`, in the command line's words.
    pub fn about(target: &Target, error: Error) -> Failure {
        let name = &target.name;
        match &error {
            Error::ConfigMismatch {
                path,
                file,
                reconfigured,
                ..
            } => Failure::new(
                Exit::Data,
                format!(
                    "{}: this limiter's rates are {}, not the --rate given ({}){}; leave out \
                     --rate to use the limiter's own rates, or change them (keeping its \
                     history): {} set {name} --rate ...",
                    path.display(),
                    list(file),
                    requested_list(&error),
                    if *reconfigured > 0 {
                        " (they were changed with `set` since it was created)"
                    } else {
                        ""
                    },
                    program::ours()
                ),
            ),
            // The limiter's directory is missing: the library's words say so.
            Error::Io { path, source, .. }
                if source.kind() == io::ErrorKind::NotFound && *path == target.path =>
            {
                Failure::missing(target, false)
            }
            _ => Failure::from(error),
        }
    }

    /// No such limiter; `can_create` says whether `--rate` would have created it.
    pub fn missing(target: &Target, can_create: bool) -> Failure {
        let path = target.path.display();
        let message = if can_create {
            format!(
                "{path}: no such limiter; create it with `{} create {} --rate RATE`, or pass \
                 --rate here",
                program::ours(),
                target.name
            )
        } else {
            format!("{path}: no such limiter")
        };
        Failure::new(Exit::NoInput, message)
    }

    /// The `--json` document of this failure.
    pub fn json(&self) -> String {
        let mut document = Map::new();
        document.insert("ok".into(), false.into());
        document.insert("exit_code".into(), (self.exit as u8).into());
        document.insert("error_kind".into(), self.exit.kind().into());
        document.insert("error".into(), self.message.clone().into());
        for (key, value) in &self.details {
            document.insert(key.clone(), value.clone());
        }
        Value::Object(document).to_string()
    }
}

fn list(rates: &[hostlimit::Rate]) -> String {
    rates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn requested_list(error: &Error) -> String {
    match error {
        Error::ConfigMismatch { requested, .. } => list(requested),
        _ => String::new(),
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code for an I/O error.
pub fn io_exit(error: &io::Error) -> Exit {
    match error.kind() {
        io::ErrorKind::NotFound => Exit::NoInput,
        io::ErrorKind::PermissionDenied => Exit::NoPerm,
        _ => Exit::Io,
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let exit = match &error {
            Error::InvalidRate { .. }
            | Error::InvalidRates(_)
            | Error::InvalidName(_)
            | Error::TooLarge { .. } => Exit::Usage,
            Error::ConfigMismatch { .. }
            | Error::Corrupt { .. }
            | Error::Truncated { .. }
            | Error::Version { .. }
            | Error::ClockMismatch { .. }
            | Error::RedisMismatch { .. } => Exit::Data,
            Error::Io { source, .. } => io_exit(source),
            _ => Exit::Io,
        };
        Failure::new(exit, error.to_string())
    }
}
