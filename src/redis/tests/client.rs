//! The client: a flushed script loaded again, `info` and the target shown without
//! credentials, threads that do not wait for each other's round trips.

use super::*;

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
        let runtime = runtime();
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
