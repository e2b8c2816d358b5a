//! Walks: the search for the newest record from a stale hint or overtaken by a full lap,
//! commits injected before each shared-memory step, the hint following the head, `retire`
//! racing a commit, and `records_since`.

use super::*;

#[test]
fn a_stale_hint_only_costs_a_walk() {
    let rules = [requests(100, SEC)];
    let heap = Heap::new(&rules);
    for i in 0..50 {
        assert!(matches!(
            heap.acquire(&rules, SEC + i, 1),
            Outcome::Admitted(_)
        ));
    }
    for stale in [0, 7, 49, 50, 1000] {
        heap.hint.store(stale, Ordering::Relaxed);
        assert_eq!(heap.head().seq, 50, "hint {stale}");
    }
    // A hint from garbage that no lap explains is reported, not trusted.
    heap.hint.store(3, Ordering::Relaxed);
    let slot = &heap.ring[3];
    slot.compare_exchange(
        slot.load(),
        Record {
            ts: 0,
            seq: 4,
            cum: 0,
        }
        .pack(),
    )
    .unwrap();
    assert!(matches!(
        heap.acquire(&rules, 2 * SEC, 1),
        Outcome::Corrupt(_)
    ));
}

/// Issue 17: a walk overtaken by a full lap of commits (by callers killed before they raised
/// the hint) goes on from the later record it found: it is neither corrupt nor sent back.
/// The outcome is the model's with those commits first.
#[test]
fn a_walk_overtaken_by_a_full_lap_goes_on_from_the_later_record() {
    let rules = [requests(2, SEC)];
    // A lap of 4 and one more record, each admitted.
    let lap = [10 * SEC, 12 * SEC, 14 * SEC, 16 * SEC, 16 * SEC + SEC / 2];
    for (now, expected) in [(30 * SEC, None), (16 * SEC + SEC * 6 / 10, Some(17 * SEC))] {
        let heap = Heap::new(&rules);
        assert_eq!(heap.capacity(), 4);
        let mut model = Model::default();
        for at in [SEC, 3 * SEC] {
            assert_eq!(heap.acquire(&rules, at, 1), model.acquire(&rules, at, 1));
        }
        let hint = heap.hint.load(Ordering::Relaxed);
        let commit_a_lap = || {
            for &at in &lap {
                heap.admit(&rules, at, 1);
            }
            heap.hint.store(hint, Ordering::Relaxed);
        };
        // Steps: the hint (0), the hinted slot (1), the slot after it (2).
        let hook = Inject::new(Some(2), commit_a_lap).limit(64);
        let outcome = heap.acquire_with(&rules, now, 1, &hook);
        for &at in &lap {
            assert!(matches!(model.acquire(&rules, at, 1), Outcome::Admitted(_)));
        }
        assert_eq!(outcome, model.acquire(&rules, now, 1));
        assert_eq!(hook.overtaken(), 1);
        match expected {
            None => assert!(matches!(outcome, Outcome::Admitted(Record { seq: 8, .. }))),
            Some(retry_at) => assert_eq!(outcome, Outcome::Denied { rate: 0, retry_at }),
        }
    }
}

/// One scenario of [`a_commit_injected_before_any_step_is_ordered_around_it`].
struct Race {
    rules: Vec<Rule>,
    setup: Vec<(u64, u64)>,
    ours: (u64, u64),
    theirs: (u64, u64),
}

impl Race {
    fn heap(&self) -> Heap {
        let heap = Heap::new(&self.rules);
        for &(now, weight) in &self.setup {
            heap.admit(&self.rules, now, weight);
        }
        heap
    }

    /// The model's outcomes (ours, theirs) with `theirs` first or ours first.
    fn model(&self, theirs_first: bool) -> (Outcome, Outcome) {
        let mut model = Model::default();
        for &(now, weight) in &self.setup {
            let _ = model.acquire(&self.rules, now, weight);
        }
        let (ours, theirs) = (self.ours, self.theirs);
        if theirs_first {
            let theirs = model.acquire(&self.rules, theirs.0, theirs.1);
            (model.acquire(&self.rules, ours.0, ours.1), theirs)
        } else {
            let ours = model.acquire(&self.rules, ours.0, ours.1);
            (ours, model.acquire(&self.rules, theirs.0, theirs.1))
        }
    }
}

