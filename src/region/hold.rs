//! The hold a change of rates keeps on the file it replaces: an exclusive `flock` on it,
//! from before its log is closed until the new file is in its place. A process that meets
//! the closed log while the path still names the file waits only while the hold is there,
//! so a change in progress costs it a short wait, and a closed log nobody holds (a change
//! whose process died, which the kernel's release of the lock reveals, or garbage that reads
//! as a closed log) is reported at once. Two changes of the same file exclude each other.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::sys::stat::Mode;

use super::Region;
use super::files::errno_io;
use crate::error::Error;

/// The exclusive hold on a file being replaced; released when dropped (or when the process
/// dies).
#[derive(Debug)]
pub struct Hold {
    _lock: Flock<File>,
}

impl Region {
    /// Takes the hold on this file for its replacement: `None` if another process holds it,
    /// or if the path no longer names this file.
    pub fn hold_for_replacement(&self) -> Result<Option<Hold>, Error> {
        let Some(file) = self.open_again()? else {
            return Ok(None);
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Hold { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::io(&self.path, "lock", errno_io(e))),
        }
    }

    /// Does a process hold this file for its replacement? False if the path no longer names
    /// it, or on any failure to tell (then nothing is waited for).
    pub fn held_for_replacement(&self) -> bool {
        let Ok(Some(file)) = self.open_again() else {
            return false;
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_unlocked_on_drop) => false,
            Err((_, e)) => e == Errno::EWOULDBLOCK,
        }
    }

    /// The file at this region's path, if it is still this region's file.
    fn open_again(&self) -> Result<Option<File>, Error> {
        let fd: OwnedFd = match open(
            &self.path,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, "open", errno_io(e))),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&self.path, "stat", e))?;
        Ok((meta.dev() == self.dev && meta.ino() == self.ino).then_some(file))
    }
}
