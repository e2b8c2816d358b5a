//! The command line: dispatch, output and exit codes.
//!
//! Modules, in reading order: `args` (the grammar, clap), `exit` (the exit codes and the
//! error type), `target` (naming a limiter), `time` (durations), `program` (finding programs,
//! naming this one), `report` (`status`, `watch`), `terminal` (its size), `list`, `metrics`,
//! `acquire` (`acquire`, `run`), `admin` (`create`, `reset`, `rm`), `set`, `mappers` (who maps a
//! file), `docs` (completions, man pages), `demo`.

mod acquire;
mod admin;
mod args;
mod chart;
mod demo;
mod docs;
mod exit;
mod journal;
mod list;
mod mappers;
mod metrics;
mod program;
mod report;
mod set;
mod target;
mod terminal;
mod time;
mod top;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::args::{Cli, Command};
use crate::cli::exit::{Exit, Failure};

/// Runs the command line and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let json = cli.json;
    let dir = target::directory(cli.dir.as_deref());
    match dispatch(&dir, cli.dir.as_deref(), json, cli.command) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            if json && failure.exit != Exit::Success {
                let _ = print_out(&format!("{}\n", failure.json()));
            }
            if !failure.message.is_empty() {
                print_err(&failure.message);
            }
            failure.exit.into()
        }
    }
}

/// Help and version go to stdout (exit 0); any other parse error is a usage error (64), as
/// a JSON document too when `--json` was on the command line.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        let exit = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            Exit::Usage
        } else {
            Exit::Success
        };
        return exit.into();
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        let text = error.render().to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("bad arguments")
            .trim_start_matches("error: ");
        let _ = print_out(&format!(
            "{}\n",
            Failure::new(Exit::Usage, first.to_string()).json()
        ));
    }
    let _ = error.print();
    Exit::Usage.into()
}

fn dispatch(
    dir: &Path,
    explicit_dir: Option<&Path>,
    json: bool,
    command: Command,
) -> Result<Exit, Failure> {
    match command {
        Command::Status { names, view } => report::status(dir, &names, view.output(json)),
        Command::Watch {
            names,
            interval,
            count,
            view,
        } => report::watch(dir, &names, interval, count, view.output(json)),
        Command::Top { names, interval } => top::top(dir, &names, interval, json),
        Command::List => list::list(dir, json),
        Command::Acquire { admit } => {
            let target = target::resolve(dir, &admit.limiter)?;
            acquire::acquire(&acquire::Request::new(&admit, &target), json)
        }
        Command::Run { admit, command } => {
            let target = target::resolve(dir, &admit.limiter)?;
            acquire::run(&acquire::Request::new(&admit, &target), &command, json)
        }
        Command::Create {
            limiter,
            rates,
            journal,
        } => admin::create(&target::resolve(dir, &limiter)?, &rates, &journal, json),
        Command::Set { limiter, rates } => set::set(&target::resolve(dir, &limiter)?, &rates, json),
        Command::Reset { limiter, force } => {
            admin::reset(&target::resolve(dir, &limiter)?, force, json)
        }
        Command::Rm {
            limiter,
            force,
            keep_journal,
        } => admin::remove(&target::resolve(dir, &limiter)?, force, keep_journal, json),
        Command::Metrics { names } => metrics::metrics(dir, &names, json),
        Command::Demo {
            workers,
            seconds,
            rates,
            plot,
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
                    json,
                    plot,
                },
            )
        }
        Command::Completions { shell } => docs::completions(shell, json),
        Command::Man { command } => docs::man(command.as_deref(), json),
        Command::DemoWorker { path, until_ns } => demo::worker(&path, until_ns),
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

/// Writes one JSON document (and a newline) to stdout.
fn print_json(document: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string(document).expect("plain structs serialize");
    print_out(&format!("{text}\n"))
}

/// Writes `hostlimit: MESSAGE` to stderr.
fn print_err(message: &str) {
    let _ = writeln!(std::io::stderr(), "hostlimit: {message}");
}
