//! The models can fail: each deliberately broken variant of the protocol (switched on
//! through `hostlimit::model::broken`, loom builds only) is caught by the invariant named,
//! checked on its own, at the preemption bound given. Each test first runs the same model
//! with the protocol intact, which must pass and explore more than one execution.

use hostlimit::model::broken::Variant;
use hostlimit_loom_tests::{Invariant, Scenario, catches, op, requests, weight};

use crate::models::{denial_under_a_lapping_ring, walk_overtaken_by_a_lap};

/// The model each variant is tried on.
fn scenario_for(variant: Variant) -> Scenario {
    match variant {
        // Two acquirers that both find the same free slot.
        Variant::SplitCommit
        | Variant::TrustHint
        | Variant::RequestsOneTooFar
        | Variant::None => {
            Scenario::new("two racing commits", &[requests(2, 10), requests(3, 30)])
                .thread(&[op(10, 1), op(11, 1)])
                .thread(&[op(12, 1)])
        }
        // Weighted commits racing, so that one builds on the other's half-done record.
        Variant::TwoPhaseWeight => {
            Scenario::new("two weighted commits", &[requests(3, 10), weight(10, 10)])
                .thread(&[op(10, 2)])
                .thread(&[op(11, 3)])
        }
        Variant::DenyWithoutRecheck => denial_under_a_lapping_ring(),
        // Two full windows of the largest weight the bound takes (2^31 - 1 each) and 2 more:
        // the cumulative weight wraps to where it started, so from a fresh hint (the
        // sentinel, three windows back) the weight after it reads as 0.
        Variant::WeightBoundWithoutAge => {
            let most = (1 << 31) - 1;
            Scenario::new("a wrapped weight", &[weight(most, 10), requests(5, 40)])
                .setup(&[op(10, most), op(20, most), op(30, 2)])
                .thread(&[op(35, most)])
                .thread(&[op(36, 1)])
        }
        // A denial (remembered), the same thread's own commit (so that the next call is
        // ordered after it), the denial repeated, then repeated at its retry time.
        Variant::MemoWithoutReload | Variant::MemoIgnoresRetryTime => {
            Scenario::new("a repeated denial", &[weight(10, 10)])
                .setup(&[op(5, 5)])
                .thread(&[op(6, 6), op(6, 5), op(7, 6), op(16, 6)])
                .thread(&[op(20, 1)])
        }
        Variant::OvertakenIsCorrupt => walk_overtaken_by_a_lap(),
        // The last rate is the one that binds.
        Variant::SkipLastRate => {
            Scenario::new("binding last rate", &[requests(2, 10), requests(1, 30)])
                .thread(&[op(10, 1)])
                .thread(&[op(12, 1)])
        }
        // A stale clock reading, then callers that trust timestamps to grow: the weight
        // rate's search (a request rate's one load reads the record `limit - 1` back, which
        // a stale record does not mislead here).
        Variant::RecordNow => Scenario::new("stale then fresh", &[weight(2, 10)])
            .thread(&[op(100, 1), op(100, 1), op(100, 1)])
            .thread(&[op(90, 1)]),
    }
}

const VARIANTS: [Variant; 11] = [
    Variant::SplitCommit,
    Variant::WeightBoundWithoutAge,
    Variant::RequestsOneTooFar,
    Variant::MemoWithoutReload,
    Variant::MemoIgnoresRetryTime,
    Variant::TwoPhaseWeight,
    Variant::DenyWithoutRecheck,
    Variant::TrustHint,
    Variant::SkipLastRate,
    Variant::RecordNow,
    Variant::OvertakenIsCorrupt,
];

/// Asserts that `invariant` alone catches `variant` at `bound` preemptions.
fn caught(variant: Variant, invariant: Invariant, bound: usize) {
    let scenario = scenario_for(variant).preemptions(bound);
    match catches(&scenario, variant, invariant) {
        Ok(caught) => eprintln!(
            "{variant:?} caught by {} at execution {} (bound {bound}; clean model: {})\n  {}",
            invariant.label(),
            caught.at_execution,
            caught.clean,
            caught.message.lines().next().unwrap_or_default()
        ),
        Err(why) => panic!("{why}"),
    }
}

/// A commit split into a load-compare and a separate store: two acquirers both commit
/// record 1, one overwriting the other.
#[test]
fn a_split_commit_loses_a_commit() {
    caught(Variant::SplitCommit, Invariant::NoLostCommit, 1);
}

/// The record published with the request counted but the weight charged later: a commit
/// built on the half-done record charges the wrong weight.
#[test]
fn a_two_phase_commit_is_not_all_or_nothing() {
    caught(Variant::TwoPhaseWeight, Invariant::AllOrNothing, 1);
}

/// A denial without the revalidation reads slots a lapping commit overwrote and answers
/// with a retry time no history explains.
#[test]
fn a_denial_without_revalidation_is_false() {
    caught(Variant::DenyWithoutRecheck, Invariant::NoFalseDenial, 1);
}

/// `find_head` trusting a stale hint commits over the newest record.
#[test]
fn trusting_the_hint_loses_a_commit() {
    caught(Variant::TrustHint, Invariant::NoLostCommit, 1);
}

