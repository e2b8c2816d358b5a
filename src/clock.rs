//! Time: the host-wide clock every process of a limiter shares, and a manual clock for tests.
//!
//! The host clock is `CLOCK_BOOTTIME`: unlike `CLOCK_MONOTONIC` it keeps counting while the
//! machine is suspended (a per-day window must not stretch over a suspend), and like it, it
//! never steps backwards. It is per boot and per time namespace, so a limiter file records the
//! clock id, the boot id and the time-namespace inode it was made with, and refuses a joiner
//! whose clock differs ([`crate::Error::ClockMismatch`]).

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

use crate::sync::StdAtomicU64;

/// Nanoseconds of a clock.
pub type Nanos = u64;

/// A source of time for a limiter.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in nanoseconds; never decreases.
    fn now(&self) -> Nanos;
    /// What a file made with this clock records, so that only processes sharing it join.
    fn identity(&self) -> io::Result<ClockIdentity>;
}

/// Which clock a file's timestamps come from, and which boot and time namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockIdentity {
    /// The clock id (`CLOCK_BOOTTIME` is 7); [`ManualClock::ID`] for a manual clock.
    pub clock_id: u64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: [u8; 16],
    /// Inode of `/proc/self/ns/time` (0 where the kernel has no time namespaces).
    pub time_namespace: u64,
}

impl ClockIdentity {
    /// Why `other` cannot share a file made with `self`, if it cannot.
    pub(crate) fn mismatch(&self, other: &ClockIdentity) -> Option<String> {
        if self.clock_id != other.clock_id {
            Some(format!(
                "the file uses clock {} and this process clock {}",
                self.clock_id, other.clock_id
            ))
        } else if self.boot_id != other.boot_id {
            Some("the file was made during another boot".to_string())
        } else if self.time_namespace != other.time_namespace {
            Some(format!(
                "the file was made in time namespace {} and this process is in {}",
                self.time_namespace, other.time_namespace
            ))
        } else {
            None
        }
    }

    /// The boot id as the kernel prints it.
    pub fn boot_id_text(&self) -> String {
        let hex: String = self.boot_id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// `CLOCK_BOOTTIME`: the host-wide clock of every real limiter.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock;

impl HostClock {
    /// The `CLOCK_BOOTTIME` id, as recorded in files.
    pub const ID: u64 = 7;
}

impl Clock for HostClock {
    #[inline]
    fn now(&self) -> Nanos {
        // CLOCK_BOOTTIME is served by the vDSO and cannot fail for a valid clock id; should it
        // ever fail, 0 makes the protocol record the previous timestamp (never an earlier one).
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .map(|ts| {
                (ts.tv_sec() as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(ts.tv_nsec() as u64)
            })
            .unwrap_or(0)
    }

    fn identity(&self) -> io::Result<ClockIdentity> {
        Ok(ClockIdentity {
            clock_id: Self::ID,
            boot_id: boot_id()?,
            time_namespace: time_namespace(),
        })
    }
}

fn boot_id() -> io::Result<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "unreadable /proc/sys/kernel/random/boot_id",
        )
    };
    if hex.len() != 32 {
        return Err(bad());
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(id)
}

fn time_namespace() -> u64 {
    std::fs::metadata("/proc/self/ns/time")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// A clock that moves only when told to: for tests and simulations.
///
/// A file made with a manual clock records [`ManualClock::ID`], so no process on the host
/// clock can join it by mistake.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: StdAtomicU64,
}

impl ManualClock {
    /// The clock id recorded for manual clocks.
    pub const ID: u64 = u64::MAX;

    /// A clock reading `start` nanoseconds.
    pub fn new(start: Nanos) -> Self {
        ManualClock {
            now: StdAtomicU64::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now
            .fetch_add(by.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn identity(&self) -> io::Result<ClockIdentity> {
        Ok(ClockIdentity {
            clock_id: Self::ID,
            boot_id: [0; 16],
            time_namespace: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // reads the real clock and /proc
    fn host_clock_moves_forward_and_has_an_identity() {
        let a = HostClock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = HostClock.now();
        assert!(b >= a + 2_000_000, "{a} {b}");
        let id = HostClock.identity().unwrap();
        assert_eq!(id.clock_id, 7);
        assert_ne!(id.boot_id, [0; 16]);
        assert_eq!(id.boot_id_text().len(), 36);
        assert_eq!(id.mismatch(&id), None);
        let mut other = id;
        other.time_namespace += 1;
        assert!(id.mismatch(&other).unwrap().contains("time namespace"));
    }

    #[test]
    fn a_joiner_must_share_clock_boot_and_time_namespace() {
        let file = ClockIdentity {
            clock_id: HostClock::ID,
            boot_id: [1; 16],
            time_namespace: 42,
        };
        assert_eq!(file.mismatch(&file), None);
        let other_boot = ClockIdentity {
            boot_id: [2; 16],
            ..file
        };
        assert!(file.mismatch(&other_boot).unwrap().contains("another boot"));
        let other_namespace = ClockIdentity {
            time_namespace: 43,
            ..file
        };
        assert!(
            file.mismatch(&other_namespace)
                .unwrap()
                .contains("time namespace")
        );
        let manual = ManualClock::new(0).identity().unwrap();
        assert!(file.mismatch(&manual).unwrap().contains("clock"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(5);
        assert_eq!(clock.now(), 5);
        clock.advance(Duration::from_nanos(10));
        assert_eq!(clock.now(), 15);
    }
}
