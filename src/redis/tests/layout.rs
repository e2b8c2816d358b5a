//! The layout on the server: one list entry per admission whatever the weight, a log
//! trimmed to a bound, keys that expire when idle and share one hash tag, garbage in the
//! keys reported, and a rate counting requests read with one entry, not a search.

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
        let entries: u64 = redis::cmd("LLEN")
            .arg(&redis.keys()[0])
            .query(&mut con)
            .unwrap();
        most = most.max(entries);
    }
    assert!(most <= 2 + 65, "the log held {most} entries");
    assert!(
        most > 64,
        "trimmed at every admission: {most} entries at most"
    );
    // What is left: consecutive, newest last, from the newest outside the longest window.
    let entries = log_entries(&server, &redis.keys()[0]);
    assert_eq!(entries.last().unwrap().seq, 2000);
    for pair in entries.windows(2) {
        assert_eq!(pair[0].seq + 1, pair[1].seq, "{pair:?}");
        assert!(pair[0].ts <= pair[1].ts, "{pair:?}");
    }
    assert!(
        entries[0].ts + 1000 <= entries.last().unwrap().ts,
        "{entries:?}"
    );
    // The head's FIRST (its fourth number) is the oldest entry's sequence number: the entry
    // of sequence s at index SEQ - s, down to FIRST at the list's end.
    let head: Vec<u8> = redis::cmd("HGET")
        .arg(&redis.keys()[1])
        .arg(redis.head_field())
        .query(&mut con)
        .unwrap();
    let first = u64::from_be_bytes(head[24..32].try_into().unwrap());
    assert_eq!(first, entries[0].seq);
    assert_eq!(limiter.admitted().unwrap(), 2000);
}

/// Right after a trim, at the same instant, a search of the longest window finds its
/// boundary in the newest entry the trim kept outside it (the new oldest), and admits.
#[test]
fn a_search_right_after_a_trim_finds_the_kept_entry() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::new(100, Duration::from_millis(1))],
    )
    .unwrap();
    let redis = redis_of(&limiter);
    let start = 1_700_000_000_000_000u64;
    // One a millisecond; the 65th trims to the 64th, the newest outside the window.
    for i in 0..65 {
        redis.try_at(Some(start + i * 1000), 1).unwrap();
    }
    let entries = log_entries(&server, &redis.keys()[0]);
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [64, 65]);
    // The bound (65) shows no room for 40: the window's use is searched, and it is 1.
    let stamp = redis.try_at(Some(start + 64_000), 40).unwrap().unwrap();
    assert_eq!(stamp.sequence, 66);
    assert_eq!(redis.usage_at(Some(start + 64_000)).unwrap()[0].used, 41);
}

