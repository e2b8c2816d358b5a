//! The file format, as pure arithmetic: header words, offsets, sizes, version, ring sizing.
//!
//! A limiter file is one header page followed by the ring:
//!
//! | offset | size          | content                                                    |
//! |--------|---------------|------------------------------------------------------------|
//! | 0      | 320           | immutable header words (below), written before the file is linked into place |
//! | 1024   | 8             | the hint: sequence number of a recent record (`protocol`)   |
//! | 1152   | 8             | laps: how often the 32-bit sequence number wrapped          |
//! | 1280   | 8             | journaled: sequence number of the newest record known to be in the SQLite journal (`journal.rs`); 0 in a file made without history |
//! | 4096   | 64 × 128      | counter shards: per shard, 8 denial counters (one per rate: requests that rate refused, a waiting acquire counted once, when it gives up), then the never-fits counter (word 8) and the timed-out-waits counter (word 9) ([`Tally`]); a process uses shard `pid mod 64`, so counting never bounces one cache line between all processes. Words 8 and 9 were unused (zero) before they were counters |
//! | 12288  | 16 × capacity | the ring: one 128-bit `protocol::Record` per slot          |
//!
//! Header words (little-endian `u64`, index = offset / 8):
//!
//! | word | field |
//! |------|-------|
//! | 0 | magic `b"hostlim\x01"` |
//! | 1 | layout version ([`VERSION`]) |
//! | 2 | checksum (FNV-1a of words 3..40) |
//! | 3 | file size in bytes |
//! | 4 | ring capacity (slots, power of two) |
//! | 5 | number of rates |
//! | 6 | clock id |
//! | 7, 8 | boot id (16 bytes) |
//! | 9 | time namespace inode |
//! | 10 | creation time, wall clock (ns since the Unix epoch) |
//! | 11 | creation time, file clock (ns) |
//! | 12 | creator pid |
//! | 13 | creator uid |
//! | 14 | unit labels: byte i names what rate i's weight measures (0 nothing, 1 tokens, 2 bytes; `rate::WeightUnit`); 0 for a rate that counts requests and for unused rates. Only a name for display: files written before it have 0 here |
//! | 15 | flags and lineage: bits 0..31 the lineage id and bits 32..64 the lineage generation ([`Lineage`]: an id the first file of a limiter draws, and how often its rates were changed since, `limiter/reconfigure.rs`; a file that replaces another by a reconfiguration keeps its id and counts one more, so that the processes of the file it replaced adopt its rates; any value is harmless: it only lets a process adopt rates that passed every other check); bit 31 the flag [`FLAG_JOURNALED`]: the file was made by a process with a journal (where the journal is, is recorded on disk: `journal/state.rs`). Files written before it have 0 here |
//! | 16 + 3i, 17 + 3i, 18 + 3i | rate i: limit, window (ns), counts (0 weight, 1 requests) |
//!
//! The hint, laps, journaled word and counters start zeroed. Ring slot 0 starts as the
//! sentinel record 0 and slot `k > 0` as a fake record `k - capacity` with timestamp 0 and
//! weight 0 (`protocol::Record::initial`): an empty history. A file created from a journal's
//! history instead holds the restored records `1..=m` in slots `1..=m`, and starts with the
//! hint and the journaled word at `m` (those records are in the journal already).

use crate::clock::ClockIdentity;
use crate::protocol::{MAX_RATES, Rule};
use crate::rate::WeightUnit;

