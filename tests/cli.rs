//! The `hostlimit` command, run as a user would: the built binary, a limiter directory in a
//! temporary directory (`HOSTLIMIT_DIR`), exit codes, stdout and stderr.
//!
//! Here the fixture (`Fixture`, `Run`) and the exit codes; the tests by concern: `exits` (exit
//! codes, help, messages, the rate grammar), `files` (paths, `create`, `reset`, `rm`), `json`,
//! `views` (`status`, `list`, `watch`, `metrics`), `run` (with the `xargs` job) and `demo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hostlimit::Limiter;
use serde_json::Value;
use tempfile::TempDir;

use crate::support;

mod demo;
mod exits;
mod files;
mod json;
mod run;
mod views;

const BIN: &str = env!("CARGO_BIN_EXE_hostlimit");

/// The documented exit codes (`hostlimit --help`).
const ADMITTED: i32 = 0;
const USAGE: i32 = 64;
const DATA: i32 = 65;
const NO_INPUT: i32 = 66;
const TEMP_FAIL: i32 = 75;
const CANNOT_EXECUTE: i32 = 126;
const NOT_FOUND: i32 = 127;

const SECOND: u64 = 1_000_000_000;
const MILLI: u64 = 1_000_000;

/// A limiter directory of its own, and the command pointed at it.
struct Fixture {
    dir: TempDir,
}

/// What one run of the command did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The limiter directory (inside the temporary one, so that the command creates it).
    fn limiters(&self) -> PathBuf {
        self.dir.path().join("limiters")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.limiters().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = support::command(BIN);
        command
            .args(args)
            .env("HOSTLIMIT_DIR", self.limiters())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().unwrap();
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        };
        eprintln!(
            "$ hostlimit {}\n{}{}[exit {}]",
            args.join(" "),
            run.stdout,
            run.stderr,
            run.code
        );
        run
    }

    /// Runs and checks the exit code.
    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, code, "hostlimit {args:?}: {}", run.stderr);
        run
    }

    fn status_json(&self, name: &str) -> Value {
        let status = self.expect(0, &["status", "--json", name]).json();
        status["limiters"][0].clone()
    }
}
