//! The script against a real `redis-server` (started per test on a free loopback port): the
//! sequential reference model with injected time, the layout (one list entry per
//! admission, trimmed, expiring, one hash tag), the rates check and garbage in the keys.
//!
//! Without `redis-server` these tests say so and pass, except under `CI=true`, where they
//! fail: CI must run them (`server::for_test`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::server::{self, LocalServer};
use super::*;
use crate::Limiter;

mod client;
mod layout;
mod model;
mod rates;
mod undo;

/// A server for one test, or `None` (skipped) where there is no `redis-server` outside CI.
pub(crate) fn local_server() -> Option<(tempfile::TempDir, LocalServer)> {
    let dir = tempfile::tempdir().unwrap();
    let server = server::for_test(dir.path(), false)?;
    Some((dir, server))
}

/// A name no other case of this process used.
fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn redis_of(limiter: &Limiter) -> &RedisLimiter {
    limiter.as_redis().expect("a Redis limiter")
}

/// A new limiter of 10/s on `server`, one unit admitted.
fn ten_a_second(server: &LocalServer) -> Limiter {
    let rates = [Rate::new(10, Duration::from_secs(1))];
    let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates).unwrap();
    limiter.try_acquire(1).unwrap();
    limiter
}

/// A one-thread runtime with every driver, for the async calls.
#[cfg(feature = "tokio")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn raw(server: &LocalServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// One entry of the log (layout 5): 20 bytes, `>I8I8I4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    seq: u64,
    ts: u64,
    cum: u32,
}

impl Entry {
    fn pack(self) -> Vec<u8> {
        [
            &self.seq.to_be_bytes()[..],
            &self.ts.to_be_bytes(),
            &self.cum.to_be_bytes(),
        ]
        .concat()
    }
}

/// The log as the server holds it, oldest first (the list is newest first).
fn log_entries(server: &LocalServer, log: &str) -> Vec<Entry> {
    let values: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(log)
        .arg(0)
        .arg(-1)
        .query(&mut raw(server))
        .unwrap();
    values
        .iter()
        .rev()
        .map(|v| {
            assert_eq!(v.len(), 20, "an entry of {} bytes", v.len());
            Entry {
                seq: u64::from_be_bytes(v[..8].try_into().unwrap()),
                ts: u64::from_be_bytes(v[8..16].try_into().unwrap()),
                cum: u32::from_be_bytes(v[16..].try_into().unwrap()),
            }
        })
        .collect()
}

/// Zeroes the server's command statistics, for [`calls_of`].
fn reset_stats(con: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
}

/// How many times the server ran `command` (scripts' commands included) since the last
/// [`reset_stats`]: what a call of the script reads.
fn calls_of(con: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}