/// `b"hostlim\x01"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"hostlim\x01");
/// The layout version this library reads and writes.
pub const VERSION: u64 = 1;
/// Header flag (word 15): the file was made with a journal.
pub const FLAG_JOURNALED: u64 = 1;
/// Where the flags sit in word 15: the bits above the lineage id, below its generation.
const FLAGS_SHIFT: u32 = 31;
/// The lineage id's bits in word 15.
const LINEAGE_ID_MASK: u32 = (1 << FLAGS_SHIFT) - 1;
/// Number of immutable header words covered by the checksum (words 3..HEADER_WORDS).
pub const HEADER_WORDS: usize = 40;
/// Offset of the hint word (its own cache lines).
pub const HINT_OFFSET: usize = 1024;
/// Offset of the lap counter (its own cache lines).
pub const LAPS_OFFSET: usize = 1152;
/// Offset of the journaled word (its own cache lines): the newest record known to be in the
/// journal. Only journal flushers touch it, never the hot path.
pub const JOURNALED_OFFSET: usize = 1280;
/// Offset of the counter shards.
pub const COUNTERS_OFFSET: usize = 4096;
/// Number of counter shards.
pub const COUNTER_SHARDS: usize = 64;
/// Bytes per counter shard (two cache lines, so neighbours never share one).
pub const SHARD_SIZE: usize = 128;
/// Offset of the ring; also the size of everything before it.
pub const RING_OFFSET: usize = COUNTERS_OFFSET + COUNTER_SHARDS * SHARD_SIZE;
/// Bytes per ring slot.
pub const SLOT_SIZE: usize = 16;
/// The largest ring accepted: 2^22 slots, a 64 MiB file.
pub const MAX_SLOTS: u64 = 1 << 22;

const _: () = assert!(HEADER_WORDS * 8 <= HINT_OFFSET);
const _: () = assert!(16 + 3 * MAX_RATES <= HEADER_WORDS);
const _: () = assert!(
    HINT_OFFSET.is_multiple_of(128)
        && LAPS_OFFSET.is_multiple_of(128)
        && LAPS_OFFSET + 128 <= COUNTERS_OFFSET
);
const _: () = assert!(
    JOURNALED_OFFSET.is_multiple_of(128)
        && LAPS_OFFSET + 128 <= JOURNALED_OFFSET
        && JOURNALED_OFFSET + 128 <= COUNTERS_OFFSET
);
const _: () = assert!(COUNTERS_OFFSET.is_multiple_of(128) && 8 * (MAX_RATES + 2) <= SHARD_SIZE);
const _: () = assert!(
    MAX_PLAUSIBLE_COUNT
        .checked_mul(COUNTER_SHARDS as u64)
        .is_some()
);
const _: () = assert!(RING_OFFSET.is_multiple_of(4096));

/// Everything the immutable part of the header holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Ring slots.
    pub capacity: u64,
    /// The rates, in configuration order.
    pub rules: Vec<Rule>,
    /// The clock the timestamps come from.
    pub clock: ClockIdentity,
    /// Creation time, wall clock, ns since the Unix epoch.
    pub created_wall_ns: u64,
    /// Creation time, file clock, ns.
    pub created_clock_ns: u64,
    /// Process that created the file.
    pub creator_pid: u64,
    /// User that created the file.
    pub creator_uid: u64,
    /// Unit labels, one byte per rate (see [`pack_units`]); 0 for none.
    pub labels: u64,
    /// Flags ([`FLAG_JOURNALED`]); 0 for none.
    pub flags: u64,
    /// Which limiter this file is, across changes of its rates (word 15).
    pub lineage: Lineage,
}

/// Word 15: which limiter a file is, across changes of its rates. A new limiter draws an id;
/// a reconfiguration writes a file with the same id and the next generation. A process on a
/// file adopts the rates of a file that succeeds it ([`Lineage::succeeds`]); a process that
/// opens a file with its own rates is checked against them, whatever the lineage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Drawn when the limiter's first file was made (from its creation times, pid and uid);
    /// 31 bits (word 15's bit 31 is a flag).
    pub id: u32,
    /// How often the rates were changed since: 0 for a file made with the rates it has.
    pub generation: u32,
}

impl Lineage {
    /// The lineage of a new limiter: an id drawn from what is unique to its creation.
    pub fn new(created_wall_ns: u64, created_clock_ns: u64, pid: u64, uid: u64) -> Lineage {
        Lineage {
            id: checksum(&[created_wall_ns, created_clock_ns, pid, uid]) as u32 & LINEAGE_ID_MASK,
            generation: 0,
        }
    }

