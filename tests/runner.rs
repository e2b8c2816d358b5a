//! Starting a binary of this build, through a runner when it cannot run directly. Shared by
//! the integration tests (`support.rs`) and the library's cross-process tests
//! (`src/region/atomic/tests.rs`, which include this file by path).

use std::ffi::OsStr;
use std::process::Command;

/// The program that runs this build's binaries, if they cannot run directly: for example
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` when the tests run under user-mode emulation
/// without `binfmt_misc` (then a binary cannot re-execute itself: the kernel does not know
/// its format). Words separated by spaces; unset or empty: binaries run directly.
pub const RUNNER_ENV: &str = "HOSTLIMIT_TEST_RUNNER";

/// A command that runs `program`, a binary of this build (a test binary, the `hostlimit`
/// command), through the runner of [`RUNNER_ENV`] when one is set.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let runner = std::env::var(RUNNER_ENV).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut command = Command::new(first);
            command.args(words).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// What to add to the error of a binary of this build that could not be started.
pub fn hint() -> String {
    format!(
        " (under an emulator without binfmt_misc, set {RUNNER_ENV}, e.g. \
         {RUNNER_ENV}=\"qemu-aarch64 -L /usr/aarch64-linux-gnu\")"
    )
}
