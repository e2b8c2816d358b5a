//! Records and the ring's words: packing a record, the words a ring must have, a new ring's
//! history, the lap counter, what the next slot says.

use super::*;

#[test]
fn record_packing_round_trips() {
    for record in [
        Record::SENTINEL,
        Record {
            ts: u64::MAX,
            seq: u32::MAX,
            cum: u32::MAX,
        },
        Record {
            ts: 123_456_789,
            seq: 7,
            cum: 0xdead_beef,
        },
    ] {
        assert_eq!(Record::unpack(record.pack()), record);
    }
    assert_eq!(Record::SENTINEL.pack(), 0, "a zeroed file is the sentinel");
}

#[test]
fn words_reject_bad_rings() {
    let (hint, laps) = (AtomicU64::new(0), AtomicU64::new(0));
    let ring: Vec<AtomicPair> = (0..3).map(|_| AtomicPair::new(0)).collect();
    assert!(Words::new(&hint, &laps, &ring).is_none());
    assert!(Words::new(&hint, &laps, &ring[..1]).is_none());
    assert!(Words::new(&hint, &laps, &ring[..2]).is_some());
}

#[test]
fn a_new_ring_is_an_empty_history() {
    let heap = Heap::with_capacity(8);
    assert_eq!(heap.head(), Record::SENTINEL);
    assert_eq!(Record::initial(0, 8), Record::SENTINEL);
    assert_eq!(Record::initial(3, 8).seq, 3u32.wrapping_sub(8));
}

#[test]
fn the_lap_counter_extends_the_sequence() {
    let rules = [requests(1, 1)];
    let heap = Heap::new(&rules);
    // Pretend 2^32 - 2 records were committed: slot of record u32::MAX - 1 holds it.
    let last = u32::MAX - 1;
    let cap = heap.ring.len() as u32;
    for i in 0..cap {
        let seq = last.wrapping_sub(i);
        heap.ring[(seq % cap) as usize]
            .compare_exchange(
                heap.ring[(seq % cap) as usize].load(),
                Record { ts: 0, seq, cum: 0 }.pack(),
            )
            .unwrap();
    }
    heap.hint.store(u64::from(last), Ordering::Relaxed);
    assert!(matches!(
        heap.acquire(&rules, 10, 1),
        Outcome::Admitted(Record { seq: u32::MAX, .. })
    ));
    assert!(matches!(
        heap.acquire(&rules, 20, 1),
        Outcome::Admitted(Record { seq: 0, .. })
    ));
    assert!(matches!(
        heap.acquire(&rules, 30, 1),
        Outcome::Admitted(Record { seq: 1, .. })
    ));
    assert_eq!(heap.words().admitted(heap.head()), (1u64 << 32) + 1);
}

#[test]
fn what_the_next_slot_says() {
    let mask = 7;
    assert_eq!(Seen::of(5, 6, mask), Seen::Next);
    assert_eq!(Seen::of(5, 6u32.wrapping_sub(8), mask), Seen::PreviousLap);
    assert_eq!(Seen::of(5, 14, mask), Seen::OtherLap, "a later lap");
    assert_eq!(
        Seen::of(5, 6 + 3 * 8, mask),
        Seen::OtherLap,
        "three laps later"
    );
    assert_eq!(
        Seen::of(5, 6u32.wrapping_sub(16), mask),
        Seen::OtherLap,
        "two laps older"
    );
    for other_slot in [5, 7, 13, 6 + 8 + 1, 6u32.wrapping_sub(1)] {
        assert_eq!(
            Seen::of(5, other_slot, mask),
            Seen::OtherSlot,
            "{other_slot}"
        );
    }
    // Across the wrap of the sequence number.
    assert_eq!(Seen::of(u32::MAX, 0, mask), Seen::Next);
    assert_eq!(
        Seen::of(u32::MAX, 0u32.wrapping_sub(8), mask),
        Seen::PreviousLap
    );
    assert_eq!(Seen::of(u32::MAX - 8, 0, mask), Seen::OtherLap);
    // Capacity 2: every other record is in the same slot.
    assert_eq!(Seen::of(4, 5, 1), Seen::Next);
    assert_eq!(Seen::of(4, 3, 1), Seen::PreviousLap);
    assert_eq!(Seen::of(4, 7, 1), Seen::OtherLap);
    assert_eq!(Seen::of(4, 4, 1), Seen::OtherSlot);
}
