//! The shared file: create it race-free, attach to it, validate it, and hand out its words.
//!
//! This module and its submodules are the only ones with `unsafe` code: the 128-bit atomics
//! (in `atomic`, one file per architecture), the casts from the mapping's bytes to atomics,
//! and (in `swap`) the cell that swaps a re-attached region in and frees the old one once no
//! reader holds it.
//!
//! Making, replacing and taking away files by name (so that nobody sees a half-made file, and
//! a reset or remove learns exactly which file it displaced) is in `files`.
//!
//! Attaching validates everything before the first atomic is touched: size, magic, version,
//! checksum, rates, clock. In a directory anyone may write to (sticky, like the default
//! directory), a file is also checked for whose it is before it is used for writing: one that
//! another user may have planted (not ours, not root's, not of the group we were told to
//! share with) is refused.
//!
//! A region opened with [`Region::observe`] maps the file read-only (`PROT_READ`): it hands
//! out only loads ([`Region::read_words`]); what could write ([`Region::words`], the counters)
//! gets stand-ins that cannot reach the mapping. The file is never shrunk by hostlimit; a file truncated by someone
//! else after it was validated would raise SIGBUS, which no mapping can prevent.

mod atomic;
mod files;
mod hold;
mod swap;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat};

use crate::error::Error;
use crate::layout::{self, HEADER_WORDS, Header, Invalid};
use crate::protocol::{Record, Words};
use crate::sync::{AtomicU64, Ordering};

pub use files::{Dirs, Displaced, Owner};
use files::{Fresh, errno_io};
pub use swap::{Pinned, SwapCell, thread_index};

pub use atomic::AtomicPair;
pub use atomic::check_machine;

/// A mapped, validated limiter file. The mapping keeps the file alive; no descriptor is kept.
#[derive(Debug)]
pub struct Region {
    map: MmapRaw,
    header: Header,
    path: PathBuf,
    dev: u64,
    ino: u64,
    shard: usize,
    /// Mapped `PROT_READ` ([`Region::observe`]): nothing may write to it.
    read_only: bool,
    /// The protocol's words in the mapping, made once ([`Region::read_words`]): borrowed
    /// from `map`, which outlives them (see `Region::made_words`).
    read: Words<'static>,
    /// What [`Region::words`] gives: `read`, or on a read-only region the stand-in ring.
    write: Words<'static>,
}

/// How to open: the header a new file gets, or `None` to attach to an existing file only.
pub struct OpenSpec<'a> {
    /// The header to create the file with (and to expect in an existing one).
    pub create: Option<&'a Header>,
    /// Permission bits for a new file.
    pub mode: u32,
    /// The group of a new file (`None`: whatever the directory gives it). In a shared
    /// directory, a file of this group is trusted whoever owns it (only its members, and
    /// root, can give a file a group).
    pub group: Option<u32>,
    /// Which missing directories a create may make.
    pub dirs: Dirs,
}

/// A file at a limiter's path, opened but not mapped: whose it is, and what it is.
#[derive(Debug)]
pub struct Examined {
    /// Its owner, group and permission bits.
    pub owner: Owner,
    /// What it is.
    pub kind: Kind,
}

/// What a file at a limiter's path is.
#[derive(Debug)]
pub enum Kind {
    /// A hostlimit file whose header is valid (its ring may still be short or corrupt).
    Limiter(Header),
    /// A hostlimit file that cannot be used, and why ("damaged header: ...", "truncated:
    /// ...", "layout version 2 ...", "empty file").
    Damaged(String),
    /// Not a hostlimit file, and why.
    Foreign(String),
}

impl Region {
    /// Opens the limiter file at `path`: attaches to it, or creates it when `spec.create` is
    /// given and no file exists (the caller compares the header's rates and clock). A file
    /// this call creates starts with `history` in its ring (records `1..=m`, oldest first, as
    /// a journal restored them) instead of an empty one, with the hint and the journaled word
    /// at `m`. The records are written before the file is linked into place, so no process
    /// ever sees the file without them. An existing file is attached as it is: `history` is
    /// ignored.
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
        let (dir_path, name) = files::split(path)?;
        if spec.create.is_some() {
            files::create_dirs(&dir_path, spec.dirs, spec.mode)?;
        }
        let dir = files::open_dir(&dir_path)?;
        let shared = files::is_shared(&dir);
        // A few rounds: the file may be removed between a failed create and the next open.
        for _ in 0..16 {
            match open_file(&dir, name, OFlag::O_RDWR) {
                Ok(fd) => {
                    if shared {
                        files::check_trusted(path, &fd, spec.group)?;
                    }
                    return Region::attach(path, fd, spec.create, Access::ReadWrite);
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(open_error(path, &dir, name, e, "write")),
            }
            let Some(header) = spec.create else {
                return Err(Error::io(path, "open", errno_io(Errno::ENOENT)));
            };
            let owner = Owner {
                uid: None,
                gid: spec.group,
                mode: spec.mode,
            };
            let made = files::make(
                path,
                &dir,
                &dir_path,
                name,
                &Fresh { header, history },
                &owner,
            )?;
            // Only now can anyone else see it; if another process linked one first, attach
            // to theirs.
            if let Some(fd) = made.link(path, &dir, name)? {
                return Region::map(path, &File::from(fd), header.clone(), Access::ReadWrite);
            }
        }
        Err(Error::io(
            path,
            "open (the file kept disappearing)",
            errno_io(Errno::ENOENT),
        ))
    }

