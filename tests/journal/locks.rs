//! The journal's lock: a caller that waits for it decides after the wait, and a process
//! stopped while holding it blocks nobody.

use super::*;

/// Takes the write lock of the journal database `limiter` writes to, and releases it after
/// `length` from another thread, which returns the clock reading just before the release.
fn hold_the_journal_lock(limiter: &Limiter, length: Duration) -> std::thread::JoinHandle<u64> {
    let holder = Connection::open(limiter.journal_file().unwrap()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(length);
        let at = HostClock.now();
        holder.execute_batch("COMMIT").unwrap();
        at
    })
}

/// Issue 9, item 4: strict mode stamped an admission with a clock reading taken before its
/// wait for the journal; with the journal locked for 1.5 s, a 1/s limit admitted two calls
/// 3.8 ms apart.
#[test]
fn strict_mode_reads_the_clock_after_waiting_for_the_journal() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&[Rate::new(1, SEC)])
        .journal(setup.db(), Durability::Strict { lease: HOUR })
        .journal_busy_timeout(Duration::from_secs(20))
        .open(setup.path())
        .unwrap();
    let release = hold_the_journal_lock(&limiter, Duration::from_millis(1_500));
    let first = limiter.try_acquire_stamped(1).unwrap().unwrap();
    let released = release.join().unwrap();
    assert!(
        first.timestamp >= released,
        "stamped {:?} before the journal was free",
        Duration::from_nanos(released - first.timestamp)
    );
    // A second call right away is refused, and told to wait what is left of the second.
    let denied = limiter.try_acquire(1).unwrap_err();
    let left =
        Duration::from_nanos((first.timestamp + 1_000_000_000).saturating_sub(HostClock.now()));
    let retry = denied.retry_after().expect("a retry time");
    assert!(
        retry <= SEC && retry + Duration::from_millis(50) >= left,
        "{retry:?} vs {left:?}"
    );
}

/// Issue 9, item 4, on the re-attach path: a limiter that finds its file deleted journals the
/// old file's records before restoring them into a new one; when that waits for the journal,
/// the acquire is decided at the moment after the wait, not at the stale reading before it.
#[test]
fn a_reattach_that_waits_for_the_journal_decides_after_the_wait() {
    let setup = Setup::new();
    let limiter = Limiter::builder(&[Rate::new(1, SEC)])
        .journal(setup.db(), Durability::Periodic(HOUR))
        .journal_busy_timeout(Duration::from_secs(20))
        .check_interval(Duration::from_millis(10))
        .open(setup.path())
        .unwrap();
    let first = limiter.try_acquire_stamped(1).unwrap().unwrap();
    setup.reboot();
    let release = hold_the_journal_lock(&limiter, Duration::from_millis(1_500));
    std::thread::sleep(Duration::from_millis(20));
    // The first admission is restored into the new file, and has left the 1 s window by the
    // time the journal is free.
    let second = limiter.try_acquire_stamped(1);
    let released = release.join().unwrap();
    let second = second.unwrap().unwrap();
    assert!(second.timestamp >= released && second.timestamp >= first.timestamp + 1_000_000_000);
    assert_eq!(limiter.usage().unwrap()[0].used, 1);
    assert!(limiter.try_acquire(1).is_err());
}

/// Issue 9, item 5: a strict-mode process stopped while it holds its journal's write lock
/// must not hold up anybody else's admissions.
#[test]
fn a_strict_process_stopped_holding_its_journal_lock_blocks_nobody() {
    let setup = Setup::new();
    let rates = Some("1000000req/h,1000000000/h");
    // Leases of 20 ms: the others need a new lease every 20 ms while the victim is stopped.
    let mut victim = setup.spawn_with_rates(
        "victim",
        "strict:20",
        "acquire 5 1; ready victim-ready; stoplocked; hold",
        rates,
    );
    let names: Vec<String> = (0..3).map(|i| format!("other{i}")).collect();
    let mut others: Vec<Worker> = names
        .iter()
        .map(|name| {
            setup.spawn_with_rates(name, "strict:20", &format!("ready {name}; hammer 1"), rates)
        })
        .collect();
    setup.wait_for(std::slice::from_mut(&mut victim), &["victim-ready".into()]);
    setup.wait_for(&mut others, &names);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !victim.is_stopped() {
        assert!(Instant::now() < deadline, "the victim never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped = HostClock.now();
    std::thread::sleep(Duration::from_millis(1_500));
    let resumed = HostClock.now();
    kill(victim.pid(), Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for other in &mut others {
        other.kill();
    }
    for (name, other) in names.iter().zip(&others) {
        other.assert_no_denial();
        let during: Vec<u64> = other
            .done_times()
            .into_iter()
            .filter(|&t| t >= stopped && t <= resumed)
            .collect();
        let mut longest = during.first().map_or(resumed - stopped, |t| t - stopped);
        for pair in during.windows(2) {
            longest = longest.max(pair[1] - pair[0]);
        }
        println!(
            "{name}: {} admissions during the 1.5 s stop, longest wait {:?}",
            during.len(),
            Duration::from_nanos(longest)
        );
        // Every 20 ms a lease, each an fsync of its own database: on a loaded machine some
        // take a while, never the whole stop (on one shared journal: all of it, and nothing
        // admitted).
        assert!(during.len() >= 20, "{name}: {} admissions", during.len());
        assert!(
            longest < 1_000_000_000,
            "{name} waited {:?} while the victim was stopped",
            Duration::from_nanos(longest)
        );
    }
}
