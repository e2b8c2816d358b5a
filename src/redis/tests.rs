//! The script against a real `redis-server` (started per test on a free loopback port): the
//! sequential reference model with injected time, the layout (one member per admission,
//! trimmed, expiring, one hash tag), the rates check and garbage in the keys.
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

fn raw(server: &LocalServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}
