//! A tight loop of try_acquire calls, for profilers (perf, callgrind).
//!
//! `hotloop admit N` or `hotloop deny N`.
use std::time::Duration;

use hostlimit::{Limiter, Rate};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "admit".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let rates = if mode == "deny" {
        [
            Rate::new(1, Duration::from_secs(3600)),
            Rate::new(10, Duration::from_secs(7200)),
        ]
    } else {
        [
            Rate::requests(1_000, Duration::from_micros(10)),
            Rate::new(1_000_000, Duration::from_micros(100)),
        ]
    };
    let limiter = Limiter::open(dir.path().join("hot"), &rates).unwrap();
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(limiter.try_acquire(1).is_ok());
    }
    println!("{ok} of {n} admitted");
}
