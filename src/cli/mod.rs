//! The command line: arguments (clap), dispatch, output and exit codes.
//!
//! Modules, in reading order: `exit` (the exit codes and the error type), `target` (naming a
//! limiter), `time` (durations), `report` (`status`, `watch`), `metrics`, `acquire`
//! (`acquire`, `run`), `admin` (`create`, `reset`, `rm`), `mappers` (who maps a file), `demo`.

mod acquire;
mod admin;
mod demo;
mod exit;
mod mappers;
mod metrics;
mod report;
mod target;
mod time;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hostlimit::Rate;

use crate::cli::exit::{EXIT_CODES_HELP, Exit, Failure};

const LIMITER_HELP: &str =
    "Limiter name (a file in the limiter directory) or path (anything containing '/')";

/// Host-wide rate limits shared by every process through a memory-mapped file.
///
/// A limiter is a file, by default in /dev/shm/hostlimit; name it by its file name there, or
/// by a path (anything containing '/'). Rates are written LIMIT[WORD]/[N]UNIT: 10/s, 600/min,
/// 10000/day, 90000tok/min (weight), 60req/min (requests, whatever their weight).
#[derive(Debug, Parser)]
#[command(name = "hostlimit", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// The limiter directory [default: $HOSTLIMIT_DIR, else /dev/shm/hostlimit]
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show each limiter: limit, used, remaining and next free unit per rate, admitted and
    /// denied counts, and who created it
    #[command(after_help = "Files in the directory that are not usable limiters are listed \
        with the reason, and do not change the exit code; a named limiter that cannot be read \
        is an error.\n\n"
        .to_string() + EXIT_CODES_HELP)]
    Status {
        /// Limiters to show [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Show `status` again and again (clearing the screen on a terminal)
    #[command(after_help = EXIT_CODES_HELP)]
    Watch {
        /// Limiters to show [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
        /// Time between refreshes
        #[arg(long, short = 'n', default_value = "1s", value_parser = time::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes
        #[arg(long, short = 'c', value_name = "N")]
        count: Option<u64>,
        /// One JSON document per line per refresh
        #[arg(long)]
        json: bool,
    },
    /// Take WEIGHT from a limiter: exit 0 if admitted, 75 if denied or timed out
    ///
    /// Without --timeout this is a single try. With it, waits (sleeping until the limiter
    /// says the weight could fit, not polling) at most that long; it gives up at once when the
    /// weight could not fit before the deadline. Why a request was denied and when to retry
    /// go to stderr.
    #[command(after_help = EXIT_CODES_HELP)]
    Acquire {
        #[command(flatten)]
        admit: AdmitArgs,
        /// Print the outcome as JSON on stdout (admitted: recorded timestamp and sequence
        /// number; denied: the rate, the reason and the retry-after)
        #[arg(long)]
        json: bool,
    },
    /// Take WEIGHT from a limiter, then run a command in place of this process
    ///
    /// The command replaces hostlimit (exec), so its exit status is hostlimit's. It is not
    /// run if the weight is denied or not admitted within --timeout (exit 75). It finds the
    /// admission's recorded timestamp (nanoseconds of CLOCK_BOOTTIME) and sequence number in
    /// HOSTLIMIT_TIMESTAMP and HOSTLIMIT_SEQUENCE.
    #[command(after_help = EXIT_CODES_HELP)]
    Run {
        #[command(flatten)]
        admit: AdmitArgs,
        /// The command and its arguments, after --
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Create a limiter; succeeds if it already exists with the same rates
    #[command(after_help = EXIT_CODES_HELP)]
    Create {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// A rate (repeat for several): 10/s, 600/min, 90000tok/min, 60req/min
        #[arg(long = "rate", short, required = true, value_name = "RATE")]
        rates: Vec<Rate>,
        /// Permission bits of the file, in octal (0660 to share with the group)
        #[arg(long, default_value = "0600", value_parser = admin::parse_mode)]
        mode: u32,
    },
    /// Empty every window of a limiter (a fresh file with the same rates replaces it)
    ///
    /// Refuses while other processes map the file (exit 75, naming them), unless --force.
    #[command(after_help = EXIT_CODES_HELP)]
    Reset {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// Reset even if other processes use it: they move to the fresh file
        #[arg(long, short)]
        force: bool,
    },
    /// Remove a limiter
    ///
    /// Refuses while other processes map the file (exit 75, naming them), unless --force.
    #[command(after_help = EXIT_CODES_HELP)]
    Rm {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// Remove even if other processes use it (they re-create it with their rates at their
        /// next call)
        #[arg(long, short)]
        force: bool,
    },
    /// Print the counters and gauges in the Prometheus text format
    #[command(after_help = EXIT_CODES_HELP)]
    Metrics {
        /// Limiters to export [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
    },
    /// Worker processes share one two-rate limiter for a few seconds; every sliding window
    /// is then checked exactly against the admissions they recorded
    ///
    /// The limiter is created as demo-PID in the limiter directory (in a scratch directory
    /// under $TMPDIR if the default one is unusable) and removed at the end; a demo
    /// interrupted by Ctrl-C leaves it, and the next demo removes it. Exits 1 if any window
    /// held more than its limit.
    #[command(after_help = EXIT_CODES_HELP)]
    Demo {
        /// Worker processes
        #[arg(long, short, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        /// How long the workers run
        #[arg(long, short, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// The limiter's rates [default: 50/s and 200/10s]
        #[arg(long = "rate", short, value_name = "RATE")]
        rates: Vec<Rate>,
    },
    /// A demo worker (started by `hostlimit demo`)
    #[command(name = "__demo-worker", hide = true)]
    DemoWorker {
        path: PathBuf,
        #[arg(long)]
        until_ns: u64,
    },
}

/// What `acquire` and `run` take.
#[derive(Debug, Args)]
struct AdmitArgs {
    #[arg(help = LIMITER_HELP)]
    limiter: String,
    /// The weight to take (what rates like 90000tok/min count)
    #[arg(long, short, default_value_t = 1)]
    weight: u64,
    /// Wait at most this long for admission (60s, 500ms, 2min; a bare number is seconds)
    #[arg(long, short, value_parser = time::parse_duration)]
    timeout: Option<Duration>,
    /// Create the limiter with this rate if it does not exist (repeat for several); an
    /// existing one must have exactly these rates
    #[arg(long = "rate", short, value_name = "RATE")]
    rates: Vec<Rate>,
    /// Permission bits of a file created here, in octal
    #[arg(long, default_value = "0600", value_parser = admin::parse_mode)]
    mode: u32,
}

/// Runs the command line and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let exit = match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Success,
                _ => Exit::Usage,
            };
            let _ = error.print();
            return exit.into();
        }
    };
    let dir = target::directory(cli.dir.as_deref());
    match dispatch(&dir, cli.dir.as_deref(), cli.command) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            if !failure.message.is_empty() {
                print_err(&failure.message);
            }
            failure.exit.into()
        }
    }
}

