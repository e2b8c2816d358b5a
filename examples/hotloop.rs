//! A tight loop of try_acquire calls, for profilers (perf, callgrind).
//!
//! `hotloop MODE N [WEIGHT]`, MODE one of:
//! * `admit`, `deny`: two rates (the original profile);
//! * `admit1`, `admit2`, `admit4`: the rates of the `admitted` bench (`benches/acquire.rs`);
//! * `deny1`, `deny2`, `deny4`: the rates of the `denied` bench, used up by one admission;
//! * `floor-cas`, `floor-load`: the benches' floors (a clock read through `HostClock`, the
//!   limiter's own call, and a compare-exchange or a load of one word), for their counts.
//!
//! Instructions per call: run it under `valgrind --tool=callgrind` at two values of N and
//! divide the difference of the totals by the difference of the Ns (the setup cancels out).
use std::sync::atomic::Ordering;
use std::time::Duration;

use hostlimit::{Clock, HostClock, Limiter, Rate};

const US: Duration = Duration::from_micros(1);
const HOUR: Duration = Duration::from_secs(3600);

fn rates(mode: &str) -> Vec<Rate> {
    let admit = [
        Rate::requests(1_000, 10 * US),
        Rate::new(1_000_000_000, 100 * US),
        Rate::requests(20_000, 100 * US),
        Rate::new(2_000_000_000, 200 * US),
    ];
    let deny = [
        Rate::requests(1, HOUR),
        Rate::new(100_000, HOUR),
        Rate::requests(10, 2 * HOUR),
        Rate::new(1_000_000, 2 * HOUR),
    ];
    match mode {
        "deny" => vec![
            Rate::new(1, Duration::from_secs(3600)),
            Rate::new(10, Duration::from_secs(7200)),
        ],
        "admit" => vec![
            Rate::requests(1_000, Duration::from_micros(10)),
            Rate::new(1_000_000, Duration::from_micros(100)),
        ],
        _ => {
            let n: usize = mode[mode.len() - 1..].parse().expect("admitN or denyN");
            if mode.starts_with("deny") {
                deny[..n].to_vec()
            } else {
                admit[..n].to_vec()
            }
        }
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "admit".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let weight: u64 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    if let Some(floor) = mode.strip_prefix("floor-") {
        // Instruction counts do not depend on where the word lives.
        let word = std::sync::atomic::AtomicU64::new(0);
        let mut sum = 0u64;
        for _ in 0..n {
            let now = HostClock.now();
            sum = sum.wrapping_add(if floor == "cas" {
                let current = word.load(Ordering::Relaxed);
                match word.compare_exchange(current, now, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(v) | Err(v) => v,
                }
            } else {
                now.max(word.load(Ordering::Acquire))
            });
            std::hint::black_box(sum);
        }
        println!("{floor}: {sum}");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let limiter = Limiter::open(dir.path().join("hot"), &rates(&mode)).unwrap();
    if mode.starts_with("deny") && mode != "deny" {
        limiter.try_acquire(1).unwrap();
    }
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(
            std::hint::black_box(limiter.try_acquire(std::hint::black_box(weight))).is_ok(),
        );
    }
    println!("{ok} of {n} admitted");
}
