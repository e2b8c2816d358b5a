//! # hostlimit: host-wide rate limits shared by every process, lock-free
//!
//! Every process on one machine that opens the same limiter file shares its limits, with no
//! server: "10 per second AND 600 per minute", or "60 requests AND 90,000 tokens per minute".
//! An acquire checks every rate and commits to all of them or to none, in one atomic step
//! (a 128-bit compare-exchange in the shared mapping). A process killed or stopped at any
//! instruction never blocks the others and never leaks or invents capacity (with a
//! [`journal`] too; what a crash costs or forgets across a restart is said there).
//!
//! ```
//! use std::time::Duration;
//! use hostlimit::{Limiter, Rate};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("openai");
//! // "/dev/shm/hostlimit/openai" in real use; any path on a tmpfs works.
//! let limiter = Limiter::open(&path, &[
//!     Rate::requests(60, Duration::from_secs(60)),   // 60 calls per minute
//!     Rate::new(90_000, Duration::from_secs(60)),    // and 90,000 tokens per minute
//! ])?;
//! match limiter.try_acquire(1200) {                  // 1 call and 1200 tokens, or neither
//!     Ok(()) => { /* call the API */ }
//!     Err(denied) => println!("{denied}; retry after {:?}", denied.retry_after()),
//! }
//! # Ok::<(), hostlimit::Error>(())
//! ```
//!
//! ## The contract
//!
//! * **Exact sliding windows.** Each admission is recorded with a timestamp; for every rate
//!   and every instant `t`, the weight recorded in `(t - window, t]` never exceeds the limit.
//!   No buckets, no background cleaner, no pre-check apart from the commit. (A ring restored
//!   from a [`journal`] can hold more than a limit in windows before the restore, never less
//!   than the journal.)
//! * **All or nothing.** An acquire commits to every rate or to none; a denial changes nothing.
//! * **No false denial.** A request is denied only if, at the moment it took effect, some
//!   rate could not take it, or the limiter is unavailable
//!   ([`DenialKind::Unavailable`]: a garbage file, or in strict [`journal`] mode a lease that
//!   cannot be written).
//! * **Recorded timestamps.** A process can be preempted between reading the clock and
//!   committing. An admission is recorded with `max(its clock reading, the previous
//!   admission's timestamp)`: timestamps never decrease along the log, and each lies between
//!   the caller's clock read and the real moment of its commit. So in real time, admissions
//!   that *commit* within any interval of length `window` number at most `limit` plus those
//!   whose read-to-commit delay straddles the interval's start.
//! * **One clock for the host.** `CLOCK_BOOTTIME` (counts suspend, never steps back). The file
//!   records clock, boot id and time namespace; a process that cannot share them is refused.
//! * **Weight costs nothing extra.** Weight 100,000 costs what weight 1 does.
//!
//! The file format and the commit protocol are described in [`implementation`];
//! `ARCHITECTURE.md` has the code map and the invariants.

#![cfg_attr(miri, feature(integer_atomics))]
#![cfg_attr(
    loom,
    allow(
        dead_code,
        unused_imports,
        reason = "loom builds only the protocol and what it uses"
    )
)]

mod clock;
mod denied;
mod error;
#[cfg(not(loom))]
mod history;
pub mod implementation;
#[cfg(all(feature = "journal", not(loom)))]
pub mod journal;
mod layout;
#[cfg(not(loom))]
mod limiter;
#[cfg_attr(loom, doc(hidden))]
mod protocol;
mod rate;
#[cfg(all(feature = "redis", not(loom)))]
pub mod redis;
#[cfg(not(loom))]
mod region;
mod sync;

pub use clock::{Clock, ClockIdentity, HostClock, ManualClock, Nanos};
pub use denied::{DenialKind, Denied};
pub use error::Error;
#[cfg(all(feature = "journal", not(loom)))]
pub use journal::{DEFAULT_BUSY_TIMEOUT, Durability, SCHEMA_VERSION, SystemWallClock, WallClock};
/// The waiters' jitter, for the Python binding only.
#[cfg(not(loom))]
#[doc(hidden)]
pub use limiter::Jitter;
#[cfg(not(loom))]
pub use limiter::{
    Builder, Counters, DEFAULT_DIR, DIR_ENV, FileInfo, Limiter, OldFile, Pacing, RateUsage,
    Reconfigured, Stamp, default_dir, path_for, reconfigure, remove, remove_keeping_journal, reset,
};
pub use rate::{Counts, MAX_LIMIT, MAX_WINDOW, Rate, WeightUnit};

/// The commit protocol and its atomics, for the loom models in `loom-tests/` only.
#[cfg(loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::protocol::*;
    pub use crate::sync::AtomicPair;
}