    /// Opens the existing limiter file at `path` to observe it: read-only (`O_RDONLY`, mapped
    /// `PROT_READ`), so read permission on the file is enough. The region hands out loads
    /// only; nothing this process does can write to the file.
    ///
    /// # Errors
    ///
    /// As attaching, and [`Error::Unsupported`] on a machine whose 128-bit loads write (see
    /// `atomic.rs`): such a load would fault on a read-only mapping.
    pub fn observe(path: &Path) -> Result<Region, Error> {
        check_machine()?;
        let primitives = atomic::primitives();
        if primitives.load_writes {
            return Err(Error::Unsupported(format!(
                "observing {} read-only needs a 16-byte load that does not write, and this CPU's \
                 ({}) stores what it reads; open the limiter with write access instead (the \
                 command line does so by itself when it may write to the file)",
                path.display(),
                primitives.load
            )));
        }
        let (dir_path, name) = files::split(path)?;
        let dir = files::open_dir(&dir_path)?;
        let fd = open_file(&dir, name, OFlag::O_RDONLY)
            .map_err(|e| open_error(path, &dir, name, e, "read"))?;
        Region::attach(path, fd, None, Access::ReadOnly)
    }

    /// Validates an existing file and maps it.
    fn attach(
        path: &Path,
        fd: OwnedFd,
        expected: Option<&Header>,
        access: Access,
    ) -> Result<Region, Error> {
        let stat = fstat(&fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
        if stat.st_mode & libc_s_ifmt() != libc_s_ifreg() {
            return Err(Error::corrupt(path, "not a regular file"));
        }
        let size = stat.st_size.max(0) as u64;
        let file = File::from(fd);
        if size < layout::RING_OFFSET as u64 {
            // A short file that does not even start like one of ours is not a truncated
            // limiter: say what it is.
            let mut start = [0u8; 8];
            let ours = std::os::unix::fs::FileExt::read_at(&file, &mut start, 0)
                .is_ok_and(|n| start[..n] == layout::MAGIC.to_le_bytes()[..n]);
            if !ours {
                return Err(Error::corrupt(path, "not a hostlimit file"));
            }
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                size,
                expected: expected.map_or(layout::RING_OFFSET as u64, Header::file_size),
            });
        }
        let header = match Header::decode(&read_header(path, &file)?) {
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
        Region::map(path, &file, header, access)
    }

