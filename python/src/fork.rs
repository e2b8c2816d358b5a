//! Fork safety: nothing process-local that a parent made is used by a forked child.
//!
//! A `Limiter` the parent opened holds process-local state besides the shared mapping: with a
//! journal, a SQLite connection and a background thread (which does not exist in the child);
//! always, a few process-local locks. So:
//!
//! * Every `fork()` (from Python or C) bumps [`generation`] in the child, through a
//!   `pthread_atfork` handler that only does an atomic add. A limiter whose opened core
//!   limiter belongs to an older generation opens the file again at its next call.
//! * The core limiter a child inherited is never dropped there ([`Owned`]): dropping it would
//!   join a thread that does not exist and close the parent's SQLite connection. It is left
//!   as it is (the child's copy of a mapping and a few allocations).
//! * Before `os.fork()`, Python runs [`before_fork`] (registered with `os.register_at_fork`):
//!   the journal of every limiter that has one is flushed and its thread stopped, so that no
//!   journal thread runs (and no SQLite lock is held by one) at the moment of the fork. Such
//!   a limiter opens again at its next call, in the parent as in the child.
//! * The list of journaled limiters is the one lock shared with fork: the `pthread_atfork`
//!   handlers take it before the fork and release it after, so a child never inherits it
//!   held.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};

/// Forks this process has been through, as seen from the current process (a child's count
/// is its parent's plus one).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Weak references to the limiters that have a journal.
type Journaled = Vec<Weak<dyn Pausable>>;

/// The limiters that have a journal (and so a thread and a SQLite connection).
static JOURNALED: Mutex<Journaled> = Mutex::new(Vec::new());

thread_local! {
    /// The lock on `JOURNALED` held across a fork by the forking thread.
    static HELD: RefCell<Option<MutexGuard<'static, Journaled>>> =
        const { RefCell::new(None) };
}

/// The current fork generation.
#[inline]
pub fn generation() -> u64 {
    // Relaxed: the handler runs in the child's only thread before any other code.
    GENERATION.load(Ordering::Relaxed)
}

/// A limiter whose journal can be stopped before a fork.
pub trait Pausable: Send + Sync {
    /// Drops the opened core limiter (flushing and stopping its journal); the limiter opens
    /// again at its next call.
    fn pause(&self);
}

fn registry() -> MutexGuard<'static, Journaled> {
    JOURNALED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers a journaled limiter, for [`before_fork`].
pub fn register(limiter: Weak<dyn Pausable>) {
    let mut list = registry();
    list.retain(|l| l.strong_count() > 0);
    list.push(limiter);
}

/// Stops every journal before `os.fork()`.
pub fn before_fork() {
    let alive: Vec<Arc<dyn Pausable>> = registry().iter().filter_map(Weak::upgrade).collect();
    for limiter in alive {
        limiter.pause();
    }
}

extern "C" fn prepare() {
    let guard = registry();
    HELD.with(|held| *held.borrow_mut() = Some(guard));
}

extern "C" fn parent() {
    HELD.with(|held| drop(held.borrow_mut().take()));
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    HELD.with(|held| drop(held.borrow_mut().take()));
}

/// Installs the `pthread_atfork` handlers, once per process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` items of this library, which
        // Python never unloads; they touch only a static atomic and a thread-local guard of a
        // static mutex, taken and released on the forking thread.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        debug_assert_eq!(rc, 0);
    });
}

/// A value made in this process, dropped only here: in a forked child it is forgotten.
pub struct Owned<T> {
    value: Option<T>,
    pid: u32,
}

impl<T> Owned<T> {
    pub fn new(value: T) -> Self {
        Owned {
            value: Some(value),
            pid: std::process::id(),
        }
    }

    #[inline]
    pub fn get(&self) -> &T {
        self.value.as_ref().expect("taken only by drop")
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take()
            && std::process::id() != self.pid
        {
            std::mem::forget(value);
        }
    }
}
