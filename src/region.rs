//! The shared file: create it race-free, attach to it, validate it, and hand out its words.
//!
//! This module and its `atomic` submodule (the 128-bit word, one file per architecture) are
//! the only ones with `unsafe` code: the 128-bit atomics, the casts from the mapping's bytes
//! to atomics, and the cell that swaps a re-attached region in.
//!
//! Creation: the file is made unnamed (`O_TMPFILE`) in the target directory, sized, given its
//! header, and only then linked into place with `linkat`; a process that dies half-way leaves
//! nothing others could attach to. Of several processes creating at once, exactly one link
//! succeeds; the others get `EEXIST` and attach to the winner's file. Where the file system
//! has no `O_TMPFILE`, a uniquely named temporary file plays the same role (a crash may then
//! leave a stray `.NAME.tmp.*` file behind, never a half-made limiter).
//!
//! Attaching validates everything before the first atomic is touched: size, magic, version,
//! checksum, rates, clock. The file is never shrunk by hostlimit; a file truncated by someone
//! else after it was validated would raise SIGBUS, which no mapping can prevent.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicPtr;

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat};

use crate::error::Error;
use crate::layout::{self, HEADER_WORDS, Header, Invalid};
use crate::protocol::{Record, Words};
use crate::sync::{AtomicU64, Ordering};

mod atomic;

pub use atomic::AtomicPair;
use atomic::check_machine;

/// A mapped, validated limiter file.
#[derive(Debug)]
pub struct Region {
    map: MmapRaw,
    _file: File,
    header: Header,
    path: PathBuf,
    dev: u64,
    ino: u64,
    shard: usize,
}

/// How to open: the header a new file gets, or `None` to attach to an existing file only.
pub struct OpenSpec<'a> {
    /// The header to create the file with (and to expect in an existing one).
    pub create: Option<&'a Header>,
    /// Permission bits for a new file.
    pub mode: u32,
}

/// What a new file is made of: its header and the history its ring starts with.
struct Fresh<'a> {
    header: &'a Header,
    history: &'a [Record],
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

fn errno_io(errno: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno as i32)
}

impl Region {
    /// Opens the limiter file at `path`: attaches to it, or creates it when `spec.create` is
    /// given and no file exists. The caller compares the header's rates and clock.
    pub fn open(path: &Path, spec: &OpenSpec<'_>) -> Result<Region, Error> {
        Region::open_with_history(path, spec, &[])
    }

    /// Like [`Region::open`], and a file this call creates starts with `history` in its ring
    /// (records `1..=m`, oldest first, as a journal restored them) instead of an empty one,
    /// with the hint and the journaled word at `m`. The records are written before the file
    /// is linked into place, so no process ever sees the file without them. An existing file
    /// is attached as it is: `history` is ignored.
    ///
    /// `history` must be records `1..=m` with non-decreasing timestamps of at least 1 and
    /// consistent cumulative weights, `m <= capacity - 2`; anything else is refused before a
    /// file is made.
    pub fn open_with_history(
        path: &Path,
        spec: &OpenSpec<'_>,
        history: &[Record],
    ) -> Result<Region, Error> {
        check_machine()?;
        let (dir_path, name) = split(path)?;
        if spec.create.is_some() {
            create_dir(&dir_path, spec.mode)?;
        }
        let dir = open_dir(&dir_path)?;
        // A few rounds: the file may be removed between a failed create and the next open.
        for _ in 0..16 {
            match openat(
                &dir,
                name,
                OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => return Region::attach(path, fd, spec.create),
                Err(Errno::ENOENT) => {}
                Err(Errno::ELOOP) => {
                    return Err(Error::io(
                        path,
                        "open (refusing to follow a symbolic link)",
                        errno_io(Errno::ELOOP),
                    ));
                }
                Err(e) => return Err(Error::io(path, "open", errno_io(e))),
            }
            let Some(header) = spec.create else {
                return Err(Error::io(path, "open", errno_io(Errno::ENOENT)));
            };
            if let Some(region) = Region::create(
                path,
                &dir,
                &dir_path,
                name,
                &Fresh { header, history },
                spec.mode,
                false,
            )? {
                return Ok(region);
            }
        }
        Err(Error::io(
            path,
            "open (the file kept disappearing)",
            errno_io(Errno::ENOENT),
        ))
    }

