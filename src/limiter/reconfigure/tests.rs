//! Unit tests of changing the rates ([`reconfigure`]) on real files in one process: what it
//! reports, what the new file records (rates, units, flags, lineage, history), and that the
//! same rates change nothing. The multi-process behaviour is in tests/reconfigure.rs; these
//! are what the fast test command (`cargo test --release --lib`, the mutation tests') runs.

use std::time::Duration;

use super::*;
use crate::Limiter;
use crate::rate::WeightUnit;

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The header of the limiter file at `path`.
fn header_at(path: &Path) -> Header {
    match Region::examine(path).unwrap().kind {
        Kind::Limiter(header) => header,
        other => panic!("not a limiter: {other:?}"),
    }
}

/// A limiter at `dir/lim` with `rates`, `admitted` requests of weight 1 admitted.
fn limiter_with(dir: &tempfile::TempDir, rates: &[Rate], admitted: u64) -> std::path::PathBuf {
    let path = dir.path().join("lim");
    let limiter = Limiter::open(&path, rates).unwrap();
    for _ in 0..admitted {
        limiter.try_acquire(1).unwrap();
    }
    path
}

/// New rates: reported as changed with both configurations, every admission read and kept,
/// the new file has the new rates, counts the old admissions, and is the next configuration
/// of the same limiter.
#[test]
fn new_rates_are_put_in_place_with_the_admissions_of_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let old_rates = [Rate::new(3, MIN)];
    let path = limiter_with(&dir, &old_rates, 2);
    let before = header_at(&path);
    let new_rates = [Rate::new(5, MIN), Rate::new(10, HOUR)];
    let done = reconfigure(&path, &new_rates).unwrap();
    assert!(done.changed);
    assert_eq!(done.old_rates, old_rates);
    assert_eq!(done.new_rates, new_rates);
    assert_eq!((done.read, done.kept), (2, 2));
    assert!(done.closed_at >= Record::FIRST_TS);
    assert_eq!(done.capacity.0, before.capacity);

    let after = header_at(&path);
    assert_eq!(after.capacity, done.capacity.1);
    assert_eq!(after.lineage, before.lineage.next());
    assert_eq!(after.lineage.id, before.lineage.id);
    assert_eq!(after.flags, before.flags);
    let limiter = Limiter::attach(&path).unwrap();
    assert_eq!(limiter.rates(), new_rates);
    let used: Vec<u64> = limiter.usage().unwrap().iter().map(|u| u.used).collect();
    assert_eq!(used, [2, 2]);
    // Three more fit the new minute, not five.
    for _ in 0..3 {
        limiter.try_acquire(1).unwrap();
    }
    assert!(limiter.try_acquire(1).is_err());
}

/// The same rates (and units) again: nothing is changed, not even the lineage.
#[test]
fn the_same_rates_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rates = [
        Rate::new(4, MIN),
        Rate::new(100, HOUR).with_unit(WeightUnit::Tokens),
    ];
    let path = limiter_with(&dir, &rates, 1);
    let before = header_at(&path);
    let done = reconfigure(&path, &rates).unwrap();
    assert!(!done.changed);
    assert_eq!(
        (done.old_rates, done.new_rates),
        (rates.to_vec(), rates.to_vec())
    );
    assert_eq!((done.read, done.kept, done.closed_at), (0, 0, 0));
    assert_eq!(header_at(&path), before);
}

/// Only the unit of a rate differs: that is a change too, and the new file names the unit.
#[test]
fn a_new_unit_alone_is_a_change_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = limiter_with(&dir, &[Rate::new(100, MIN)], 3);
    let before = header_at(&path);
    let tokens = [Rate::new(100, MIN).with_unit(WeightUnit::Tokens)];
    let done = reconfigure(&path, &tokens).unwrap();
    assert!(done.changed);
    assert_eq!((done.read, done.kept), (3, 3));
    let after = header_at(&path);
    assert_eq!(after.rules, before.rules);
    assert_ne!(after.labels, 0);
    assert_eq!(Limiter::attach(&path).unwrap().rates(), tokens);
    // And back to no unit.
    let plain = [Rate::new(100, MIN)];
    assert!(reconfigure(&path, &plain).unwrap().changed);
    assert_eq!(header_at(&path).labels, 0);
    assert_eq!(header_at(&path).lineage.generation, 2);
}

/// The file's flags (here: made by a journaled process) are kept by the new file.
#[test]
fn the_flags_of_the_file_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let plain = limiter_with(&dir, &[Rate::new(3, MIN)], 0);
    let journaled = Header {
        flags: layout::FLAG_JOURNALED,
        ..header_at(&plain)
    };
    let path = dir.path().join("journaled");
    drop(
        Region::open_with_history(
            &path,
            &OpenSpec {
                create: Some(&journaled),
                mode: 0o600,
                group: None,
                dirs: region::Dirs::Existing,
            },
            &[],
        )
        .unwrap(),
    );
    assert!(reconfigure(&path, &[Rate::new(7, MIN)]).unwrap().changed);
    let after = header_at(&path);
    assert_eq!(after.flags, layout::FLAG_JOURNALED);
    assert_eq!(after.rules, rules_for(&[Rate::new(7, MIN)]).unwrap());
}

/// `read_log` reads every admission of a closed log, and none of a new ring's fake records.
#[test]
fn the_closed_log_is_read_whole_without_the_fake_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = limiter_with(&dir, &[Rate::new(10, MIN)], 4);
    let old = Region::open_with_history(
        &path,
        &OpenSpec {
            create: None,
            mode: 0,
            group: None,
            dirs: region::Dirs::Existing,
        },
        &[],
    )
    .unwrap();
    let Ok(closed) = protocol::retire(&old.words(), &NoHook);
    closed.unwrap();
    let entries = read_log(&old).unwrap();
    assert_eq!(entries.len(), 4);
    assert!(
        entries
            .iter()
            .all(|e| e.ts >= Record::FIRST_TS && e.weight == 1 && e.records == 1),
        "{entries:?}"
    );
    assert!(entries.windows(2).all(|pair| pair[0].ts <= pair[1].ts));
}

/// `rates_of` gives the header's rates in its order, with their units.
#[test]
fn rates_of_reads_the_rates_and_units_of_a_header() {
    let rates = [
        Rate::new(5, MIN).with_unit(WeightUnit::Bytes),
        Rate::requests(2, HOUR),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = limiter_with(&dir, &rates, 0);
    assert_eq!(rates_of(&header_at(&path)), rates);
}

/// `same_rates` needs both the rules and the units to be equal.
#[test]
fn same_rates_compares_rules_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let rates = [Rate::new(5, MIN)];
    let header = header_at(&limiter_with(&dir, &rates, 0));
    let rules = rules_for(&rates).unwrap();
    let other = rules_for(&[Rate::new(6, MIN)]).unwrap();
    let tokens = layout::pack_units([Some(WeightUnit::Tokens)]);
    assert!(same_rates(&header, &rules, 0));
    assert!(!same_rates(&header, &other, 0));
    assert!(!same_rates(&header, &rules, tokens));
    assert!(!same_rates(&header, &other, tokens));
}
