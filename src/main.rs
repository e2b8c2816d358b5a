//! The `hostlimit` command: show, watch, use, create, reset and remove host-wide rate limiters,
//! export their counters for Prometheus, and demonstrate them with worker processes.
//!
//! `hostlimit --help` and `hostlimit COMMAND --help` describe each command; the exit codes,
//! which scripts may rely on, are listed there and in `src/cli/exit.rs`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
