//! The property test: every call against the sequential reference model, whatever each call's
//! clock reads and whatever hints it starts from.

use proptest::prelude::*;

use super::*;

/// A caller's clock reading, chosen per call independently of the others.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The shared clock moves on by this much (ns), and the call reads it.
    Later(u64),
    /// A reading this much (ns) older than the shared clock: a caller preempted since.
    Stale(u64),
    /// A reading of 0.
    Zero,
    /// A small reading (ns), below most windows.
    Small(u64),
}

impl Clock {
    fn read(self, now: &mut u64) -> u64 {
        match self {
            Clock::Later(by) => {
                *now += by;
                *now
            }
            Clock::Stale(back) => now.saturating_sub(back),
            Clock::Zero => 0,
            Clock::Small(at) => at,
        }
    }
}

/// A hint a call starts with, chosen per call: the shared hint word, or the per-rate
/// window hints.
#[derive(Debug, Clone, Copy)]
enum Hint {
    /// As the previous call left it.
    Carried,
    /// As a process that just opened the file has it (0).
    Fresh,
    /// This many records behind the head, mod `capacity + 2`: every offset inside the ring,
    /// its oldest slot, and just beyond.
    Back(u32),
    /// More than a lap behind the head (by a lap plus this, mod two laps).
    LapStale(u32),
    /// Anything.
    Garbage(u64),
}

impl Hint {
    /// The value for the `index`-th hint, given the head's sequence number and the capacity;
    /// `None` for [`Hint::Carried`].
    fn value(self, head: u32, capacity: u32, index: u32) -> Option<u32> {
        match self {
            Hint::Carried => None,
            Hint::Fresh => Some(0),
            Hint::Back(by) => Some(head.wrapping_sub(by.wrapping_add(index) % (capacity + 2))),
            Hint::LapStale(by) => Some(
                head.wrapping_sub(capacity)
                    .wrapping_sub(by % (2 * capacity))
                    .wrapping_sub(index),
            ),
            Hint::Garbage(bits) => Some((bits.rotate_left(8 * index) as u32) ^ index),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        clock: Clock,
        weight: u64,
        shared: Hint,
        windows: Hint,
    },
    Peek {
        clock: Clock,
        shared: Hint,
    },
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        6 => (0u64..1500).prop_map(|ms| Clock::Later(ms * 1_000_000)),
        2 => (0u64..2000).prop_map(|ms| Clock::Stale(ms * 1_000_000)),
        1 => Just(Clock::Zero),
        1 => (1u64..4_000_000_000).prop_map(Clock::Small),
    ]
}

fn hint() -> impl Strategy<Value = Hint> {
    prop_oneof![
        6 => Just(Hint::Carried),
        1 => Just(Hint::Fresh),
        2 => any::<u32>().prop_map(Hint::Back),
        2 => any::<u32>().prop_map(Hint::LapStale),
        1 => any::<u64>().prop_map(Hint::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (clock(), 0u64..5, hint(), hint()).prop_map(|(clock, weight, shared, windows)| {
            Op::Acquire { clock, weight, shared, windows }
        }),
        1 => (clock(), hint()).prop_map(|(clock, shared)| Op::Peek { clock, shared }),
    ]
}

fn rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
    proptest::collection::vec(
        ((1u64..6), (1u64..4000), any::<bool>()).prop_map(|(limit, ms, requests)| Rule {
            limit,
            window: ms * 1_000_000,
            requests,
        }),
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        // Miri's isolation has no `getcwd`, which proptest's failure file needs.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    /// Every outcome, retry time and usage equals the sequential reference model's, whatever
    /// each call's clock reads (ahead, stale, 0, small) and whatever hints it starts from
    /// (carried, fresh, any offset behind the head, more than a lap stale, garbage), each
    /// chosen per call.
    #[test]
    fn matches_the_reference_model(rules in rules_strategy(), ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 200 })) {
        let heap = Heap::new(&rules);
        let capacity = heap.capacity();
        let mut model = Model::default();
        let mut now = 0;
        for op in ops {
            let head = model.log.len() as u32;
            let shared = match op {
                Op::Acquire { shared, .. } | Op::Peek { shared, .. } => shared,
            };
            if let Some(value) = shared.value(head, capacity, 0) {
                heap.hint.store(u64::from(value), Ordering::Relaxed);
            }
            match op {
                Op::Acquire { clock, weight, windows, .. } => {
                    let at = clock.read(&mut now);
                    {
                        let mut hints = heap.hints.lock().unwrap();
                        for (index, hint) in hints.windows.iter_mut().enumerate() {
                            if let Some(value) = windows.value(head, capacity, index as u32) {
                                *hint = value;
                            }
                        }
                    }
                    prop_assert_eq!(heap.acquire(&rules, at, weight), model.acquire(&rules, at, weight), "at {}", at);
                }
                Op::Peek { clock, .. } => {
                    let at = clock.read(&mut now);
                    let usage = heap.usage(&rules, at);
                    let t = model.stamp(at);
                    prop_assert_eq!(usage.at, t);
                    prop_assert_eq!(usage.head.seq, head);
                    for (i, rule) in rules.iter().enumerate() {
                        prop_assert_eq!(usage.rates[i].used, model.used(rule, t));
                        let oldest = model.inside(rule, t).first().map(|r| r.0.saturating_add(rule.window));
                        prop_assert_eq!(usage.rates[i].next_free_at, oldest);
                    }
                }
            }
        }
    }
}
