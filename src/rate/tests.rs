use proptest::prelude::*;

use super::*;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

fn parse(text: &str) -> Rate {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// The reason a text is refused (the part after "invalid rate TEXT: ").
fn refused(text: &str) -> String {
    let err = text
        .parse::<Rate>()
        .expect_err(&format!("{text:?} should be refused"));
    let Error::InvalidRate { rate, reason } = &err else {
        panic!("{text:?}: not an InvalidRate: {err}");
    };
    assert_eq!(rate, text, "the error quotes the text as given");
    assert!(err.to_string().starts_with("invalid rate "), "{err}");
    reason.clone()
}

#[test]
fn parses_the_documented_forms() {
    let tokens = |limit, window| Rate::new(limit, window).with_unit(WeightUnit::Tokens);
    let bytes = |limit, window| Rate::new(limit, window).with_unit(WeightUnit::Bytes);
    let cases = [
        ("10/s", Rate::new(10, SEC)),
        ("600/min", Rate::new(600, MIN)),
        ("600/m", Rate::new(600, MIN)),
        ("10000/day", Rate::new(10_000, 1440 * MIN)),
        ("90000tok/min", tokens(90_000, MIN)),
        ("90000tokens/min", tokens(90_000, MIN)),
        ("60req/min", Rate::requests(60, MIN)),
        ("60requests/minute", Rate::requests(60, MIN)),
        ("5/2s", Rate::new(5, 2 * SEC)),
        ("1_000/100ms", Rate::new(1_000, Duration::from_millis(100))),
        (" 3 / 1h ", Rate::new(3, 60 * MIN)),
        ("10 req / 2 s", Rate::requests(10, 2 * SEC)),
        ("7/3us", Rate::new(7, Duration::from_micros(3))),
        ("7/3µs", Rate::new(7, Duration::from_micros(3))),
        ("7/250ns", Rate::new(7, Duration::from_nanos(250))),
        ("1/w", Rate::new(1, 7 * 1440 * MIN)),
        ("4/2hr", Rate::new(4, 120 * MIN)),
        ("100B/s", bytes(100, SEC)),
        ("100bytes/s", bytes(100, SEC)),
    ];
    for (text, rate) in cases {
        assert_eq!(parse(text), rate, "{text}");
    }
}

#[test]
fn the_request_word_and_the_units_are_read_in_any_case() {
    for text in [
        "60req/min",
        "60REQ/min",
        "60Req/min",
        "60Requests/MIN",
        "60reqs/Min",
    ] {
        assert_eq!(parse(text), Rate::requests(60, MIN), "{text}");
        assert_eq!(parse(text).counts(), Counts::Requests, "{text}");
    }
    for text in ["5/S", "5/Sec", "5/SECONDS", "5/1s"] {
        assert_eq!(parse(text), Rate::new(5, SEC), "{text}");
    }
    for text in ["5/MIN", "5/Minute", "5/h", "5/H", "5/HOUR"] {
        assert!(parse(text).window() >= MIN, "{text}");
    }
    assert_eq!(parse("5/MS"), Rate::new(5, Duration::from_millis(1)));
    assert_eq!(parse("5/D"), Rate::new(5, 1440 * MIN));
    assert_eq!(parse("9TOK/s"), parse("9tok/s"));
    assert_eq!(parse("9Bytes/s"), parse("9B/s"));
}

#[test]
fn multipliers_are_exact() {
    let cases = [
        ("10k/s", 10_000),
        ("10K/s", 10_000),
        ("2M/day", 2_000_000),
        ("4G/d", 4_000_000_000),
        ("3Ki/s", 3 * 1024),
        ("3Mi/s", 3 * 1024 * 1024),
        ("3Gi/s", 3 * 1024 * 1024 * 1024),
        ("1_5k/s", 15_000),
        ("90ktok/min", 90_000),
        ("64KiB/s", 65_536),
        ("2kreq/h", 2_000),
    ];
    for (text, limit) in cases {
        assert_eq!(parse(text).limit(), limit, "{text}");
    }
    assert_eq!(parse("2kreq/h").counts(), Counts::Requests);
    assert_eq!(parse("64KiB/s").unit(), Some(WeightUnit::Bytes));
    assert!(refused("5G/s").contains("at most 4294967295"));
    assert!(refused("4Gi/s").contains("at most 4294967295"));
}

#[test]
fn rejects_bad_text_with_a_reason_and_a_suggestion() {
    let cases = [
        ("", "expected LIMIT"),
        ("10", "expected LIMIT"),
        ("x/s", "the limit must come first"),
        ("-1/s", "the limit must come first"),
        ("_5/s", "whole number"),
        ("5_/s", "whole number"),
        ("1__0/s", "whole number"),
        ("10/_5s", "whole number"),
        ("10/", "needs a unit"),
        ("10/5", "needs a unit"),
        ("10/parsec", "unknown time unit"),
        ("10/minn", "did you mean min?"),
        ("10/1.5s", "1500ms"),
        ("10/1,5s", "1500ms"),
        ("5/M", "minutes or months"),
        ("5/month", "30d"),
        ("5/year", "365d"),
        ("0/s", "at least 1"),
        ("10/0s", "longer than zero"),
        ("10 tok!/s", "not a word"),
        ("10foo/min", "unknown word \"foo\""),
        ("60rq/min", "did you mean req?"),
        ("90000tokn/min", "did you mean tok"),
        ("10m/s", "write M for a million"),
        ("10mreq/s", "10Mreq"),
        ("25m/s", "(25M)"),
        ("10foo/min", "nothing (counts weight)"),
        ("10T/s", "largest multiplier is G"),
        ("10b/s", "bits or bytes"),
        ("10Kb/s", "bits or bytes"),
        ("10kfoo/s", "unknown word \"foo\""),
        // A word that only starts like a multiplier is just an unknown word.
        ("10mfoo/s", "unknown word \"mfoo\""),
        ("10Tfoo/s", "unknown word \"Tfoo\""),
        ("10kmreq/s", "unknown word \"mreq\""),
        ("5000000000/s", "at most 4294967295"),
        ("99999999999999999999999/s", "too large"),
        ("1/400d", "at most 366 days"),
        ("1/367d", "at most 366 days"),
        ("1/99999999999999999w", "at most 366 days"),
        ("1/99999999999999999999w", "too large"),
    ];
    for (text, expected) in cases {
        let reason = refused(text);
        assert!(
            reason.contains(expected),
            "{text:?}: {reason:?} lacks {expected:?}"
        );
    }
}

#[test]
fn the_window_limit_is_366_days() {
    let day = 1440 * MIN;
    assert_eq!(parse("1/366d").window(), 366 * day);
    assert_eq!(parse("1/366d").window(), MAX_WINDOW);
    assert!(refused("1/367d").contains("366 days"));
    assert!(Rate::new(1, MAX_WINDOW).rule().is_ok());
    assert!(
        Rate::new(1, MAX_WINDOW + Duration::from_nanos(1))
            .rule()
            .is_err()
    );
    assert_eq!(parse("1/8784h").window(), MAX_WINDOW);
    assert!(refused("1/8785h").contains("366 days"));
}

#[test]
fn display_round_trips() {
    for text in [
        "10/s",
        "600/min",
        "10000/d",
        "90000/min",
        "90000tok/min",
        "100B/s",
        "60req/min",
        "5/2s",
        "7/100ms",
        "3/90s",
        "1/w",
        "2/3us",
        "2/7ns",
        "4294967295/366d",
    ] {
        let rate = parse(text);
        assert_eq!(rate.to_string(), text);
        assert_eq!(parse(&rate.to_string()), rate);
    }
    assert_eq!(parse("2M/day").to_string(), "2000000/d");
    assert_eq!(parse("60REQ/Minute").to_string(), "60req/min");
    assert_eq!(parse("9 tokens / 2 hours").to_string(), "9tok/2h");
}

#[test]
fn a_rate_turns_into_the_rule_that_counts_what_it_says() {
    let requests = Rate::requests(60, MIN).rule().unwrap();
    assert_eq!(
        requests,
        Rule {
            limit: 60,
            window: 60_000_000_000,
            requests: true
        }
    );
    let weight = Rate::new(90_000, MIN).rule().unwrap();
    assert!(!weight.requests);
    assert_eq!((weight.limit, weight.window), (90_000, 60_000_000_000));
    // A unit names the weight; the rule counts weight all the same.
    assert_eq!(
        Rate::new(90_000, MIN)
            .with_unit(WeightUnit::Tokens)
            .rule()
            .unwrap(),
        weight
    );
    assert!(parse("60req/min").rule().unwrap().requests);
    assert!(!parse("60tok/min").rule().unwrap().requests);
    // And back.
    assert_eq!(Rate::from_rule(&requests), Rate::requests(60, MIN));
    assert_eq!(Rate::from_rule(&weight), Rate::new(90_000, MIN));
    assert_eq!(
        Rate::from_rule_with_unit(&weight, Some(WeightUnit::Bytes)).to_string(),
        "90000B/min"
    );
    // A request-counting rate with a unit of weight makes no sense.
    let err = Rate::requests(1, SEC)
        .with_unit(WeightUnit::Tokens)
        .rule()
        .unwrap_err();
    assert!(err.to_string().contains("no unit"), "{err}");
}

#[test]
fn validation_rejects_zero_limit_and_zero_window() {
    assert!(Rate::new(0, SEC).rule().is_err());
    assert!(Rate::new(1, Duration::ZERO).rule().is_err());
    assert!(Rate::new(MAX_LIMIT + 1, SEC).rule().is_err());
    assert!(Rate::new(MAX_LIMIT, SEC).rule().is_ok());
    assert!(Rate::new(1, Duration::from_nanos(1)).rule().is_ok());
}

#[test]
fn unit_codes_round_trip() {
    for unit in [None, Some(WeightUnit::Tokens), Some(WeightUnit::Bytes)] {
        assert_eq!(WeightUnit::from_code(WeightUnit::code(unit)), Ok(unit));
    }
    assert_eq!(WeightUnit::from_code(3), Err(3));
    assert_eq!(WeightUnit::from_code(255), Err(255));
}

#[test]
fn suggestions_need_a_close_word() {
    assert_eq!(distance("kitten", "sitting"), 3);
    assert_eq!(distance("", "abc"), 3);
    assert_eq!(distance("abc", ""), 3);
    assert_eq!(distance("xab", "ab"), 1);
    assert_eq!(distance("req", "req"), 0);
    assert_eq!(distance("rq", "req"), 1);
    assert_eq!(
        suggestion("rq", ["req", "tok"].into_iter()),
        " (did you mean req?)"
    );
    assert_eq!(suggestion("foo", ["req", "tok"].into_iter()), "");
    assert_eq!(
        suggestion("reqests", ["requests"].into_iter()),
        " (did you mean requests?)"
    );
    assert_eq!(suggestion("rqsts", ["requests"].into_iter()), "");
    assert_eq!(suggestion("zzzzz", ["req", "tok"].into_iter()), "");
    // A one-letter candidate is never "close" to anything else.
    assert_eq!(suggestion("x", ["B"].into_iter()), "");
}

fn any_rate() -> impl Strategy<Value = Rate> {
    let window = prop_oneof![
        // Whole units, as people write them...
        (1u64..=366, Just(86_400 * NANOS_PER_SECOND)),
        (1u64..=1000, Just(NANOS_PER_SECOND)),
        (1u64..=1000, Just(1_000_000u64)),
        // ...and any nanosecond count at all.
        (1u64..=MAX_WINDOW.as_nanos() as u64, Just(1u64)),
    ]
    .prop_map(|(count, unit)| Duration::from_nanos(count * unit));
    let kind = prop_oneof![
        Just((Counts::Weight, None)),
        Just((Counts::Weight, Some(WeightUnit::Tokens))),
        Just((Counts::Weight, Some(WeightUnit::Bytes))),
        Just((Counts::Requests, None)),
    ];
    (1..=MAX_LIMIT, window, kind).prop_map(|(limit, window, (counts, unit))| Rate {
        limit,
        window,
        counts,
        unit,
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 8 } else { 256 },
        // Miri's isolation has no `getcwd`, which proptest's failure file needs.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    /// parse(display(rate)) == rate for every valid rate.
    #[test]
    fn parse_of_display_is_the_rate(rate in any_rate()) {
        prop_assert!(rate.rule().is_ok());
        let text = rate.to_string();
        prop_assert_eq!(text.parse::<Rate>().map_err(|e| e.to_string()), Ok(rate), "{}", text);
    }

    /// Parsing never panics, and whatever it accepts prints back to an equal rate.
    #[test]
    fn parsing_any_text_is_total(text in "[0-9kKMGiTtokreqBbyms_µ/. ]{0,14}") {
        if let Ok(rate) = text.parse::<Rate>() {
            prop_assert!(rate.rule().is_ok());
            prop_assert_eq!(rate.to_string().parse::<Rate>().ok(), Some(rate));
        }
    }
}