    /// The lineage of the file that replaces this one with other rates.
    pub fn next(self) -> Lineage {
        Lineage {
            generation: self.generation.wrapping_add(1),
            ..self
        }
    }

    /// Is this file a later configuration of the limiter `earlier` belongs to? The same id and
    /// a later generation (modulo 2^32, within 2^31 changes).
    pub fn succeeds(self, earlier: Lineage) -> bool {
        self.id == earlier.id && (self.generation.wrapping_sub(earlier.generation) as i32) > 0
    }

    /// The header word.
    pub fn word(self) -> u64 {
        u64::from(self.id) | (u64::from(self.generation) << 32)
    }

    /// From the header word (without the flag bit); every value is a lineage.
    pub fn from_word(word: u64) -> Lineage {
        Lineage {
            id: word as u32 & LINEAGE_ID_MASK,
            generation: (word >> 32) as u32,
        }
    }
}

/// Word 14: the unit labels of up to 8 rates, one byte each.
pub fn pack_units(units: impl IntoIterator<Item = Option<WeightUnit>>) -> u64 {
    units
        .into_iter()
        .take(MAX_RATES)
        .enumerate()
        .fold(0, |word, (i, unit)| {
            word | (u64::from(WeightUnit::code(unit)) << (8 * i))
        })
}

/// The unit label of rate `index` in a labels word that [`Header::decode`] accepted.
pub fn unit_of(labels: u64, index: usize) -> Option<WeightUnit> {
    let code = labels.checked_shr(8 * index as u32).unwrap_or(0) as u8;
    WeightUnit::from_code(code).unwrap_or(None)
}

/// Why header words do not form a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not a hostlimit file.
    Magic,
    /// Another layout version.
    Version(u64),
    /// Damaged: the reason.
    Corrupt(String),
}

/// Offset of the denial counter of rate `rate` in shard `shard` (both taken modulo their
/// counts, so any value is in bounds).
pub fn counter_offset(shard: usize, rate: usize) -> usize {
    COUNTERS_OFFSET + (shard % COUNTER_SHARDS) * SHARD_SIZE + (rate % MAX_RATES) * 8
}

/// The counters of a shard after its denial counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Requests refused because their weight can never fit a limit.
    NeverFits = MAX_RATES as isize,
    /// Waiting acquires that gave up: not admitted within their timeout.
    TimedOut = MAX_RATES as isize + 1,
}

/// Offset of counter `tally` in shard `shard` (taken modulo the shard count).
pub fn tally_offset(shard: usize, tally: Tally) -> usize {
    COUNTERS_OFFSET + (shard % COUNTER_SHARDS) * SHARD_SIZE + tally as usize * 8
}

/// The largest value one shard's counter can plausibly hold: 2^56 (a billion counts a
/// second for two years). A larger one is garbage, and so is a total over shards, which
/// cannot overflow while every shard is plausible.
pub const MAX_PLAUSIBLE_COUNT: u64 = 1 << 56;

/// The total of one counter over its shards, or `None` if a shard holds garbage.
pub fn plausible_total(shards: impl IntoIterator<Item = u64>) -> Option<u64> {
    shards.into_iter().try_fold(0u64, |total, value| {
        if value >= MAX_PLAUSIBLE_COUNT {
            None
        } else {
            total.checked_add(value)
        }
    })
}

/// File size for a ring of `capacity` slots.
pub fn file_size(capacity: u64) -> u64 {
    RING_OFFSET as u64 + capacity * SLOT_SIZE as u64
}

