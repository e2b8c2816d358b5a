//! A process killed at any instruction: a thread that stops for good before its k-th
//! shared-memory step, for every k it can reach. The survivors must finish (loom fails a
//! model whose threads never complete) and every invariant must hold, the killed acquire
//! counting as fully committed or absent.

use hostlimit_loom_tests::{Scenario, op, requests, weight};

/// Runs `scenario` once per crash point of thread 0 and reports the count.
fn every_crash(scenario: Scenario) {
    let start = std::time::Instant::now();
    let stats = scenario.run_every_crash(0);
    eprintln!(
        "{}: {stats} (bound {}, {:.2?})",
        scenario.name(),
        scenario.bound(),
        start.elapsed()
    );
    assert!(stats.points > 5, "only {stats}");
}

/// An acquirer killed anywhere while another acquires twice, request and weight rates.
#[test]
fn a_killed_acquirer_beside_a_live_one() {
    every_crash(
        Scenario::new("crash beside one", &[requests(2, 10), weight(4, 20)])
            .setup(&[op(5, 1)])
            .thread(&[op(12, 2)])
            .thread(&[op(13, 1), op(14, 2)]),
    );
}

/// Killed during its second acquire as well as its first (the crash point counts the
/// thread's steps across both).
#[test]
fn a_killed_acquirer_with_two_calls() {
    every_crash(
        Scenario::new("crash over two calls", &[requests(1, 10), requests(2, 40)])
            .thread(&[op(10, 1), op(21, 1)])
            .thread(&[op(12, 1), op(22, 1)]),
    );
}

/// Killed while the 4-slot ring wraps: the survivors overwrite the slots it was reading.
#[test]
fn a_killed_acquirer_while_the_ring_wraps() {
    let scenario = Scenario::new("crash while wrapping", &[requests(2, 10), weight(3, 10)])
        .setup(&[op(1, 1), op(2, 1), op(13, 1)])
        .thread(&[op(14, 1)])
        .thread(&[op(15, 1), op(26, 2)]);
    assert_eq!(scenario.capacity(), 4);
    every_crash(scenario);
}

/// Killed among three acquirers (bound 1: three threads times every crash point).
#[test]
fn a_killed_acquirer_among_three() {
    every_crash(
        Scenario::new("crash among three", &[requests(1, 10), requests(2, 40)])
            .thread(&[op(10, 1)])
            .thread(&[op(11, 1)])
            .thread(&[op(12, 1)]),
    );
}

/// Killed around the wrap of the 32-bit sequence number, including between committing
/// record 0 and counting the lap.
#[test]
fn a_killed_acquirer_as_the_sequence_wraps() {
    every_crash(
        Scenario::new("crash at the wrap", &[requests(2, 10), weight(3, 10)])
            .first_seq(u32::MAX)
            .thread(&[op(10, 1)])
            .thread(&[op(11, 1), op(22, 1)]),
    );
}
