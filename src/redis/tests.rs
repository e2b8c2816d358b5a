//! The script against a real `redis-server` (started per test on a free loopback port): the
//! sequential reference model with injected time, the layout (one member per admission,
//! trimmed, expiring, one hash tag), the rates check and garbage in the keys.
//!
//! Without `redis-server` these tests say so and pass, except under `CI=true`, where they
//! fail: CI must run them (`server::for_test`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::server::{self, LocalServer};
use super::*;
use crate::Limiter;

/// A server for one test, or `None` (skipped) where there is no `redis-server` outside CI.
pub(crate) fn local_server() -> Option<(tempfile::TempDir, LocalServer)> {
    let dir = tempfile::tempdir().unwrap();
    let server = server::for_test(dir.path(), false)?;
    Some((dir, server))
}

/// A name no other case of this process used.
fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn redis_of(limiter: &Limiter) -> &RedisLimiter {
    limiter.as_redis().expect("a Redis limiter")
}

/// A new limiter of 10/s on `server`, one unit admitted.
fn ten_a_second(server: &LocalServer) -> Limiter {
    let rates = [Rate::new(10, Duration::from_secs(1))];
    let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates).unwrap();
    limiter.try_acquire(1).unwrap();
    limiter
}

fn raw(server: &LocalServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

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
        // The log holds at least every member from the newest outside the longest window at
        // the last admission on (the trim keeps it, with any that share its timestamp): a
        // trim never drops what a window may still need. (That the trim runs: below.)
        let members: u64 = redis::cmd("ZCARD").arg(&redis.keys()[0]).query(&mut raw(&server)).unwrap();
        let longest = rules.iter().map(|r| r.window).max().unwrap();
        let last = model.log.last().map_or(0, |r| r.0);
        let kept_from = model.log.iter().filter(|r| r.0 + longest <= last).map(|r| r.0).max().unwrap_or(0);
        let kept = model.log.iter().filter(|r| r.0 >= kept_from).count() as u64;
        prop_assert!(members >= kept && members <= model.log.len() as u64, "{} members, {} kept", members, kept);
    }
}

/// The log stays bounded: trimmed every 64 admissions, it holds at most what the longest
/// window holds plus 65, however many admissions.
#[test]
fn the_log_is_trimmed_to_a_bound() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    // 1 ms windows, one admission per ms of injected time: a window holds one or two.
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[
            Rate::new(5, Duration::from_millis(1)),
            Rate::requests(5, Duration::from_micros(500)),
        ],
    )
    .unwrap();
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    let start = 1_700_000_000_000_000u64;
    let mut most = 0;
    for i in 0..2000 {
        redis.try_at(Some(start + i * 1000), 1).unwrap();
        let members: u64 = redis::cmd("ZCARD")
            .arg(&redis.keys()[0])
            .query(&mut con)
            .unwrap();
        most = most.max(members);
    }
    assert!(most <= 2 + 65, "the log held {most} members");
    assert!(
        most > 64,
        "trimmed at every admission: {most} members at most"
    );
    assert_eq!(limiter.admitted().unwrap(), 2000);
}

/// Weight costs nothing extra: an admission of 1000 is one member, as one of 1 is.
#[test]
fn a_heavy_admission_is_one_member() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::new(5000, Duration::from_secs(60))],
    )
    .unwrap();
    limiter.try_acquire(1000).unwrap();
    limiter.try_acquire(1).unwrap();
    limiter.try_acquire(3999).unwrap();
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&redis.keys()[0])
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        members,
        [
            "0000000000000001:1000",
            "0000000000000002:1001",
            "0000000000000003:5000"
        ]
    );
    let denied = limiter.try_acquire(1).unwrap_err();
    assert_eq!(denied.rate_index(), 0);
    let retry = denied.retry_after().unwrap();
    assert!(
        retry > Duration::from_secs(59) && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    assert_eq!(limiter.usage().unwrap()[0].used, 5000);
    assert_eq!(limiter.admitted().unwrap(), 3);
}

/// Refusals are counted beside the log as the file counts them: per rate, never-fits,
/// timed-out waits; the tries of a wait that is admitted are not refusals.
#[test]
fn refusals_are_counted_beside_the_log() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let rates = [
        Rate::new(3, Duration::from_secs(60)),
        Rate::requests(10, Duration::from_secs(60)),
    ];
    let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates).unwrap();
    limiter.try_acquire(3).unwrap();
    assert!(limiter.try_acquire(1).is_err());
    assert!(limiter.try_acquire(4).is_err());
    assert!(limiter.acquire(1, Duration::from_millis(10)).is_err());
    let counters = limiter.counters().unwrap();
    assert_eq!(counters.denied, [Some(3), Some(0)]);
    assert_eq!(
        (counters.never_fits, counters.timed_out),
        (Some(1), Some(1))
    );
    assert_eq!(limiter.usage().unwrap()[0].denied, 3);
}