/// The most records any window of the longest length can hold, for these rules; `None` if
/// no rule bounds it.
///
/// A rule with limit `L` and window `w` admits at most `L * ceil(W / w)` records in any
/// interval of length `W` (cover it with `ceil(W / w)` windows). Rules that count weight bound
/// records only if every record has weight >= 1, which holds when no rule counts requests
/// (a weight-0 acquire then records nothing).
fn records_bound(rules: &[Rule]) -> Option<u128> {
    let longest = u128::from(rules.iter().map(|r| r.window).max()?);
    let any_requests = rules.iter().any(|r| r.requests);
    rules
        .iter()
        .filter(|r| r.requests || !any_requests)
        .map(|r| u128::from(r.limit) * longest.div_ceil(u128::from(r.window)))
        .min()
}

/// The ring capacity these rules need so that a full ring can never deny falsely: every
/// record inside the longest window, plus the newest record before it, plus the head's slot.
pub fn capacity_for(rules: &[Rule]) -> Result<u64, u128> {
    let needed = records_bound(rules).unwrap_or(u128::MAX - 2) + 2;
    let capacity = needed.checked_next_power_of_two().unwrap_or(u128::MAX);
    if capacity > u128::from(MAX_SLOTS) {
        Err(needed)
    } else {
        Ok(capacity as u64)
    }
}

fn checksum(words: &[u64]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in words {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
    }
    hash
}

impl Header {
    /// The header words to write into a new file.
    pub fn encode(&self) -> [u64; HEADER_WORDS] {
        let mut w = [0u64; HEADER_WORDS];
        w[0] = MAGIC;
        w[1] = VERSION;
        w[3] = file_size(self.capacity);
        w[4] = self.capacity;
        w[5] = self.rules.len() as u64;
        w[6] = self.clock.clock_id;
        w[7] = u64::from_le_bytes(self.clock.boot_id[..8].try_into().unwrap_or_default());
        w[8] = u64::from_le_bytes(self.clock.boot_id[8..].try_into().unwrap_or_default());
        w[9] = self.clock.time_namespace;
        w[10] = self.created_wall_ns;
        w[11] = self.created_clock_ns;
        w[12] = self.creator_pid;
        w[13] = self.creator_uid;
        w[14] = self.labels;
        w[15] = self.lineage.word() | (self.flags << FLAGS_SHIFT);
        for (i, rule) in self.rules.iter().enumerate() {
            w[16 + 3 * i] = rule.limit;
            w[17 + 3 * i] = rule.window;
            w[18 + 3 * i] = u64::from(rule.requests);
        }
        w[2] = checksum(&w[3..]);
        w
    }

    /// Reads header words, validating everything: magic, version, checksum, the rates, and
    /// that capacity and file size are the ones the rates imply.
    pub fn decode(w: &[u64; HEADER_WORDS]) -> Result<Header, Invalid> {
        if w[0] != MAGIC {
            return Err(Invalid::Magic);
        }
        if w[1] != VERSION {
            return Err(Invalid::Version(w[1]));
        }
        if w[2] != checksum(&w[3..]) {
            return Err(Invalid::Corrupt("header checksum mismatch".into()));
        }
        let n_rates = w[5];
        if n_rates == 0 || n_rates > MAX_RATES as u64 {
            return Err(Invalid::Corrupt(format!("{n_rates} rates recorded")));
        }
        let mut rules = Vec::with_capacity(n_rates as usize);
        for i in 0..n_rates as usize {
            let (limit, window, counts) = (w[16 + 3 * i], w[17 + 3 * i], w[18 + 3 * i]);
            if counts > 1 {
                return Err(Invalid::Corrupt(format!("rate {i} counts kind {counts}")));
            }
            let rule = Rule {
                limit,
                window,
                requests: counts == 1,
            };
            crate::rate::Rate::from_rule(&rule)
                .rule()
                .map_err(|e| Invalid::Corrupt(format!("rate {i}: {e}")))?;
            rules.push(rule);
        }
        let labels = w[14];
        for i in 0..MAX_RATES {
            let code = (labels >> (8 * i)) as u8;
            match (WeightUnit::from_code(code), rules.get(i)) {
                (Ok(None), _) => {}
                (Ok(Some(_)), Some(rule)) if !rule.requests => {}
                _ => return Err(Invalid::Corrupt(format!("rate {i} has unit label {code}"))),
            }
        }
        // One flag bit, so every value of word 15 is valid.
        let flags = (w[15] >> FLAGS_SHIFT) & FLAG_JOURNALED;
        let capacity = w[4];
        match capacity_for(&rules) {
            Ok(needed) if needed == capacity => {}
            _ => {
                return Err(Invalid::Corrupt(format!(
                    "ring capacity {capacity} does not fit the rates"
                )));
            }
        }
        if w[3] != file_size(capacity) {
            return Err(Invalid::Corrupt(format!(
                "recorded size {} does not fit the ring",
                w[3]
            )));
        }
        let mut boot_id = [0u8; 16];
        boot_id[..8].copy_from_slice(&w[7].to_le_bytes());
        boot_id[8..].copy_from_slice(&w[8].to_le_bytes());
        Ok(Header {
            capacity,
            rules,
            clock: ClockIdentity {
                clock_id: w[6],
                boot_id,
                time_namespace: w[9],
            },
            created_wall_ns: w[10],
            created_clock_ns: w[11],
            creator_pid: w[12],
            creator_uid: w[13],
            labels,
            flags,
            lineage: Lineage::from_word(w[15]),
        })
    }