    /// Maps `file`, whose header is `header` and whose size was checked against it.
    fn map(path: &Path, file: &File, header: Header, access: Access) -> Result<Region, Error> {
        let mut options = memmap2::MmapOptions::new();
        options.len(header.file_size() as usize);
        let map = match access {
            Access::ReadWrite => options.map_raw(file),
            Access::ReadOnly => options.map_raw_read_only(file),
        }
        .map_err(|e| Error::io(path, "map", e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        let mut region = Region {
            map,
            header,
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            shard: shard(),
            read_only: access == Access::ReadOnly,
            read: unusable_words(),
            write: unusable_words(),
        };
        region.read = region.made_words();
        if !region.read_only {
            region.write = region.read;
        }
        Ok(region)
    }

    /// Opens the file at `path` without mapping it, and says whose it is and what it is.
    /// Reads nothing beyond the header, so that any file, even a truncated one, can be
    /// examined.
    pub fn examine(path: &Path) -> Result<Examined, Error> {
        let (dir_path, name) = files::split(path)?;
        let dir = files::open_dir(&dir_path)?;
        let fd = open_file(&dir, name, OFlag::O_RDWR)
            .map_err(|e| open_error(path, &dir, name, e, "write"))?;
        examine_file(path, &fd)
    }

    /// Atomically replaces the file at `path` by a new one made from `header` with `owner`'s
    /// owner, group and mode, and returns the file it replaced (whatever it is: not
    /// necessarily the one the caller examined, if others changed the path meanwhile). The
    /// caller retires that file, so that its users move over. On error nothing changed.
    pub fn replace(path: &Path, header: &Header, owner: &Owner) -> Result<Displaced, Error> {
        Region::replace_with_history(path, header, owner, &[])
    }

    /// [`Region::replace`], the new file starting with `history` in its ring (as
    /// [`Region::open_with_history`] takes it, and with the same requirements).
    pub fn replace_with_history(
        path: &Path,
        header: &Header,
        owner: &Owner,
        history: &[Record],
    ) -> Result<Displaced, Error> {
        check_machine()?;
        let (dir_path, name) = files::split(path)?;
        let dir = files::open_dir(&dir_path)?;
        let fresh = Fresh { header, history };
        let made = files::make(path, &dir, &dir_path, name, &fresh, owner)?;
        files::exchange(path, dir, name, made)
    }

    /// Takes the file at `path` away (renames it to a temporary name of its own) and returns
    /// it; the caller retires it, then deletes it. On error nothing changed.
    pub fn take_away(path: &Path) -> Result<Displaced, Error> {
        let (dir_path, name) = files::split(path)?;
        let dir = files::open_dir(&dir_path)?;
        files::take_away(path, dir, name)
    }

    /// Maps a displaced file, if it is a valid limiter file.
    pub fn displaced(displaced: &Displaced) -> Result<Region, Error> {
        let path = displaced.path();
        let fd = displaced
            .fd()
            .ok_or_else(|| Error::corrupt(path, "not a regular file"))?
            .try_clone()
            .map_err(|e| Error::io(path, "dup", e))?;
        Region::attach(path, fd, None, Access::ReadWrite)
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The path this region was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A word of the mapping at `offset`, in the part before the ring, to write to: on a
    /// read-only region a process-local stand-in (the counters are statistics).
    fn word_to_write(&self, offset: usize) -> &AtomicU64 {
        static STAND_IN: AtomicU64 = AtomicU64::new(0);
        if self.read_only {
            return &STAND_IN;
        }
        self.word(offset)
    }

    /// A word of the mapping at `offset`, in the part before the ring.
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        let offset = offset.min(layout::RING_OFFSET - 8) & !7;
        // SAFETY: the offset is 8-aligned and below RING_OFFSET, and every mapping is at least
        // RING_OFFSET long (checked in `attach`, sized in `files::make`), page-aligned; other
        // processes only access these bytes atomically; the mapping lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    /// The ring: `capacity` 128-bit slots.
    #[inline]
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

    /// The protocol's words, for every protocol step (`acquire` and `retire` write to them).
    /// On a read-only region they are a stand-in ring that every step reports as corrupt
    /// (before anything is written), so that nothing can write to a `PROT_READ` mapping;
    /// readers use [`Region::read_words`].
    #[inline]
    pub fn words(&self) -> Words<'_> {
        self.write
    }

    /// The protocol's words, for the steps that only load (`usage`, `records_since`): the
    /// hint, the lap counter and the ring, on a read-only region too.
    #[inline]
    pub fn read_words(&self) -> Words<'_> {
        self.read
    }

    /// The words in the mapping, made once when it is mapped: the hot path neither checks
    /// the ring's length again nor branches on the mapping's access per call.
    fn made_words(&self) -> Words<'static> {
        // The capacity was validated as a power of two within bounds by `Header::decode` (or
        // computed by `capacity_for`), so `Words::new` accepts it; should it not, an empty
        // two-slot ring full of fake records makes every acquire report corruption.
        let words = match Words::new(
            self.word(layout::HINT_OFFSET),
            self.word(layout::LAPS_OFFSET),
            self.ring(),
        ) {
            Some(words) => words,
            None => unusable_words(),
        };
        // SAFETY: the words borrow the mapping, whose memory stays mapped at the same
        // address until `self.map` is dropped, however `self` moves; they are stored in
        // `self` and handed out only as `Words<'_>` tied to a borrow of `self`, so no use
        // outlives the mapping. Only the lifetime changes.
        unsafe { std::mem::transmute::<Words<'_>, Words<'static>>(words) }
    }

    /// The journaled word: sequence number of the newest record known to be in the journal
    /// (see `journal.rs`). Never touched by the hot path.
    #[cfg(feature = "journal")]
    pub fn journaled(&self) -> &AtomicU64 {
        self.word_to_write(layout::JOURNALED_OFFSET)
    }

    /// The denial counter of rate `rate` in this process's shard.
    pub fn denial_counter(&self, rate: usize) -> &AtomicU64 {
        self.word_to_write(layout::counter_offset(self.shard, rate))
    }

    /// The total of rate `rate`'s denial counters over all shards; `None` if a shard holds
    /// garbage (see [`layout::plausible_total`]).
    pub fn denials(&self, rate: usize) -> Option<u64> {
        self.total(|shard| layout::counter_offset(shard, rate))
    }

