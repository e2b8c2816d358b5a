//! Making a new limiter file that nobody sees half-made: made unnamed (`O_TMPFILE`, or a
//! unique temporary name), given its owner, group and mode, written whole, then linked into
//! place (or named, to be exchanged into place by `displace`).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{Gid, Uid, fchown, linkat};

use super::dirs::dir_error;
use super::{errno_io, temp_name, unlink};
use crate::error::Error;
use crate::layout::{self, Header};
use crate::protocol::Record;

/// What a new file is made of: its header and the history its ring starts with.
pub(in crate::region) struct Fresh<'a> {
    pub(in crate::region) header: &'a Header,
    pub(in crate::region) history: &'a [Record],
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
pub(in crate::region) struct Made {
    pub(in crate::region) fd: OwnedFd,
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

/// Makes a complete new file in `dir` (header, and the ring with `fresh.history`), with
/// `owner`'s owner, group and mode, not yet linked under `name`. Nothing is left behind on
/// error.
pub(in crate::region) fn make(
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
    pub(in crate::region) fn discard(self, dir: &OwnedFd) {
        if let Some(temp) = &self.temp {
            let _ = unlink(dir, temp);
        }
    }

    /// Links the file under `name`; `false` if a file of that name exists already (another
    /// process made one first: this one is discarded).
    pub(in crate::region) fn link(
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
    pub(super) fn name_it(
        &mut self,
        path: &Path,
        dir: &OwnedFd,
        name: &OsStr,
    ) -> Result<String, Error> {
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