/// Rates are stored beside the log: other rates are refused at connect, naming both; the
/// same rates in another order are the same limiter.
#[test]
fn other_rates_are_refused_at_connect_naming_both() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let name = fresh_name();
    let ours = [
        Rate::new(10, Duration::from_secs(1)),
        Rate::requests(100, Duration::from_secs(60)),
    ];
    let limiter = Limiter::connect(&server.url(), &name, &ours).unwrap();
    limiter.try_acquire(1).unwrap();
    Limiter::connect(&server.url(), &name, &[ours[1], ours[0]]).expect("same rates, other order");
    let error = Limiter::connect(
        &server.url(),
        &name,
        &[Rate::new(20, Duration::from_secs(1))],
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::RedisMismatch { .. }), "{error:?}");
    assert!(
        text.contains("[10/s, 100req/min]") && text.contains("[20/s]"),
        "{text}"
    );
    assert!(text.contains(&name), "{text}");
    // A limiter that never admitted anything still holds its rates.
    let fresh = fresh_name();
    Limiter::connect(&server.url(), &fresh, &ours).unwrap();
    assert!(
        Limiter::connect(
            &server.url(),
            &fresh,
            &[Rate::new(20, Duration::from_secs(1))]
        )
        .is_err()
    );
}

/// The same rates in another order are one limiter with one set of bounds: the script
/// numbers rates in canonical order, so a caller that gave them in another order reads
/// each rate's own bound (and counter), and no window exceeds its limit.
#[test]
fn rates_in_another_order_share_the_bounds() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let name = fresh_name();
    let weight = Rate::new(1000, Duration::from_secs(60));
    let requests = Rate::requests(10, Duration::from_secs(60));
    let a = Limiter::connect(&server.url(), &name, &[weight, requests]).unwrap();
    let b = Limiter::connect(&server.url(), &name, &[requests, weight]).unwrap();
    a.try_acquire(100).unwrap();
    a.try_acquire(100).unwrap();
    b.try_acquire(1).unwrap();
    // 201 of 1000 used: 900 more never fit in this window, for either caller (in layout 3
    // each read the other's bounds as its own, and `a` admitted this).
    let denied = a.try_acquire(900).unwrap_err();
    assert!(
        matches!(denied.kind(), DenialKind::Exhausted { .. }) && denied.rate_index() == 0,
        "{denied:?}"
    );
    let denied = b.try_acquire(900).unwrap_err();
    assert!(
        matches!(denied.kind(), DenialKind::Exhausted { .. }) && denied.rate_index() == 1,
        "{denied:?}"
    );
    let used = |limiter: &Limiter| -> Vec<(u64, u64)> {
        limiter
            .usage()
            .unwrap()
            .iter()
            .map(|u| (u.used, u.denied))
            .collect()
    };
    assert_eq!(used(&a), [(201, 2), (3, 0)]);
    assert_eq!(used(&b), [(3, 0), (201, 2)]);
    assert_eq!(redis_of(&a).admitted().unwrap(), 3);
}

/// Numbers of a length the script cannot read (a caller of another version) are an error
/// saying so, not a Lua error.
#[test]
fn numbers_of_another_length_are_refused() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = ten_a_second(&server);
    let redis = redis_of(&limiter);
    let call = |field: &str, numbers: Vec<u8>| {
        redis::cmd("EVALSHA")
            .arg(redis.script.get_hash())
            .arg(2)
            .arg(&redis.keys()[0])
            .arg(&redis.keys()[1])
            .arg("acquire")
            .arg(field)
            .arg(&redis.written)
            .arg(numbers)
            .query::<Vec<i64>>(&mut raw(&server))
            .unwrap_err()
    };
    for length in [0, 32, 49, 51, 32 + 18 * 65] {
        let error = call(redis.head_field(), vec![0u8; length]);
        assert_eq!(error.code(), Some("HLARGS"), "{length}: {error}");
        let text = redis.refused(&error).to_string();
        assert!(
            text.contains(&format!(
                "cannot read its arguments: the numbers are {length} bytes"
            )),
            "{text}"
        );
    }
    // A field of another layout is refused too.
    let mut numbers = vec![0u8; 24];
    numbers.extend_from_slice(&redis.numbers);
    let error = call("h3 10/1000000000/w", numbers);
    assert_eq!(error.code(), Some("HLARGS"), "{error}");
    limiter.try_acquire(1).unwrap();
}

