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
//! Nothing here needs `unsafe`.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, linkat, unlinkat};

use crate::error::Error;
use crate::layout::{self, Header};
use crate::protocol::Record;

/// What a new file is made of: its header and the history its ring starts with.
pub(super) struct Fresh<'a> {
    pub(super) header: &'a Header,
    pub(super) history: &'a [Record],
}

/// Who a new file belongs to, and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owner, or `None` for this process's.
    pub uid: Option<u32>,
    /// The group, or `None` for whatever the directory gives a new file.
    pub gid: Option<u32>,
    /// Permission bits.
    pub mode: u32,
}

/// A new file, complete, not yet linked under the limiter's name.
pub(super) struct Made {
    pub(super) fd: OwnedFd,
    /// Its temporary name, where the file system has no `O_TMPFILE` (or once it was linked
    /// under one to be exchanged into place).
    temp: Option<String>,
}

/// Why `history` cannot start a ring of `capacity` slots, if it cannot.
fn history_problem(history: &[Record], capacity: u64) -> Option<String> {
    if history.len() as u64 > capacity.saturating_sub(2) {
        return Some(format!(
            "{} records do not fit a ring of {capacity} slots",
            history.len()
        ));
    }
    let mut previous = Record::SENTINEL;
    for record in history {
        if record.seq != previous.seq.wrapping_add(1)
            || record.ts < previous.ts.max(1)
            || record.ts == Record::RETIRED_TS
        {
            return Some(format!("record {record:?} cannot follow {previous:?}"));
        }
        previous = *record;
    }
    None
}

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

/// Makes a complete new file in `dir` (header, and the ring with `fresh.history`), with
/// `owner`'s owner, group and mode, not yet linked under `name`. Nothing is left behind on
/// error.
pub(super) fn make(
    path: &Path,
    dir: &OwnedFd,
    dir_path: &Path,
    name: &OsStr,
    fresh: &Fresh<'_>,
    owner: &Owner,
) -> Result<Made, Error> {
    let header = fresh.header;
    if let Some(reason) = history_problem(fresh.history, header.capacity) {
        return Err(Error::corrupt(path, format!("restored history: {reason}")));
    }
    let perms = Mode::from_bits_truncate(owner.mode & 0o777);
    let made = match openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        perms,
    ) {
        Ok(fd) => Made { fd, temp: None },
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
            let temp = temp_name(name, "tmp");
            let fd = openat(
                dir,
                temp.as_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_RDWR
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOFOLLOW,
                perms,
            )
            .map_err(|e| dir_error(dir_path, dir, "create temporary file", e))?;
            Made {
                fd,
                temp: Some(temp),
            }
        }
        Err(e) => return Err(dir_error(dir_path, dir, "create file", e)),
    };
    match fill(path, &made.fd, fresh, owner) {
        Ok(()) => Ok(made),
        Err(error) => {
            made.discard(dir);
            Err(error)
        }
    }
}

