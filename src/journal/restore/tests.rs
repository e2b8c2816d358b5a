//! `Journal::restore` over real databases (issue 17): every database of the directory is
//! read, each row once wherever it was copied, in the file's clock; lease remainders become
//! the records they need; a database that cannot be read is named, one that is gone when read
//! is listed again. (The history built from the rows: `src/journal/tests.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::super::files::stem;
use super::super::reset::{Mark, write};
use super::super::{Durability, Journal, JournalConfig, WallClock, lock};
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::layout::capacity_for;
use crate::protocol::{Record, Rule};

use super::{Restored, RingBound, build_history};

const SEC: u64 = 1_000_000_000;
/// The file clock when restoring.
const NOW: u64 = 1_000 * SEC;
/// The wall clock then.
const WALL: u64 = 1_700_000_000 * SEC;

#[derive(Debug)]
struct Wall(u64);

impl WallClock for Wall {
    fn now(&self) -> u64 {
        self.0
    }
}

fn weight(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: false,
    }
}

fn requests(limit: u64, window: u64) -> Rule {
    Rule {
        limit,
        window,
        requests: true,
    }
}

/// A journal of `rules` in `dir`, its clocks at [`NOW`] and [`WALL`].
fn open(dir: &Path, rules: &[Rule]) -> Journal {
    let clock = Arc::new(ManualClock::new(NOW));
    let identity = clock.identity().unwrap();
    let config = JournalConfig {
        target: None,
        wall: Arc::new(Wall(WALL)),
        busy_timeout: Duration::from_secs(5),
        ignore_record: false,
    };
    Journal::open(
        dir,
        Durability::Periodic(Duration::from_secs(1)),
        &config,
        rules,
        clock,
        &identity,
    )
    .unwrap()
}

/// An admission row in `journal`'s own database: record `seq` of file `file`, at `boot_ns`
/// of `clock` (`None`: the journal's own clock), at wall-clock `wall_ns`.
fn admission(journal: &Journal, file: &str, seq: i64, clock: Option<&str>, at: (u64, u64), w: u64) {
    let clock = clock.unwrap_or(&journal.clock_text);
    lock(&journal.conn)
        .execute(
            "INSERT INTO admissions (file_id, seq, clock, boot_ns, wall_ns, weight) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![file, seq, clock, at.0 as i64, at.1 as i64, w as i64],
        )
        .unwrap();
}

/// A lease in `journal`'s own database, ending at file-clock `until`: `(weight, requests)`
/// taken, `used` of them used; `origin`: the database and id it was copied from. Returns its
/// id.
fn lease(
    journal: &Journal,
    until: u64,
    taken: (u64, u64),
    used: (u64, u64),
    settled: bool,
    origin: Option<(&str, i64)>,
) -> i64 {
    let conn = lock(&journal.conn);
    let (origin, origin_id) = origin.map_or((String::new(), None), |(o, id)| (o.into(), Some(id)));
    conn.execute(
        "INSERT INTO leases (clock, until_boot_ns, until_wall_ns, weight, requests, \
         used_weight, used_requests, settled, pid, origin, origin_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)",
        params![
            journal.clock_text,
            until as i64,
            (WALL - (NOW - until)) as i64,
            taken.0 as i64,
            taken.1 as i64,
            used.0 as i64,
            used.1 as i64,
            i64::from(settled),
            origin,
            origin_id
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn restore(journal: &Journal, rules: &[Rule]) -> Result<Vec<Record>, Error> {
    journal.restore(capacity_for(rules).unwrap())
}

/// `(timestamp in s, cumulative weight)` of each record, and that they are numbered 1, 2, ...
fn summary(records: &[Record]) -> Vec<(u64, u32)> {
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.seq as usize, index + 1, "{records:?}");
    }
    records.iter().map(|r| (r.ts / SEC, r.cum)).collect()
}

#[test]
fn every_database_is_read_and_each_admission_counted_once() {
    let rules = [weight(100, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), &rules), open(dir.path(), &rules));
    admission(&a, "f", 0, None, (800 * SEC, 0), 50); // outside the window
    admission(&a, "f", 1, None, (950 * SEC, 0), 3);
    admission(&a, "f", 2, None, (960 * SEC, 0), 4);
    // Copied into b (as a fold does), and b's own.
    admission(&b, "f", 2, None, (960 * SEC, 0), 4);
    admission(&b, "f", 3, None, (970 * SEC, 0), 5);
    // Another boot's row, 20 s old by the wall clock.
    admission(&b, "f", 1, Some("7:other-boot:0"), (5, WALL - 20 * SEC), 6);
    let expected = [(950, 3), (960, 7), (970, 12), (980, 18)];
    assert_eq!(summary(&restore(&a, &rules).unwrap()), expected);
    assert_eq!(summary(&restore(&b, &rules).unwrap()), expected);
}

#[test]
fn lease_remainders_need_a_record_per_request_left_and_one_for_weight_left() {
    let rules = [requests(10, 100 * SEC), weight(1_000, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), &rules), open(dir.path(), &rules));
    // 30 weight and 3 requests left: 3 records at its end, the first carrying the weight.
    let id = lease(&a, 990 * SEC, (40, 5), (10, 2), false, None);
    // The same lease copied into b: counted once.
    lease(
        &b,
        990 * SEC,
        (40, 5),
        (10, 2),
        false,
        Some((&stem(a.dir.own()), id)),
    );
    // Weight left but no request: one record for the weight.
    lease(&a, 980 * SEC, (9, 2), (2, 2), false, None);
    // All used, or settled: nothing.
    lease(&a, 970 * SEC, (9, 2), (9, 2), false, None);
    lease(&b, 960 * SEC, (9, 2), (0, 0), true, None);
    assert_eq!(
        summary(&restore(&a, &rules).unwrap()),
        [(980, 7), (990, 7), (990, 7), (990, 37)]
    );
    assert_eq!(restore(&b, &rules).unwrap(), restore(&a, &rules).unwrap());
}