    /// Counter `tally` in this process's shard.
    pub fn tally_counter(&self, tally: layout::Tally) -> &AtomicU64 {
        self.word_to_write(layout::tally_offset(self.shard, tally))
    }

    /// The total of counter `tally` over all shards; `None` if a shard holds garbage.
    pub fn tally(&self, tally: layout::Tally) -> Option<u64> {
        self.total(|shard| layout::tally_offset(shard, tally))
    }

    fn total(&self, offset: impl Fn(usize) -> usize) -> Option<u64> {
        layout::plausible_total(
            // Relaxed: statistics.
            (0..layout::COUNTER_SHARDS).map(|s| self.word(offset(s)).load(Ordering::Relaxed)),
        )
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

/// How a region is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// Opens the file `name` in `dir` with `how` (`O_RDWR` or `O_RDONLY`), never through a
/// symbolic link.
fn open_file(dir: &OwnedFd, name: &std::ffi::OsStr, how: OFlag) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        how | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Why the file `name` in `dir` could not be opened to `purpose` ("read" or "write"), in
/// words: a symbolic link is refused; a permission error names the file's owner, group and
/// mode, and what to do.
fn open_error(
    path: &Path,
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    errno: Errno,
    purpose: &str,
) -> Error {
    match errno {
        Errno::ELOOP => Error::io(
            path,
            "open (refusing to follow a symbolic link: a limiter is a regular file, and a link \
             in a shared directory may have been planted by another user)",
            errno_io(Errno::ELOOP),
        ),
        Errno::EACCES | Errno::EPERM => {
            let Ok(stat) =
                nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                // Not even its owner can be read: the directory is closed to us.
                let dir_path = path.parent().unwrap_or(Path::new("."));
                return files::dir_error(dir_path, dir, "open directory", errno);
            };
            let whose = format!("it is {}", files::whose(&stat));
            let advice = if purpose == "read" {
                "ask its owner to grant read permission (observing needs nothing more)"
            } else {
                "ask its owner to share it with a group you are in (create it with \
                 `--group GROUP --mode 0660`, or `Builder::group`), or run as its owner; \
                 status, watch, metrics and top need only read permission"
            };
            Error::io(
                path,
                "open",
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: {} cannot {purpose} it: {whose}; {advice}",
                        files::user_name(nix::unistd::geteuid().as_raw())
                    ),
                ),
            )
        }
        e => Error::io(path, "open", errno_io(e)),
    }
}

/// The header words of `file`, as far as it has them (missing words read as zero).
fn read_header(path: &Path, file: &File) -> Result<[u64; HEADER_WORDS], Error> {
    let mut bytes = [0u8; HEADER_WORDS * 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, "read", e)),
        }
    }
    let mut words = [0u64; HEADER_WORDS];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Ok(words)
}

/// Says whose the open file `fd` is and what it is (see [`Region::examine`]).
pub fn examine_file(path: &Path, fd: &OwnedFd) -> Result<Examined, Error> {
    let stat = fstat(fd).map_err(|e| Error::io(path, "stat", errno_io(e)))?;
    let owner = Owner {
        uid: Some(stat.st_uid),
        gid: Some(stat.st_gid),
        mode: stat.st_mode & 0o777,
    };
    let kind = if stat.st_mode & libc_s_ifmt() != libc_s_ifreg() {
        Kind::Foreign("not a regular file".into())
    } else {
        let file = File::from(fd.try_clone().map_err(|e| Error::io(path, "dup", e))?);
        let words = read_header(path, &file)?;
        let size = stat.st_size.max(0) as u64;
        // As much of the magic as the file holds must match: a truncated limiter is still
        // one, a file with other bytes there is not.
        let magic = layout::MAGIC.to_le_bytes();
        let held = size.min(8) as usize;
        if words[0].to_le_bytes()[..held] != magic[..held] {
            Kind::Foreign("not a hostlimit file (bad magic)".into())
        } else if size == 0 {
            Kind::Damaged("empty file".into())
        } else if size < (HEADER_WORDS * 8) as u64 {
            Kind::Damaged(format!("truncated: {size} bytes, shorter than a header"))
        } else {
            match Header::decode(&words) {
                Ok(header) => Kind::Limiter(header),
                Err(Invalid::Magic) => Kind::Foreign("not a hostlimit file (bad magic)".into()),
                Err(Invalid::Version(found)) => Kind::Damaged(format!(
                    "layout version {found} (this library reads version {})",
                    layout::VERSION
                )),
                Err(Invalid::Corrupt(reason)) => Kind::Damaged(format!("damaged header: {reason}")),
            }
        }
    };
    Ok(Examined { owner, kind })
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
