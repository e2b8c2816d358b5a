//! The swap cell's tests, for both kinds of reader.

use super::fast::{ENTRIES, MEMBARRIER_CMD_PRIVATE_EXPEDITED};
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
        .filter(
            |g| matches!(g.hold, Hold::Slot(s) if !cell.slots.iter().any(|own| ptr::eq(&own.0, s))),
        )
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

/// A writer whose `membarrier` fails frees nothing, held or not: without the barrier a fast
/// reader's entry may not be visible to it yet, so "no entry holds it" proves nothing. Once
/// the barrier works again, the value is freed.
#[test]
fn a_writer_whose_barrier_fails_frees_nothing() {
    if Readers::available() != Readers::Fast {
        // Miri, or a kernel without membarrier: no fast readers, no barrier to fail.
        eprintln!("no fast readers here (`readers_are_fast_where_the_kernel_offers_membarrier`)");
        return;
    }
    let alive = Arc::new(AtomicUsize::new(0));
    let cell = SwapCell::with_readers(Tracked::new(&alive, 0), Readers::Fast);
    assert_eq!(cell.get().check(), 0);
    super::fast::BARRIER_FAILS.set(true);
    cell.replace(Tracked::new(&alive, 1));
    cell.reclaim();
    let failed = (alive.load(Ordering::SeqCst), cell.kept());
    super::fast::BARRIER_FAILS.set(false);
    assert_eq!(failed, (2, 1), "a value was freed without the barrier");
    cell.reclaim();
    assert_eq!((alive.load(Ordering::SeqCst), cell.kept()), (1, 0));
}