/// Reading the count of admissions creates nothing: of an expired limiter (its keys gone,
/// as expiry leaves them) it reads 0 and leaves no key, where an acquire recreates them.
#[test]
fn a_read_of_an_expired_limiter_creates_no_key() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = ten_a_second(&server);
    let redis = redis_of(&limiter);
    assert_eq!(redis.admitted().unwrap(), 1);
    let mut con = raw(&server);
    let existing = |con: &mut redis::Connection| -> i64 {
        redis::cmd("EXISTS")
            .arg(&redis.keys()[0])
            .arg(&redis.keys()[1])
            .query(con)
            .unwrap()
    };
    assert_eq!(existing(&mut con), 2);
    let _: () = redis::cmd("DEL")
        .arg(&redis.keys()[0])
        .arg(&redis.keys()[1])
        .query(&mut con)
        .unwrap();
    assert_eq!(redis.admitted().unwrap(), 0);
    assert_eq!(existing(&mut con), 0, "a read created a key");
    limiter.try_acquire(1).unwrap();
    assert_eq!(existing(&mut con), 2);
    assert_eq!(redis.admitted().unwrap(), 1);
}

/// Both keys expire when idle longer than the longest window, and carry one hash tag.
#[test]
fn the_keys_expire_when_idle_and_share_a_hash_tag() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let name = fresh_name();
    let limiter = Limiter::connect(
        &server.url(),
        &name,
        &[
            Rate::new(10, Duration::from_secs(1)),
            Rate::new(100, Duration::from_secs(30)),
        ],
    )
    .unwrap();
    limiter.try_acquire(1).unwrap();
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    for key in redis.keys() {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).unwrap();
        // Pushed back to twice the longest window plus a second, and only once less than
        // one window plus a second is left.
        assert!((60_000..=62_000).contains(&ttl), "{key}: {ttl} ms");
        // Cluster hashes only what is inside the first {...}: the name.
        let tag = key
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag);
        assert_eq!(tag, Some(name.as_str()), "{key}");
    }
    assert!(redis.reset().unwrap());
    assert_eq!(limiter.admitted().unwrap(), 0);
    assert!(!redis.reset().unwrap());
}

/// Garbage in the keys is a denial (or an error) saying so, never a panic or a guess.
#[test]
fn garbage_in_the_keys_is_reported() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = ten_a_second(&server);
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    let [log, head] = redis.keys().clone();
    let unusable_at = |limiter: &Limiter, weight: u64| {
        let denied = limiter.try_acquire(weight).unwrap_err();
        assert!(
            matches!(denied.kind(), DenialKind::Unavailable { .. }),
            "{denied:?}"
        );
        denied.to_string()
    };
    let unusable = |limiter: &Limiter| unusable_at(limiter, 1);
    let field = redis.head_field().to_string();
    assert_eq!(field, "h4 10/1000000000/w");
    let good: Vec<u8> = redis::cmd("HGET")
        .arg(&head)
        .arg(&field)
        .query(&mut con)
        .unwrap();
    // The head (layout 4): 6 + 1 big-endian u64, each below 2^53.
    assert_eq!(good.len(), 8 * 7, "{good:?}");
    let with = |field: usize, value: u64| {
        let mut bad = good.clone();
        bad[8 * field..8 * field + 8].copy_from_slice(&value.to_be_bytes());
        bad
    };
    let too_many = [good.as_slice(), &1u64.to_be_bytes()].concat();
    for (bad, why) in [
        (with(0, (1 << 53) + 1), "not integers"),
        (with(6, u64::MAX), "not integers"),
        (with(1, 1 << 32), "not integers"),
        (with(3, 0), "not integers"),
        (with(3, 2), "not integers"),
        (too_many, "not 7 numbers"),
        (good[..good.len() - 8].to_vec(), "not 7 numbers"),
        (good[..good.len() - 1].to_vec(), "not 7 numbers"),
        (b"1:1:1:1:1:1:1".to_vec(), "not 7 numbers"),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(&head)
            .arg(&field)
            .arg(&bad)
            .query(&mut con)
            .unwrap();
        let text = unusable(&limiter);
        assert!(text.contains("garbage"), "{bad:?}: {text}");
        let expected = if why == "not integers" {
            "not 7 integers in range"
        } else {
            why
        };
        assert!(text.contains(expected), "{bad:?}: {text}");
        // The count of admissions reads the same head, checked by the same script.
        let error = redis.admitted().unwrap_err().to_string();
        assert!(error.contains(expected), "{bad:?}: {error}");
    }
    let _: () = redis::cmd("HSET")
        .arg(&head)
        .arg(&field)
        .arg(&good)
        .query(&mut con)
        .unwrap();
    limiter.try_acquire(1).unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&log)
        .arg(1)
        .arg("nonsense")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("ZREM")
        .arg(&log)
        .arg("0000000000000001:1")
        .query(&mut con)
        .unwrap();
    // A try whose rate's bound (2 admitted) shows room does not read the log; one that
    // must search it finds the garbage.
    assert!(unusable_at(&limiter, 9).contains("garbage"));
    assert!(limiter.usage().is_err());
    // A limiter of layout 2 (text head in `h`), 3 (binary head in `h`) or of a later
    // layout (its head under a field of its own) is refused, naming both; so is a read.
    let _: () = redis::cmd("HDEL")
        .arg(&head)
        .arg(&field)
        .query(&mut con)
        .unwrap();
    for (version, h) in [
        ("2", b"1:1:1:1:1:1:1".to_vec()),
        ("3", good.clone()),
        ("99", good.clone()),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(&head)
            .arg("v")
            .arg(version)
            .arg("h")
            .arg(h)
            .query(&mut con)
            .unwrap();
        let text = unusable(&limiter);
        let expected = format!("key layout {version}, this library writes 4");
        assert!(text.contains(&expected), "{text}");
        let error = redis.admitted().unwrap_err().to_string();
        assert!(error.contains(&expected), "{error}");
    }
    // A log without its head.
    let _: () = redis::cmd("DEL").arg(&head).query(&mut con).unwrap();
    assert!(unusable(&limiter).contains("garbage"));
    // A key of another type.
    let _: () = redis::cmd("DEL").arg(&log).query(&mut con).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&log)
        .arg("x")
        .query(&mut con)
        .unwrap();
    let text = unusable(&limiter);
    assert!(
        text.contains("WRONGTYPE") || text.contains("garbage"),
        "{text}"
    );
}

