//! Limiter directories: a path's directory and name, which missing directories a create may
//! make (`Dirs`), opening a directory safely, the trust rule for files in a shared directory
//! (`check_trusted`), and permission errors in words (owner, group and mode).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Gid, Uid};

use super::{Rename, errno_io, renameat2, temp_name};
use crate::error::Error;

/// A limiter path as its directory (`.` for a bare name) and its file name.
pub(in crate::region) fn split(path: &Path) -> Result<(PathBuf, &OsStr), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidName(path.display().to_string()))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Which missing directories creating a limiter may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirs {
    /// None: a missing directory is reported as missing (a typo creates nothing).
    Existing,
    /// The directory of named limiters (the default directory, or `$HOSTLIMIT_DIR`): made,
    /// if missing, sticky and writable by everyone (`01777`, like `/tmp`), whoever comes
    /// first; its parent must exist.
    Shared,
    /// The directory and its missing parents, each with the file mode's read and write
    /// classes plus search permission (`Builder::create_dirs`).
    Parents,
}

/// Opens the limiter directory, refusing what would let another user swap our files: a
/// symbolic link as its last component (someone could plant one in `/dev/shm`), or a
/// directory anyone may write to without the sticky bit.
pub(in crate::region) fn open_dir(dir_path: &Path) -> Result<OwnedFd, Error> {
    let dir = openat(
        AT_FDCWD,
        dir_path,
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_PATH | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR if dir_path.is_symlink() => Error::io(
            dir_path,
            "open directory (refusing to follow a symbolic link)",
            errno_io(e),
        ),
        Errno::ENOENT => Error::io(
            dir_path,
            "no such directory (nothing is created for a directory that may be a typo: \
             create it first, or ask for it with `--parents` or `Builder::create_dirs`)",
            errno_io(e),
        ),
        e => Error::io(dir_path, "open directory", errno_io(e)),
    })?;
    let stat = fstat(&dir).map_err(|e| Error::io(dir_path, "stat directory", errno_io(e)))?;
    if stat.st_mode & 0o002 != 0 && stat.st_mode & 0o1000 == 0 {
        return Err(Error::io(
            dir_path,
            "open directory (refusing a world-writable directory without the sticky bit)",
            errno_io(Errno::EPERM),
        ));
    }
    Ok(dir)
}

/// Whether anyone may write to the directory (it is sticky then: [`open_dir`] refuses it
/// otherwise), so that a file in it may have been planted by another user.
pub(in crate::region) fn is_shared(dir: &OwnedFd) -> bool {
    fstat(dir).is_ok_and(|stat| stat.st_mode & 0o002 != 0)
}

/// Refuses a file in a shared directory that another user may have planted: one owned by
/// neither this process's user nor root, unless its group is `group` (only the group's
/// members, and root, can give a file a group: it is the limiter shared with them).
pub(in crate::region) fn check_trusted(
    path: &Path,
    fd: &OwnedFd,
    group: Option<u32>,
) -> Result<(), Error> {
    let stat = fstat(fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
    let me = nix::unistd::geteuid().as_raw();
    if stat.st_uid == me || stat.st_uid == 0 || group == Some(stat.st_gid) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Err(Error::io(
        path,
        "open",
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing a file {} in {}, a directory anyone may write to: another user \
                 may have planted it. If it is the limiter you share with them, open it with \
                 its group (`--group {}`, `Builder::group`); otherwise ask its owner or root \
                 to remove it",
                whose(&stat),
                dir.display(),
                group_word(stat.st_gid),
            ),
        ),
    ))
}

/// Whose a file or directory is, in words: `owned by alice (uid 1001) with group svc (gid
/// 1002) and mode 0660`.
pub(in crate::region) fn whose(stat: &nix::sys::stat::FileStat) -> String {
    format!(
        "owned by {} with group {} and mode {:04o}",
        user_name(stat.st_uid),
        group_name(stat.st_gid),
        stat.st_mode & 0o7777
    )
}