/// Issue 17: another caller's acquire injected before each shared-memory step of a call in
/// turn. Before the call's linearization point (its compare-exchange, or a denial's re-read
/// of the next slot) the call must decide on the state with the other commit, after it on
/// the state without: so a commit between a denial's check and its re-read gets the call
/// decided again, and so does one before a compare-exchange.
#[test]
fn a_commit_injected_before_any_step_is_ordered_around_it() {
    let races = [
        // Ours is denied by the record at 1 s (retry at 2 s); theirs, at 2.5 s, is admitted
        // and, if first, makes ours a denial until 3.5 s.
        Race {
            rules: vec![requests(1, SEC)],
            setup: vec![(SEC, 1)],
            ours: (SEC + SEC / 2, 1),
            theirs: (2 * SEC + SEC / 2, 1),
        },
        // Both at 10 s, room for one: whoever commits first is admitted.
        Race {
            rules: vec![requests(1, SEC), rule(5, 2 * SEC)],
            setup: vec![(SEC, 1)],
            ours: (10 * SEC, 2),
            theirs: (10 * SEC, 3),
        },
        // Weights: ours denied by the weight rate until the setup's 3 leave; theirs (weight
        // 1, later) fits, and if first moves the retry time.
        Race {
            rules: vec![rule(4, SEC), requests(3, 4 * SEC)],
            setup: vec![(SEC, 3), (SEC + 1, 1)],
            ours: (SEC + 2, 2),
            theirs: (2 * SEC + 1, 2),
        },
        // A ring that wraps (capacity 4): ours admitted either way, as record 5 or 6.
        Race {
            rules: vec![requests(2, SEC)],
            setup: vec![(SEC, 1), (3 * SEC, 1), (5 * SEC, 1), (7 * SEC, 1)],
            ours: (9 * SEC, 1),
            theirs: (9 * SEC, 1),
        },
    ];
    for (index, race) in races.iter().enumerate() {
        let (before, after) = (race.model(true), race.model(false));
        assert_ne!(before, after, "race {index} does not tell the orders apart");
        let dry = counting(1000);
        let heap = race.heap();
        let ours = heap.acquire_with(&race.rules, race.ours.0, race.ours.1, &dry);
        assert_eq!(ours, after.0, "race {index}, nothing injected");
        let steps = dry.taken();
        // The linearization point: a denial's last step (the re-read), or an admission's
        // compare-exchange, which the hint's load and store follow.
        let point = match ours {
            Outcome::Denied { .. } => steps - 1,
            Outcome::Admitted(_) => steps - 3,
            other => panic!("race {index}: {other:?}"),
        };
        for at in 0..=steps {
            let heap = race.heap();
            let theirs = Cell::new(None);
            let inject = || {
                let mut hints = Hints::default();
                let (now, weight) = race.theirs;
                let Ok(outcome) =
                    acquire(&heap.words(), &race.rules, now, weight, &mut hints, &NoHook);
                theirs.set(Some(outcome));
            };
            let hook = Inject::new(Some(at), inject).limit(1000);
            let ours = heap.acquire_with(&race.rules, race.ours.0, race.ours.1, &hook);
            let theirs = theirs
                .get()
                .unwrap_or_else(|| heap.acquire(&race.rules, race.theirs.0, race.theirs.1));
            let expected = if at <= point { before } else { after };
            assert_eq!(
                (ours, theirs),
                expected,
                "race {index}: theirs injected before step {at} of {steps} (linearization \
                 point: step {point})"
            );
        }
    }
}

/// The hint follows the head (and a commit never moves it back from a value ahead).
#[test]
fn the_hint_follows_the_head() {
    let rules = [requests(2, SEC)];
    let heap = Heap::new(&rules);
    for i in 1..=9u64 {
        heap.admit(&rules, i * SEC, 1);
        assert_eq!(heap.hint.load(Ordering::Relaxed), i);
    }
    // A hint from garbage, ahead of the head: walking from it still finds the head, and
    // the commit leaves it (only a hint behind the head is raised).
    heap.hint.store(13, Ordering::Relaxed);
    assert_eq!(heap.admit(&rules, 20 * SEC, 1).seq, 10);
    assert_eq!(heap.hint.load(Ordering::Relaxed), 13);
}