/// Gives the private new file its owner and mode, its size, its header and its ring.
fn fill(path: &Path, fd: &OwnedFd, fresh: &Fresh<'_>, owner: &Owner) -> Result<(), Error> {
    let header = fresh.header;
    if owner.uid.is_some() || owner.gid.is_some() {
        let stat = fstat(fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
        let uid = owner.uid.filter(|&uid| uid != stat.st_uid);
        let gid = owner.gid.filter(|&gid| gid != stat.st_gid);
        if uid.is_some() || gid.is_some() {
            fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw)).map_err(|e| {
                // A reset keeps the old file's owner; a new file only gets the group asked
                // for.
                let op = if owner.uid.is_some() {
                    "give the new file the old one's owner and group (only they or root may \
                     reset it)"
                } else {
                    "give the new file the group asked for (only the group's members and root \
                     may give a file a group: see `id`, or ask an administrator to add you)"
                };
                Error::io(path, op, errno_io(e))
            })?;
        }
    }
    // After the owner (a change of owner may clear mode bits); the umask must not narrow
    // the mode the caller asked for.
    fchmod(fd, Mode::from_bits_truncate(owner.mode & 0o777))
        .map_err(|e| Error::io(path, "chmod", errno_io(e)))?;
    let file = File::from(fd.try_clone().map_err(|e| Error::io(path, "dup", e))?);
    file.set_len(header.file_size())
        .map_err(|e| Error::io(path, "size file", e))?;
    let write = |bytes: &[u8], offset: u64| {
        file.write_all_at(bytes, offset)
            .map_err(|e| Error::io(path, "write file", e))
    };
    // The first page: the header words, and the hint and journaled word at the newest
    // restored record (those records are in the journal already). Counters start at zero.
    let mut first = vec![0u8; layout::RING_OFFSET];
    for (index, word) in header.encode().iter().enumerate() {
        first[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    if !fresh.history.is_empty() {
        let newest = (fresh.history.len() as u64).to_le_bytes();
        first[layout::HINT_OFFSET..layout::HINT_OFFSET + 8].copy_from_slice(&newest);
        first[layout::JOURNALED_OFFSET..layout::JOURNALED_OFFSET + 8].copy_from_slice(&newest);
    }
    write(&first, 0)?;
    // The ring, a chunk at a time: the restored records in slots 1..=m, the new ring's
    // initial records everywhere else.
    const CHUNK_SLOTS: u64 = 1 << 14;
    let capacity = header.capacity;
    let mut chunk = Vec::with_capacity((CHUNK_SLOTS.min(capacity) as usize) * layout::SLOT_SIZE);
    let mut index = 0u64;
    while index < capacity {
        chunk.clear();
        let end = (index + CHUNK_SLOTS).min(capacity);
        for slot in index..end {
            let record = match (slot as usize)
                .checked_sub(1)
                .and_then(|i| fresh.history.get(i))
            {
                Some(restored) => *restored,
                None => Record::initial(slot as u32, capacity as u32),
            };
            chunk.extend_from_slice(&record.pack().to_le_bytes());
        }
        write(
            &chunk,
            layout::RING_OFFSET as u64 + index * layout::SLOT_SIZE as u64,
        )?;
        index = end;
    }
    Ok(())
}

impl Made {
    /// Removes the file's temporary name, if it has one.
    pub(super) fn discard(self, dir: &OwnedFd) {
        if let Some(temp) = &self.temp {
            let _ = unlink(dir, temp);
        }
    }

    /// Links the file under `name`; `false` if a file of that name exists already (another
    /// process made one first: this one is discarded).
    pub(super) fn link(
        self,
        path: &Path,
        dir: &OwnedFd,
        name: &OsStr,
    ) -> Result<Option<OwnedFd>, Error> {
        let linked = match &self.temp {
            None => linkat(
                AT_FDCWD,
                proc_path(&self.fd).as_str(),
                dir,
                name,
                AtFlags::AT_SYMLINK_FOLLOW,
            ),
            Some(temp) => linkat(dir, temp.as_str(), dir, name, AtFlags::empty()),
        };
        let result = match linked {
            Ok(()) => Ok(Some(
                self.fd.try_clone().map_err(|e| Error::io(path, "dup", e))?,
            )),
            Err(Errno::EEXIST) => Ok(None),
            Err(e) => Err(Error::io(path, "link new file into place", errno_io(e))),
        };
        self.discard(dir);
        result
    }

    /// Gives the file a temporary name (it has one already without `O_TMPFILE`).
    fn name_it(&mut self, path: &Path, dir: &OwnedFd, name: &OsStr) -> Result<String, Error> {
        if let Some(temp) = &self.temp {
            return Ok(temp.clone());
        }
        let temp = temp_name(name, "new");
        linkat(
            AT_FDCWD,
            proc_path(&self.fd).as_str(),
            dir,
            temp.as_str(),
            AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(|e| Error::io(path, "link new file", errno_io(e)))?;
        self.temp = Some(temp.clone());
        Ok(temp)
    }
}

fn proc_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

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

/// Exchanges the new file `made` with whatever `name` names in `dir`, and returns that.
/// On error nothing changed (the new file is discarded).
pub(super) fn exchange(
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
pub(super) fn exchange_in_two_steps(
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
pub(super) fn take_away(path: &Path, dir: OwnedFd, name: &OsStr) -> Result<Displaced, Error> {
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

/// A limiter path as its directory (`.` for a bare name) and its file name.
pub(super) fn split(path: &Path) -> Result<(PathBuf, &OsStr), Error> {
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
pub(super) fn open_dir(dir_path: &Path) -> Result<OwnedFd, Error> {
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
pub(super) fn is_shared(dir: &OwnedFd) -> bool {
    fstat(dir).is_ok_and(|stat| stat.st_mode & 0o002 != 0)
}

/// Refuses a file in a shared directory that another user may have planted: one owned by
/// neither this process's user nor root, unless its group is `group` (only the group's
/// members, and root, can give a file a group: it is the limiter shared with them).
pub(super) fn check_trusted(path: &Path, fd: &OwnedFd, group: Option<u32>) -> Result<(), Error> {
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
pub(super) fn whose(stat: &nix::sys::stat::FileStat) -> String {
    format!(
        "owned by {} with group {} and mode {:04o}",
        user_name(stat.st_uid),
        group_name(stat.st_gid),
        stat.st_mode & 0o7777
    )
}

/// `errno` from `op` in the limiter directory `dir`; a permission error names the
/// directory's owner, group and mode, and what to do.
pub(super) fn dir_error(dir_path: &Path, dir: &OwnedFd, op: &'static str, errno: Errno) -> Error {
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
pub(super) fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// A group as people name it: `svc (gid 1002)`, or `gid 1002` when it has no name.
pub(super) fn group_name(gid: u32) -> String {
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
pub(super) fn create_dirs(dir: &Path, dirs: Dirs, mode: u32) -> Result<(), Error> {
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
pub(super) fn create_shared_dir(dir: &Path) -> Result<(), Error> {
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
pub(super) fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::clock::ClockIdentity;
    use crate::protocol::Rule;
    use crate::region::{OpenSpec, Region};

    fn header() -> Header {
        Header {
            capacity: 4,
            rules: vec![Rule {
                limit: 1,
                window: 1_000_000_000,
                requests: false,
            }],
            clock: ClockIdentity {
                clock_id: 7,
                boot_id: [1; 16],
                time_namespace: 2,
            },
            created_wall_ns: 1,
            created_clock_ns: 1,
            creator_pid: 1,
            creator_uid: 0,
            labels: 0,
            flags: 0,
            lineage: Default::default(),
        }
    }

    fn owner() -> Owner {
        Owner {
            uid: None,
            gid: None,
            mode: 0o600,
        }
    }

    fn ino(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn limiter_at(path: &Path) -> Region {
        let header = header();
        let spec = OpenSpec {
            create: Some(&header),
            mode: 0o600,
            group: None,
            dirs: Dirs::Existing,
        };
        Region::open_with_history(path, &spec, &[]).unwrap()
    }

    /// A read-only region never writes to its file: the protocol steps that write get a
    /// stand-in ring (reported corrupt; on the real `PROT_READ` mapping they would fault),
    /// the counters a stand-in word; loads see the file as it is.
    #[test]
    #[cfg_attr(miri, ignore)] // real files
    fn a_read_only_region_never_writes_to_its_file() {
        use crate::protocol::{self, Hints, NoHook, Outcome};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lim");
        let writer = limiter_at(&path);
        let rules = header().rules;
        let Ok(outcome) = protocol::acquire(
            &writer.words(),
            &rules,
            5,
            1,
            &mut Hints::default(),
            &NoHook,
        );
        assert!(matches!(outcome, Outcome::Admitted(_)), "{outcome:?}");
        if crate::region::atomic::primitives().load_writes {
            let error = Region::observe(&path).unwrap_err();
            assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
            return;
        }
        let reader = Region::observe(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let Ok(usage) = protocol::usage(&reader.read_words(), &rules, 6, &NoHook);
        assert_eq!(usage.unwrap().rates[0].used, 1);
        let Ok(outcome) = protocol::acquire(
            &reader.words(),
            &rules,
            2_000_000_000,
            1,
            &mut Hints::default(),
            &NoHook,
        );
        assert!(matches!(outcome, Outcome::Corrupt(_)), "{outcome:?}");
        let Ok(retired) = protocol::retire(&reader.words(), &NoHook);
        assert!(retired.is_err(), "{retired:?}");
        reader
            .denial_counter(0)
            .fetch_add(1, crate::sync::Ordering::Relaxed);
        reader
            .tally_counter(layout::Tally::NeverFits)
            .fetch_add(1, crate::sync::Ordering::Relaxed);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "a read-only region wrote"
        );
        assert_eq!(writer.denials(0), Some(0));
        // The writer's changes are seen.
        writer
            .denial_counter(0)
            .fetch_add(1, crate::sync::Ordering::Relaxed);
        assert_eq!(reader.denials(0), Some(1));
    }

    /// Where the file system cannot exchange names, the old file is renamed away and the new
    /// one linked in its place: the caller still gets exactly the file it replaced, and
    /// nothing is left behind.
    #[test]
    #[cfg_attr(miri, ignore)] // real files
    fn the_two_step_replacement_displaces_exactly_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lim");
        let old = limiter_at(&path);
        let old_ino = ino(&path);
        let (dir_path, name) = split(&path).unwrap();
        let dir_fd = open_dir(&dir_path).unwrap();
        let fresh = Fresh {
            header: &header(),
            history: &[],
        };
        let made = make(&path, &dir_fd, &dir_path, name, &fresh, &owner()).unwrap();
        let displaced = exchange_in_two_steps(&path, dir_fd, name, made).unwrap();
        assert_ne!(ino(&path), old_ino, "not replaced");
        let displaced_ino = fstat(displaced.fd().unwrap()).unwrap().st_ino;
        assert_eq!(displaced_ino, old_ino, "displaced another file");
        assert_eq!(names(dir.path()).len(), 2);
        displaced.delete().unwrap();
        assert_eq!(names(dir.path()), ["lim"]);
        // The new file is a complete limiter file.
        assert_eq!(limiter_at(&path).header(), old.header());
    }

    /// A file taken away goes back where it was if nothing took its place, and is kept
    /// under its temporary name (and said so) if something did.
    #[test]
    #[cfg_attr(miri, ignore)] // real files
    fn a_file_taken_away_is_put_back_or_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lim");
        std::fs::write(&path, b"precious").unwrap();
        let inode = ino(&path);
        let (dir_path, name) = split(&path).unwrap();
        let taken = take_away(&path, open_dir(&dir_path).unwrap(), name).unwrap();
        assert!(!path.exists());
        taken.put_back().unwrap();
        assert_eq!((ino(&path), names(dir.path())), (inode, vec!["lim".into()]));

        let taken = take_away(&path, open_dir(&dir_path).unwrap(), name).unwrap();
        std::fs::write(&path, b"newer").unwrap();
        let error = taken.put_back().unwrap_err().to_string();
        assert!(error.contains("kept here"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
        let kept: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n != "lim")
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(error.contains(&kept[0]), "{error}");
        assert_eq!(
            std::fs::read(dir.path().join(&kept[0])).unwrap(),
            b"precious"
        );
    }
}
