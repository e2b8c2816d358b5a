//! Bad journals and failures: garbage, another schema or other rates, a lock held too long,
//! writes and flushes that fail, an open that fails.

use super::*;

fn journal_error(result: Result<Limiter, Error>) -> String {
    match result {
        Err(Error::Journal { reason, .. }) => reason,
        Err(other) => panic!("expected Error::Journal, got {other}"),
        Ok(_) => panic!("expected Error::Journal, got a limiter"),
    }
}

#[test]
fn a_garbage_journal_is_an_error_and_the_limiter_opens_without_it() {
    let setup = Setup::new();
    // A journal is a directory: a file where it should be is refused, in those words.
    std::fs::write(setup.db(), b"not a directory").unwrap();
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.path()),
    );
    assert!(reason.contains("not a journal directory"), "{reason}");
    std::fs::remove_file(setup.db()).unwrap();
    // A garbage database in the directory: restores would have to read it.
    std::fs::create_dir(setup.db()).unwrap();
    std::fs::write(setup.db().join("1-garbage.sqlite"), vec![0x5a; 8192]).unwrap();
    let result = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path());
    let error = result.as_ref().err().map(ToString::to_string);
    let reason = journal_error(result);
    assert!(
        reason.contains("1-garbage.sqlite: not a SQLite database"),
        "{reason}"
    );
    assert!(error.unwrap().contains("journal::forget"));
    // Never recorded (the open failed before it could record it): the limiter opens
    // without `.journal(...)`.
    Limiter::open(setup.path(), &rates())
        .unwrap()
        .try_acquire(1)
        .unwrap();
    assert_eq!(hostlimit::journal::recorded(setup.path()).unwrap(), None);
}

#[test]
fn a_recorded_journal_that_broke_is_given_up_only_by_forgetting_it() {
    let setup = Setup::new();
    journal_some(&setup, &rates(), 3);
    let record = hostlimit::journal::recorded(setup.path())
        .unwrap()
        .expect("the journal is recorded");
    assert_eq!(record.journal, std::path::absolute(setup.db()).unwrap());
    assert!(Limiter::attach(setup.path()).unwrap().info().journaled);
    std::fs::remove_file(setup.path()).unwrap();
    std::fs::write(setup.db().join("1-garbage.sqlite"), vec![0x5a; 8192]).unwrap();
    // Recorded: an open without `.journal(...)` uses the journal, and fails with it.
    let reason = journal_error(Limiter::open(setup.path(), &rates()));
    assert!(reason.contains("not a SQLite database"), "{reason}");
    assert!(!setup.path().exists(), "nothing was created empty");
    // Forgotten: journal and record are deleted, and the limiter starts empty.
    assert_eq!(
        hostlimit::journal::forget(setup.path()).unwrap(),
        Some(record)
    );
    assert!(!setup.db().exists());
    let fresh = Limiter::open(setup.path(), &rates()).unwrap();
    assert_eq!(fresh.usage().unwrap()[0].used, 0);
    assert!(!fresh.info().journaled);
}

#[test]
fn a_journal_of_another_schema_version_or_other_rates_is_an_error() {
    let setup = Setup::new();
    journal_some(&setup, &rates(), 1);
    let reason = journal_error(
        Limiter::builder(&[Rate::new(7, HOUR)])
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.shm.path().join("other")),
    );
    assert!(
        reason.contains("[400req/h, 5000/h]") && reason.contains("[7/h]"),
        "{reason}"
    );
    setup.execute_everywhere("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .open(setup.path()),
    );
    assert!(reason.contains("schema version 99"), "{reason}");
}

#[test]
fn a_journal_locked_for_too_long_is_an_error() {
    let setup = Setup::new();
    // A database of the directory in rollback mode, held by an exclusive lock: reading it
    // needs that lock.
    std::fs::create_dir(setup.db()).unwrap();
    let holder = Connection::open(setup.db().join("1-locked.sqlite")).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; CREATE TABLE t (x);")
        .unwrap();
    let started = Instant::now();
    let reason = journal_error(
        Limiter::builder(&rates())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .journal_busy_timeout(Duration::from_millis(200))
            .open(setup.path()),
    );
    assert!(reason.contains("locked"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_strict_lease_that_cannot_be_written_is_an_unavailable_denial() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Strict { lease: HOUR })
        .journal_busy_timeout(Duration::from_millis(100))
        .open(setup.path())
        .unwrap();
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let denied = limiter.try_acquire(1).unwrap_err();
    assert!(
        matches!(denied.kind(), hostlimit::DenialKind::Unavailable { reason } if reason.contains("lease")),
        "{denied:?}"
    );
    assert!(limiter.journal_status().unwrap_err().contains("locked"));
    // Nothing was admitted.
    assert_eq!(limiter.usage().unwrap()[1].used, 0);
    holder.execute_batch("COMMIT").unwrap();
    limiter.try_acquire(1).unwrap();
    assert_eq!(limiter.journal_status(), Ok(()));
}

#[test]
fn a_failed_background_flush_is_reported_and_retried() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(10)))
        .journal_busy_timeout(Duration::from_millis(20))
        .open(setup.path())
        .unwrap();
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    for _ in 0..7 {
        limiter.try_acquire(1).unwrap();
    }
    let wait = |done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait(&|| limiter.journal_status().is_err());
    let reason = limiter.journal_status().unwrap_err();
    assert!(reason.contains("locked"), "{reason}");
    assert!(limiter.journal_flush().is_err());
    holder.execute_batch("COMMIT").unwrap();
    // The next round writes what the failed ones could not.
    wait(&|| limiter.journal_status().is_ok());
    assert_eq!(setup.journaled().len(), 7);
}

#[test]
fn an_open_that_fails_records_no_journal() {
    let setup = Setup::new();
    let plain = Limiter::open(setup.path(), &rates()).unwrap();
    // Other rates than the file's: the open fails, and the limiter is not journaled.
    let other = Limiter::builder(&[Rate::new(7, HOUR)])
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path());
    assert!(
        matches!(other, Err(Error::ConfigMismatch { .. })),
        "{other:?}"
    );
    assert_eq!(hostlimit::journal::recorded(setup.path()).unwrap(), None);
    // With its own rates, it is recorded, with the file's rates.
    let journaled = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .open(setup.path())
        .unwrap();
    let record = hostlimit::journal::recorded(setup.path()).unwrap().unwrap();
    assert_eq!(record.rates, plain.rates());
    assert_eq!(record.durability, Durability::Periodic(HOUR));
    // The file was made without a journal; the record says it is journaled now.
    assert!(!journaled.info().journaled);
}
