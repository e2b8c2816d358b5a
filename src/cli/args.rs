//! The command line's grammar (clap): every command, option and help text. The shell
//! completions and the man pages are generated from these same definitions (`docs.rs`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hostlimit::{Builder, Limiter, Pacing, Rate};

use crate::cli::admin;
use crate::cli::exit::EXIT_CODES_HELP;
use crate::cli::time;

const LIMITER_HELP: &str =
    "Limiter name (a file in the limiter directory) or path (anything containing '/')";

const RATE_HELP: &str = "A rate, repeated for several: the limiter is created with these \
    if it does not exist, and an existing one must have exactly these. LIMIT[WORD]/[N]UNIT: \
    10/s, 600/min, 5/2s, 10k/day, 90000tok/min (weight, in tokens), 60req/min (requests, \
    whatever their weight)";

/// Host-wide rate limits shared by every process through a memory-mapped file.
///
/// A limiter is a file, by default in /dev/shm/hostlimit; name it by its file name there, or
/// by a path (anything containing '/'). Rates are written LIMIT[WORD]/[N]UNIT: 10/s, 600/min,
/// 10000/day, 90000tok/min (weight), 60req/min (requests, whatever their weight). Every
/// command takes --json: one JSON document on stdout, failures included.
#[derive(Debug, Parser)]
#[command(name = "hostlimit", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The limiter directory [default: $HOSTLIMIT_DIR, else /dev/shm/hostlimit]
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print one JSON document on stdout (failures too: {"ok": false, "exit_code": N,
    /// "error": "..."})
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// How `status` and `watch` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Per limiter: its rates and their use, and its counters (fits 80 columns)
    Normal,
    /// Also the file's details: creator, clock, boot, time namespace, size
    Wide,
    /// One JSON document (the same as --json)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each limiter: limit, used, remaining and next free unit per rate, admitted and
    /// denied counts
    #[command(after_help = "Files in the directory that are not usable limiters are listed \
        with the reason, and do not change the exit code; a named limiter that cannot be read \
        is an error.\n\n"
        .to_string() + EXIT_CODES_HELP)]
    Status {
        /// Limiters to show [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Show `status` again and again, fitted to the terminal
    #[command(after_help = EXIT_CODES_HELP)]
    Watch {
        /// Limiters to show [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
        /// Time between refreshes (at least 100ms, at most 1h)
        #[arg(long, short = 'n', default_value = "1s", value_parser = time::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes
        #[arg(long, short = 'c', value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// A full-screen live view: per rate a bar of used against the limit and a minute of
    /// admissions and denials; q quits, p pauses, s sorts, / filters
    #[command(after_help = EXIT_CODES_HELP)]
    Top {
        /// Limiters to show [default: every limiter in the directory]
        #[arg(value_name = "LIMITER")]
        names: Vec<String>,
        /// Time between readings (at least 100ms, at most 1h)
        #[arg(long, short = 'n', default_value = "1s", value_parser = time::parse_duration)]
        interval: Duration,
    },
    /// List the limiters in the directory, one per line, with their rates
    #[command(after_help = EXIT_CODES_HELP)]
    List,
    /// Take WEIGHT from a limiter, waiting until it fits: exit 0 when admitted
    ///
    /// Like flock(1): waits by default (sleeping until the limiter says the weight fits, not
    /// polling); -n tries once; --timeout bounds the wait. It returns at once, without
    /// waiting, when waiting cannot help: the weight never fits a limit (exit 65), or it
    /// could fit only after the timeout (exit 75). Why a request was refused and when to
    /// retry go to stderr.
    #[command(after_help = EXIT_CODES_HELP)]
    Acquire {
        #[command(flatten)]
        admit: AdmitArgs,
    },
    /// Take WEIGHT from a limiter (waiting, as acquire does), then run a command in place of
    /// this process
    ///
    /// hostlimit run LIMITER COMMAND [ARGS...], as flock FILE COMMAND [ARGS...]; a `--`
    /// before COMMAND is allowed. The command is looked up on PATH first: one that cannot be
    /// found or run takes nothing (exit 127 or 126). Then it replaces hostlimit (exec), so
    /// its exit status is hostlimit's. It is not run when refused (exit 75 or 65). It finds
    /// the admission's recorded timestamp (nanoseconds of CLOCK_BOOTTIME) and sequence
    /// number in HOSTLIMIT_TIMESTAMP and HOSTLIMIT_SEQUENCE. With --json, the admission is
    /// printed as one line on stdout before the command starts.
    #[command(after_help = EXIT_CODES_HELP)]
    Run {
        #[command(flatten)]
        admit: AdmitArgs,
        /// The command and its arguments
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<OsString>,
    },
    /// Create a limiter; succeeds if it already exists with the same rates
    #[command(after_help = EXIT_CODES_HELP)]
    Create {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        #[command(flatten)]
        rates: RateArgs,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// Change the rates of a limiter, in use or not, keeping the admissions inside the new
    /// windows
    ///
    /// A new file with these rates replaces the old one; it starts with the old file's
    /// admissions that are inside a window of the new rates (the ring grows if the new rates
    /// need it). Every process using the limiter adopts the new rates at its next call; one
    /// that opens it later with the old rates is refused (exit 65), naming both.
    #[command(after_help = EXIT_CODES_HELP)]
    Set {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// A new rate, repeated for several: the limiter gets exactly these
        #[arg(long = "rate", short, value_name = "RATE", required = true, value_parser = parse_rate)]
        rates: Vec<Rate>,
    },
    /// Empty every window of a limiter (a fresh file with the same rates replaces it)
    ///
    /// Refuses while other processes map the file (exit 75, naming them), unless --force.
    /// A journaled limiter stays journaled, and its journal forgets the old admissions (a
    /// reset mark in it): after a reboot it comes back as the reset left it.
    #[command(after_help = EXIT_CODES_HELP)]
    Reset {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// Reset even if other processes use it: they move to the fresh file
        #[arg(long, short)]
        force: bool,
    },
    /// Remove a limiter, and its journal
    ///
    /// Refuses while other processes map the file (exit 75, naming them), unless --force.
    /// A journaled limiter's journal and journal record are deleted too, unless
    /// --keep-journal; a journaled limiter whose file is already gone (after a reboot) has
    /// its journal deleted, which is how a lost or broken journal's history is given up.
    #[command(after_help = EXIT_CODES_HELP)]
    Rm {
        #[arg(help = LIMITER_HELP)]
        limiter: String,
        /// Keep the journal and its record: the next process to open the limiter creates it
        /// again with the journal's history, as after a reboot
        #[arg(long)]
        keep_journal: bool,
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
        #[arg(long = "rate", short, value_name = "RATE", value_parser = parse_rate)]
        rates: Vec<Rate>,
        /// Also write the run's chart (admissions per window against each limit) as an SVG
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Print a shell completion script: hostlimit completions bash > /etc/bash_completion.d/hostlimit
    #[command(after_help = EXIT_CODES_HELP)]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): hostlimit man | man -l -
    #[command(after_help = EXIT_CODES_HELP)]
    Man {
        /// The page of one command (hostlimit-acquire(1), ...) [default: hostlimit(1)]
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// A demo worker (started by `hostlimit demo`)
    #[command(name = "__demo-worker", hide = true)]
    DemoWorker {
        path: PathBuf,
        #[arg(long)]
        until_ns: u64,
    },
}

/// How `status` and `watch` print.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Output format
    #[arg(long, short, value_enum, default_value = "normal")]
    pub output: Output,
    /// The same as -o wide
    #[arg(long, conflicts_with = "output")]
    pub wide: bool,
}

impl ViewArgs {
    /// The format asked for; `--json` wins.
    pub fn output(&self, json: bool) -> Output {
        if json {
            Output::Json
        } else if self.wide {
            Output::Wide
        } else {
            self.output
        }
    }
}

/// The rates a limiter is created with, and how they are shaped for the downstream's view.
#[derive(Debug, Args)]
pub struct RateArgs {
    #[arg(long = "rate", short, value_name = "RATE", help = RATE_HELP, value_parser = parse_rate)]
    pub rates: Vec<Rate>,
    /// Permission bits of a file created here, in octal (0660 to share with the group); an
    /// existing limiter given to `create` must have them [default: 0600]
    #[arg(long, value_parser = admin::parse_mode)]
    pub mode: Option<u32>,
    /// The group of a file created here (a name or a number), to share it with that group's
    /// users (with --mode 0660); in a directory anyone may write to, a file of another user
    /// is used only if it has this group
    #[arg(long, value_name = "GROUP", value_parser = admin::parse_group)]
    pub group: Option<u32>,
    /// Create the limiter's directory and its missing parents if they do not exist (the
    /// directory of named limiters is created without it)
    #[arg(long)]
    pub parents: bool,
    /// Space admissions evenly: at most one per window/limit of the slowest rate (adds a
    /// rate that counts requests)
    #[arg(long, requires = "rates")]
    pub pace: bool,
    /// With --pace, allow bursts of up to N admissions (at most N per N x window/limit)
    #[arg(long, value_name = "N", requires = "pace", value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub burst: Option<u64>,
    /// Lengthen every window by this much (100ms), so that requests that reach the other
    /// side up to that much late still arrive within its limit
    #[arg(long, value_name = "DURATION", requires = "rates", value_parser = time::parse_duration)]
    pub margin: Option<Duration>,
}

impl RateArgs {
    /// A builder with these rates and options.
    pub fn builder(&self) -> Builder {
        self.builder_with(&self.rates)
    }

    /// A builder with `rates` (a limiter's own) and these options.
    pub fn builder_with(&self, rates: &[Rate]) -> Builder {
        let builder = Limiter::builder(rates)
            .mode(self.mode.unwrap_or(0o600))
            .create_dirs(self.parents)
            .pace(self.pacing());
        match self.group {
            Some(gid) => builder.group(gid),
            None => builder,
        }
    }

    /// The pacing asked for.
    pub fn pacing(&self) -> Pacing {
        let mut pacing = Pacing::none().margin(self.margin.unwrap_or_default());
        if self.pace {
            pacing = Pacing::spaced()
                .burst(self.burst.unwrap_or(1))
                .margin(self.margin.unwrap_or_default());
        }
        pacing
    }
}

/// A journal for the limiter (create, acquire, run): its admissions also go to SQLite on
/// disk, and the limiter is recorded as journaled, so that every later opener restores them.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Journal the limiter so that its windows survive a reboot; the journal is recorded in
    /// the state directory ($HOSTLIMIT_STATE_DIR, else /var/lib/hostlimit for root, else
    /// ~/.local/state/hostlimit), and every later opener, with or without --journal, uses it
    #[arg(long)]
    pub journal: bool,
    /// The journal directory (implies --journal) [default: a directory named after the
    /// limiter in the state directory]
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Strict durability (implies --journal): capacity is leased from the journal with a
    /// synchronous write before it is used, so a crash forgets nothing admitted [default:
    /// periodic, a crash forgets at most the last interval]
    #[arg(long)]
    pub strict: bool,
    /// How often the journal is written (periodic), or how long a lease lasts (--strict)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = time::parse_duration)]
    pub journal_interval: Duration,
}

impl JournalArgs {
    /// Whether a journal was asked for.
    pub fn wanted(&self) -> bool {
        self.journal || self.journal_dir.is_some() || self.strict
    }

    /// The durability asked for.
    #[cfg(feature = "journal")]
    pub fn durability(&self) -> hostlimit::Durability {
        if self.strict {
            hostlimit::Durability::Strict {
                lease: self.journal_interval,
            }
        } else {
            hostlimit::Durability::Periodic(self.journal_interval)
        }
    }
}

/// What `acquire` and `run` take.
#[derive(Debug, Args)]
pub struct AdmitArgs {
    #[arg(help = LIMITER_HELP)]
    pub limiter: String,
    /// The weight to take (what rates like 90000tok/min count), 0 or more
    #[arg(long, short, default_value_t = 1, allow_negative_numbers = true, value_parser = parse_weight)]
    pub weight: u64,
    /// Try once, do not wait (exit 75 at once if there is no room)
    #[arg(long, short = 'n', conflicts_with = "timeout")]
    pub nonblock: bool,
    /// Wait at most this long (60s, 500ms, 2min, inf; a bare number is seconds) [default: inf]
    #[arg(long, short, value_parser = time::parse_timeout, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub rates: RateArgs,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// `--rate`: the library's grammar, the reason alone on error (clap names the option).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse::<Rate>().map_err(|error| match error {
        hostlimit::Error::InvalidRate { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// `--weight`: a whole number, 0 or more.
fn parse_weight(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    trimmed.parse::<u64>().map_err(|_| {
        if trimmed.starts_with('-') {
            "a weight is 0 or more (how much of a rate like 90000tok/min one acquire takes)"
                .to_string()
        } else {
            format!("{trimmed:?} is not a weight: write a whole number, as in --weight 1200")
        }
    })
}
