//! The rates and the counters beside the log: refusals counted as the file counts them,
//! other rates refused at connect, the same rates in another order sharing the bounds,
//! arguments of another length refused, and a read that creates nothing.

use super::*;

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