/// `errno` from `op` in the limiter directory `dir`; a permission error names the
/// directory's owner, group and mode, and what to do.
pub(in crate::region) fn dir_error(
    dir_path: &Path,
    dir: &OwnedFd,
    op: &'static str,
    errno: Errno,
) -> Error {
    if !matches!(errno, Errno::EACCES | Errno::EPERM) {
        return Error::io(dir_path, op, errno_io(errno));
    }
    let whose = fstat(dir).map_or_else(
        |_| "its owner and mode cannot be read".into(),
        |s| whose(&s),
    );
    Error::io(
        dir_path,
        op,
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "permission denied: {} may not use this directory: it is {whose}; ask its owner \
                 to share it (a group with write and search permission, or mode 1777 as the \
                 default directory has), or use a directory of your own (--dir, \
                 $HOSTLIMIT_DIR)",
                user_name(nix::unistd::geteuid().as_raw())
            ),
        ),
    )
}

/// A user as people name it: `alice (uid 1001)`, or `uid 1001` when it has no name.
pub(in crate::region) fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// A group as people name it: `svc (gid 1002)`, or `gid 1002` when it has no name.
pub(in crate::region) fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => format!("{} (gid {gid})", group.name),
        _ => format!("gid {gid}"),
    }
}

/// A group as `--group` takes it: its name, else its number.
fn group_word(gid: u32) -> String {
    match nix::unistd::Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}

/// Makes the missing directories `dirs` allows for a limiter in `dir`.
pub(in crate::region) fn create_dirs(dir: &Path, dirs: Dirs, mode: u32) -> Result<(), Error> {
    match dirs {
        Dirs::Existing => Ok(()),
        Dirs::Shared => create_shared_dir(dir),
        Dirs::Parents => create_dir(dir, mode),
    }
}

/// Makes the shared directory `dir` if it is missing: `01777` (sticky: everyone may create
/// files in it, nobody may remove or replace another's), whoever comes first. It is made
/// complete under a temporary name and renamed into place without replacing anything, so
/// nobody ever sees it with another mode (a `mkdir` would give it the umask's mode first).
pub(in crate::region) fn create_shared_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    let (parent, name) = split(dir)?;
    let temp = parent.join(temp_name(name, "dir"));
    let made = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp)
        .and_then(|()| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o1777)));
    if let Err(e) = made {
        let _ = std::fs::remove_dir(&temp);
        let op = if parent.is_dir() {
            "create the shared limiter directory"
        } else {
            "create the shared limiter directory (its parent does not exist)"
        };
        return Err(Error::io(dir, op, e));
    }
    let parent_fd = match open_dir(&parent) {
        Ok(fd) => fd,
        Err(error) => {
            let _ = std::fs::remove_dir(&temp);
            return Err(error);
        }
    };
    let temp_name = temp
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let moved = renameat2(&parent_fd, &temp_name, &parent_fd, name, Rename::NoReplace);
    match moved {
        Ok(()) => Ok(()),
        // Another process made it first: theirs is as good as ours.
        Err(Errno::EEXIST | Errno::ENOTEMPTY) => {
            let _ = std::fs::remove_dir(&temp);
            Ok(())
        }
        // No `renameat2` here (a plain rename would replace an empty directory): make it in
        // place, and set the mode the umask narrowed.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            let _ = std::fs::remove_dir(&temp);
            match std::fs::DirBuilder::new().mode(0o1777).create(dir) {
                Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
                    .map_err(|e| Error::io(dir, "set directory permissions", e)),
                Err(_) if dir.is_dir() => Ok(()),
                Err(e) => Err(Error::io(dir, "create the shared limiter directory", e)),
            }
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&temp);
            Err(Error::io(
                dir,
                "create the shared limiter directory",
                errno_io(e),
            ))
        }
    }
}

/// Creates the limiter directory (and parents) if missing. A directory gets the file mode's
/// read/write classes plus search permission: 0600 files live in a 0700 directory.
pub(in crate::region) fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Search permission wherever read permission is granted: 0600 -> 0700, 0660 -> 0770.
    let dir_mode = (mode & 0o777) | ((mode & 0o444) >> 2);
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.is_dir())
        .collect();
    for created in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(dir_mode).create(created) {
            // The umask narrowed the mode: set exactly what was asked for, on what we made.
            Ok(()) => std::fs::set_permissions(created, std::fs::Permissions::from_mode(dir_mode))
                .map_err(|e| Error::io(created, "set directory permissions", e))?,
            // Another process created it at the same moment.
            Err(_) if created.is_dir() => {}
            Err(e) => return Err(Error::io(created, "create directory", e)),
        }
    }
    Ok(())
}
