//! Garbage in the ring, the hint and the lap counter: every call returns (a denial, an
//! admission, a value or an error), never a panic or a hang; by example and by property test.

use proptest::prelude::*;

use super::*;

/// Fills the ring (and the hint and lap words) of a limiter's file with `ring`, `hint` and
/// `laps`, through the file (the page cache is the mapping's: the limiter sees it at once).
fn scribble(path: &Path, ring: &[u8], hint: u64, laps: u64) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(ring, RING_OFFSET).unwrap();
    file.write_all_at(&hint.to_le_bytes(), HINT_OFFSET).unwrap();
    file.write_all_at(&laps.to_le_bytes(), LAPS_OFFSET).unwrap();
}

/// Every call on a limiter whose ring holds garbage returns (a denial, an admission, a value
/// or an error); what a denial says must be coherent.
fn exercise(limiter: &Limiter) {
    for weight in [1, 0, 5, 6] {
        match limiter.try_acquire_stamped(weight) {
            Ok(_) => {}
            Err(denied) => {
                if matches!(denied.kind(), DenialKind::Unavailable { .. }) {
                    assert!(denied.is_final() && denied.retry_after().is_none());
                }
                if weight == 6 {
                    assert!(matches!(denied.kind(), DenialKind::NeverFits { weight: 6 }));
                }
            }
        }
    }
    let _ = limiter.usage();
    let _ = limiter.admitted();
    let _ = limiter.acquire(1, Duration::from_millis(20));
}

#[test]
fn garbage_in_the_ring_gives_denials_or_admissions_never_a_panic_or_hang() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let limiter = Arc::new(Limiter::open(&path, &rates()).unwrap());
    limiter.try_acquire(2).unwrap();
    let capacity = limiter.info().capacity as usize;
    let ring_len = capacity * 16;
    let slot = |ts: u64, cum: u32, seq: u32| -> [u8; 16] {
        (u128::from(ts) | u128::from(cum) << 64 | u128::from(seq) << 96).to_le_bytes()
    };
    let mut patterns: Vec<(&str, Vec<u8>, u64)> = vec![
        ("zeros", vec![0; ring_len], 0),
        ("ones", vec![0xff; ring_len], u64::MAX),
        (
            "every slot claims record 5",
            slot(1, 1, 5).repeat(capacity),
            5,
        ),
    ];
    for seed in 1..=8 {
        patterns.push(("random", random_bytes(ring_len, seed), seed * 0x9e37_79b9));
    }
    // Sequence numbers in order but timestamps and weights that make no sense.
    let ordered = |ts: &dyn Fn(u32) -> u64, cum: &dyn Fn(u32) -> u32| -> Vec<u8> {
        (0..capacity as u32)
            .flat_map(|i| slot(ts(i), cum(i), i))
            .collect()
    };
    patterns.push((
        "timestamps far ahead",
        ordered(&|i| u64::MAX - 64 + u64::from(i), &|i| i),
        3,
    ));
    patterns.push((
        "timestamps decreasing",
        ordered(&|i| 1_000_000 - u64::from(i), &|i| i),
        3,
    ));
    patterns.push((
        "weights decreasing",
        ordered(&|i| u64::from(i), &|i| u32::MAX - i),
        3,
    ));
    let last = capacity as u32 - 1;
    patterns.push((
        "a closed log",
        ordered(&|i| if i == last { u64::MAX } else { u64::from(i) }, &|_| 0),
        3,
    ));
    patterns.push((
        "a tombstone inside the log",
        ordered(&|i| if i == 3 { u64::MAX } else { u64::from(i) }, &|_| 0),
        3,
    ));
    patterns.push(("a full lap ahead", ordered(&|i| u64::from(i), &|i| i), 0));
    patterns.push((
        "next lap everywhere",
        (0..capacity as u32)
            .flat_map(|i| slot(u64::from(i), i, i + capacity as u32))
            .collect(),
        0,
    ));
    for (what, ring, hint) in patterns {
        scribble(&path, &ring, hint, hint ^ 0x5555);
        let shared = limiter.clone();
        bounded(what, Duration::from_secs(30), move || exercise(&shared));
        // Another handle, opened on the damaged file, behaves the same: the header is intact.
        bounded(what, Duration::from_secs(30), {
            let path = path.clone();
            move || exercise(&Limiter::open(&path, &rates()).unwrap())
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any contents of the ring, the hint and the lap counter: every call returns.
    #[test]
    fn any_ring_contents_are_survived(
        slots in proptest::collection::vec((any::<u64>(), any::<u32>(), 0u32..80), 32),
        hint in 0u64..80,
        laps in any::<u64>(),
    ) {
        let dir = support::temp_dir();
        let path = dir.path().join("lim");
        let limiter = Limiter::open(&path, &rates()).unwrap();
        prop_assert_eq!(limiter.info().capacity, 32);
        // Small sequence numbers and timestamps near the real clock's, so that some rings are
        // almost consistent.
        let now = support::now();
        let ring: Vec<u8> = slots
            .iter()
            .flat_map(|&(ts, cum, seq)| {
                let ts = if ts % 2 == 0 { now.wrapping_add(ts % 4_000_000_000).wrapping_sub(2_000_000_000) } else { ts };
                (u128::from(ts) | u128::from(cum % 64) << 64 | u128::from(seq) << 96).to_le_bytes()
            })
            .collect();
        scribble(&path, &ring, hint, laps);
        let limiter = Arc::new(limiter);
        bounded("random ring", Duration::from_secs(30), move || exercise(&limiter));
    }
}
