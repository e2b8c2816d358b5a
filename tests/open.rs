//! Opening a limiter: rate validation, mismatched configurations, damaged and foreign files,
//! file hygiene (permissions, symlinks, directories) and the clock a file is bound to; plus
//! the single-process contract on a manual clock, where time is exact.
//!
//! Here the shared constants and helpers; the tests by concern: `config` (rate validation,
//! mismatched configurations), `damaged` (damaged, foreign and truncated files), `garbage`
//! (garbage in the ring, with the property test), `hygiene` (permissions, modes, symlinks,
//! directories), `clocks` (the clock a file is bound to, exact numbers on a manual clock) and
//! `repeats` (repeated denials and their counters).

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hostlimit::{DenialKind, Error, Limiter, MAX_LIMIT, MAX_WINDOW, ManualClock, Rate, Stamp};

use crate::support;

mod clocks;
mod config;
mod damaged;
mod garbage;
mod hygiene;
mod repeats;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

/// Offset of the ring (`src/layout.rs`), of the hint word and of the lap counter.
const RING_OFFSET: u64 = 12_288;
const HINT_OFFSET: u64 = 1024;
const LAPS_OFFSET: u64 = 1152;

fn rates() -> Vec<Rate> {
    vec![Rate::new(5, SEC), Rate::new(20, MIN)]
}

/// Runs `f` on another thread and fails if it takes longer than `limit` (a hang).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    match receive.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
