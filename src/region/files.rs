//! Limiter files by name: making one that nobody sees half-made, replacing one (reset) and
//! taking one away (remove) so that the caller learns exactly which file it displaced.
//!
//! * **Making.** The file is made unnamed (`O_TMPFILE`) in the target directory, written
//!   whole (header, then the ring, with `pwrite`: the file is private, so no atomic is needed)
//!   and only then linked into place; a process that dies half-way leaves nothing others could
//!   attach to. Where the file system has no `O_TMPFILE`, a uniquely named temporary file plays
//!   the same role (a crash may then leave a stray `.NAME.tmp.*` file, never a half-made
//!   limiter).
//! * **Replacing.** The new file is linked under a unique temporary name and exchanged with
//!   the file at the path in one `renameat2(RENAME_EXCHANGE)`. Afterwards the temporary name
//!   names the file that was replaced, whatever else happened meanwhile (another reset, a
//!   remove, a user re-creating the file), and the caller retires exactly that file. Where
//!   the file system cannot exchange, the old file is renamed away first (which names exactly
//!   what was taken, too) and the new one linked in its place.
//! * **Taking away.** The file is renamed to a unique temporary name. If that fails, nothing
//!   changed; if it succeeds, the caller holds exactly the file it removed.
//!
//! Each in a file of its own: making a file (`make`), displacing one (`displace`), and the
//! directories they live in (`dirs`); here only what all three use, the temporary names and
//! the system calls on names.
//!
//! Nothing here needs `unsafe`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::{UnlinkatFlags, unlinkat};

mod dirs;
mod displace;
mod make;

pub use dirs::Dirs;
pub(super) use dirs::{
    check_trusted, create_dirs, dir_error, is_shared, open_dir, split, user_name, whose,
};
pub use displace::Displaced;
pub(super) use displace::{exchange, take_away};
pub use make::Owner;
pub(super) use make::{Fresh, make};

pub(super) fn errno_io(errno: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno as i32)
}

/// A name no other file in the directory has: `.NAME.KIND.PID.N`, unique per process by a
/// counter, and across processes by the pid.
fn temp_name(name: &OsStr, kind: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        ".{}.{kind}.{}.{n}",
        name.to_string_lossy(),
        std::process::id()
    )
}

fn unlink(dir: &OwnedFd, name: &str) -> nix::Result<()> {
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
}

enum Rename {
    Exchange,
    NoReplace,
}

/// `renameat2`, where the C library has it; `EINVAL` elsewhere, as from a file system that
/// cannot do it.
fn renameat2(
    from_dir: &OwnedFd,
    from: &str,
    to_dir: &OwnedFd,
    to: &OsStr,
    how: Rename,
) -> nix::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::RenameFlags;
        let flags = match how {
            Rename::Exchange => RenameFlags::RENAME_EXCHANGE,
            Rename::NoReplace => RenameFlags::RENAME_NOREPLACE,
        };
        nix::fcntl::renameat2(from_dir.as_fd(), from, to_dir.as_fd(), to, flags)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (from_dir, from, to_dir, to, how);
        Err(Errno::EINVAL)
    }
}

#[cfg(test)]
mod tests;
