//! The correct protocol under concurrency: every invariant, every explored execution.

use hostlimit_loom_tests::{Scenario, Stats, op, requests, weight};

/// Runs the model and checks that loom really explored it: more than one execution, and at
/// least `patterns` distinct outcome patterns (the races the model is about really happened).
fn explore(scenario: Scenario, patterns: usize) -> Stats {
    let start = std::time::Instant::now();
    let stats = scenario.run();
    eprintln!(
        "{}: {stats} (bound {}, {:.2?})",
        scenario.name(),
        scenario.bound(),
        start.elapsed()
    );
    assert!(stats.executions > 1, "explored only {stats}");
    assert!(
        stats.patterns.len() >= patterns,
        "expected at least {patterns} outcome patterns, saw {:?}",
        stats.patterns
    );
    stats
}

/// Two acquirers, two request rates of different windows, time advancing between calls.
#[test]
fn two_acquirers_two_windows() {
    explore(
        Scenario::new("two acquirers", &[requests(1, 10), requests(2, 40)])
            .thread(&[op(10, 1), op(25, 1)])
            .thread(&[op(12, 1), op(30, 1)]),
        2,
    );
}

/// Three acquirers racing for two windows.
#[test]
fn three_acquirers_two_windows() {
    explore(
        Scenario::new("three acquirers", &[requests(1, 10), requests(2, 40)])
            .thread(&[op(10, 1)])
            .thread(&[op(12, 1)])
            .thread(&[op(21, 1)]),
        3,
    );
}

/// Weights against a request rate and a weight rate at once.
#[test]
fn weights_against_both_kinds_of_rate() {
    explore(
        Scenario::new("weights", &[requests(3, 20), weight(5, 10)])
            .thread(&[op(10, 3), op(21, 2)])
            .thread(&[op(12, 2), op(15, 4)]),
        2,
    );
}

/// Only weight rates, two windows; weight 0 is free and records nothing.
#[test]
fn weights_against_two_weight_windows() {
    explore(
        Scenario::new("weight windows", &[weight(3, 10), weight(4, 30)])
            .thread(&[op(10, 2), op(0, 0), op(22, 2)])
            .thread(&[op(11, 1), op(20, 2)]),
        2,
    );
}

/// The ring (4 slots) wraps while the threads commit: records 4 and 5 overwrite slots 0
/// and 1 under the feet of readers.
#[test]
fn the_ring_wraps_during_the_model() {
    let scenario = Scenario::new("wrap", &[requests(2, 10), weight(3, 10)])
        .setup(&[op(1, 1), op(2, 1), op(13, 1)])
        .thread(&[op(14, 1), op(26, 2)])
        .thread(&[op(24, 1), op(15, 1)]);
    assert_eq!(scenario.capacity(), 4);
    explore(scenario, 2);
}

/// A denial racing an admission: whoever commits first wins, the other is denied with the
/// retry time of the history it saw.
#[test]
fn a_denial_races_an_admission() {
    explore(
        Scenario::new("deny vs admit", &[requests(1, 10), weight(3, 20)])
            .thread(&[op(10, 1)])
            .thread(&[op(11, 2)])
            .thread(&[op(19, 1)]),
        3,
    );
}

/// A caller whose clock reading is stale is denied while another commits enough to lap the
/// 4-slot ring under it: the slots it reads change, and the revalidation must notice.
#[test]
fn a_denial_races_admissions_that_lap_the_ring() {
    let scenario = denial_under_a_lapping_ring();
    assert_eq!(scenario.capacity(), 4);
    explore(scenario, 2);
}

/// The scenario of [`a_denial_races_admissions_that_lap_the_ring`] (also used by `broken`).
pub fn denial_under_a_lapping_ring() -> Scenario {
    Scenario::new("deny under a lapping ring", &[requests(2, 10)])
        .setup(&[op(10, 1), op(12, 1)])
        .thread(&[op(15, 1)])
        .thread(&[op(30, 1), op(30, 1), op(40, 1)])
}

/// A walk overtaken by a full lap (issue 17): thread 1's walk for the newest record reads
/// the hinted slot, and before it reads the next one thread 2 commits a lap of the 4-slot
/// ring and one more record, so that the next slot holds a later lap. The walk must go on
/// from that record (not report the ring corrupt), and every invariant holds. Reaching it
/// takes one preemption (thread 1 right after that load).
#[test]
fn a_walk_overtaken_by_a_full_lap() {
    let scenario = walk_overtaken_by_a_lap();
    assert_eq!(scenario.capacity(), 4);
    let stats = explore(scenario, 2);
    assert!(stats.overtaken > 0, "no walk was overtaken: {stats}");
}

/// The scenario of [`a_walk_overtaken_by_a_full_lap`] (also used by `broken`).
pub fn walk_overtaken_by_a_lap() -> Scenario {
    Scenario::new("walk overtaken by a lap", &[requests(2, 10)])
        .thread(&[op(5, 1)])
        .thread(&[op(20, 1), op(40, 1), op(60, 1), op(80, 1), op(100, 1)])
}

/// The clock is an input: each thread has its own readings, one older than the last
/// committed timestamp (a process preempted between reading the clock and committing), and
/// time advances past the windows between calls.
#[test]
fn stale_clocks_and_time_advancing() {
    explore(
        Scenario::new("stale clocks", &[requests(2, 10), requests(3, 30)])
            .setup(&[op(20, 1)])
            .thread(&[op(15, 1), op(32, 1)])
            .thread(&[op(22, 1), op(18, 1), op(45, 1)]),
        2,
    );
}

/// The 32-bit sequence number wraps during the model (the ring starts at record
/// `u32::MAX - 1`): the record numbered 0 is committed and the lap counter counts it.
#[test]
fn the_sequence_number_wraps() {
    explore(
        Scenario::new("sequence wrap", &[requests(2, 10), weight(3, 10)])
            .first_seq(u32::MAX - 1)
            .thread(&[op(10, 1), op(11, 1)])
            .thread(&[op(12, 1), op(23, 1)]),
        2,
    );
}