    /// Creates, initializes and links a new file; `None` if another process linked one first.
    fn create(
        path: &Path,
        dir: &OwnedFd,
        dir_path: &Path,
        name: &std::ffi::OsStr,
        fresh: &Fresh<'_>,
        mode: u32,
        replace: bool,
    ) -> Result<Option<Region>, Error> {
        let header = fresh.header;
        if let Some(reason) = history_problem(fresh.history, header.capacity) {
            return Err(Error::corrupt(path, format!("restored history: {reason}")));
        }
        let perms = Mode::from_bits_truncate(mode & 0o777);
        let (fd, temp_name) = match openat(
            dir,
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            perms,
        ) {
            Ok(fd) => (fd, None),
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
                let temp = format!(
                    ".{}.tmp.{}.{}",
                    name.to_string_lossy(),
                    std::process::id(),
                    crate::clock::Clock::now(&crate::clock::HostClock)
                );
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
                .map_err(|e| Error::io(dir_path, "create temporary file", errno_io(e)))?;
                (fd, Some(temp))
            }
            Err(e) => return Err(Error::io(dir_path, "create file", errno_io(e))),
        };
        let cleanup = |temp: &Option<String>| {
            if let Some(temp) = temp {
                let _ = nix::unistd::unlinkat(
                    dir,
                    temp.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
        };
        let result = (|| {
            // The umask must not narrow the mode the caller asked for.
            fchmod(&fd, perms).map_err(|e| Error::io(path, "chmod", errno_io(e)))?;
            let size = header.file_size();
            nix::unistd::ftruncate(&fd, size as i64)
                .map_err(|e| Error::io(path, "size file", errno_io(e)))?;
            let file = File::from(fd.try_clone().map_err(|e| Error::io(path, "dup", e))?);
            let map = MmapRaw::map_raw(&file).map_err(|e| Error::io(path, "map", e))?;
            let words = header.encode();
            for (index, value) in words.iter().enumerate() {
                header_word(&map, index).store(*value, Ordering::Relaxed);
            }
            let region = Region {
                map,
                _file: file,
                header: header.clone(),
                path: path.to_path_buf(),
                dev: 0,
                ino: 0,
                shard: shard(),
            };
            let capacity = header.capacity as u32;
            for (index, slot) in region.ring().iter().enumerate() {
                let initial = match index.checked_sub(1).and_then(|i| fresh.history.get(i)) {
                    Some(restored) => restored.pack(),
                    None => Record::initial(index as u32, capacity).pack(),
                };
                // The file is still private: the slots are zero and nobody else can see them.
                let _ = slot.compare_exchange(0, initial);
            }
            if !fresh.history.is_empty() {
                let newest = fresh.history.len() as u64;
                // Relaxed: the file is still private; linking it publishes everything.
                region
                    .word(layout::HINT_OFFSET)
                    .store(newest, Ordering::Relaxed);
                region
                    .word(layout::JOURNALED_OFFSET)
                    .store(newest, Ordering::Relaxed);
            }
            // Link into place: only now can anyone else see it. A replacement is linked under a
            // temporary name first and renamed over the old file, which is atomic.
            let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let linked = if replace {
                let temp = match &temp_name {
                    Some(temp) => temp.clone(),
                    None => {
                        let temp =
                            format!(".{}.reset.{}", name.to_string_lossy(), std::process::id());
                        nix::unistd::linkat(
                            AT_FDCWD,
                            proc_path.as_str(),
                            dir,
                            temp.as_str(),
                            AtFlags::AT_SYMLINK_FOLLOW,
                        )
                        .map_err(|e| Error::io(path, "link new file", errno_io(e)))?;
                        temp
                    }
                };
                let renamed = nix::fcntl::renameat(dir, temp.as_str(), dir, name);
                if renamed.is_err() {
                    let _ = nix::unistd::unlinkat(
                        dir,
                        temp.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                }
                renamed
            } else {
                match &temp_name {
                    None => nix::unistd::linkat(
                        AT_FDCWD,
                        proc_path.as_str(),
                        dir,
                        name,
                        AtFlags::AT_SYMLINK_FOLLOW,
                    ),
                    Some(temp) => {
                        nix::unistd::linkat(dir, temp.as_str(), dir, name, AtFlags::empty())
                    }
                }
            };
            match linked {
                Ok(()) => {}
                Err(Errno::EEXIST) => return Ok(None),
                Err(e) => return Err(Error::io(path, "link new file into place", errno_io(e))),
            }
            let stat = fstat(&fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
            Ok(Some(Region {
                dev: stat.st_dev,
                ino: stat.st_ino,
                ..region
            }))
        })();
        cleanup(&temp_name);
        result
    }

    /// Validates an existing file and maps it.
    fn attach(path: &Path, fd: OwnedFd, expected: Option<&Header>) -> Result<Region, Error> {
        let stat = fstat(&fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
        if stat.st_mode & libc_s_ifmt() != libc_s_ifreg() {
            return Err(Error::corrupt(path, "not a regular file"));
        }
        let size = stat.st_size.max(0) as u64;
        if size < layout::RING_OFFSET as u64 {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                size,
                expected: expected.map_or(layout::RING_OFFSET as u64, Header::file_size),
            });
        }
        let file = File::from(fd);
        // Map only the header page first: the rest is validated against it.
        let head_map = memmap2::MmapOptions::new()
            .len(layout::RING_OFFSET)
            .map_raw(&file)
            .map_err(|e| Error::io(path, "map", e))?;
        let mut words = [0u64; HEADER_WORDS];
        for (index, word) in words.iter_mut().enumerate() {
            *word = header_word(&head_map, index).load(Ordering::Relaxed);
        }
        drop(head_map);
        let header = match Header::decode(&words) {
            Ok(header) => header,
            Err(Invalid::Magic) => {
                return Err(Error::corrupt(path, "not a hostlimit file (bad magic)"));
            }
            Err(Invalid::Version(found)) => {
                return Err(Error::Version {
                    path: path.to_path_buf(),
                    found,
                    expected: layout::VERSION,
                });
            }
            Err(Invalid::Corrupt(reason)) => return Err(Error::corrupt(path, reason)),
        };
        if size < header.file_size() {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                size,
                expected: header.file_size(),
            });
        }
        let map = memmap2::MmapOptions::new()
            .len(header.file_size() as usize)
            .map_raw(&file)
            .map_err(|e| Error::io(path, "map", e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        Ok(Region {
            map,
            _file: file,
            header,
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            shard: shard(),
        })
    }

    /// Atomically replaces the file at `path` by a new one made from `header` (same
    /// directory, `mode` permissions), and returns the new region. The old file is untouched:
    /// the caller retires it so that its users move over.
    pub fn replace(path: &Path, header: &Header, mode: u32) -> Result<Region, Error> {
        check_machine()?;
        let (dir_path, name) = split(path)?;
        let dir = open_dir(&dir_path)?;
        let fresh = Fresh {
            header,
            history: &[],
        };
        Region::create(path, &dir, &dir_path, name, &fresh, mode, true)?
            .ok_or_else(|| Error::io(path, "replace", errno_io(Errno::EEXIST)))
    }

    /// Permission bits of the mapped file.
    pub fn mode(&self) -> Result<u32, Error> {
        let meta = self
            ._file
            .metadata()
            .map_err(|e| Error::io(&self.path, "stat", e))?;
        Ok(meta.mode() & 0o777)
    }

    /// Attaches to the existing file at `path`, creating nothing.
    pub fn existing(path: &Path) -> Result<Region, Error> {
        Region::open(
            path,
            &OpenSpec {
                create: None,
                mode: 0o600,
            },
        )
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The path this region was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A word of the mapping at `offset`, in the part before the ring.
    fn word(&self, offset: usize) -> &AtomicU64 {
        let offset = offset.min(layout::RING_OFFSET - 8) & !7;
        // SAFETY: the offset is 8-aligned and below RING_OFFSET, and every mapping is at least
        // RING_OFFSET long (checked in `attach`, sized in `create`), page-aligned; other
        // processes only access these bytes atomically; the mapping lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    /// The ring: `capacity` 128-bit slots.
    fn ring(&self) -> &[crate::sync::AtomicPair] {
        // SAFETY: RING_OFFSET is page-aligned, so 16-byte aligned; `capacity` slots of 16 bytes
        // fit in the mapping (its length is `file_size(capacity)`, checked in `attach`);
        // `AtomicPair` is `repr(C, align(16))` over an `UnsafeCell<u128>` that is only accessed
        // atomically, from any process; the mapping lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(
                self.map
                    .as_mut_ptr()
                    .add(layout::RING_OFFSET)
                    .cast::<crate::sync::AtomicPair>(),
                self.header.capacity as usize,
            )
        }
    }

    /// The protocol's words: the hint, the lap counter and the ring.
    pub fn words(&self) -> Words<'_> {
        // The capacity was validated as a power of two within bounds by `Header::decode` (or
        // computed by `capacity_for`), so `Words::new` accepts it; should it not, an empty
        // two-slot ring full of fake records makes every acquire report corruption.
        match Words::new(
            self.word(layout::HINT_OFFSET),
            self.word(layout::LAPS_OFFSET),
            self.ring(),
        ) {
            Some(words) => words,
            None => unusable_words(),
        }
    }

    /// The journaled word: sequence number of the newest record known to be in the journal
    /// (see `journal.rs`). Never touched by the hot path.
    #[cfg(feature = "journal")]
    pub fn journaled(&self) -> &AtomicU64 {
        self.word(layout::JOURNALED_OFFSET)
    }

    /// The denial counter of rate `rate` in this process's shard.
    pub fn denial_counter(&self, rate: usize) -> &AtomicU64 {
        self.word(layout::counter_offset(self.shard, rate))
    }

    /// The total of rate `rate`'s denial counters over all shards.
    pub fn denials(&self, rate: usize) -> u64 {
        (0..layout::COUNTER_SHARDS)
            // Relaxed: statistics.
            .map(|s| {
                self.word(layout::counter_offset(s, rate))
                    .load(Ordering::Relaxed)
            })
            .fold(0, u64::wrapping_add)
    }

    /// Does `path` still name the file this region maps?
    pub fn still_linked(&self) -> std::io::Result<bool> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => Ok(meta.dev() == self.dev && meta.ino() == self.ino),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// This process's counter shard (taken once per region: `getpid` is a system call). A child
/// forked later shares its parent's shard, which only costs some cache-line sharing.
fn shard() -> usize {
    std::process::id() as usize % layout::COUNTER_SHARDS
}

#[cold]
fn unusable_words() -> Words<'static> {
    static WORDS: std::sync::OnceLock<(AtomicU64, AtomicU64, [crate::sync::AtomicPair; 2])> =
        std::sync::OnceLock::new();
    let (hint, laps, ring) = WORDS.get_or_init(|| {
        // Slot 1 claims record 2, which slot 1 of a two-slot ring can never hold: `find_head`
        // reports it as corrupt.
        let bad = crate::protocol::Record {
            ts: 0,
            seq: 2,
            cum: 0,
        }
        .pack();
        (
            AtomicU64::new(0),
            AtomicU64::new(0),
            [
                crate::sync::AtomicPair::new(0),
                crate::sync::AtomicPair::new(bad),
            ],
        )
    });
    Words::new(hint, laps, ring).unwrap_or_else(|| unreachable!("a two-slot ring is valid"))
}

fn libc_s_ifmt() -> u32 {
    nix::libc::S_IFMT
}

fn libc_s_ifreg() -> u32 {
    nix::libc::S_IFREG
}

/// Header word `index` of a mapping at least one page long.
fn header_word(map: &MmapRaw, index: usize) -> &AtomicU64 {
    assert!(index < HEADER_WORDS && map.len() >= layout::RING_OFFSET);
    // SAFETY: index < HEADER_WORDS keeps the word inside the first page (const-asserted in
    // layout), 8-aligned in a page-aligned mapping; other processes only access it atomically
    // (header words are written once before the file is linked and only read afterwards).
    unsafe { AtomicU64::from_ptr(map.as_mut_ptr().add(index * 8).cast()) }
}

/// A limiter path as its directory (`.` for a bare name) and its file name.
fn split(path: &Path) -> Result<(PathBuf, &std::ffi::OsStr), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidName(path.display().to_string()))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Opens the limiter directory, refusing what would let another user swap our files: a
/// symbolic link as its last component (someone could plant one in `/dev/shm`), or a
/// directory anyone may write to without the sticky bit.
fn open_dir(dir_path: &Path) -> Result<OwnedFd, Error> {
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

/// Creates the limiter directory (and parents) if missing. A directory gets the file mode's
/// read/write classes plus search permission: 0600 files live in a 0700 directory.
fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
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

/// A value that can be replaced while shared: readers get `&T` for as long as they borrow the
/// cell; replaced values are kept until the cell is dropped, so no reference ever dangles.
///
/// Used to re-attach a limiter to a new file without a lock on the hot path (one acquire load).
#[derive(Debug)]
pub struct SwapCell<T> {
    current: AtomicPtr<T>,
    /// Replaced values, as raw pointers: turning one back into a `Box` while readers still
    /// hold `&T` would invalidate their borrows (Miri's stacked borrows says so).
    retired: Mutex<Vec<*mut T>>,
}

impl<T> SwapCell<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        SwapCell {
            current: AtomicPtr::new(Box::into_raw(Box::new(value))),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> &T {
        // Acquire: pairs with the AcqRel swap in `replace`, so the new value's contents are
        // visible.
        let ptr = self.current.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: `ptr` came from `Box::into_raw` and is freed only in `drop`, which needs
        // `&mut self`, so it outlives the returned borrow of `self`.
        unsafe { &*ptr }
    }

    /// Installs `value`; the old one stays alive until the cell is dropped.
    pub fn replace(&self, value: T) {
        let new = Box::into_raw(Box::new(value));
        let old = self.current.swap(new, std::sync::atomic::Ordering::AcqRel);
        // Readers may still hold references to `old`: keep it, untouched, until `drop`.
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(old);
    }
}

impl<T> Drop for SwapCell<T> {
    fn drop(&mut self) {
        let retired = std::mem::take(self.retired.get_mut().unwrap_or_else(|p| p.into_inner()));
        for ptr in retired.into_iter().chain([*self.current.get_mut()]) {
            // SAFETY: every pointer came from `Box::into_raw`, is in exactly one of `current`
            // and `retired`, and `&mut self` proves no borrows of it remain.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

// SAFETY: `SwapCell<T>` owns its values (through raw pointers from `Box::into_raw`), hands out
// `&T` across threads and drops values on whichever thread drops the cell, so it is Send/Sync
// exactly when `T` is both.
unsafe impl<T: Send + Sync> Send for SwapCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for SwapCell<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_cell_keeps_old_values_alive() {
        let cell = SwapCell::new(String::from("a"));
        let first: &String = cell.get();
        cell.replace(String::from("b"));
        assert_eq!(first, "a");
        assert_eq!(cell.get(), "b");
    }
}
