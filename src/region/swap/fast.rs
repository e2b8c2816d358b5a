//! The fast readers of the swap cell (see the parent module's documentation): every
//! thread's own record of entries, and the writer's `membarrier(2)` barrier that lets a
//! reader protect a value with a plain store.

use std::cell::Cell;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Entries per thread [`Record`]: how many values of asymmetric cells one thread can hold at
/// once before it falls back to the claim of a slot.
pub(super) const ENTRIES: usize = 4;

/// One thread's entries for the fast reader: the pointers it protects, or null. Records are
/// handed to threads as they first read, given back when a thread ends and taken again by a
/// later one, and never freed, so a writer can walk them at any time.
#[repr(align(128))]
pub(super) struct Record {
    pub(super) entries: [AtomicPtr<()>; ENTRIES],
    /// Whether a thread owns the record now.
    taken: AtomicBool,
    /// The record's place in the order records were made (0 for the first).
    index: usize,
    /// The record pushed before this one (set before the push, then never changed).
    next: *const Record,
}

// SAFETY: `next` only ever points to another leaked `Record` (which is `Sync`: its other
// fields are atomics) and is never written after the record is published.
unsafe impl Sync for Record {}

/// The newest record; the list of every record made so far, linked by `next`.
static RECORDS: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());

/// This thread's record, given back (for another thread to take) when the thread ends.
struct Local(Cell<*const Record>);

impl Drop for Local {
    fn drop(&mut self) {
        // SAFETY: a non-null pointer here came from `Box::leak` in `record`: records live for
        // the rest of the process.
        if let Some(record) = unsafe { self.0.get().as_ref() } {
            // Release: this thread's last stores into the entries come before the next
            // owner's.
            record.taken.store(false, Ordering::Release);
        }
    }
}

std::thread_local! {
    static LOCAL: Local = const { Local(Cell::new(ptr::null())) };
}

/// This thread's record: the one it owns, else a free one, else a new one. `None` while the
/// thread is ending (its thread-locals are gone).
#[inline]
pub(super) fn record() -> Option<&'static Record> {
    LOCAL
        .try_with(|local| {
            // SAFETY: as in `Local::drop`: only leaked records are stored here.
            if let Some(record) = unsafe { local.0.get().as_ref() } {
                return record;
            }
            let record = take_record();
            local.0.set(record);
            record
        })
        .ok()
}

/// A number that no other live thread of the process has now: the index of this thread's
/// record (small: records are reused as threads end). `None` while the thread is ending.
/// Lets a thread own a slot of a process-local table (`limiter::counters`).
#[inline]
pub fn thread_index() -> Option<usize> {
    record().map(|record| record.index)
}

/// A record for a thread that has none yet.
#[cold]
fn take_record() -> &'static Record {
    // Acquire: pairs with the Release push, so a record's fields are seen as pushed.
    let mut at = RECORDS.load(Ordering::Acquire).cast_const();
    // SAFETY: every pointer in the list came from `Box::leak` and stays valid forever.
    while let Some(record) = unsafe { at.as_ref() } {
        // Acquire: pairs with the Release of the previous owner's `Local::drop`.
        if record
            .taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return record;
        }
        at = record.next;
    }
    // Relaxed: only hands out distinct numbers.
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let record = Box::leak(Box::new(Record {
        entries: Default::default(),
        taken: AtomicBool::new(true),
        index: MADE.fetch_add(1, Ordering::Relaxed),
        next: ptr::null(),
    }));
    let mut head = RECORDS.load(Ordering::Relaxed);
    loop {
        record.next = head.cast_const();
        // Release: publishes the record's fields with it.
        match RECORDS.compare_exchange_weak(
            head,
            ptr::from_mut(record),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return record,
            Err(newer) => head = newer,
        }
    }
}

/// Every entry of every record that protects `value`? (The writer's side of the fast reader,
/// after the barrier.)
pub(super) fn any_entry_holds(value: *mut ()) -> bool {
    // Acquire: as in `take_record`.
    let mut at = RECORDS.load(Ordering::Acquire).cast_const();
    // SAFETY: as in `take_record`.
    while let Some(record) = unsafe { at.as_ref() } {
        // SeqCst (so also Acquire): pairs with the readers' Release stores.
        if record
            .entries
            .iter()
            .any(|entry| entry.load(Ordering::SeqCst) == value)
        {
            return true;
        }
        at = record.next;
    }
    false
}

/// The `membarrier(2)` commands used here (linux/membarrier.h).
pub(super) const MEMBARRIER_CMD_PRIVATE_EXPEDITED: nix::libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: nix::libc::c_long = 1 << 4;

/// `membarrier(cmd, 0)`: true if it succeeded.
fn membarrier(cmd: nix::libc::c_long) -> bool {
    if cfg!(miri) {
        return false;
    }
    // SAFETY: membarrier takes two integers and touches no memory of ours; an unknown or
    // refused command returns -1 with errno set, which is all we look at.
    unsafe { nix::libc::syscall(nix::libc::SYS_membarrier, cmd, 0 as nix::libc::c_long) == 0 }
}

/// Whether this process can use the fast reader: `membarrier` registered (once per process).
fn fast_readers() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
}

/// The writer's barrier of the fast reader: every running thread of the process executes a
/// full memory barrier. Refused for want of a registration (a process whose registration
/// was lost, say across a fork on a kernel that does not carry it), it registers and tries
/// once more before giving up.
pub(super) fn heavy_barrier() -> bool {
    #[cfg(test)]
    if BARRIER_FAILS.get() {
        return false;
    }
    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
        || (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
            && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
}

#[cfg(test)]
std::thread_local! {
    /// Makes this thread's barriers fail, as a kernel that refuses them would (tests only).
    pub(super) static BARRIER_FAILS: Cell<bool> = const { Cell::new(false) };
}

/// How the readers of a cell protect what they read (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// A thread's own entry and the writer's `membarrier`: no read-modify-write.
    Fast,
    /// A claimed slot (a compare-exchange per read).
    Claiming,
}

impl Readers {
    /// What this process can use: [`Readers::Fast`] where `membarrier` works.
    pub fn available() -> Readers {
        if fast_readers() {
            Readers::Fast
        } else {
            Readers::Claiming
        }
    }
}
