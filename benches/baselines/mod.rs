//! Baselines for the benchmarks: hostlimit's sliding log kept behind a lock.
//!
//! The same log as hostlimit's (`src/protocol.rs`): a ring of admission records, each a
//! timestamp and the cumulative weight so far; every rate is a window over it. An acquire is
//! all or nothing, is recorded at `max(now, newest timestamp)`, and a denial computes the
//! exact time at which the request would fit. What differs is how the acquire is made
//! atomic: here a lock around all of it, in one of the two ways that work across processes:
//!
//! * [`LockKind::RobustMutex`]: a robust, process-shared pthread mutex in the mapping itself
//!   (`PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST`; `EOWNERDEAD` is repaired with
//!   `pthread_mutex_consistent`), the way nginx guards its shared-memory zones. It survives
//!   a holder that dies, but a holder that is stopped or preempted blocks everyone.
//! * [`LockKind::Flock`]: `flock(LOCK_EX)` on the file, one system call to lock and one to
//!   unlock; the kernel releases it when the holder dies, and a stopped holder blocks
//!   everyone.
//!
//! The log is written to be simple and fair, not a straw man: each rate keeps, in the shared
//! state, the sequence number of the newest record outside its window and walks it forward
//! (amortized O(1) per acquire, like hostlimit's per-rate hints); a denial binary-searches the
//! record whose expiry makes room (as hostlimit does); a commit writes the new slot and then
//! the head, so a holder that dies anywhere leaves a consistent log (the head store is the
//! commit) and the next locker only has to mark the mutex consistent.
//!
//! File layout (a file on a tmpfs such as `/dev/shm`, mapped with `MmapRaw`):
//!
//! | offset | size          | content                                                |
//! |--------|---------------|--------------------------------------------------------|
//! | 0      | 64            | the pthread mutex (unused by the flock variant)        |
//! | 64     | 8             | ring capacity (slots, a power of two)                  |
//! | 128    | 8             | head: sequence number of the newest record             |
//! | 192    | 8 × 8         | per rate, the newest record outside its window         |
//! | 4096   | 16 × capacity | the ring: per slot the timestamp and cumulative weight |
//!
//! Record 0 is the sentinel (timestamp 0, weight 0): a zeroed file is an empty log.
//!
//! This is the only module of the benchmarks with `unsafe`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use hostlimit::{Clock, Counts, HostClock, Rate};
use memmap2::MmapRaw;
use nix::libc;

const MUTEX_OFFSET: usize = 0;
const CAPACITY_OFFSET: usize = 64;
const HEAD_OFFSET: usize = 128;
const BOUNDARY_OFFSET: usize = 192;
const RING_OFFSET: usize = 4096;
const MAX_RATES: usize = 8;

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= CAPACITY_OFFSET);
const _: () = assert!(std::mem::align_of::<libc::pthread_mutex_t>() <= 64);
const _: () = assert!(BOUNDARY_OFFSET + 8 * MAX_RATES <= RING_OFFSET);

/// How the log is made atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A robust process-shared pthread mutex in the mapping.
    RobustMutex,
    /// `flock` on the file.
    Flock,
}

/// One rate, in the log's terms.
#[derive(Debug, Clone, Copy)]
struct Rule {
    limit: u64,
    window: u64,
    requests: bool,
}

impl Rule {
    fn units(&self, weight: u64) -> u64 {
        if self.requests { 1 } else { weight }
    }
}

/// A two-rate (or any-rate) sliding log in a shared mapping, behind a lock.
#[derive(Debug)]
pub struct LockedLog {
    map: MmapRaw,
    file: File,
    kind: LockKind,
    rules: Vec<Rule>,
    mask: u64,
}