    /// The file size this header implies.
    pub fn file_size(&self) -> u64 {
        file_size(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rule(limit: u64, window: u64, requests: bool) -> Rule {
        Rule {
            limit,
            window,
            requests,
        }
    }

    fn header(rules: Vec<Rule>) -> Header {
        Header {
            capacity: capacity_for(&rules).unwrap(),
            rules,
            clock: ClockIdentity {
                clock_id: 7,
                boot_id: [9; 16],
                time_namespace: 4026531834,
            },
            created_wall_ns: 1,
            created_clock_ns: 2,
            creator_pid: 3,
            creator_uid: 4,
            labels: 0,
            flags: 0,
            lineage: Lineage::default(),
        }
    }

    #[test]
    fn capacity_covers_the_longest_window() {
        // 10/s and 600/min: at most 600 records in a minute.
        assert_eq!(
            capacity_for(&[rule(10, SEC, false), rule(600, 60 * SEC, false)]),
            Ok(1024)
        );
        // 10/s, 600/min, 10000/day: the day's limit bounds it.
        let three = [
            rule(10, SEC, false),
            rule(600, 60 * SEC, false),
            rule(10_000, 86_400 * SEC, false),
        ];
        assert_eq!(capacity_for(&three), Ok(16_384));
        // 60 requests and 90000 tokens per minute: the request rate bounds records.
        assert_eq!(
            capacity_for(&[rule(60, 60 * SEC, true), rule(90_000, 60 * SEC, false)]),
            Ok(64)
        );
        // A short window bounds a longer one: 1 per second over a day is 86400 records.
        assert_eq!(
            capacity_for(&[rule(1, SEC, false), rule(1_000_000, 86_400 * SEC, false)]),
            Ok(131_072)
        );
        // Too large: 10 million weight units per day.
        assert_eq!(
            capacity_for(&[rule(10_000_000, 86_400 * SEC, false)]),
            Err(10_000_002)
        );
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = header(vec![rule(10, SEC, false), rule(60, 60 * SEC, true)]);
        let words = h.encode();
        assert_eq!(Header::decode(&words), Ok(h.clone()));
        for index in 3..HEADER_WORDS {
            let mut bad = words;
            bad[index] ^= 1 << 17;
            assert!(
                matches!(Header::decode(&bad), Err(Invalid::Corrupt(_))),
                "word {index}"
            );
        }
        let mut other = words;
        other[0] = 0;
        assert_eq!(Header::decode(&other), Err(Invalid::Magic));
        other = words;
        other[1] = 2;
        assert_eq!(Header::decode(&other), Err(Invalid::Version(2)));
    }

    #[test]
    fn the_journaled_flag_and_the_lineage_share_word_15_without_touching() {
        let lineage = Lineage {
            id: LINEAGE_ID_MASK,
            generation: u32::MAX,
        };
        let journaled = Header {
            flags: FLAG_JOURNALED,
            lineage,
            ..header(vec![rule(10, SEC, false)])
        };
        let words = journaled.encode();
        assert_eq!(words[15], u64::MAX);
        assert_eq!(Header::decode(&words), Ok(journaled.clone()));
        let unflagged = Header {
            flags: 0,
            ..journaled.clone()
        };
        assert_eq!(unflagged.encode()[15], !(1u64 << 31));
        assert_eq!(Header::decode(&unflagged.encode()), Ok(unflagged));
        let plain = Header {
            lineage: Lineage::default(),
            ..journaled
        };
        assert_eq!(plain.encode()[15], 1 << 31);
        assert_eq!(
            Header::decode(&plain.encode()).map(|h| h.flags),
            Ok(FLAG_JOURNALED)
        );
        // A file of before the flags and lineage (word 15 zero) reads as not journaled.
        let old = header(vec![rule(10, SEC, false)]);
        assert_eq!(old.encode()[15], 0);
        assert_eq!(Header::decode(&old.encode()).map(|h| h.flags), Ok(0));
    }

    #[test]
    fn counters_have_their_own_words_in_every_shard() {
        let mut offsets = Vec::new();
        for shard in 0..COUNTER_SHARDS {
            for rate in 0..MAX_RATES {
                offsets.push(counter_offset(shard, rate));
            }
            offsets.push(tally_offset(shard, Tally::NeverFits));
            offsets.push(tally_offset(shard, Tally::TimedOut));
        }
        let mut distinct = offsets.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), offsets.len());
        assert!(
            offsets
                .iter()
                .all(|o| (COUNTERS_OFFSET..RING_OFFSET - 7).contains(o))
        );
        assert_eq!(tally_offset(0, Tally::NeverFits), COUNTERS_OFFSET + 64);
        assert_eq!(
            tally_offset(COUNTER_SHARDS + 1, Tally::TimedOut),
            tally_offset(1, Tally::TimedOut)
        );
    }