fn dispatch(dir: &Path, explicit_dir: Option<&Path>, command: Command) -> Result<Exit, Failure> {
    match command {
        Command::Status { names, json } => report::status(dir, &names, json),
        Command::Watch {
            names,
            interval,
            count,
            json,
        } => report::watch(dir, &names, interval, count, json),
        Command::Acquire { admit, json } => {
            let target = target::resolve(dir, &admit.limiter)?;
            acquire::acquire(&admit.request(&target), json)
        }
        Command::Run { admit, command } => {
            let target = target::resolve(dir, &admit.limiter)?;
            acquire::run(&admit.request(&target), &command)
        }
        Command::Create {
            limiter,
            rates,
            mode,
        } => admin::create(&target::resolve(dir, &limiter)?, &rates, mode),
        Command::Reset { limiter, force } => admin::reset(&target::resolve(dir, &limiter)?, force),
        Command::Rm { limiter, force } => admin::remove(&target::resolve(dir, &limiter)?, force),
        Command::Metrics { names } => metrics::metrics(dir, &names),
        Command::Demo {
            workers,
            seconds,
            rates,
        } => {
            let rates = if rates.is_empty() {
                demo::DEFAULT_RATES
                    .iter()
                    .map(|r| r.parse().expect("the default rates parse"))
                    .collect()
            } else {
                rates
            };
            demo::demo(
                dir,
                &demo::Options {
                    workers: usize::from(workers),
                    duration: Duration::from_secs(seconds),
                    rates,
                    may_fall_back: explicit_dir.is_none()
                        && std::env::var_os(hostlimit::DIR_ENV).is_none_or(|v| v.is_empty()),
                },
            )
        }
        Command::DemoWorker { path, until_ns } => demo::worker(&path, until_ns),
    }
}

impl AdmitArgs {
    fn request<'a>(&'a self, target: &'a target::Target) -> acquire::Request<'a> {
        acquire::Request {
            target,
            weight: self.weight,
            timeout: self.timeout,
            rates: &self.rates,
            mode: self.mode,
        }
    }
}

/// Writes to stdout and flushes. A closed pipe (`hostlimit status | head -1`) ends the
/// command quietly with success, as if the reader had simply had enough.
fn print_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(Exit::Success, ""))
        }
        Err(e) => Err(Failure::new(Exit::Io, format!("stdout: {e}"))),
    }
}

/// Writes `hostlimit: MESSAGE` to stderr.
fn print_err(message: &str) {
    let _ = writeln!(std::io::stderr(), "hostlimit: {message}");
}