/// The ring capacity these rates need so that it holds every record inside the longest
/// window, by the same arithmetic as hostlimit's `layout::capacity_for`.
fn capacity_for(rules: &[Rule]) -> u64 {
    let longest = rules.iter().map(|r| r.window).max().unwrap_or(1);
    let any_requests = rules.iter().any(|r| r.requests);
    let bound = rules
        .iter()
        .filter(|r| r.requests || !any_requests)
        .map(|r| r.limit.saturating_mul(longest.div_ceil(r.window)))
        .min()
        .unwrap_or(1);
    (bound + 2).next_power_of_two()
}

fn rules_of(rates: &[Rate]) -> Vec<Rule> {
    assert!(!rates.is_empty() && rates.len() <= MAX_RATES);
    rates
        .iter()
        .map(|rate| Rule {
            limit: rate.limit(),
            window: u64::try_from(rate.window().as_nanos()).unwrap_or(u64::MAX),
            requests: rate.counts() == Counts::Requests,
        })
        .collect()
}

fn errno(rc: libc::c_int) -> io::Error {
    io::Error::from_raw_os_error(rc)
}

impl LockedLog {
    /// Creates a new log file at `path` (which must not exist) and initializes it.
    pub fn create(path: &Path, kind: LockKind, rates: &[Rate]) -> io::Result<LockedLog> {
        let rules = rules_of(rates);
        let capacity = capacity_for(&rules);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(RING_OFFSET as u64 + 16 * capacity)?;
        let map = MmapRaw::map_raw(&file)?;
        let log = LockedLog {
            map,
            file,
            kind,
            rules,
            mask: capacity - 1,
        };
        // SAFETY: the file was created above and nobody else has opened it yet; the offset is
        // in bounds and 8-aligned.
        unsafe { log.word(CAPACITY_OFFSET).write(capacity) };
        if kind == LockKind::RobustMutex {
            log.init_mutex()?;
        }
        Ok(log)
    }

    /// Opens a log that [`LockedLog::create`] made, with the same rates.
    pub fn open(path: &Path, kind: LockKind, rates: &[Rate]) -> io::Result<LockedLog> {
        let rules = rules_of(rates);
        let capacity = capacity_for(&rules);
        let file = File::options().read(true).write(true).open(path)?;
        if file.metadata()?.len() != RING_OFFSET as u64 + 16 * capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "log file of another size",
            ));
        }
        let map = MmapRaw::map_raw(&file)?;
        Ok(LockedLog {
            map,
            file,
            kind,
            rules,
            mask: capacity - 1,
        })
    }

    /// Initializes the robust, process-shared mutex at the start of the mapping.
    fn init_mutex(&self) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is valid for writes; it is initialized by `pthread_mutexattr_init`
        // before any other use and destroyed after the mutex is initialized. The mutex
        // pointer is in bounds and suitably aligned (the mapping is page-aligned, see the
        // asserts above), and no other process uses the file before `create` returns.
        unsafe {
            let rc = libc::pthread_mutexattr_init(attr.as_mut_ptr());
            if rc != 0 {
                return Err(errno(rc));
            }
            let mut rc =
                libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            if rc == 0 {
                rc = libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                );
            }
            if rc == 0 {
                rc = libc::pthread_mutex_init(self.mutex(), attr.as_ptr());
            }
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            if rc != 0 {
                return Err(errno(rc));
            }
        }
        Ok(())
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: MUTEX_OFFSET is within the mapping (it is at least RING_OFFSET long).
        unsafe { self.map.as_mut_ptr().add(MUTEX_OFFSET).cast() }
    }

    /// A pointer to the 8-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// - `offset + 8` is within the mapping and `offset` is a multiple of 8.
    unsafe fn word(&self, offset: usize) -> *mut u64 {
        debug_assert!(offset & 7 == 0 && offset + 8 <= self.map.len());
        // SAFETY: the caller guarantees the offset is in bounds.
        unsafe { self.map.as_mut_ptr().add(offset).cast() }
    }

    /// Takes the lock; the log is ours until the guard is dropped.
    ///
    /// # Panics
    ///
    /// If the lock call fails (it does not, short of a corrupt mutex or a bad descriptor).
    pub fn lock(&self) -> Guard<'_> {
        match self.kind {
            LockKind::RobustMutex => {
                // SAFETY: the mutex was initialized by `create` before any process could open
                // the file, lives in the mapping for as long as `self`, and is only used
                // through pthread calls.
                let rc = unsafe { libc::pthread_mutex_lock(self.mutex()) };
                if rc == libc::EOWNERDEAD {
                    // The previous holder died holding the lock. The log is consistent at
                    // every instruction (the head store is the commit), so only the mutex
                    // needs repair.
                    // SAFETY: we hold the mutex (EOWNERDEAD returns it locked).
                    let rc = unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                    assert_eq!(rc, 0, "pthread_mutex_consistent: {}", errno(rc));
                } else {
                    assert_eq!(rc, 0, "pthread_mutex_lock: {}", errno(rc));
                }
            }
            LockKind::Flock => {
                // SAFETY: the descriptor belongs to `self.file`, open for as long as `self`.
                let rc = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX) };
                assert_eq!(rc, 0, "flock: {}", io::Error::last_os_error());
            }
        }
        Guard { log: self }
    }

    /// Admits `weight` now if every rate has room (committing to all of them), or says when
    /// it could fit (`u64::MAX`: never). Reads the clock before taking the lock, as
    /// hostlimit reads it before its commit.
    #[inline]
    pub fn try_acquire(&self, weight: u64) -> Result<(), u64> {
        let now = HostClock.now();
        self.lock().acquire(now, weight)
    }
}

