//! What the databases keep: compaction of what left the longest window, and a dead process's
//! database folded into a live one.

use super::*;

#[test]
fn compaction_deletes_what_left_the_longest_window() {
    let setup = Setup::new();
    let clock = Arc::new(ManualClock::new(1_000_000_000_000));
    let wall = SteppedWall::new(0);
    let rates = [Rate::new(100, Duration::from_secs(10))];
    let limiter = Limiter::builder(&rates)
        .clock(clock.clone())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(5)))
        .journal_wall_clock(wall.clone())
        .open(setup.path())
        .unwrap();
    for _ in 0..5 {
        limiter.try_acquire(1).unwrap();
    }
    limiter.journal_flush().unwrap();
    let rows = |setup: &Setup| setup.journaled().len();
    assert_eq!(rows(&setup), 5);
    // The window (10 s) and the margin (60 s) pass on both clocks.
    let step = Duration::from_secs(71);
    clock.advance(step);
    wall.offset_ns
        .store(step.as_nanos() as i64, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&setup) != 0 {
        assert!(Instant::now() < deadline, "never compacted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(limiter.journal_status(), Ok(()));
}

/// The files of a journal database: the database, its `-wal` and its `-shm`.
fn database_files(database: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|p| p.exists())
        .collect()
}

/// A process that died leaves its database; a live process's compaction folds it into its
/// own and deletes it, and a lease copied twice (a crash between the copy and the delete)
/// still counts once.
#[test]
fn a_dead_processs_database_is_folded_into_a_live_one_and_counted_once() {
    let setup = Setup::new();
    let mut dead = setup.spawn(
        "dead",
        "strict:3600000",
        "acquire 10 3; flush; ready dead; hold",
    );
    setup.wait_for(std::slice::from_mut(&mut dead), &["dead".into()]);
    dead.kill();
    let database = std::fs::read_dir(setup.db())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .expect("the dead process's database");
    let backup = setup.disk.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    for file in database_files(&database) {
        std::fs::copy(&file, backup.join(file.file_name().unwrap())).unwrap();
    }
    let leases = setup.unsettled();
    let admissions = setup.journaled();
    assert_eq!((leases.len(), admissions.len()), (1, 10));
    // A live process compacts at its first round, at once: the dead database is folded in.
    let live = Limiter::builder(&rates())
        .journal(setup.db(), Durability::Periodic(Duration::from_millis(5)))
        .open(setup.path())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while database.exists() {
        assert!(Instant::now() < deadline, "never folded");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(live.journal_status(), Ok(()));
    assert_eq!(setup.databases().len(), 1);
    assert_eq!(
        (setup.unsettled(), setup.journaled()),
        (leases.clone(), admissions.clone())
    );
    drop(live);
    // As if the fold had crashed before deleting it: both databases hold the lease.
    for file in std::fs::read_dir(&backup).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, setup.db().join(file.file_name().unwrap())).unwrap();
    }
    assert_eq!(setup.databases().len(), 2);
    assert_eq!(
        (setup.unsettled(), setup.journaled()),
        (leases.clone(), admissions)
    );
    // A restore counts the lease once: 30 weight and 10 requests admitted, plus the lease.
    setup.reboot();
    let usage = setup.reopen().usage().unwrap();
    let (weight, requests) = leases[0];
    assert_eq!(
        (usage[0].used, usage[1].used),
        (30 + weight, 10 + requests.max(u64::from(weight > 0)))
    );
}