/// A server that lost the cached script (a restart, `SCRIPT FLUSH`) gets it again.
#[test]
fn a_flushed_script_is_loaded_again() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::new(3, Duration::from_secs(60))],
    )
    .unwrap();
    limiter.try_acquire(1).unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut raw(&server))
        .unwrap();
    limiter.try_acquire(1).unwrap();
    assert_eq!(limiter.admitted().unwrap(), 2);
    // The async connection loads it again too.
    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(limiter.acquire_async(1, Duration::ZERO))
            .unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut raw(&server))
            .unwrap();
        // A refusal, not an error: the script ran after its reload.
        let denied = runtime
            .block_on(limiter.acquire_async(1, Duration::ZERO))
            .unwrap_err();
        assert!(
            matches!(denied.kind(), DenialKind::Exhausted { .. }),
            "{denied:?}"
        );
        assert_eq!(limiter.admitted().unwrap(), 3);
    }
}

/// `info` on Redis names the target (without credentials) and the rates; the fields of a
/// file are zero, as documented.
#[test]
fn info_names_the_target_and_the_rates() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let name = fresh_name();
    let rates = [
        Rate::requests(60, Duration::from_secs(60)),
        Rate::new(900, Duration::from_secs(60)),
    ];
    let limiter = Limiter::connect(&server.url(), &name, &rates).unwrap();
    let info = limiter.info();
    assert_eq!(info.rates, rates);
    let target = info.path.to_string_lossy().into_owned();
    assert!(target.starts_with("redis://"), "{target}");
    assert!(target.ends_with(&format!("#{name}")), "{target}");
    assert_eq!(limiter.path(), info.path.as_path());
    assert_eq!((info.capacity, info.size, info.creator_pid), (0, 0, 0));
    assert!(!info.journaled);
}

#[test]
fn credentials_are_not_shown() {
    assert_eq!(
        without_credentials("redis://u:secret@h:1/0"),
        "redis://h:1/0"
    );
    assert_eq!(without_credentials("redis://h:1/0"), "redis://h:1/0");
}

/// Threads of one limiter do not wait for each other's round trips: while one thread holds
/// a connection (here: stuck inside its call), another's try goes through on a second one.
#[test]
fn a_call_in_progress_does_not_hold_up_another_thread() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::new(10, Duration::from_secs(60))],
    )
    .unwrap();
    let backend = redis_of(&limiter);
    let limiter = &limiter;
    let (release, stuck) = std::sync::mpsc::channel::<()>();
    let (inside, entered) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            backend
                .link
                .call(|connection| {
                    inside.send(()).unwrap();
                    // Held until the other thread's try is through (or the test gives up).
                    let _ = stuck.recv_timeout(Duration::from_secs(60));
                    redis::cmd("PING").query::<String>(connection)
                })
                .unwrap();
        });
        entered.recv().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        scope.spawn(move || done.send(limiter.try_acquire(1)).unwrap());
        // With one connection behind a lock this would wait for the first thread, which
        // waits for this: the try would not finish before the first thread gave up.
        let outcome = finished.recv_timeout(Duration::from_secs(30));
        release.send(()).unwrap();
        assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
    });
    assert_eq!(limiter.admitted().unwrap(), 1);
}
