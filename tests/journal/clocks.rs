//! Other boots and wall clocks that step: restoring through the wall clock.

use super::*;

fn restore_with_wall(setup: &Setup, rates: &[Rate], wall: Arc<dyn WallClock>) -> Vec<RateUsage> {
    setup.reboot();
    Limiter::builder(rates)
        .journal(setup.db(), Durability::Periodic(HOUR))
        .journal_wall_clock(wall)
        .open(setup.path())
        .unwrap()
        .usage()
        .unwrap()
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

#[test]
fn another_boot_restores_through_the_wall_clock() {
    let setup = Setup::new();
    let rates = [Rate::new(100, TEN_MINUTES)];
    let first = journal_some(&setup, &rates, 10);
    // Long enough that rows taken as new (2 s younger than they are) fail the check below even
    // with a second of scheduling noise on a loaded machine.
    std::thread::sleep(Duration::from_secs(2));
    // Simulate another boot: the rows' clock is not this boot's.
    let changed = setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    assert_eq!(changed, 10);
    let usage = restore_with_wall(&setup, &rates, SteppedWall::new(0));
    assert_eq!(usage[0].used, 10);
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    // Converted through the wall clock: as old as it really is, to within clock-read noise.
    assert!(
        next_free.abs_diff(true_left) < Duration::from_secs(1),
        "{next_free:?} vs {true_left:?}"
    );
}

#[test]
fn a_wall_clock_stepped_back_never_makes_restored_entries_expire_early() {
    let setup = Setup::new();
    let rates = [Rate::new(100, TEN_MINUTES)];
    let first = journal_some(&setup, &rates, 10);
    std::thread::sleep(Duration::from_millis(300));
    setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    // The wall clock went back an hour between the two boots.
    let back = SteppedWall::new(-3_600_000_000_000);
    let usage = restore_with_wall(&setup, &rates, back.clone());
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    assert_eq!(usage[0].used, 10);
    assert!(next_free >= true_left, "{next_free:?} < {true_left:?}");
    // Restored as of now: they expire a whole window from now.
    assert!(
        next_free > TEN_MINUTES - Duration::from_secs(5),
        "{next_free:?}"
    );
    // In the same boot the wall clock plays no part: exact, whatever it says.
    let setup = Setup::new();
    let first = journal_some(&setup, &rates, 10);
    let usage = restore_with_wall(&setup, &rates, back);
    let true_left = TEN_MINUTES - Duration::from_nanos(HostClock.now() - first);
    let next_free = usage[0].next_free.unwrap();
    assert!(
        next_free >= true_left && next_free - true_left < Duration::from_millis(100),
        "{next_free:?} vs {true_left:?}"
    );
}

/// Issue 9, item 2: rows of another boot older than the uptime were all restored at one
/// instant, a history denser than the rates allow, which overflowed the ring: with 10/s and
/// 1,000,000 per 1000 s (16,384 slots) and 10,000 admissions of a previous boot, every call
/// was "unavailable" after 6,384 new admissions while both rates had room.
#[test]
fn a_previous_boot_restores_without_overflowing_the_ring_or_forgetting_anything() {
    let setup = Setup::new();
    let long = Duration::from_secs(1_000);
    let rates = [Rate::new(10, SEC), Rate::new(1_000_000, long)];
    let tick = Duration::from_millis(100);
    // The previous boot: 10,000 admissions at 10/s, journaled.
    let wall = ManualWall::new(1_700_000_000 * 1_000_000_000);
    let open = |clock: &Arc<ManualClock>| {
        Limiter::builder(&rates)
            .clock(clock.clone())
            .journal(setup.db(), Durability::Periodic(HOUR))
            .journal_wall_clock(wall.clone())
            .open(setup.path())
            .unwrap()
    };
    {
        let clock = Arc::new(ManualClock::new(5_000 * 1_000_000_000));
        let limiter = open(&clock);
        for _ in 0..10_000 {
            limiter.try_acquire(1).unwrap();
            clock.advance(tick);
            wall.advance(tick);
        }
        limiter.journal_flush().unwrap();
    }
    let changed = setup.execute_everywhere("UPDATE admissions SET clock = '7:another-boot:0'");
    assert_eq!(changed, 10_000);
    setup.reboot();
    // The machine was down for 30 s; the service starts 60 s after boot.
    wall.advance(Duration::from_secs(90));
    let clock = Arc::new(ManualClock::new(60 * 1_000_000_000));
    let limiter = open(&clock);
    // The admissions of the last 1000 s (the last one 90 s ago, one every 100 ms): 9,099;
    // those older than the uptime count as if admitted at the boot, so up to all 10,000.
    let inside = 9_099;
    let used = limiter.usage().unwrap()[1].used;
    assert!(
        (inside..=10_000).contains(&used),
        "restored {used}, at least {inside} must count"
    );
    // 10/s from now on: every call fits both rates, for longer than the ring's slack.
    for call in 0..8_000 {
        clock.advance(tick);
        if let Err(denied) = limiter.try_acquire(1) {
            panic!("call {call} denied: {denied}");
        }
    }
    // Still nothing forgotten: the restored weight is in the long window until it expires.
    assert!(limiter.usage().unwrap()[1].used >= inside + 8_000 - 10);
}