    #[test]
    fn totals_of_garbage_counters_are_none() {
        assert_eq!(plausible_total([1, 2, 3]), Some(6));
        assert_eq!(plausible_total([]), Some(0));
        assert_eq!(
            plausible_total([MAX_PLAUSIBLE_COUNT - 1; 64]),
            Some((MAX_PLAUSIBLE_COUNT - 1) * 64)
        );
        assert_eq!(plausible_total([0, MAX_PLAUSIBLE_COUNT]), None);
        assert_eq!(plausible_total([u64::MAX, u64::MAX]), None);
    }

    #[test]
    fn unit_labels_round_trip_and_garbage_labels_are_refused() {
        let rules = vec![
            rule(10, SEC, false),
            rule(60, 60 * SEC, true),
            rule(5, SEC, false),
        ];
        let labels = pack_units([Some(WeightUnit::Tokens), None, Some(WeightUnit::Bytes)]);
        assert_eq!(labels, 0x02_00_01);
        let h = Header {
            labels,
            ..header(rules)
        };
        let decoded = Header::decode(&h.encode()).unwrap();
        assert_eq!(decoded, h);
        assert_eq!(unit_of(decoded.labels, 0), Some(WeightUnit::Tokens));
        assert_eq!(unit_of(decoded.labels, 1), None);
        assert_eq!(unit_of(decoded.labels, 2), Some(WeightUnit::Bytes));
        assert_eq!(unit_of(decoded.labels, 7), None);
        assert_eq!(unit_of(decoded.labels, 9), None);
        // An unknown code, a label on a request-counting rate, a label on an unused rate.
        for bad in [0x03, 0x01_00, 0x01_00_00_00] {
            let h = Header {
                labels: bad,
                ..h.clone()
            };
            assert!(
                matches!(Header::decode(&h.encode()), Err(Invalid::Corrupt(_))),
                "{bad:#x}"
            );
        }
    }