/// A request rate that reads the record `limit` places back instead of `limit - 1` lets one
/// request too many into a window.
#[test]
fn a_request_count_one_record_too_far_over_admits() {
    caught(Variant::RequestsOneTooFar, Invariant::NoOverAdmission, 1);
}

/// A weight rate's bound from a hint more than two windows old: the weight after it wraps
/// mod 2^32 and reads as room there is not.
#[test]
fn a_weight_bound_without_its_age_condition_over_admits() {
    caught(Variant::WeightBoundWithoutAge, Invariant::NoOverAdmission, 1);
}

/// The memo of a denial trusted without the load that shows nothing was committed since
/// answers with the retry time of a log that has grown.
#[test]
fn a_memo_without_its_reload_is_a_false_denial() {
    caught(Variant::MemoWithoutReload, Invariant::NoFalseDenial, 1);
}

/// The memo of a denial used at or after its retry time refuses what now fits.
#[test]
fn a_memo_past_its_retry_time_is_a_false_denial() {
    caught(Variant::MemoIgnoresRetryTime, Invariant::NoFalseDenial, 1);
}

/// A check that skips the last rate over-admits on it.
#[test]
fn skipping_the_last_rate_over_admits() {
    caught(Variant::SkipLastRate, Invariant::NoOverAdmission, 1);
}

/// Recording the caller's stale clock breaks the timestamps' order, and the window searches
/// that rely on it over-admit.
#[test]
fn recording_a_stale_clock_over_admits() {
    caught(Variant::RecordNow, Invariant::NoOverAdmission, 1);
}

/// Taking a walk overtaken by a lap of commits for garbage answers "unavailable" where the
/// reference model admits or denies.
#[test]
fn taking_contention_for_garbage_is_caught() {
    caught(Variant::OvertakenIsCorrupt, Invariant::Reference, 1);
}

/// The two-phase commit killed between its phases leaves a record that the request rates
/// count and the weight rates do not: a crash model catches it on its own, with no commit
/// racing it.
#[test]
fn a_two_phase_commit_killed_between_its_phases() {
    // Thread 2 is denied whatever it sees, so it never builds on the half-done record.
    let scenario = Scenario::new(
        "two-phase commit, killed",
        &[requests(1, 10), weight(10, 10)],
    )
    .setup(&[op(5, 1)])
    .thread(&[op(16, 2)])
    .thread(&[op(6, 1)])
    .only(Invariant::AllOrNothing)
    .preemptions(1);
    // Intact, every crash point passes.
    let stats = scenario.run_every_crash(0);
    eprintln!("clean: {stats}");
    // Broken, some crash point fails (and without a crash the model passes).
    assert!(
        catches(&scenario, Variant::TwoPhaseWeight, Invariant::AllOrNothing).is_err(),
        "a non-crash model should not see this one"
    );
    let caught = (0..stats.points).find_map(|step| {
        catches(
            &scenario.clone().crash(0, step),
            Variant::TwoPhaseWeight,
            Invariant::AllOrNothing,
        )
        .ok()
        .map(|caught| (step, caught))
    });
    let (step, caught) = caught.expect("no crash point caught the two-phase commit");
    eprintln!(
        "TwoPhaseWeight caught by {} with the thread killed before step {step}, at execution {}\n  {}",
        Invariant::AllOrNothing.label(),
        caught.at_execution,
        caught.message.lines().next().unwrap_or_default()
    );
}

/// Every variant against every invariant on its own, printed as a table: every variant is
/// caught by some invariant, and every invariant catches some variant.
#[test]
fn every_variant_against_every_invariant() {
    let bound = 1;
    let mut table = format!("bound {bound}\n");
    let mut caught_by = Vec::new();
    for variant in VARIANTS {
        let scenario = scenario_for(variant).preemptions(bound);
        table.push_str(&format!("{variant:?}:"));
        for invariant in Invariant::ALL {
            let cell = match catches(&scenario, variant, invariant) {
                Ok(caught) => {
                    caught_by.push((variant, invariant));
                    format!("caught@{}", caught.at_execution)
                }
                Err(why) if why.contains("was not caught") => "-".to_string(),
                Err(why) => panic!("{variant:?} / {}: {why}", invariant.label()),
            };
            table.push_str(&format!(" {}={cell}", short(invariant)));
        }
        table.push('\n');
    }
    eprintln!("{table}");
    for variant in VARIANTS {
        assert!(
            caught_by.iter().any(|&(v, _)| v == variant),
            "{variant:?} escaped every invariant"
        );
    }
    for invariant in Invariant::ALL {
        assert!(
            caught_by.iter().any(|&(_, i)| i == invariant),
            "{} caught no variant",
            invariant.label()
        );
    }
}

fn short(invariant: Invariant) -> &'static str {
    match invariant {
        Invariant::NoOverAdmission => "(1)",
        Invariant::AllOrNothing => "(2)",
        Invariant::NoFalseDenial => "(3)",
        Invariant::NoLostCommit => "(4)",
        Invariant::Reference => "(5)",
    }
}
