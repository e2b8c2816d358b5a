//! The layout on the server: one member per admission whatever the weight, a log trimmed to
//! a bound, keys that expire when idle and share one hash tag, and garbage in the keys
//! reported.

use super::*;

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
    // The head (layout 4): 6 + 1 big-endian u64, each below 2^53, then the newest
    // admission's nonce (8 bytes).
    assert_eq!(good.len(), 8 * 7 + 8, "{good:?}");
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
        (good[..good.len() - 16].to_vec(), "not 7 numbers"),
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
