//! Restarts: every process killed with `SIGKILL` and the shared file deleted as a reboot would,
//! in strict and periodic mode; several processes journaling, or opening a new journal, at once.

use super::*;

#[test]
fn strict_restart_after_sigkill_restores_exactly_what_was_admitted_plus_held_leases() {
    let setup = Setup::new();
    let names: Vec<String> = (0..4).map(|i| format!("ready{i}")).collect();
    let mut workers: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn(
                name,
                "strict:60000",
                &format!("acquire 50 3; flush; ready {name}; hold"),
            )
        })
        .collect();
    setup.wait_for(&mut workers, &names);
    for worker in &mut workers {
        worker.kill();
    }
    for worker in &workers {
        worker.assert_no_denial();
        assert_eq!(worker.admissions().len(), 50);
    }
    let before = setup.usage_of_the_file();
    assert_eq!((before[0].used, before[1].used), (600, 200));
    setup.reboot();
    // Each worker still held its current lease when it was killed: counted whole (less what
    // the journal holds for it), as if used up.
    let leases = setup.unsettled();
    assert_eq!(
        leases.len(),
        4,
        "one held lease per killed worker: {leases:?}"
    );
    let lease_weight: u64 = leases.iter().map(|l| l.0).sum();
    let lease_records: u64 = leases.iter().map(|l| l.1.max(u64::from(l.0 > 0))).sum();
    assert!(lease_weight <= 4 * (5_000 / 64) && lease_records <= 4 * (400 / 64 + 1));
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "strict: admitted before: weight {} requests {}; held leases: weight {lease_weight} \
         requests {lease_records}; restored: weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    assert_eq!(after[0].used, 600 + lease_weight);
    assert_eq!(after[1].used, 200 + lease_records);
    let more = count_admissions(&limiter, 3);
    assert_eq!(more, ((5_000 - after[0].used) / 3).min(400 - after[1].used));
}

#[test]
fn strict_restart_after_sigkill_in_the_middle_forgets_nothing() {
    let setup = Setup::new();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| setup.spawn(&format!("w{i}"), "strict:200", "hammer 7"))
        .collect();
    // Let them take and settle a few leases, then kill them wherever they are.
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers.iter().map(|w| w.admissions().len()).sum::<usize>() < 150 {
        assert!(Instant::now() < deadline, "the workers do not admit");
        std::thread::sleep(Duration::from_millis(5));
    }
    for worker in &mut workers {
        worker.kill();
    }
    let before = setup.usage_of_the_file();
    setup.reboot();
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "strict, killed mid-flight: admitted weight {} requests {}; restored weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    // Nothing admitted is forgotten; more is counted only for the lease each worker held
    // (a lease is settled in the transaction that takes the next one): at most 78 weight
    // (5000 / 64) and 6 requests (400 / 64), or 1 record for weight left without requests.
    for (rate, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a.used >= b.used,
            "rate {rate}: {} admitted, {} restored",
            b.used,
            a.used
        );
        let lease = if rate == 0 { 78 } else { 6 };
        assert!(a.used <= b.used + 3 * lease, "rate {rate}: {b:?} {a:?}");
    }
}

#[test]
fn periodic_restart_after_sigkill_forgets_at_most_the_last_interval() {
    let setup = Setup::new();
    let names: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
    let mut workers: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn(
                name,
                "periodic:100",
                &format!("acquire 40 3; sleep 600; acquire 10 3; ready {name}; hold"),
            )
        })
        .collect();
    setup.wait_for(&mut workers, &names);
    for worker in &mut workers {
        worker.kill();
    }
    let before = setup.usage_of_the_file();
    assert_eq!((before[0].used, before[1].used), (450, 150));
    setup.reboot();
    let limiter = setup.reopen();
    let after = limiter.usage().unwrap();
    println!(
        "periodic: admitted weight {} requests {}; restored weight {} requests {}",
        before[0].used, before[1].used, after[0].used, after[1].used
    );
    // The first 40 per worker were admitted 600 ms (six intervals) before the kill.
    assert!(after[1].used >= 120 && after[1].used <= 150, "{after:?}");
    assert_eq!(after[0].used, 3 * after[1].used);
    assert_eq!(
        count_admissions(&limiter, 3),
        ((5_000 - after[0].used) / 3).min(400 - after[1].used)
    );
}

#[test]
fn concurrent_journaling_writes_every_admission_exactly_once() {
    let setup = Setup::new();
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| {
            let mode = if i % 2 == 0 {
                "periodic:5"
            } else {
                "strict:50"
            };
            setup.spawn(
                &format!("c{i}"),
                mode,
                &format!("acquire 40 {}; sleep 20; acquire 40 1", i + 1),
            )
        })
        .collect();
    for worker in &mut workers {
        worker.wait();
        worker.assert_no_denial();
        assert_eq!(
            worker.lines().last().map(String::as_str),
            Some("S Ok(())"),
            "the journal never failed"
        );
    }
    let mut admitted: Vec<(u32, u64, u64)> = workers.iter().flat_map(|w| w.admissions()).collect();
    admitted.sort_unstable();
    assert_eq!(admitted.len(), 320);
    // Every admission, each once: a row two processes both wrote (each in its own database)
    // is the same row, and no admission has two.
    let journaled = setup.journaled();
    let mut rows: Vec<(u32, u64, u64)> = journaled.iter().map(|r| (r.1, r.2, r.3)).collect();
    rows.sort_unstable();
    assert_eq!(rows, admitted, "every admission, each once");
    let files: BTreeSet<&String> = journaled.iter().map(|r| &r.0).collect();
    assert_eq!(files.len(), 1, "one shared file");
    // Clean exits settle every lease: a restart is then exact in strict mode too.
    assert!(setup.unsettled().is_empty(), "{:?}", setup.unsettled());
    let before = setup.usage_of_the_file();
    setup.reboot();
    let after = setup.reopen().usage().unwrap();
    assert_eq!(
        after.iter().map(|u| u.used).collect::<Vec<_>>(),
        before.iter().map(|u| u.used).collect::<Vec<_>>()
    );
}

#[test]
fn many_processes_opening_a_new_journal_at_once_all_succeed() {
    for round in 0..10 {
        let setup = Setup::new();
        let mut workers: Vec<Worker> = (0..6)
            .map(|i| {
                let mode = if i % 2 == 0 {
                    "periodic:5"
                } else {
                    "strict:50"
                };
                setup.spawn(&format!("o{i}"), mode, "acquire 20 1")
            })
            .collect();
        for worker in &mut workers {
            worker.wait();
            worker.assert_no_denial();
        }
        assert_eq!(setup.journaled().len(), 120, "round {round}");
    }
}

#[test]
fn a_file_deleted_under_a_live_limiter_is_recreated_from_the_journal() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(HOUR))
        .check_interval(Duration::from_millis(10))
        .open(setup.path())
        .unwrap();
    for _ in 0..20 {
        limiter.try_acquire(5).unwrap();
    }
    // Nothing journaled yet (the interval is an hour): the re-attach journals the old file's
    // records, then restores them into the new one.
    setup.reboot();
    std::thread::sleep(Duration::from_millis(20));
    limiter.try_acquire(5).unwrap();
    assert!(setup.path().exists());
    let usage = limiter.usage().unwrap();
    assert_eq!((usage[0].used, usage[1].used), (105, 21));
    // And another process sees the restored file.
    assert_eq!(setup.usage_of_the_file()[1].used, 21);
}