#[test]
fn without_a_request_rate_a_lease_remainder_is_one_record_of_its_weight() {
    let rules = [weight(1_000, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path(), &rules);
    lease(&journal, 990 * SEC, (40, 5), (10, 2), false, None);
    lease(&journal, 980 * SEC, (9, 5), (9, 0), false, None);
    assert_eq!(summary(&restore(&journal, &rules).unwrap()), [(990, 30)]);
}

#[test]
fn a_database_that_cannot_be_read_is_named() {
    let rules = [weight(100, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path(), &rules);
    admission(&journal, "f", 1, None, (950 * SEC, 0), 3);
    std::fs::write(dir.path().join("garbage.sqlite"), [b'x'; 4096]).unwrap();
    let error = restore(&journal, &rules).unwrap_err().to_string();
    assert!(error.contains("garbage.sqlite"), "{error}");
    assert!(!error.contains("merged"), "{error}");
}

/// A database listed but gone when it is read (folded into another meanwhile) makes the
/// restore list the directory again instead of failing on it; here it stays listed and gone
/// (a link to nothing), so the restore gives up after a few rounds, saying why.
#[test]
fn a_database_gone_when_read_is_listed_again() {
    let rules = [weight(100, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path(), &rules);
    admission(&journal, "f", 1, None, (950 * SEC, 0), 3);
    assert_eq!(summary(&restore(&journal, &rules).unwrap()), [(950, 3)]);
    std::os::unix::fs::symlink(dir.path().join("nothing"), dir.path().join("gone.sqlite")).unwrap();
    let error = restore(&journal, &rules).unwrap_err().to_string();
    assert!(error.contains("merged away"), "{error}");
    assert!(!error.contains("gone.sqlite"), "{error}");
}

/// `(ts in s, weight)` restored at `now`, in the ring `rules` get.
fn history(entries: &[Restored], rules: &[Rule], now: u64) -> Vec<(u64, u32)> {
    summary(&build_history(
        entries,
        rules,
        capacity_for(rules).unwrap(),
        now,
    ))
}

fn one(ts: u64, weight: u64) -> Restored {
    Restored {
        ts,
        weight,
        records: 1,
    }
}

/// The bounding rate's density is counted per window of its length, not over the whole
/// history: two per second, ten seconds of one admission each keep all ten records.
#[test]
fn the_bounding_rate_limits_records_per_window_not_in_all() {
    let rules = [requests(2, SEC), weight(1_000, 100 * SEC)];
    let now = 100 * SEC;
    let entries: Vec<Restored> = (0..10).map(|k| one(now - k * SEC, 1)).collect();
    let expected: Vec<(u64, u32)> = (91..=100).zip(1..=10).collect();
    assert_eq!(history(&entries, &rules, now), expected);
    // Three in one second: the third's weight goes to the oldest of the two kept there.
    let entries = [one(now, 1), one(now - SEC / 2, 2), one(now - SEC / 2, 4)];
    assert_eq!(history(&entries, &rules, now), [(99, 6), (100, 7)]);
}

/// A record that no rate needs is not kept: here a weight-0 lease remainder older than the
/// bounding rate's window, when the only request rate whose window holds it is already full.
#[test]
fn a_record_no_rate_needs_is_dropped() {
    // 15 per 50 s bounds the ring (30 records per 100 s); 20 per 60 s does not (40).
    let rules = [
        requests(15, 50 * SEC),
        requests(20, 60 * SEC),
        weight(1_000, 100 * SEC),
    ];
    let capacity = capacity_for(&rules).unwrap();
    assert_eq!(
        RingBound::choose(&rules, capacity),
        Some(RingBound {
            limit: 15,
            window: 50 * SEC
        })
    );
    let now = 1_000 * SEC;
    let mut entries = vec![one(now, 1); 15];
    // Five more within 60 s fill the 20 per 60 s.
    entries.extend(vec![one(now - 55 * SEC, 1); 5]);
    let full = history(&entries, &rules, now);
    assert_eq!(full.len(), 20);
    entries.push(Restored {
        ts: now - 56 * SEC,
        weight: 0,
        records: 1,
    });
    assert_eq!(history(&entries, &rules, now), full);
    // With room in 20 per 60 s, it is kept.
    entries.drain(..1);
    assert_eq!(history(&entries, &rules, now).len(), 20);
}

/// A reset mark drops the admissions of other files recorded before it; the file the reset
/// made keeps its own, and later admissions count.
#[test]
fn admissions_before_a_reset_mark_are_not_restored() {
    let rules = [weight(100, 100 * SEC)];
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path(), &rules);
    admission(&journal, "old", 1, None, (950 * SEC, 0), 3);
    admission(&journal, "old", 2, None, (970 * SEC, 0), 4);
    admission(&journal, "new", 1, None, (940 * SEC, 0), 5);
    assert_eq!(
        summary(&restore(&journal, &rules).unwrap()),
        [(940, 5), (950, 8), (970, 12)]
    );
    let mark = Mark {
        file_id: "new".into(),
        clock: journal.clock_text.clone(),
        boot_ns: 960 * SEC,
        wall_ns: 0,
    };
    write(dir.path(), &mark).unwrap();
    assert_eq!(
        summary(&restore(&journal, &rules).unwrap()),
        [(940, 5), (970, 9)]
    );
}
