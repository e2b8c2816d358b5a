//! Threads on one heap limiter: the committed log never exceeds a window.

use super::*;

/// Threads hammer one heap limiter; the committed log, rebuilt from the admissions each
/// thread saw, never exceeds a window, and every admission appears exactly once.
#[test]
#[cfg_attr(miri, ignore)] // long; the loom models cover interleavings
fn concurrent_threads_never_over_admit() {
    let rules = [rule(500, 10_000), requests(2000, 100_000)];
    let heap = std::sync::Arc::new(Heap::new(&rules));
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(SEC));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let heap = heap.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                for i in 0..20_000u64 {
                    let now = clock.fetch_add(1 + (i + t) % 3, Ordering::Relaxed);
                    if let Outcome::Admitted(r) = heap.acquire(&rules, now, 1 + (i % 3)) {
                        admitted.push(r);
                    }
                }
                admitted
            })
        })
        .collect();
    let mut all: Vec<Record> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_by_key(|r| r.seq);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            r.seq,
            i as u32 + 1,
            "every sequence number committed exactly once"
        );
    }
    // Rebuild weights from cumulative sums and check every window.
    let mut log = Vec::new();
    let mut prev = 0u32;
    for r in &all {
        log.push((r.ts, u64::from(r.cum.wrapping_sub(prev))));
        prev = r.cum;
    }
    assert!(
        log.windows(2).all(|w| w[0].0 <= w[1].0),
        "timestamps never decrease"
    );
    for rule in &rules {
        let mut start = 0;
        let mut sum = 0u64;
        for end in 0..log.len() {
            sum += if rule.requests { 1 } else { log[end].1 };
            while log[start].0 + rule.window <= log[end].0 {
                sum -= if rule.requests { 1 } else { log[start].1 };
                start += 1;
            }
            assert!(sum <= rule.limit, "{rule:?} exceeded at record {end}");
        }
    }
    assert!(all.len() > 2000, "only {} admitted", all.len());
}