/// Weight costs nothing extra: an admission of 1000 is one entry, as one of 1 is.
#[test]
fn a_heavy_admission_is_one_entry() {
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
    let entries = log_entries(&server, &redis_of(&limiter).keys()[0]);
    let numbers: Vec<(u64, u32)> = entries.iter().map(|e| (e.seq, e.cum)).collect();
    assert_eq!(numbers, [(1, 1000), (2, 1001), (3, 5000)]);
    assert!(entries[0].ts > 0 && entries[0].ts <= entries[1].ts && entries[1].ts <= entries[2].ts);
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
    assert_eq!(field, "h5 10/1000000000/w");
    let good: Vec<u8> = redis::cmd("HGET")
        .arg(&head)
        .arg(&field)
        .query(&mut con)
        .unwrap();
    // The head (layout 5): 6 + 1 big-endian u64, each below 2^53.
    // Then the newest admission's nonce, an eighth.
    assert_eq!(good.len(), 8 * 8, "{good:?}");
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
        (too_many, "not 8 numbers"),
        (good[..good.len() - 8].to_vec(), "not 8 numbers"),
        (with(7, 1 << 53), "not integers"),
        (good[..good.len() - 1].to_vec(), "not 8 numbers"),
        (b"1:1:1:1:1:1:1".to_vec(), "not 8 numbers"),
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
            "not 8 integers in range"
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
    // Three entries; an acquire of 8 (the bound, 3, shows no room) reads the log: the
    // oldest first (the boundary's bisection starts there), so each garbage is put there.
    limiter.try_acquire(1).unwrap();
    limiter.try_acquire(1).unwrap();
    let entries = log_entries(&server, &log);
    assert_eq!(entries.len(), 3);
    let oldest = entries[0];
    let last = entries[2].ts;
    let put = |con: &mut redis::Connection, values: &[Vec<u8>]| {
        let _: () = redis::cmd("DEL").arg(&log).query(con).unwrap();
        // Given oldest first; RPUSH keeps that order, so the list is newest first.
        let _: () = redis::cmd("RPUSH")
            .arg(&log)
            .arg(values.iter().rev().collect::<Vec<_>>())
            .query(con)
            .unwrap();
    };
    let packed: Vec<Vec<u8>> = entries.iter().map(|e| e.pack()).collect();
    let with_oldest = |bad: Vec<u8>| vec![bad, packed[1].clone(), packed[2].clone()];
    let garbage = [
        // An entry of the wrong length.
        (with_oldest(oldest.pack()[..19].to_vec()), "19 bytes"),
        (with_oldest([oldest.pack(), vec![0]].concat()), "21 bytes"),
        (with_oldest(b"nonsense".to_vec()), "text"),
        // Its own seq not the one of its index.
        (with_oldest(Entry { seq: 7, ..oldest }.pack()), "seq"),
        // A hole: the middle entry missing (the oldest then not at its index).
        (vec![packed[0].clone(), packed[2].clone()], "a hole"),
        // A timestamp after the newest's, or from 2^53 on.
        (
            with_oldest(
                Entry {
                    ts: last + 1,
                    ..oldest
                }
                .pack(),
            ),
            "ts",
        ),
        (
            with_oldest(
                Entry {
                    ts: 1 << 53,
                    ..oldest
                }
                .pack(),
            ),
            "ts 2^53",
        ),
    ];
    for (values, why) in garbage {
        put(&mut con, &values);
        assert!(unusable_at(&limiter, 8).contains("garbage"), "{why}");
        assert!(limiter.usage().is_err(), "{why}");
    }
    // The good log reads well again; a try whose bound shows room does not read the log.
    put(&mut con, &packed);
    assert_eq!(limiter.usage().unwrap()[0].used, 3);
    put(&mut con, &[b"nonsense".to_vec()]);
    limiter.try_acquire(1).unwrap();
    // A limiter of layout 2 (text head in `h`), 3 (binary head in `h`), 4 (its head in
    // `h4 RULES`, its log a sorted set) or of a later layout (its head under a field of its
    // own) is refused, naming both; so is a read.
    let _: () = redis::cmd("HDEL")
        .arg(&head)
        .arg(&field)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&log).query(&mut con).unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&log)
        .arg(1)
        .arg("0000000000000001:1")
        .query(&mut con)
        .unwrap();
    for (version, name, h) in [
        ("2", "h", b"1:1:1:1:1:1:1".to_vec()),
        ("3", "h", good.clone()),
        ("4", "h4 10/1000000000/w", good.clone()),
        ("99", "h", good.clone()),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(&head)
            .arg("v")
            .arg(version)
            .arg(name)
            .arg(h)
            .query(&mut con)
            .unwrap();
        let text = unusable(&limiter);
        let expected = format!("key layout {version}, this library writes 5");
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

/// A rate counting requests whose bound shows no room reads one entry, the limit-th newest,
/// not a search: in the window, the request is refused until that entry leaves it (the
/// exact retry); out of it, the request fits.
#[test]
fn a_full_count_rate_reads_one_entry() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::requests(3, Duration::from_secs(1))],
    )
    .unwrap();
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    let start = 1_700_000_000_000_000u64;
    for i in 0..3 {
        redis.try_at(Some(start + i * 100_000), 1).unwrap();
    }
    reset_stats(&mut con);
    let denied = redis.try_at(Some(start + 300_000), 1).unwrap_err();
    assert_eq!(denied.rate_index(), 0);
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(700)));
    assert_eq!(calls_of(&mut con, "lindex"), 1);
    // The first admission leaves the window at start + 1 s exactly: then it fits, with one
    // read, and the next refusal names the second admission's leaving.
    reset_stats(&mut con);
    let stamp = redis.try_at(Some(start + 1_000_000), 1).unwrap().unwrap();
    assert_eq!(stamp.sequence, 4);
    assert_eq!(calls_of(&mut con, "lindex"), 1);
    let denied = redis.try_at(Some(start + 1_000_001), 1).unwrap_err();
    assert_eq!(denied.retry_after(), Some(Duration::from_micros(99_999)));
    // The limit-th newest entry garbage: the read says so.
    let log = &redis.keys()[0];
    let _: () = redis::cmd("LSET")
        .arg(log)
        .arg(2)
        .arg("nonsense")
        .query(&mut con)
        .unwrap();
    let denied = redis.try_at(Some(start + 1_000_002), 1).unwrap_err();
    assert!(denied.to_string().contains("garbage"), "{denied}");
}

/// A rate counting requests whose limit-th newest entry was trimmed (so outside every
/// window) admits without reading the log at all.
#[test]
fn a_count_rate_whose_entry_was_trimmed_admits_unread() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        &fresh_name(),
        &[Rate::requests(100, Duration::from_millis(1))],
    )
    .unwrap();
    let redis = redis_of(&limiter);
    let mut con = raw(&server);
    let start = 1_700_000_000_000_000u64;
    // One a millisecond: the trim at the 65th keeps the 64th (the newest outside the
    // window) and what follows; the bound is then 100, no room.
    for i in 0..100 {
        redis.try_at(Some(start + i * 1000), 1).unwrap();
    }
    let entries = log_entries(&server, &redis.keys()[0]);
    assert_eq!((entries[0].seq, entries.len()), (64, 37), "{entries:?}");
    reset_stats(&mut con);
    // The 100th newest is the first, trimmed: no read, admitted.
    let stamp = redis.try_at(Some(start + 100_000), 1).unwrap().unwrap();
    assert_eq!(stamp.sequence, 101);
    assert_eq!(calls_of(&mut con, "lindex"), 0);
    assert_eq!(calls_of(&mut con, "lpush"), 1);
    // And the window's use is right: one admission a millisecond, the window 1 ms.
    assert_eq!(redis.usage_at(Some(start + 100_000)).unwrap()[0].used, 1);
}
