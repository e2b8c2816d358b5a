//! Replacing a limiter file (reset) by an exchange of names, and taking one away (remove) by a
//! rename, so that the caller holds exactly the file it displaced (`Displaced`).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::linkat;

use super::dirs::{user_name, whose};
use super::make::Made;
use super::{Rename, errno_io, renameat2, temp_name, unlink};
use crate::error::Error;

/// The file that was at a limiter's path before a replacement or a removal, now under a
/// temporary name of its own; dropping it unlinks that name.
#[derive(Debug)]
pub struct Displaced {
    dir: OwnedFd,
    /// The temporary name in `dir`.
    temp: String,
    /// The limiter's path (for messages).
    path: PathBuf,
    /// The file itself; `None` if what was displaced is not a regular file.
    fd: Option<OwnedFd>,
}

impl Displaced {
    fn new(dir: OwnedFd, temp: String, path: &Path) -> Displaced {
        let fd = openat(
            &dir,
            temp.as_str(),
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .ok();
        Displaced {
            dir,
            temp,
            path: path.to_path_buf(),
            fd,
        }
    }

    /// The displaced file, if it is one.
    pub fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    /// The limiter's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unlinks the displaced file's temporary name: it is gone for good (its last users
    /// keep their mappings until they move on).
    pub fn delete(mut self) -> Result<(), Error> {
        let temp = std::mem::take(&mut self.temp);
        unlink(&self.dir, &temp).map_err(|e| {
            Error::io(
                self.path.with_file_name(&temp),
                "remove the old file (it is no longer the limiter)",
                errno_io(e),
            )
        })
    }

    /// Puts the displaced file back at the limiter's path if nothing took its place meanwhile
    /// (used when what was displaced turns out not to be a limiter); otherwise keeps it under
    /// its temporary name, and says so.
    pub fn put_back(mut self) -> Result<(), Error> {
        let temp = std::mem::take(&mut self.temp);
        let name = self.path.file_name().unwrap_or_default().to_owned();
        let moved =
            renameat2(&self.dir, &temp, &self.dir, &name, Rename::NoReplace).or_else(|e| match e {
                // No `renameat2` here: a link does not replace either (regular files only).
                Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP => linkat(
                    &self.dir,
                    temp.as_str(),
                    &self.dir,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map(|()| {
                    let _ = unlink(&self.dir, &temp);
                }),
                e => Err(e),
            });
        moved.map_err(|e| {
            Error::io(
                self.path.with_file_name(&temp),
                "put the file back (another file took its place; it is kept here)",
                errno_io(e),
            )
        })
    }
}

impl Drop for Displaced {
    fn drop(&mut self) {
        if !self.temp.is_empty() {
            let _ = unlink(&self.dir, &self.temp);
        }
    }
}

/// Exchanges the new file `made` with whatever `name` names in `dir`, and returns that.
/// On error nothing changed (the new file is discarded).
pub(in crate::region) fn exchange(
    path: &Path,
    dir: OwnedFd,
    name: &OsStr,
    mut made: Made,
) -> Result<Displaced, Error> {
    let temp = match made.name_it(path, &dir, name) {
        Ok(temp) => temp,
        Err(error) => {
            made.discard(&dir);
            return Err(error);
        }
    };
    match renameat2(&dir, &temp, &dir, name, Rename::Exchange) {
        Ok(()) => {
            // `temp` now names the replaced file.
            Ok(Displaced::new(dir, temp, path))
        }
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            exchange_in_two_steps(path, dir, name, made)
        }
        Err(e) => {
            made.discard(&dir);
            Err(rename_error(path, &dir, name, "replace", e))
        }
    }
}

/// [`exchange`] where the file system cannot exchange: the old file is renamed away (to a
/// name of its own, so that exactly the file taken is known), then the new one is linked in
/// its place. Between the two, the path names no file; a process that creates one then
/// keeps it (it is as fresh as ours), and ours is discarded.
pub(in crate::region) fn exchange_in_two_steps(
    path: &Path,
    dir: OwnedFd,
    name: &OsStr,
    made: Made,
) -> Result<Displaced, Error> {
    let old = temp_name(name, "old");
    if let Err(e) = nix::fcntl::renameat(&dir, name, &dir, old.as_str()) {
        made.discard(&dir);
        return Err(rename_error(path, &dir, name, "replace", e));
    }
    let displaced = Displaced::new(dir, old, path);
    // Ours, or one a process made meanwhile: either way the path names a fresh file.
    if let Err(error) = made.link(path, &displaced.dir, name) {
        // Nothing half-done: the old file goes back where it was.
        displaced.put_back()?;
        return Err(error);
    }
    Ok(displaced)
}

/// Renames the file at `name` away, and returns it. On error nothing changed.
pub(in crate::region) fn take_away(
    path: &Path,
    dir: OwnedFd,
    name: &OsStr,
) -> Result<Displaced, Error> {
    let temp = temp_name(name, "removed");
    nix::fcntl::renameat(&dir, name, &dir, temp.as_str())
        .map_err(|e| rename_error(path, &dir, name, "remove", e))?;
    Ok(Displaced::new(dir, temp, path))
}

/// `errno` from renaming the file `name` in `dir` to `op` ("remove", "replace") it; a
/// permission error names the file's owner and mode, the directory's, and who may.
fn rename_error(path: &Path, dir: &OwnedFd, name: &OsStr, op: &'static str, errno: Errno) -> Error {
    if !matches!(errno, Errno::EACCES | Errno::EPERM) {
        return Error::io(path, op, errno_io(errno));
    }
    let file = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_or_else(|_| "of an owner that cannot be read".into(), |s| whose(&s));
    let directory =
        fstat(dir).map_or_else(|_| "of an owner that cannot be read".into(), |s| whose(&s));
    Error::io(
        path,
        op,
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "permission denied: {} may not {op} it: the file is {file}, its directory \
                 {directory}; in a sticky directory (mode 1777, like the default one) only the \
                 file's owner, the directory's owner and root may remove or replace a file: \
                 ask one of them",
                user_name(nix::unistd::geteuid().as_raw())
            ),
        ),
    )
}
