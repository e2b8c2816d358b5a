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
//! | 64   | usage: bad arguments, a bad rate, duration or mode, an invalid limiter name |
//! | 65   | data: the file is not a usable limiter (corrupt, truncated, other version or boot), it has other rates than `--rate` asked for, or the weight can never fit a limit |
//! | 66   | no such limiter (and no `--rate` to create it with) |
//! | 70   | internal: a demo worker failed |
//! | 74   | system or I/O error (unreadable directory, failed mapping, unsupported machine) |
//! | 75   | try again later: denied, or not admitted within `--timeout`; `reset`/`rm`: the file is still mapped by other processes |
//! | 77   | permission denied |
//! | 126  | `run`: the command was found but could not be executed |
//! | 127  | `run`: the command was not found |

use std::fmt;
use std::io;
use std::process::ExitCode;

use hostlimit::{DenialKind, Denied, Error};

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
  64   bad arguments: a bad rate, duration, mode or limiter name
  65   not a usable limiter (corrupt, other version or boot), other rates than
       --rate asked for, or a weight that can never fit a limit
  66   no such limiter (and no --rate to create it with)
  70   internal error (a demo worker failed)
  74   system or I/O error
  75   try again later: denied, or not admitted within --timeout;
       reset/rm: the file is still mapped by other processes
  77   permission denied
  126  run: the command could not be executed
  127  run: the command was not found";

/// A command that failed: the exit code and the message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, naming the file where there is one.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// A denial: try later (75) if retrying can help, a data error (65) if it never can.
    pub fn denied(what: &str, denied: &Denied) -> Failure {
        let exit = match denied.kind() {
            DenialKind::Exhausted { .. } => Exit::TempFail,
            _ => Exit::Data,
        };
        Failure::new(exit, format!("{what}: {denied}"))
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
            | Error::ClockMismatch { .. } => Exit::Data,
            Error::Io { source, .. } => io_exit(source),
            _ => Exit::Io,
        };
        Failure::new(exit, error.to_string())
    }
}
