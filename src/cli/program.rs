//! Programs: finding the one `run` is to execute before it takes any capacity, and naming
//! this one in messages so that the command they print can be run as printed.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::unistd::{AccessFlags, access};

use crate::cli::exit::{Exit, Failure};

/// Finds the program `name` as `execvp` would: a name with a `/` is a path; any other is
/// looked up in the directories of `$PATH` (`/usr/local/bin:/usr/bin:/bin` when unset).
///
/// # Errors
///
/// 127 if there is no such file, 126 if there is one but it cannot be executed (a
/// directory, or no execute permission).
pub fn find(name: &OsStr) -> Result<PathBuf, Failure> {
    let shown = name.to_string_lossy();
    if name.is_empty() {
        return Err(Failure::new(Exit::CommandNotFound, "the command is empty"));
    }
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return match check(&path) {
            Check::Runnable => Ok(path),
            Check::Missing => Err(Failure::new(
                Exit::CommandNotFound,
                format!("{shown}: no such file; nothing was taken from the limiter"),
            )),
            Check::NotRunnable(why) => Err(Failure::new(
                Exit::CannotExecute,
                format!("{shown}: cannot be executed ({why}); nothing was taken from the limiter"),
            )),
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut not_runnable = None;
    for dir in std::env::split_paths(&search) {
        // An empty entry means the working directory.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let path = dir.join(name);
        match check(&path) {
            Check::Runnable => return Ok(path),
            Check::Missing => {}
            Check::NotRunnable(why) => {
                not_runnable.get_or_insert((path, why));
            }
        }
    }
    Err(match not_runnable {
        Some((path, why)) => Failure::new(
            Exit::CannotExecute,
            format!(
                "{shown}: {} cannot be executed ({why}); nothing was taken from the limiter",
                path.display()
            ),
        ),
        None => Failure::new(
            Exit::CommandNotFound,
            format!("{shown}: command not found on PATH; nothing was taken from the limiter"),
        ),
    })
}

enum Check {
    Runnable,
    Missing,
    NotRunnable(&'static str),
}

fn check(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Err(_) => Check::Missing,
        Ok(meta) if meta.is_dir() => Check::NotRunnable("a directory"),
        Ok(_) if access(path, AccessFlags::X_OK).is_err() => {
            Check::NotRunnable("no execute permission")
        }
        Ok(_) => Check::Runnable,
    }
}

/// This program as a user can type it: `hostlimit` when that name on `$PATH` is this very
/// file, else its path (relative to the working directory when it lies below it, as after
/// `cargo run`: `target/release/hostlimit`).
pub fn ours() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let Ok(exe) = std::env::current_exe() else {
            return "hostlimit".into();
        };
        let on_path = find(OsStr::new("hostlimit")).ok();
        if on_path.is_some_and(|found| same_file(&found, &exe)) {
            return "hostlimit".into();
        }
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| exe.clone());
        let text: OsString = shown.into_os_string();
        let text = text.to_string_lossy().into_owned();
        if text.contains(' ') {
            format!("'{text}'")
        } else {
            text
        }
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_as_execvp_does() {
        assert!(find(OsStr::new("sh")).is_ok());
        assert_eq!(
            find(OsStr::new("/bin/sh")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let missing = find(OsStr::new("no-such-command-hostlimit")).unwrap_err();
        assert_eq!(missing.exit, Exit::CommandNotFound);
        assert_eq!(
            find(OsStr::new("/nonexistent-cmd")).unwrap_err().exit,
            Exit::CommandNotFound
        );
        assert_eq!(
            find(OsStr::new("/etc/passwd")).unwrap_err().exit,
            Exit::CannotExecute
        );
        assert_eq!(
            find(OsStr::new("/tmp")).unwrap_err().exit,
            Exit::CannotExecute
        );
        assert_eq!(
            find(OsStr::new("")).unwrap_err().exit,
            Exit::CommandNotFound
        );
    }
}