    /// Word 15 round-trips; a reconfiguration succeeds the files before it (within 2^31
    /// changes, across the wrap), never itself, an earlier one, or another limiter's.
    #[test]
    fn lineage_round_trips_and_orders_generations() {
        let first = Lineage::new(1, 2, 3, 4);
        assert_eq!(first.generation, 0);
        assert_ne!(first.id, Lineage::new(1, 2, 5, 4).id);
        let h = Header {
            lineage: first.next(),
            ..header(vec![rule(10, SEC, false)])
        };
        let words = h.encode();
        assert_eq!(words[15], u64::from(first.id) | 1 << 32);
        assert_eq!(Header::decode(&words).unwrap().lineage, first.next());
        assert!(first.next().succeeds(first));
        assert!(first.next().next().succeeds(first));
        assert!(!first.succeeds(first));
        assert!(!first.succeeds(first.next()));
        let other = Lineage {
            id: first.id ^ 1,
            generation: 5,
        };
        assert!(!other.succeeds(first));
        let late = Lineage {
            id: 7,
            generation: u32::MAX,
        };
        assert!(late.next().succeeds(late));
        assert_eq!(late.next().generation, 0);
        let far = Lineage {
            id: 7,
            generation: 1 << 31,
        };
        assert!(!far.succeeds(Lineage {
            id: 7,
            generation: 0
        }));
        assert_eq!(Lineage::from_word(u64::MAX).word(), !(1u64 << 31));
    }

