//! The words of one limiter on the heap, as a new file lays them out, and the ring capacity
//! production gives a model's rates.

use super::*;

/// The words of one limiter, on the heap, as a new file holds them.
pub(crate) struct Heap {
    hint: AtomicU64,
    pub(crate) laps: AtomicU64,
    pub(crate) ring: Vec<AtomicPair>,
}

impl Heap {
    /// A new file's words when `first_seq` is 0; otherwise the ring as if record
    /// `first_seq` were the newest, it and the records before it with timestamp and weight 0.
    pub(crate) fn new(capacity: u32, first_seq: u32) -> Heap {
        let ring = (0..capacity).map(|index| {
            if first_seq == 0 {
                return Record::initial(index, capacity);
            }
            // The record of this slot among first_seq - capacity + 1 ..= first_seq.
            let back = first_seq.wrapping_sub(index) % capacity;
            Record {
                ts: 0,
                seq: first_seq.wrapping_sub(back),
                cum: 0,
            }
        });
        Heap {
            hint: AtomicU64::new(u64::from(first_seq)),
            laps: AtomicU64::new(0),
            ring: ring.map(|record| AtomicPair::new(record.pack())).collect(),
        }
    }

    pub(crate) fn words(&self) -> Words<'_> {
        Words::new(&self.hint, &self.laps, &self.ring).expect("a power-of-two ring")
    }
}

/// The ring capacity production gives these rules: `layout::capacity_for`, restated here
/// because `layout` is not part of the loom build. Every record inside the longest window,
/// plus the newest record before it, plus the head's slot, rounded up to a power of two.
pub fn capacity_for(rules: &[Rule]) -> u32 {
    let longest = rules
        .iter()
        .map(|r| r.window)
        .max()
        .expect("at least one rate");
    let any_requests = rules.iter().any(|r| r.requests);
    let bound = rules
        .iter()
        .filter(|r| r.requests || !any_requests)
        .map(|r| r.limit * longest.div_ceil(r.window))
        .min()
        .expect("some rate bounds the records");
    u32::try_from(bound + 2)
        .expect("a small model")
        .next_power_of_two()
}
