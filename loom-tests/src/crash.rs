//! A crash: a hook that counts a thread's shared-memory steps and kills it before one.

use super::*;

/// Why a crashed thread stopped: it was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crashed;

/// A hook that counts the caller's shared-memory steps and stops it for good before step
/// `stop_at` (counted from 0 over all of the thread's acquires): a process killed there.
#[derive(Debug)]
pub struct CrashHook {
    taken: Cell<usize>,
    stop_at: Option<usize>,
    overtaken: Cell<usize>,
}

impl CrashHook {
    /// A hook that stops its thread before step `stop_at`, or never.
    pub fn new(stop_at: Option<usize>) -> Self {
        CrashHook {
            taken: Cell::new(0),
            stop_at,
            overtaken: Cell::new(0),
        }
    }

    /// Steps taken so far.
    pub fn taken(&self) -> usize {
        self.taken.get()
    }

    /// Walks for the newest record that a lap of commits overtook so far.
    pub fn overtaken(&self) -> usize {
        self.overtaken.get()
    }
}

impl Hook for CrashHook {
    type Stop = Crashed;

    fn step(&self) -> Result<(), Crashed> {
        if Some(self.taken.get()) == self.stop_at {
            return Err(Crashed);
        }
        self.taken.set(self.taken.get() + 1);
        Ok(())
    }

    fn overtaken(&self) {
        self.overtaken.set(self.overtaken.get() + 1);
    }
}
