//! A value that can be replaced while other threads read it, with no lock and no system call
//! on the reading side, and that frees each replaced value as soon as no reader holds it.
//!
//! Used to re-attach a limiter to a new file: the hot path reads the attached file through
//! [`SwapCell::get`], and a re-attach [`SwapCell::replace`]s it. Keeping every replaced value
//! until the cell is dropped (as a plain "never free" cell would) keeps every old mapping, and
//! with it the unlinked file's memory, for the life of the process: a long-lived process that
//! sees many resets would run out of memory or address space.
//!
//! # The scheme: hazard pointers
//!
//! (Michael, "Hazard Pointers: Safe Memory Reclamation for Lock-Free Objects", IEEE TPDS
//! 2004, reduced to one shared pointer.) The cell has [`SLOTS`] reader slots, each on its own
//! cache line. A reader:
//!
//! 1. loads the current pointer `p`;
//! 2. claims a free slot by compare-exchanging it from null to `p` (its thread's own slot,
//!    chosen once per thread, so the exchange is uncontended: this is the one atomic
//!    read-modify-write of the hot path);
//! 3. loads the current pointer again: if it is still `p`, `p` is protected until the reader
//!    stores null into the slot (when the [`Pinned`] guard drops); otherwise it swaps the new
//!    pointer into its slot and checks again.
//!
//! A writer swaps the new pointer in, then frees each replaced pointer that no slot holds
//! (under a mutex that only writers take). Why that is safe: steps 2 and 3 and the writer's
//! swap and slot loads are all `SeqCst`, so they have one total order. If the reader's
//! reload (step 3) returned `p`, it came before the writer's swap, so its claim (step 2, before
//! the reload) came before the writer's load of that slot, which therefore sees `p` or
//! something the reader stored later, and the reader stores something else only once it is
//! done with `p` (null on release, with `Release` ordering that the writer's load acquires,
//! or a newer pointer). If the reload did not return `p`, the reader never dereferences `p`.
//! Every later write to a slot is a read-modify-write (the claim, the swap of step 3) except
//! the release store, so a writer that reads a slot synchronizes with the release of every
//! earlier holder.
//!
//! More readers at once than slots (threads holding guards across a long call, or more
//! than [`SLOTS`] threads) fall back to a shared count: a writer frees nothing while it is
//! not zero. Replaced values still held are freed at a later [`SwapCell::replace`] or
//! [`SwapCell::reclaim`], so the values alive at once are bounded by the readers, not by the
//! number of replacements.
//!
//! # The fast reader: an asymmetric fence instead of the read-modify-write
//!
//! The claim's compare-exchange is a locked instruction, and on the hot path of a limiter
//! it costs about as much as the admission's own commit. Where the kernel offers
//! `membarrier(2)` (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`, Linux 4.14), a reader does without
//! it, as in folly's hazard pointers and liburcu's "memb" flavour (asymmetric fences):
//!
//! 1. it takes a free entry of its thread's own [`Record`] (a thread is the only one that
//!    stores a pointer into its entries, so no exchange is needed);
//! 2. loads the current pointer `p`, stores it into the entry (`Release`), and only keeps the
//!    compiler from moving the next load above that store (`compiler_fence`);
//! 3. loads the current pointer again: if it is still `p`, `p` is protected until the entry is
//!    stored null; otherwise it retries with the new pointer.
//!
//! The one order that matters is "the entry's store before the reload" (a store-load order,
//! the only one x86 and ARM reorder). The writer restores it from its side: after the swap and
//! before it reads the entries, it runs `membarrier`, which makes every thread of the process
//! that is running execute a full memory barrier (a thread that is not running passed one
//! when it was switched out). So for each reader, either its entry's store comes before that
//! barrier, and the writer's later loads of the entries see it (or what the reader stored
//! after it), or its reload comes after the barrier, which follows the swap, and returns the
//! new pointer, so the reader never dereferences `p`. The `Release` stores of the entries,
//! read with the writer's `SeqCst` (acquiring) loads, order everything a reader did with a
//! value before the writer frees it, even when the entry already holds a newer pointer.
//!
//! A writer that cannot run the barrier (the kernel lacks it, a seccomp policy refuses it,
//! or the process's registration is missing and registering again fails) frees nothing,
//! keeping the values for a later try. A cell made where `membarrier` is missing uses
//! the claim of the first scheme only, as does Miri, which has no such system call. Both
//! schemes can protect values of one cell at once: a writer checks the slots, the count and
//! every thread's entries.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, compiler_fence};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Reader slots per cell: how many threads can read at once without sharing a count.
pub const SLOTS: usize = 32;

