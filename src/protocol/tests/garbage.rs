//! Garbage in the words: never a panic, at most a lap of loads in the largest ring, and a walk
//! that travels half the sequence space is corrupt.

use super::*;
use crate::layout::MAX_SLOTS;

/// Random rings, hints and clocks: every entry point returns, without a panic, within a bound
/// of steps.
#[test]
fn garbage_in_the_words_never_panics() {
    let rules = [rule(10, SEC), requests(3, 60 * SEC)];
    let heap = Heap::new(&rules);
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..if cfg!(miri) { 10 } else { 2_000 } {
        heap.hint.store(next() % 64, Ordering::Relaxed);
        let mut seq = next() as u32;
        for slot in &heap.ring {
            // Mostly plausible records (so the search runs), sometimes pure noise.
            let record = if next() % 4 == 0 {
                Record::unpack(u128::from(next()) | (u128::from(next()) << 64))
            } else {
                seq = seq.wrapping_add(1);
                Record {
                    ts: next() % (1 << (round % 64)),
                    seq,
                    cum: next() as u32,
                }
            };
            slot.compare_exchange(slot.load(), record.pack()).unwrap();
        }
        // Every call returns within a bound: a lap for the walk, a few searches per rate.
        let bound = 2 * heap.ring.len() + 64;
        let now = next();
        let _ = heap.acquire_with(&rules, now, next() % 12, &counting(bound));
        let Ok(_) = usage(&heap.words(), &rules, now, &counting(bound));
        let _ = heap.since(next() as u32, &counting(bound));
        if round % 16 == 0 {
            let Ok(_) = retire(&heap.words(), &counting(bound));
        }
    }
}

/// Issue 9, defect 1: a ring whose slots form one consistent chain except that the last slot
/// claims a record a lap later, with hint 0, sent every walk back to the hint 1,000 times:
/// 9-15 s per call with 2^22 slots, whatever the call. On a ring nobody writes meanwhile, a
/// walk now reads each slot at most once (plus the hinted one again): every call on the
/// largest ring reports the garbage within `capacity + 2` shared-memory steps.
#[test]
fn garbage_costs_at_most_a_lap_in_the_largest_ring() {
    // Miri: the 2^22-slot ring would take hours there.
    let capacity = if cfg!(miri) { 1 << 6 } else { MAX_SLOTS as u32 };
    let heap = Heap::with_capacity(capacity as usize);
    let last = capacity - 1;
    let chain = |i: u32| Record {
        ts: u64::from(i) + 1,
        seq: i,
        cum: i,
    };
    // Sequence numbers that step forward by one record or by laps at every slot, all the way
    // round the sequence space: every step looks like commits overtaking the walk, and only
    // the distance travelled tells that it is going round in circles.
    let laps_total = u64::from(u32::MAX / capacity); // 2^32 / capacity - 1
    let jumps = |i: u32| {
        let per_slot = laps_total / u64::from(capacity);
        per_slot + u64::from(u64::from(i) < laps_total % u64::from(capacity))
    };
    let mut circle = vec![0u32; capacity as usize];
    for i in 1..capacity as usize {
        let delta = 1 + jumps(i as u32 - 1) * u64::from(capacity);
        circle[i] = circle[i - 1].wrapping_add(delta as u32);
    }
    type Pattern = Box<dyn Fn(u32) -> Record>;
    let patterns: Vec<(&str, u64, Pattern)> = vec![
        (
            "a chain whose last slot claims the next lap",
            0,
            Box::new(move |i| Record {
                seq: if i == last { i + capacity } else { i },
                ..chain(i)
            }),
        ),
        (
            "laps ahead all the way round",
            0,
            Box::new(move |i| Record {
                seq: circle[i as usize],
                ..chain(i)
            }),
        ),
        (
            "a slot two laps behind",
            0,
            Box::new(move |i| Record {
                seq: if i == 1 {
                    1u32.wrapping_sub(2 * capacity)
                } else {
                    i
                },
                ..chain(i)
            }),
        ),
    ];
    let rules = [rule(4_000_000, 60 * SEC)];
    let bound = capacity as usize + 2;
    for (what, hint, pattern) in patterns {
        fill(&heap, hint, pattern);
        let hook = counting(bound);
        let Ok(outcome) = acquire(&heap.words(), &rules, SEC, 1, &mut Hints::default(), &hook);
        assert!(
            matches!(outcome, Outcome::Corrupt(_)),
            "{what}: {outcome:?}"
        );
        let hook = counting(bound);
        let Ok(result) = usage(&heap.words(), &rules, SEC, &hook);
        assert!(result.is_err(), "{what}: {result:?}");
        let hook = counting(bound);
        let Ok(result) = retire(&heap.words(), &hook);
        assert!(result.is_err(), "{what}: {result:?}");
        let (visited, result) = heap.since(0, &counting(bound));
        assert!(result.is_err() && visited.is_empty(), "{what}: {result:?}");
    }
}

/// A walk that travels 2^31 records (as far as sequence numbers mod 2^32 can order) is
/// corrupt, even if what it finds next looks like the newest record: no consistent ring is
/// overtaken by that many commits within one call.
#[test]
fn a_walk_that_travels_half_the_sequence_space_is_corrupt() {
    let heap = Heap::with_capacity(4);
    // Slot 0 holds record 0; slots 1, 2, 3 records 1 + 2^30, 2 + 2^30, 3 + 2^30 (a jump of
    // 2^28 laps, then steps of one).
    let record = |seq: u32| Record { ts: 1, seq, cum: 0 };
    fill(&heap, 0, |i| record(if i == 0 { 0 } else { i + (1 << 30) }));
    // Before the walk reads slot 0 again, another writer puts record 2^31 there and record
    // 2^31 - 3 (its previous lap) in slot 1: the walk steps to 2^31, 2^31 records from where it
    // started, and slot 1 would say it is the newest.
    let rewrite = || {
        heap.set(0, record(1 << 31));
        heap.set(1, record((1 << 31) - 3));
    };
    // Steps: the hint, slot 0, then slots 1, 2, 3, and slot 0 again (step 5).
    let hook = Inject::new(Some(5), rewrite).limit(16);
    let Ok(result) = usage(&heap.words(), &[], SEC, &hook);
    assert_eq!(result, Err("the ring's sequence numbers are inconsistent"));
    assert_eq!(hook.taken(), 6);
    assert_eq!(hook.overtaken(), 1, "the jump to 1 + 2^30");
    // A lap less, and the same walk finds its newest record.
    fill(&heap, 0, |i| record(if i == 0 { 0 } else { i + (1 << 30) }));
    let rewrite = || {
        heap.set(0, record((1 << 31) - 4));
        heap.set(1, record((1 << 31) - 7));
    };
    let hook = Inject::new(Some(5), rewrite).limit(16);
    let Ok(result) = usage(&heap.words(), &[], SEC, &hook);
    assert_eq!(result.map(|usage| usage.head.seq), Ok((1 << 31) - 4));
}
