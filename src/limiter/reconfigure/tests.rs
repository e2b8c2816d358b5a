//! `reconfigure` in one process (issue 17; across processes: `tests/reconfigure.rs`): the old
//! file's admissions count against the new rates, the report says what was done, the same
//! rates change nothing (unless a unit name differs), and a limiter opened before the change
//! adopts the new rates at its next call.

use std::time::Duration;

use super::reconfigure;
use crate::rate::WeightUnit;
use crate::region::{Kind, Region};
use crate::{Limiter, Rate};

const HOUR: Duration = Duration::from_secs(3600);

fn used(limiter: &Limiter) -> Vec<u64> {
    limiter.usage().unwrap().iter().map(|u| u.used).collect()
}

fn lineage(path: &std::path::Path) -> String {
    match Region::examine(path).unwrap().kind {
        Kind::Limiter(header) => format!("{:?}", header.lineage),
        _ => panic!("not a limiter"),
    }
}

#[test]
fn the_old_files_admissions_count_against_the_new_rates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lim");
    let old = [Rate::new(100, HOUR)];
    let before = Limiter::open(&path, &old).unwrap();
    for weight in [3, 4, 5] {
        before.try_acquire(weight).unwrap();
    }
    let old_lineage = lineage(&path);
    let new = [Rate::new(20, HOUR), Rate::requests(5, HOUR)];
    let report = reconfigure(&path, &new).unwrap();
    assert!(report.changed);
    assert_eq!(report.old_rates, old);
    assert_eq!(report.new_rates, new);
    assert_eq!((report.read, report.kept), (3, 3));
    assert!(report.closed_at > 0);
    assert_ne!(lineage(&path), old_lineage);
    let after = Limiter::open(&path, &new).unwrap();
    assert_eq!(used(&after), [12, 3]);
    // The limiter opened before adopts the new rates at its next call: 12 + 9 > 20.
    assert!(before.try_acquire(9).is_err());
    assert_eq!(before.rates(), new);
    before.try_acquire(8).unwrap();
    assert_eq!(used(&after), [20, 4]);
}

#[test]
fn the_same_rates_change_nothing_unless_a_unit_differs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lim");
    let rates = [Rate::new(20, HOUR), Rate::requests(5, HOUR)];
    Limiter::open(&path, &rates)
        .unwrap()
        .try_acquire(2)
        .unwrap();
    let same = reconfigure(&path, &rates).unwrap();
    assert!(!same.changed);
    assert_eq!((same.read, same.kept), (0, 0));
    assert_eq!(same.old_rates, rates);
    let named = [
        Rate::new(20, HOUR).with_unit(WeightUnit::Tokens),
        Rate::requests(5, HOUR),
    ];
    let renamed = reconfigure(&path, &named).unwrap();
    assert!(renamed.changed);
    assert_eq!((renamed.read, renamed.kept), (1, 1));
    // The unit is recorded: the same rates with it change nothing now.
    let again = reconfigure(&path, &named).unwrap();
    assert!(!again.changed);
    assert_eq!(again.old_rates, named);
    // A change of the rules alone, units the same.
    let other = [
        Rate::new(30, HOUR).with_unit(WeightUnit::Tokens),
        Rate::requests(5, HOUR),
    ];
    assert!(reconfigure(&path, &other).unwrap().changed);
}
