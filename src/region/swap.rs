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
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering, compiler_fence};
use std::sync::{Mutex, PoisonError};

/// Reader slots per cell: how many threads can read at once without sharing a count.
pub const SLOTS: usize = 32;

const _: () = assert!(SLOTS.is_power_of_two());

/// One reader slot: the pointer its reader protects, or null. Its own cache lines, so that
/// readers on different threads never bounce a line between them.
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicPtr<()>);

mod fast;

pub use fast::{Readers, thread_index};
use fast::{any_entry_holds, heavy_barrier, record};

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
    #[inline(always)]
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
    #[inline(always)]
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
mod tests;
