//! `Journal::adopt` over real databases: after a change of rates rewrote the directory, an
//! open journal restores and compacts by the rates it adopted, not by those it was opened
//! with, and compacts nothing before it adopts them.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::super::{Durability, Journal, JournalConfig, lock};
use super::follow_rates;
use crate::clock::{Clock, ManualClock};
use crate::layout::capacity_for;
use crate::limiter::rules_for;
use crate::rate::Rate;

const SEC: u64 = 1_000_000_000;
/// The file clock of every journal here.
const NOW: u64 = 100_000 * SEC;

fn open(dir: &std::path::Path, rates: &[Rate]) -> Journal {
    let clock = Arc::new(ManualClock::new(NOW));
    let identity = clock.identity().unwrap();
    Journal::open(
        dir,
        Durability::Periodic(Duration::from_secs(1)),
        &JournalConfig::default(),
        &rules_for(rates).unwrap(),
        clock,
        &identity,
    )
    .unwrap()
}

#[test]
fn an_adopting_journal_restores_and_compacts_by_the_new_rates() {
    let dir = tempfile::tempdir().unwrap();
    let old = [Rate::new(5, Duration::from_secs(60))];
    let new = [Rate::new(10, Duration::from_secs(3600))];
    let journal = open(dir.path(), &old);
    // Another process's database: the one a restore checks the rates of.
    let _other = open(dir.path(), &old);
    // Admitted half an hour ago: outside the old window (and its compaction margin), inside
    // the new one.
    lock(&journal.conn)
        .execute(
            "INSERT INTO admissions (file_id, seq, clock, boot_ns, wall_ns, weight) \
             VALUES ('f', 1, ?1, ?2, 0, 1)",
            params![journal.clock_text, (NOW - 1_800 * SEC) as i64],
        )
        .unwrap();
    assert_eq!(follow_rates(dir.path(), &old, &new).unwrap(), 2);
    let capacity = capacity_for(&rules_for(&new).unwrap()).unwrap();
    // Still on the old rates, the journal no longer matches its directory: a restore is
    // refused, and a compaction deletes nothing by the old windows.
    let refused = journal.restore(capacity).unwrap_err().to_string();
    assert!(
        refused.contains("10/h") && refused.contains("5/min"),
        "{refused}"
    );
    journal.compact().unwrap();
    let rows = || -> i64 {
        lock(&journal.conn)
            .query_row("SELECT count(*) FROM admissions", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(rows(), 1, "compacted by the rates it no longer has");

    journal.adopt(&rules_for(&new).unwrap());
    // By the old rates' longest window this row would be deleted; by the new one it stays.
    journal
        .next_compaction
        .store(0, std::sync::atomic::Ordering::Relaxed);
    journal.compact().unwrap();
    assert_eq!(rows(), 1);
    let history = journal.restore(capacity).unwrap();
    assert_eq!(
        history.iter().map(|r| r.ts).collect::<Vec<_>>(),
        [NOW - 1_800 * SEC]
    );
    // Adopting the same rates again changes nothing.
    journal.adopt(&rules_for(&new).unwrap());
    assert_eq!(journal.restore(capacity).unwrap().len(), 1);
}

#[test]
fn an_adopting_journal_leases_by_the_new_rates() {
    let dir = tempfile::tempdir().unwrap();
    let rates = |text: &str| [text.parse::<Rate>().unwrap()];
    let journal = open(dir.path(), &rates("5tok/min"));
    // A weight of 8 never fits 5 a minute: no lease is taken for it (the protocol refuses it).
    assert!(!journal.needs_lease(8));
    journal.adopt(&rules_for(&rates("10tok/min")).unwrap());
    assert!(journal.needs_lease(8));
    assert!(!journal.needs_lease(11));
}
