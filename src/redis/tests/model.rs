//! The script against the sequential reference model, with injected time: the same
//! cases as the protocol's property tests.

use super::*;

/// The sequential sliding-window log (as in `protocol/tests.rs`), in microseconds.
#[derive(Default)]
struct Model {
    log: Vec<(u64, u64)>, // (recorded timestamp µs, weight)
}

#[derive(Debug, Clone, Copy)]
struct ModelRule {
    limit: u64,
    window: u64, // µs
    requests: bool,
}

impl Model {
    fn stamp(&self, now: u64) -> u64 {
        now.max(1).max(self.log.last().map_or(0, |r| r.0))
    }

    fn inside(&self, rule: &ModelRule, t: u64) -> Vec<(u64, u64)> {
        let from = t.saturating_sub(rule.window);
        self.log
            .iter()
            .copied()
            .filter(|&(ts, _)| ts > from && ts <= t)
            .collect()
    }

    fn used(&self, rule: &ModelRule, t: u64) -> u64 {
        let inside = self.inside(rule, t);
        if rule.requests {
            inside.len() as u64
        } else {
            inside.iter().map(|r| r.1).sum()
        }
    }

    /// Ok(Some((ts, seq))) admitted, Ok(None) free, Err((rate, Some(retry_after_us))) denied,
    /// Err((rate, None)) never fits.
    #[allow(clippy::type_complexity)]
    fn acquire(
        &mut self,
        rules: &[ModelRule],
        now: u64,
        weight: u64,
    ) -> Result<Option<(u64, u64)>, (usize, Option<u64>)> {
        let units = |r: &ModelRule| if r.requests { 1 } else { weight };
        if let Some(rate) = rules.iter().position(|r| units(r) > r.limit) {
            return Err((rate, None));
        }
        if rules.iter().all(|r| units(r) == 0) {
            return Ok(None);
        }
        let t = self.stamp(now);
        let mut refusal: Option<(usize, u64)> = None;
        for (index, rule) in rules.iter().enumerate() {
            let u = units(rule);
            if u == 0 || self.used(rule, t) + u <= rule.limit {
                continue;
            }
            let mut used = self.used(rule, t);
            let mut retry_at = None;
            for &(ts, w) in &self.inside(rule, t) {
                used -= if rule.requests { 1 } else { w };
                if used + u <= rule.limit {
                    retry_at = Some(ts + rule.window);
                    break;
                }
            }
            let retry_at = retry_at.expect("dropping every record makes room");
            if refusal.is_none_or(|(_, at)| retry_at > at) {
                refusal = Some((index, retry_at));
            }
        }
        if let Some((rate, retry_at)) = refusal {
            return Err((rate, Some(retry_at - now)));
        }
        self.log.push((t, weight));
        Ok(Some((t, self.log.len() as u64)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The clock moves on by this many µs.
    Ahead(u64),
    /// The clock reads this many µs before the last reading (a stale reading).
    Stale(u64),
    /// The clock reads 0.
    Zero,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire(Step, u64),
    Usage(Step),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..2_000_000).prop_map(Step::Ahead),
        2 => (0u64..20).prop_map(Step::Ahead),
        // Whole milliseconds, as the windows are: timestamps land exactly on window edges.
        4 => (0u64..2000).prop_map(|ms| Step::Ahead(ms * 1000)),
        4 => (0u64..6).prop_map(|ms| Step::Ahead(ms * 1000)),
        1 => (0u64..3_000_000).prop_map(Step::Stale),
        1 => Just(Step::Zero),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (step(), 0u64..5).prop_map(|(s, w)| Op::Acquire(s, w)),
        1 => step().prop_map(Op::Usage),
    ]
}

fn rules_strategy() -> impl Strategy<Value = Vec<ModelRule>> {
    proptest::collection::vec(
        ((1u64..6), prop_oneof![1u64..8, 1u64..4000], any::<bool>()).prop_map(
            |(limit, ms, requests)| ModelRule {
                limit,
                window: ms * 1000,
                requests,
            },
        ),
        1..4,
    )
    .prop_map(|mut rules| {
        let key = |r: &ModelRule| (r.limit, r.window, r.requests);
        let mut seen = Vec::new();
        rules.retain(|r| {
            let new = !seen.contains(&key(r));
            seen.push(key(r));
            new
        });
        rules
    })
}

fn rates_of(rules: &[ModelRule]) -> Vec<Rate> {
    rules
        .iter()
        .map(|r| {
            let window = Duration::from_micros(r.window);
            if r.requests {
                Rate::requests(r.limit, window)
            } else {
                Rate::new(r.limit, window)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every outcome, recorded timestamp, sequence number, retry time and usage the script
    /// gives equals the sequential reference model's, with the server's clock replaced by
    /// the test's (ahead, by a little, stale, 0).
    #[test]
    fn the_script_matches_the_reference_model(rules in rules_strategy(), ops in proptest::collection::vec(op(), 1..150)) {
        let Some((_dir, server)) = local_server() else { return Ok(()) };
        let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates_of(&rules)).unwrap();
        let redis = redis_of(&limiter);
        let mut model = Model::default();
        let mut now = 1_700_000_000_000_000u64;
        for op in ops {
            let step = match op { Op::Acquire(step, _) | Op::Usage(step) => step };
            let at = match step {
                Step::Ahead(d) => { now += d; now }
                Step::Stale(d) => now.saturating_sub(d),
                Step::Zero => 0,
            };
            match op {
                Op::Acquire(_, weight) => {
                    let got = redis.try_at(Some(at), weight);
                    let want = model.acquire(&rules, at, weight);
                    match (&got, want) {
                        (Ok(Some(stamp)), Ok(Some((ts, seq)))) => {
                            prop_assert_eq!(stamp.timestamp, ts * 1000);
                            prop_assert_eq!(u64::from(stamp.sequence), seq);
                        }
                        (Ok(None), Ok(None)) => {}
                        (Err(denied), Err((rate, Some(retry_us)))) => {
                            prop_assert_eq!(denied.rate_index(), rate);
                            prop_assert_eq!(denied.retry_after(), Some(Duration::from_micros(retry_us)));
                        }
                        (Err(denied), Err((rate, None))) => {
                            prop_assert_eq!(denied.rate_index(), rate);
                            prop_assert!(matches!(denied.kind(), DenialKind::NeverFits { .. }), "{:?}", denied);
                        }
                        _ => prop_assert!(false, "at {}: script {:?}, model {:?}", at, got, want),
                    }
                }
                Op::Usage(_) => {
                    let usage = redis.usage_at(Some(at)).unwrap();
                    let t = model.stamp(at);
                    for (rule, used) in rules.iter().zip(&usage) {
                        prop_assert_eq!(used.used, model.used(rule, t));
                        let next = model.inside(rule, t).first().map(|r| Duration::from_micros(r.0 + rule.window - t));
                        prop_assert_eq!(used.next_free, next);
                    }
                }
            }
        }
        // The log holds every entry from the newest outside the longest window at the last
        // admission on (the trim keeps it), consecutive, as the model recorded them: a trim
        // never drops what a window may still need. (That the trim runs: layout.rs.)
        let entries = log_entries(&server, &redis.keys()[0]);
        let longest = rules.iter().map(|r| r.window).max().unwrap();
        let last = model.log.last().map_or(0, |r| r.0);
        let kept_from = model.log.iter().rposition(|r| r.0 + longest <= last).map_or(1, |i| i + 1) as u64;
        prop_assert!(entries.first().is_none_or(|e| e.seq <= kept_from), "{:?}, kept from {}", entries.first(), kept_from);
        let mut cum = 0u64;
        let sums: Vec<(u64, u64, u32)> = model.log.iter().enumerate().map(|(i, r)| {
            cum += r.1;
            (i as u64 + 1, r.0, (cum % (1 << 32)) as u32)
        }).collect();
        let got: Vec<(u64, u64, u32)> = entries.iter().map(|e| (e.seq, e.ts, e.cum)).collect();
        prop_assert_eq!(&got[..], &sums[sums.len() - got.len()..]);
    }
}