/// The lock, held. Dropping it unlocks.
#[derive(Debug)]
pub struct Guard<'a> {
    log: &'a LockedLog,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        match self.log.kind {
            LockKind::RobustMutex => {
                // SAFETY: this guard exists only while this thread holds the mutex.
                let rc = unsafe { libc::pthread_mutex_unlock(self.log.mutex()) };
                debug_assert_eq!(rc, 0);
            }
            LockKind::Flock => {
                // SAFETY: the descriptor belongs to the log's file, open for as long as it.
                let rc = unsafe { libc::flock(self.log.file.as_raw_fd(), libc::LOCK_UN) };
                debug_assert_eq!(rc, 0);
            }
        }
    }
}

impl Guard<'_> {
    fn read(&self, offset: usize) -> u64 {
        // SAFETY: every offset used below is a header word or a masked ring slot, in bounds
        // and 8-aligned. The words are shared with other processes, but only read or written
        // while holding the lock, whose acquire/release ordering makes these plain accesses
        // race-free; no reference to the shared memory is ever formed.
        unsafe { self.log.word(offset).read() }
    }

    fn write(&self, offset: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { self.log.word(offset).write(value) }
    }

    fn slot_offset(&self, seq: u64) -> usize {
        RING_OFFSET + 16 * (seq & self.log.mask) as usize
    }

    fn ts(&self, seq: u64) -> u64 {
        self.read(self.slot_offset(seq))
    }

    fn cum(&self, seq: u64) -> u64 {
        self.read(self.slot_offset(seq) + 8)
    }

    /// The acquire itself, under the lock: admits `weight` at `max(now, newest timestamp)`
    /// if every rate has room, else returns when it could fit (`u64::MAX`: never).
    pub fn acquire(&mut self, now: u64, weight: u64) -> Result<(), u64> {
        let head = self.read(HEAD_OFFSET);
        let head_ts = self.ts(head);
        let head_cum = self.cum(head);
        let t = now.max(head_ts);
        let mut retry_at: Option<u64> = None;
        let mut oldest = head;
        for (index, rule) in self.log.rules.iter().enumerate() {
            let units = rule.units(weight);
            if units == 0 {
                continue;
            }
            if units > rule.limit {
                return Err(u64::MAX);
            }
            let threshold = t.saturating_sub(rule.window);
            let boundary_offset = BOUNDARY_OFFSET + 8 * index;
            // Walk this rate's boundary forward to the newest record at or before the
            // threshold: amortized one step per acquire.
            let mut boundary = self.read(boundary_offset).min(head);
            while boundary < head && self.ts(boundary + 1) <= threshold {
                boundary += 1;
            }
            self.write(boundary_offset, boundary);
            oldest = oldest.min(boundary);
            // Weight (or requests) of the records after `from`, up to the head.
            let used_after = |from: u64| {
                if rule.requests {
                    head - from
                } else {
                    head_cum - self.cum(from)
                }
            };
            if used_after(boundary) + units <= rule.limit {
                continue;
            }
            // Denied by this rate: the request fits once the records up to the smallest
            // `fits` have left the window. used_after(boundary) does not fit, used_after(head)
            // (zero) does.
            let (mut fails, mut fits) = (boundary, head);
            while fits - fails > 1 {
                let mid = fails + (fits - fails) / 2;
                if used_after(mid) + units <= rule.limit {
                    fits = mid;
                } else {
                    fails = mid;
                }
            }
            let at = self.ts(fits).saturating_add(rule.window);
            retry_at = Some(retry_at.map_or(at, |r| r.max(at)));
        }
        if let Some(at) = retry_at {
            return Err(at);
        }
        if head + 1 - oldest > self.log.mask {
            // The ring cannot keep the new record and every window's records; cannot happen
            // with the capacity computed from the rates.
            return Err(u64::MAX);
        }
        let next = head + 1;
        let slot = self.slot_offset(next);
        self.write(slot, t);
        self.write(slot + 8, head_cum.wrapping_add(weight));
        // The commit: a holder that dies before this store leaves the log as it was.
        self.write(HEAD_OFFSET, next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(kind: LockKind) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rates = [
            Rate::requests(3, Duration::from_secs(3600)),
            Rate::new(10, Duration::from_secs(7200)),
        ];
        let log = LockedLog::create(&path, kind, &rates).unwrap();
        let other = LockedLog::open(&path, kind, &rates).unwrap();
        assert!(log.try_acquire(4).is_ok());
        assert!(other.try_acquire(4).is_ok());
        // 8 of 10 used: weight 3 does not fit, weight 2 does; then the request rate is full.
        assert!(log.try_acquire(3).is_err());
        assert!(other.try_acquire(2).is_ok());
        assert!(log.try_acquire(0).is_err());
        assert_eq!(log.try_acquire(11), Err(u64::MAX));
    }

    #[test]
    fn sliding_window_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rates = [Rate::requests(2, Duration::from_nanos(10))];
        let log = LockedLog::create(&path, LockKind::RobustMutex, &rates).unwrap();
        let mut guard = log.lock();
        assert_eq!(guard.acquire(100, 1), Ok(()));
        assert_eq!(guard.acquire(101, 1), Ok(()));
        assert_eq!(guard.acquire(105, 1), Err(110));
        // Recorded at max(now, newest timestamp): 101, so the record at 100 has left.
        assert_eq!(guard.acquire(90, 1), Err(110));
        assert_eq!(guard.acquire(110, 1), Ok(()));
        assert_eq!(guard.acquire(110, 1), Err(111));
        drop(guard);
    }

    #[test]
    fn robust_mutex_survives_a_dead_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rates = [Rate::requests(10, Duration::from_secs(3600))];
        let log = LockedLog::create(&path, LockKind::RobustMutex, &rates).unwrap();
        // A thread that ends holding a robust mutex leaves it to the next locker with
        // EOWNERDEAD, as a process that dies does.
        std::thread::scope(|scope| {
            scope.spawn(|| std::mem::forget(log.lock()));
        });
        assert!(log.try_acquire(1).is_ok());
        assert!(log.try_acquire(1).is_ok());
    }

    #[test]
    fn robust_mutex_log() {
        check(LockKind::RobustMutex);
    }

    #[test]
    fn flock_log() {
        check(LockKind::Flock);
    }
}