const _: () = assert!(SLOTS.is_power_of_two());

/// One reader slot: the pointer its reader protects, or null. Its own cache lines, so that
/// readers on different threads never bounce a line between them.
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicPtr<()>);

/// Entries per thread [`Record`]: how many values of asymmetric cells one thread can hold at
/// once before it falls back to the claim of a slot.
const ENTRIES: usize = 4;

/// One thread's entries for the fast reader: the pointers it protects, or null. Records are
/// handed to threads as they first read, given back when a thread ends and taken again by a
/// later one, and never freed, so a writer can walk them at any time.
#[repr(align(128))]
struct Record {
    entries: [AtomicPtr<()>; ENTRIES],
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
fn record() -> Option<&'static Record> {
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
fn any_entry_holds(value: *mut ()) -> bool {
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
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: nix::libc::c_long = 1 << 3;
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
fn heavy_barrier() -> bool {
    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
        || (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
            && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
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

/// A value that can be replaced while shared; see the module documentation.
pub struct SwapCell<T> {
    current: AtomicPtr<T>,
    readers: Readers,
    slots: [Slot; SLOTS],
    /// Readers that found every slot taken.
    overflow: AtomicUsize,
    /// Replaced values some reader may still hold, as raw pointers: turning one back into a
    /// `Box` while readers still hold `&T` would invalidate their borrows.
    retired: Mutex<Vec<*mut T>>,
}

/// A reader's hold on a value of a [`SwapCell`]: derefs to the value, which stays alive until
/// the guard is dropped, however often the cell is replaced meanwhile.
pub struct Pinned<'a, T> {
    value: NonNull<T>,
    hold: Hold<'a>,
    /// Not `Send` or `Sync`: a guard is released by the thread that took it (its slot is that
    /// thread's; nothing would break otherwise, but nothing needs it).
    _local: PhantomData<*const T>,
}

/// What keeps a pinned value alive: a reader slot, or the shared count.
#[derive(Clone, Copy)]
enum Hold<'a> {
    Slot(&'a AtomicPtr<()>),
    Overflow(&'a AtomicUsize),
}

std::thread_local! {
    /// This thread's first choice of slot, given out round-robin at its first read.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's first choice of slot.
#[inline]
fn home() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    HOME.with(|home| {
        let index = home.get();
        if index != usize::MAX {
            return index;
        }
        // Relaxed: only spreads threads over the slots; any value is correct.
        let index = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
        home.set(index);
        index
    })
}

impl<T> SwapCell<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        SwapCell::with_readers(value, Readers::available())
    }

    /// A cell holding `value` whose readers protect values as `readers` says (the tests take
    /// each; `Fast` must be [`Readers::available`]).
    pub fn with_readers(value: T, readers: Readers) -> Self {
        SwapCell {
            current: AtomicPtr::new(Box::into_raw(Box::new(value))),
            readers,
            slots: Default::default(),
            overflow: AtomicUsize::new(0),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The current value, held until the guard drops.
    #[inline]
    pub fn get(&self) -> Pinned<'_, T> {
        if self.readers == Readers::Fast
            && let Some(record) = record()
            && let Some(entry) = record
                .entries
                .iter()
                // Relaxed: only this thread stores pointers into its entries.
                .find(|entry| entry.load(Ordering::Relaxed).is_null())
        {
            return self.protect_fast(entry);
        }
        self.get_claimed()
    }

    /// The fast reader's steps 2 and 3 (see the module documentation).
    #[inline]
    fn protect_fast<'a>(&'a self, entry: &'a AtomicPtr<()>) -> Pinned<'a, T> {
        // Acquire: pairs with the swap in `replace`, so the value's contents are visible.
        let mut value = self.current.load(Ordering::Acquire);
        loop {
            // Release: what this thread did with the value its entry held before comes
            // before a writer's acquiring load that sees this store.
            entry.store(value.cast(), Ordering::Release);
            // The store must stay before the reload; the writer's barrier orders them in
            // the hardware.
            compiler_fence(Ordering::SeqCst);
            let now = self.current.load(Ordering::Acquire);
            if now == value {
                return Pinned {
                    value: NonNull::new(value).unwrap_or_else(|| unreachable!("never null")),
                    hold: Hold::Slot(entry),
                    _local: PhantomData,
                };
            }
            value = now;
        }
    }

    /// A read through a claimed slot (the first scheme).
    #[inline]
    fn get_claimed(&self) -> Pinned<'_, T> {
        let home = home();
        for probe in 0..SLOTS {
            let slot = &self.slots[(home + probe) % SLOTS].0;
            // Acquire: pairs with the swap in `replace`, so the value's contents are visible.
            let value = self.current.load(Ordering::Acquire);
            // SeqCst: the claim must come before the reload below in the one total order of
            // the scheme (see the module documentation). Relaxed on failure: nothing is read.
            if slot
                .compare_exchange(
                    ptr::null_mut(),
                    value.cast(),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return self.protect(slot, value);
            }
        }
        self.get_counted()
    }

    /// Step 3 of the scheme: makes sure the pointer in our slot is still current.
    #[inline]
    fn protect<'a>(&'a self, slot: &'a AtomicPtr<()>, mut value: *mut T) -> Pinned<'a, T> {
        loop {
            // SeqCst: after the claim, in the scheme's total order.
            let now = self.current.load(Ordering::SeqCst);
            if now == value {
                return Pinned {
                    value: NonNull::new(value).unwrap_or_else(|| unreachable!("never null")),
                    hold: Hold::Slot(slot),
                    _local: PhantomData,
                };
            }
            // Replaced meanwhile: protect the new value instead. A read-modify-write, so that
            // a writer reading the slot still synchronizes with its earlier holders.
            slot.swap(now.cast(), Ordering::SeqCst);
            value = now;
        }
    }

    /// A read when every slot is taken: counted in `overflow`, which stops writers from
    /// freeing anything until it is back at zero.
    #[cold]
    fn get_counted(&self) -> Pinned<'_, T> {
        // SeqCst: the count must come before the load in the scheme's total order: a writer
        // that swapped before this load sees the count and frees nothing.
        self.overflow.fetch_add(1, Ordering::SeqCst);
        let value = self.current.load(Ordering::SeqCst);
        Pinned {
            value: NonNull::new(value).unwrap_or_else(|| unreachable!("never null")),
            hold: Hold::Overflow(&self.overflow),
            _local: PhantomData,
        }
    }

    /// Installs `value`; the old one is freed as soon as no reader holds it (now, or at a
    /// later `replace` or [`SwapCell::reclaim`]), together with earlier ones that are free.
    pub fn replace(&self, value: T) {
        let new = Box::into_raw(Box::new(value));
        // SeqCst: the swap comes before the slot loads of `free_unheld` in the scheme's total
        // order; AcqRel part: publishes the new value to `get`'s Acquire load.
        let old = self.current.swap(new, Ordering::SeqCst);
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        retired.push(old);
        self.free_unheld(&mut retired);
    }

    /// Frees the replaced values no reader holds any more. Never blocks: does nothing if a
    /// writer is busy (it frees them itself).
    pub fn reclaim(&self) {
        let mut retired = match self.retired.try_lock() {
            Ok(retired) => retired,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if !retired.is_empty() {
            self.free_unheld(&mut retired);
        }
    }

    /// How many replaced values are still kept (held by a reader, or not yet reclaimed).
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the tests"))]
    pub fn kept(&self) -> usize {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn free_unheld(&self, retired: &mut Vec<*mut T>) {
        // The fast readers' barrier, after the swaps that retired these values: without it,
        // an entry's store may not be visible yet.
        if self.readers == Readers::Fast && !heavy_barrier() {
            return;
        }
        // SeqCst: after the swaps that retired these values, in the scheme's total order
        // (and acquires the releases of readers that are done).
        if self.overflow.load(Ordering::SeqCst) != 0 {
            return;
        }
        let held: [*mut (); SLOTS] =
            std::array::from_fn(|index| self.slots[index].0.load(Ordering::SeqCst));
        retired.retain(|&value| {
            if held.contains(&value.cast())
                || (self.readers == Readers::Fast && any_entry_holds(value.cast()))
            {
                return true;
            }
            // SAFETY: `value` came from `Box::into_raw` in `new` or `replace`, was swapped out
            // of `current` (so no new reader can reach it) and is in `retired` exactly once;
            // no slot holds it and no counted reader exists after the swap, so no reader
            // holds a reference to it (see the module documentation); it is removed from
            // `retired` here, so it is freed once. For fast readers, the barrier above
            // makes every entry that protects it visible to `any_entry_holds`.
            drop(unsafe { Box::from_raw(value) });
            false
        });
    }
}

impl<'a, T> Pinned<'a, T> {
    /// A hold on a part of the value (a field), kept alive by the same hold.
    #[cfg_attr(
        not(any(test, feature = "journal")),
        allow(dead_code, reason = "used by the journal's thread")
    )]
    pub fn map<U>(this: Pinned<'a, T>, part: impl FnOnce(&T) -> &U) -> Pinned<'a, U> {
        let value = NonNull::from(part(&this));
        let hold = this.hold;
        // The hold moves to the new guard: it must not be released now.
        std::mem::forget(this);
        Pinned {
            value,
            hold,
            _local: PhantomData,
        }
    }
}

impl<T> std::ops::Deref for Pinned<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `value` points into a value of the cell that this guard's hold protects
        // (the slot holds its pointer, or the count is above zero): writers free it only
        // after the hold is released, in `drop`, which ends every borrow of the guard first.
        unsafe { self.value.as_ref() }
    }
}