/// `retire` racing a commit: its compare-exchange fails, and it closes the log after the
/// new record.
#[test]
fn retire_closes_the_log_after_a_commit_that_raced_it() {
    let rules = [requests(5, SEC)];
    let heap = Heap::new(&rules);
    heap.admit(&rules, SEC, 1);
    // Steps: the hint, the hinted slot, the slot after it, then the compare-exchange (3).
    let hook = Inject::new(Some(3), || {
        heap.admit(&rules, 2 * SEC, 1);
    })
    .limit(32);
    let Ok(retired) = retire(&heap.words(), &hook);
    assert_eq!(retired, Ok(true));
    assert!(
        hook.taken() > 4,
        "the compare-exchange failed and was retried"
    );
    let head = Record::unpack(heap.ring[3].load());
    assert_eq!((head.seq, head.ts), (3, Record::RETIRED_TS));
    assert_eq!(heap.acquire(&rules, 3 * SEC, 1), Outcome::Retired);
}

/// `records_since` visits each record after `after` once, with its own weight, oldest
/// first; nothing for an `after` at or ahead of the head (by less than 2^31).
#[test]
fn records_since_visits_what_came_after() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    let records: Vec<Record> = (1..=5u64)
        .map(|i| heap.admit(&rules, 2 * i * SEC, i))
        .collect();
    let (visited, since) = heap.since(2, &NoHook);
    assert_eq!(
        since,
        Ok(Since {
            head: 5,
            retired: false
        })
    );
    assert_eq!(visited, [(records[2], 3), (records[3], 4), (records[4], 5)]);
    for after in [5, 6, 9, 5 + (1 << 31) - 1, 5u32.wrapping_sub(1 << 31)] {
        let (visited, since) = heap.since(after, &NoHook);
        assert_eq!(since.map(|since| since.head), Ok(5), "after {after}");
        assert!(visited.is_empty(), "after {after}: {visited:?}");
    }
    // Far behind (by 2^31 - 1): what the ring holds, the fakes of the new ring included.
    let (visited, _) = heap.since(5u32.wrapping_sub((1 << 31) - 1), &NoHook);
    assert_eq!(visited.len(), 7);
    assert_eq!(visited.last(), Some(&(records[4], 5)));
}

/// Issue 17: a slot overwritten by a later lap while `records_since` walks is skipped, and so
/// is the record after it (its weight needs its predecessor); the rest is visited, and the
/// next call takes the records committed meanwhile.
#[test]
fn records_since_skips_a_slot_overwritten_during_the_walk() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    let records: Vec<Record> = (1..=5u64)
        .map(|i| heap.admit(&rules, 2 * i * SEC, i))
        .collect();
    // Dry run: find_head's steps, then one per slot from record 0 to record 5.
    let dry = counting(100);
    let (visited, _) = heap.since(0, &dry);
    assert_eq!(visited.len(), 5);
    let walk = dry.taken() - 6;
    // Before the walk reads record 2, five more commits overwrite the slots of records 1
    // and 2 (records 9 and 10).
    let later = || {
        for i in 6..=10u64 {
            heap.admit(&rules, 2 * i * SEC, i);
        }
    };
    let hook = Inject::new(Some(walk + 2), later).limit(100);
    let (visited, since) = heap.since(0, &hook);
    assert_eq!(
        since,
        Ok(Since {
            head: 5,
            retired: false
        })
    );
    assert_eq!(visited, [(records[0], 1), (records[3], 4), (records[4], 5)]);
    let (visited, since) = heap.since(5, &NoHook);
    assert_eq!(since.map(|since| since.head), Ok(10));
    assert_eq!(
        visited.iter().map(|(r, w)| (r.seq, *w)).collect::<Vec<_>>(),
        [(6, 6), (7, 7), (8, 8), (9, 9), (10, 10)]
    );
    // A tombstone ends the log: it is not visited, and says so.
    let Ok(retired) = retire(&heap.words(), &NoHook);
    assert_eq!(retired, Ok(true));
    let (visited, since) = heap.since(9, &NoHook);
    assert_eq!(visited.iter().map(|(r, _)| r.seq).collect::<Vec<_>>(), [10]);
    assert_eq!(
        since,
        Ok(Since {
            head: 11,
            retired: true
        })
    );
}

/// A garbage record in the middle of what `records_since` walks (one that belongs to
/// another slot) is reported.
#[test]
fn records_since_reports_a_record_in_the_wrong_slot() {
    let rules = [rule(100, SEC)];
    let heap = Heap::with_capacity(8);
    for i in 1..=5u64 {
        heap.admit(&rules, 2 * i * SEC, i);
    }
    heap.set(
        3,
        Record {
            ts: 6 * SEC,
            seq: 4,
            cum: 6,
        },
    );
    let (_, since) = heap.since(0, &NoHook);
    assert_eq!(since, Err("the ring's sequence numbers are inconsistent"));
}