    #[test]
    fn decode_rejects_inconsistent_but_checksummed_headers() {
        let mut h = header(vec![rule(10, SEC, false)]);
        h.capacity *= 2;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(Invalid::Corrupt(_))
        ));
        let h = header(vec![rule(0, SEC, false)]);
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(Invalid::Corrupt(_))
        ));
    }
    /// Re-seals header words after a test changed them (a damaged but checksummed header).
    fn reseal(mut words: [u64; HEADER_WORDS]) -> [u64; HEADER_WORDS] {
        words[2] = checksum(&words[3..]);
        words
    }

    fn corrupt_reason(words: &[u64; HEADER_WORDS]) -> String {
        match Header::decode(words) {
            Err(Invalid::Corrupt(reason)) => reason,
            other => panic!("decoded as {other:?}"),
        }
    }

    /// The most rates a header holds, 8, decode as written, each of its three words in its
    /// place; a checksummed header that records 9 (or 0) is refused, without reading past
    /// the header.
    #[test]
    fn decode_takes_exactly_eight_rates_and_refuses_nine() {
        let rules: Vec<Rule> = (1..=8u64)
            .map(|i| rule(i * 10, i * SEC, i % 3 == 0))
            .collect();
        let h = header(rules.clone());
        let words = h.encode();
        assert_eq!(words[5], 8);
        for (i, rule) in rules.iter().enumerate() {
            assert_eq!(
                words[16 + 3 * i..19 + 3 * i],
                [rule.limit, rule.window, u64::from(rule.requests)]
            );
        }
        assert_eq!(Header::decode(&words), Ok(h.clone()));
        let mut nine = words;
        nine[5] = 9;
        assert_eq!(corrupt_reason(&reseal(nine)), "9 rates recorded");
        let mut none = words;
        none[5] = 0;
        assert_eq!(corrupt_reason(&reseal(none)), "0 rates recorded");
        // One rate fewer than recorded: the eighth is read, and its zero limit refused.
        let mut seven = header(rules[..7].to_vec()).encode();
        seven[5] = 8;
        assert!(corrupt_reason(&reseal(seven)).starts_with("rate 7:"));
    }

    /// A rate counts weight (0) or requests (1); anything else is refused.
    #[test]
    fn decode_refuses_an_unknown_kind_of_count() {
        let words = header(vec![rule(10, SEC, false), rule(60, 60 * SEC, true)]).encode();
        assert_eq!(words[18], 0);
        assert_eq!(words[21], 1);
        let mut other = words;
        other[21] = 2;
        assert_eq!(corrupt_reason(&reseal(other)), "rate 1 counts kind 2");
    }

    /// The largest ring, 2^22 slots, is what the rates may need at most: a rate that needs
    /// exactly that is accepted and decoded, one more record is refused.
    #[test]
    fn the_largest_ring_is_accepted_and_one_more_record_refused() {
        let largest = rule(MAX_SLOTS - 2, SEC, false);
        assert_eq!(capacity_for(&[largest]), Ok(MAX_SLOTS));
        assert_eq!(
            capacity_for(&[rule(MAX_SLOTS - 1, SEC, false)]),
            Err(u128::from(MAX_SLOTS) + 1)
        );
        let h = header(vec![largest]);
        assert_eq!(h.capacity, 1 << 22);
        assert_eq!(h.file_size(), 12_288 + 16 * (1 << 22));
        let words = h.encode();
        assert_eq!(words[3], h.file_size());
        assert_eq!(Header::decode(&words), Ok(h));
        // A checksummed header that claims twice the ring (and the size to match) is refused.
        let mut twice = words;
        twice[4] = 2 * MAX_SLOTS;
        twice[3] = file_size(2 * MAX_SLOTS);
        assert!(corrupt_reason(&reseal(twice)).contains("does not fit the rates"));
        // So is one whose size does not match its ring.
        let mut size = words;
        size[3] += 16;
        assert!(corrupt_reason(&reseal(size)).starts_with("recorded size"));
    }

    /// Without rates nothing bounds the ring; a window that the longest does not divide
    /// takes the ceiling of the ratio.
    #[test]
    fn the_bound_rounds_windows_up() {
        assert_eq!(
            capacity_for(&[]),
            Err(u128::MAX),
            "nothing bounds the records"
        );
        // 3 per second over 2.5 s: at most 3 * 3 = 9 records, + 2 = 11, so 16 slots.
        assert_eq!(
            capacity_for(&[rule(3, SEC, false), rule(1000, 5 * SEC / 2, false)]),
            Ok(16)
        );
        // Weight rates bound records only without a request rate (a weight-0 acquire then
        // records nothing): 6 requests bound them, not the weight limit of 2.
        assert_eq!(
            capacity_for(&[rule(2, SEC, false), rule(6, SEC, true)]),
            Ok(8)
        );
        assert_eq!(capacity_for(&[rule(2, SEC, false)]), Ok(4));
        assert_eq!(capacity_for(&[rule(5, SEC, false)]), Ok(8));
    }

    /// Offsets: the ring after the counters, counters per shard and rate, both wrapped.
    #[test]
    fn offsets_are_where_the_table_says() {
        assert_eq!(RING_OFFSET, 12_288);
        assert_eq!(file_size(4), 12_288 + 64);
        assert_eq!(counter_offset(0, 0), 4096);
        assert_eq!(counter_offset(1, 2), 4096 + 128 + 16);
        assert_eq!(counter_offset(63, 7), 4096 + 63 * 128 + 56);
        assert_eq!(counter_offset(64 + 3, 8 + 5), counter_offset(3, 5));
    }

    /// The checksum is FNV-1a over the words' little-endian bytes.
    #[test]
    fn the_checksum_is_fnv1a() {
        assert_eq!(checksum(&[]), 0xcbf2_9ce4_8422_2325);
        // FNV-1a of the 8 bytes "hostlim\x01".
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in *b"hostlim\x01" {
            expected = (expected ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        assert_eq!(checksum(&[MAGIC]), expected);
        assert_ne!(checksum(&[1, 2]), checksum(&[2, 1]));
    }
}