impl<T> Drop for Pinned<'_, T> {
    #[inline]
    fn drop(&mut self) {
        match self.hold {
            // Release: everything this reader did with the value happens before a writer
            // that sees the slot empty frees it (pairs with the SeqCst loads of
            // `free_unheld`).
            Hold::Slot(slot) => slot.store(ptr::null_mut(), Ordering::Release),
            // Release: as above, for the count.
            Hold::Overflow(count) => {
                count.fetch_sub(1, Ordering::Release);
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Pinned<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: fmt::Debug> fmt::Debug for SwapCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwapCell")
            .field("current", &*self.get())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for SwapCell<T> {
    fn drop(&mut self) {
        let retired = std::mem::take(
            self.retired
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for value in retired.into_iter().chain([*self.current.get_mut()]) {
            // SAFETY: every pointer came from `Box::into_raw`, is in exactly one of `current`
            // and `retired`, and `&mut self` proves no guard (which borrows the cell) remains.
            drop(unsafe { Box::from_raw(value) });
        }
    }
}

// SAFETY: `SwapCell<T>` owns its values (through raw pointers from `Box::into_raw`), hands out
// `&T` across threads and drops values on whichever thread replaces or drops the cell, so it
// is Send/Sync exactly when `T` is both.
unsafe impl<T: Send + Sync> Send for SwapCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for SwapCell<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// A value that counts how many of its kind are alive, and checks its own contents.
    struct Tracked {
        alive: Arc<AtomicUsize>,
        words: [u64; 4],
    }

    impl Tracked {
        fn new(alive: &Arc<AtomicUsize>, n: u64) -> Tracked {
            alive.fetch_add(1, Ordering::SeqCst);
            Tracked {
                alive: alive.clone(),
                words: [n; 4],
            }
        }

        fn check(&self) -> u64 {
            assert!(self.words.iter().all(|w| *w == self.words[0]), "torn value");
            self.words[0]
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.words = [u64::MAX, 0, u64::MAX, 0];
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn a_held_value_outlives_replacements_and_is_freed_after(readers: Readers) {
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = SwapCell::with_readers(Tracked::new(&alive, 0), readers);
        let first = cell.get();
        cell.replace(Tracked::new(&alive, 1));
        cell.replace(Tracked::new(&alive, 2));
        // The first is held; the second was never read and is freed at once.
        assert_eq!(first.check(), 0);
        assert_eq!(cell.get().check(), 2);
        assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (2, 1));
        drop(first);
        cell.reclaim();
        assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (1, 0));
        drop(cell);
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    fn any_number_of_replacements_keeps_memory_bounded(readers: Readers) {
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = SwapCell::with_readers(Tracked::new(&alive, 0), readers);
        let rounds = if cfg!(miri) { 50 } else { 10_000 };
        for n in 1..=rounds {
            let reader = cell.get();
            cell.replace(Tracked::new(&alive, n));
            assert_eq!(reader.check(), n - 1);
            drop(reader);
            assert!(alive.load(Ordering::SeqCst) <= 3, "{n}: values pile up");
        }
        cell.reclaim();
        assert_eq!(alive.load(Ordering::SeqCst), 1);
    }

    fn more_readers_than_slots_fall_back_to_the_count(readers: Readers) {
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = SwapCell::with_readers(Tracked::new(&alive, 0), readers);
        // A fast reader's thread has its entries too.
        let own = if readers == Readers::Fast { ENTRIES } else { 0 };
        let guards: Vec<_> = (0..own + SLOTS + 3).map(|_| cell.get()).collect();
        assert_eq!(cell.overflow.load(Ordering::SeqCst), 3);
        cell.replace(Tracked::new(&alive, 1));
        // Nested guards, one mapped to a part: all still see the first value.
        let part = Pinned::map(cell.get(), |t| &t.words[1]);
        assert_eq!(*part, 1);
        assert!(guards.iter().all(|g| g.check() == 0));
        assert_eq!(alive.load(Ordering::SeqCst), 2);
        drop(guards);
        // The part is still counted: nothing is freed until it goes.
        assert_eq!(cell.overflow.load(Ordering::SeqCst), 1);
        cell.reclaim();
        assert_eq!(alive.load(Ordering::SeqCst), 2);
        drop(part);
        cell.reclaim();
        assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (1, 0));
    }

    /// Readers on several threads while a writer replaces: every value read is whole and
    /// alive (Miri checks that none is read after it was freed, and for data races).
    fn readers_never_see_a_freed_value(readers: Readers) {
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(SwapCell::with_readers(Tracked::new(&alive, 0), readers));
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = if cfg!(miri) { 30 } else { 20_000 };
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, stop) = (cell.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let value = cell.get();
                        let n = value.check();
                        assert!(n >= last, "went back from {last} to {n}");
                        last = n;
                        std::thread::yield_now();
                        assert_eq!(value.check(), n);
                    }
                })
            })
            .collect();
        for n in 1..=rounds {
            cell.replace(Tracked::new(&alive, n));
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        cell.reclaim();
        assert_eq!(alive.load(Ordering::SeqCst), 1);
    }

    /// Each test, for each way of reading (the fast one only where this machine has it).
    fn each(test: fn(Readers)) {
        test(Readers::Claiming);
        if Readers::available() == Readers::Fast {
            test(Readers::Fast);
        }
    }

    #[test]
    fn held_values_outlive_replacements() {
        each(a_held_value_outlives_replacements_and_is_freed_after);
    }

    #[test]
    fn memory_stays_bounded() {
        each(any_number_of_replacements_keeps_memory_bounded);
    }

    #[test]
    fn overflowing_readers_are_counted() {
        each(more_readers_than_slots_fall_back_to_the_count);
    }

    #[test]
    fn concurrent_readers_see_live_values() {
        each(readers_never_see_a_freed_value);
    }

    /// Where the kernel says it offers the private expedited barrier (`MEMBARRIER_CMD_QUERY`),
    /// cells get fast readers.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no membarrier")]
    fn readers_are_fast_where_the_kernel_offers_membarrier() {
        // SAFETY: as in `membarrier`: two integers, no memory of ours.
        let offered = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_membarrier,
                0 as nix::libc::c_long,
                0 as nix::libc::c_long,
            )
        };
        let private_expedited = offered > 0 && offered & MEMBARRIER_CMD_PRIVATE_EXPEDITED != 0;
        assert_eq!(
            Readers::available() == Readers::Fast,
            private_expedited,
            "membarrier offers {offered:#x}"
        );
    }

    /// Fast readers hold values through their thread's entries: held ones survive, and a
    /// thread's entries are free again once its guards go; nested guards take further
    /// entries, then fall back to slots.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no membarrier")]
    fn fast_readers_use_their_entries_then_slots() {
        if Readers::available() != Readers::Fast {
            return;
        }
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = SwapCell::with_readers(Tracked::new(&alive, 0), Readers::Fast);
        let guards: Vec<_> = (0..ENTRIES + 2).map(|_| cell.get()).collect();
        let in_entries = guards
            .iter()
            .filter(|g| matches!(g.hold, Hold::Slot(s) if !cell.slots.iter().any(|own| ptr::eq(&own.0, s))))
            .count();
        assert_eq!(
            in_entries, ENTRIES,
            "a thread's entries first, then the cell's slots"
        );
        cell.replace(Tracked::new(&alive, 1));
        assert!(guards.iter().all(|g| g.check() == 0));
        assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (2, 1));
        drop(guards);
        cell.reclaim();
        assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (1, 0));
        // A thread that ends gives its record back; a later thread reads through it.
        let cell = Arc::new(cell);
        for _ in 0..3 {
            let cell = cell.clone();
            std::thread::spawn(move || assert_eq!(cell.get().check(), 1))
                .join()
                .unwrap();
        }
    }

    /// A child forked from a process whose cells have fast readers frees what it replaces:
    /// its first barrier registers the child (whether or not the kernel kept the parent's
    /// registration), so replaced values do not pile up there.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no fork")]
    fn a_forked_child_still_frees_what_it_replaces() {
        if Readers::available() != Readers::Fast {
            return;
        }
        let alive = Arc::new(AtomicUsize::new(0));
        let cell = SwapCell::with_readers(Tracked::new(&alive, 0), Readers::Fast);
        assert_eq!(cell.get().check(), 0);
        // SAFETY: the child only replaces values of this cell (no other thread can hold its
        // locks), checks them and leaves with `_exit`, running no destructor or handler of
        // the parent's other threads.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                cell.replace(Tracked::new(&alive, 1));
                cell.replace(Tracked::new(&alive, 2));
                let freed = cell.kept() == 0 && alive.load(Ordering::SeqCst) == 1;
                let read = cell.get().check() == 2;
                // SAFETY: `_exit` ends the child at once; nothing else runs.
                unsafe { nix::libc::_exit(if freed && read { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "the child kept what it replaced, or read the wrong value"
                );
            }
        }
    }
}
