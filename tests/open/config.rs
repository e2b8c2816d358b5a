//! What an open checks before anything is made or attached: rate validation and a
//! configuration that does not match the file's.

use super::*;

#[test]
fn invalid_rates_are_refused_before_anything_is_created() {
    let dir = support::temp_dir();
    let path = dir.path().join("new-dir").join("lim");
    let invalid_rate = [
        Rate::new(0, SEC),
        Rate::new(1, Duration::ZERO),
        Rate::new(MAX_LIMIT + 1, SEC),
        Rate::new(1, MAX_WINDOW + Duration::from_nanos(1)),
        Rate::requests(0, SEC),
    ];
    for rate in invalid_rate {
        let error = Limiter::open(&path, &[Rate::new(10, SEC), rate]).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRate { rate: text, .. } if *text == rate.to_string()),
            "{rate:?}: {error:?}"
        );
        assert!(error.to_string().contains("invalid rate"), "{error}");
    }
    // The extremes are valid.
    // (The largest limit over the longest window is a valid rate, but needs too large a ring.)
    match Limiter::open(
        dir.path().join("max-limit"),
        &[Rate::new(MAX_LIMIT, MAX_WINDOW)],
    ) {
        Ok(_) => {}
        Err(error) => assert!(matches!(error, Error::TooLarge { .. }), "{error:?}"),
    }
    Limiter::open(
        dir.path().join("max-window"),
        &[Rate::requests(1, MAX_WINDOW)],
    )
    .unwrap();

    let nine: Vec<Rate> = (1..=9).map(|i| Rate::new(i, SEC * i as u32)).collect();
    let lists: [(&[Rate], &str); 3] = [
        (&[], "at least one"),
        (
            &[Rate::new(10, SEC), Rate::new(5, MIN), Rate::new(10, SEC)],
            "twice",
        ),
        (&nine, "at most"),
    ];
    for (list, reason) in lists {
        let error = Limiter::open(&path, list).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRates(text) if text.contains(reason)),
            "{list:?}: {error:?}"
        );
    }
    // A weight rate and a request rate with the same numbers are different rates.
    Limiter::open(
        dir.path().join("both-kinds"),
        &[Rate::new(10, SEC), Rate::requests(10, SEC)],
    )
    .unwrap();
    // Ten million weight units a day need a ring larger than accepted.
    let error =
        Limiter::open(&path, &[Rate::new(10_000_000, Duration::from_secs(86_400))]).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { needed_slots, max_slots } if needed_slots > u128::from(max_slots)),
        "{error:?}"
    );
    assert!(
        !path.parent().unwrap().exists(),
        "a refused configuration created the directory"
    );
}

#[test]
fn mismatched_rates_are_refused_with_both_configurations() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let hour = Duration::from_secs(3600);
    let file_rates = [Rate::new(10, MIN), Rate::requests(600, hour)];
    let limiter = Limiter::open(&path, &file_rates).unwrap();
    limiter.try_acquire(3).unwrap();
    let before = fs::read(&path).unwrap();

    let others: [&[Rate]; 4] = [
        &[Rate::new(20, MIN), Rate::requests(600, hour)],
        &[Rate::new(10, MIN)],
        &[Rate::new(10, MIN), Rate::new(600, hour)],
        &[
            Rate::new(10, MIN),
            Rate::requests(600, hour),
            Rate::new(1, SEC),
        ],
    ];
    for requested in others {
        let error = Limiter::open(&path, requested).unwrap_err();
        let Error::ConfigMismatch {
            path: error_path,
            file,
            requested: asked,
            ..
        } = &error
        else {
            panic!("{requested:?}: {error:?}");
        };
        assert_eq!(error_path, &path);
        assert_eq!(file, &file_rates);
        assert_eq!(asked, requested);
        let text = error.to_string();
        assert!(text.contains("[10/min, 600req/h]"), "{text}");
        assert!(
            text.contains(&format!(
                "[{}]",
                support::rates_arg(requested).replace(',', ", ")
            )),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a refused open changed the file"
    );

    // The same rates in another order are the same limiter: it keeps the file's order and
    // sees what the first handle admitted.
    let reordered = Limiter::open(&path, &[file_rates[1], file_rates[0]]).unwrap();
    assert_eq!(reordered.rates(), file_rates);
    assert_eq!(reordered.usage().unwrap()[0].used, 3);
    // Attaching adopts the file's rates.
    let attached = Limiter::attach(&path).unwrap();
    assert_eq!(attached.rates(), file_rates);
    assert_eq!(attached.info().rates, file_rates);
    assert_eq!(attached.usage().unwrap()[1].used, 1);
    attached.try_acquire(7).unwrap();
    assert_eq!(limiter.try_acquire(1).unwrap_err().rate_index(), 0);
    // Attaching creates nothing.
    let missing = dir.path().join("missing");
    let error = Limiter::attach(&missing).unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(!missing.exists());
}
