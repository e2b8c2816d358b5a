//! Taking back an acquire whose caller dropped it before the reply: the script's undo (only
//! the newest admission, only the one it names) and the async call that sends it when
//! dropped in flight or timed out.

use super::*;

/// The server's counter `field` in the limiter's head hash (0 if absent).
fn counter(server: &LocalServer, limiter: &Limiter, field: &str) -> u64 {
    let count: Option<u64> = redis::cmd("HGET")
        .arg(&redis_of(limiter).keys()[1])
        .arg(field)
        .query(&mut raw(server))
        .unwrap();
    count.unwrap_or(0)
}

fn used(limiter: &Limiter) -> Vec<u64> {
    limiter.usage().unwrap().iter().map(|u| u.used).collect()
}

/// An undo takes back the newest admission if it names it, with every rate's use and the
/// sequence number as before it; an older admission, a refused acquire, or an undo sent
/// twice take back nothing, and are counted.
#[test]
fn an_undo_takes_back_only_the_newest_admission_it_names() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let rates = [
        Rate::requests(2, Duration::from_secs(60)),
        Rate::new(10, Duration::from_secs(60)),
    ];
    let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates).unwrap();
    let backend = redis_of(&limiter);
    let (first, older) = backend.try_named(4);
    let first = first.unwrap().unwrap();
    let (second, newest) = backend.try_named(5);
    let second = second.unwrap().unwrap();
    assert_eq!(used(&limiter), [2, 9]);
    // A refusal records nothing, so its undo finds another admission newest.
    let (refused, nonce) = backend.try_named(1);
    assert!(refused.is_err());
    assert!(!backend.undo(nonce).unwrap());
    // Not the newest: it stays (those after it keep their sequence numbers).
    assert!(!backend.undo(older).unwrap());
    assert_eq!(used(&limiter), [2, 9]);
    assert_eq!(counter(&server, &limiter, "kept"), 2);
    let mut stats = raw(&server);
    reset_stats(&mut stats);
    assert!(backend.undo(newest).unwrap());
    // An undo reads no clock: it puts back what the log held.
    assert_eq!(calls_of(&mut stats, "time"), 0);
    assert_eq!(used(&limiter), [1, 4]);
    assert_eq!(limiter.admitted().unwrap(), 1);
    assert!(!backend.undo(newest).unwrap(), "undone twice");
    // The head's nonce is zeros now, and zeros name no acquire.
    assert!(!backend.undo(0).unwrap(), "undone by no nonce");
    assert_eq!(counter(&server, &limiter, "undone"), 1);
    // The room is back, and the next admission takes the undone one's sequence number, not
    // before the one still recorded.
    let again = limiter.try_acquire_stamped(6).unwrap().unwrap();
    assert_eq!(again.sequence, second.sequence);
    assert!(again.timestamp >= first.timestamp);
    assert_eq!(used(&limiter), [2, 10]);
    assert!(limiter.try_acquire(1).is_err());
}

/// Undoing a limiter's only admission leaves it as if it never admitted: no log, no head,
/// the rates kept.
#[test]
fn undoing_the_first_admission_leaves_a_limiter_that_never_admitted() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let rates = [Rate::new(10, Duration::from_secs(1))];
    let limiter = Limiter::connect(&server.url(), &fresh_name(), &rates).unwrap();
    let backend = redis_of(&limiter);
    let (admitted, nonce) = backend.try_named(1);
    admitted.unwrap();
    assert!(backend.undo(nonce).unwrap());
    assert_eq!(limiter.admitted().unwrap(), 0);
    let mut con = raw(&server);
    let log: bool = redis::cmd("EXISTS")
        .arg(&backend.keys()[0])
        .query(&mut con)
        .unwrap();
    let head: bool = redis::cmd("HEXISTS")
        .arg(&backend.keys()[1])
        .arg(backend.head_field())
        .query(&mut con)
        .unwrap();
    assert!(!log && !head);
    assert_eq!(
        limiter.try_acquire_stamped(10).unwrap().unwrap().sequence,
        1
    );
}

/// Keeps the server busy for `millis` (a script that spins), so that calls sent meanwhile
/// wait in their sockets, unanswered; returns once the server has stopped answering.
#[cfg(feature = "tokio")]
fn busy_server(server: &LocalServer, millis: u64) -> std::thread::JoinHandle<()> {
    let mut con = raw(server);
    let mut probe = raw(server);
    probe
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let spinning = std::thread::spawn(move || {
        let spin = "local s = redis.call('TIME') local n repeat n = redis.call('TIME') \
                    until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > tonumber(ARGV[1]) * 1000";
        let _: () = redis::cmd("EVAL")
            .arg(spin)
            .arg(0)
            .arg(millis)
            .query(&mut con)
            .unwrap();
    });
    // A probe the server does not answer within 20 ms: it is inside the script. (Made
    // before: connecting waits for the server's answer. In step while it is answered.)
    loop {
        if redis::cmd("PING").query::<String>(&mut probe).is_err() {
            return spinning;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A limiter of 10 per minute with the per-call `timeout`, one unit admitted through its
/// async connection (made before the server is busy, so that only the request waits), and
/// the one-thread runtime that drives it.
#[cfg(feature = "tokio")]
fn connected(server: &LocalServer, timeout: Duration) -> (Limiter, tokio::runtime::Runtime) {
    let limiter = Limiter::redis(
        &server.url(),
        &fresh_name(),
        &[Rate::new(10, Duration::from_secs(60))],
    )
    .timeout(timeout)
    .connect()
    .unwrap();
    let runtime = runtime();
    runtime
        .block_on(limiter.acquire_async(1, Duration::ZERO))
        .unwrap();
    (limiter, runtime)
}

/// Lets the runtime run for `millis`: the undo waits for its reply in a task of its own,
/// and a one-thread runtime runs tasks only inside `block_on`.
#[cfg(feature = "tokio")]
fn run_for(runtime: &tokio::runtime::Runtime, millis: u64) {
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(millis)).await });
}

/// An async acquire dropped while its request waits at the server (here: a `timeout`
/// around it) is taken back after the server runs it; the same call left to finish is
/// admitted (so the server did run the dropped one).
#[cfg(feature = "tokio")]
#[test]
fn an_async_acquire_dropped_in_flight_is_taken_back() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let (limiter, runtime) = connected(&server, crate::redis::DEFAULT_TIMEOUT);
    let busy = busy_server(&server, 600);
    let dropped = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(100),
            limiter.acquire_async(3, Duration::from_secs(10)),
        )
        .await
    });
    assert!(dropped.is_err(), "{dropped:?}");
    busy.join().unwrap();
    run_for(&runtime, 300);
    assert_eq!(limiter.usage().unwrap()[0].used, 1);
    assert_eq!(counter(&server, &limiter, "undone"), 1);
    assert_eq!(limiter.admitted().unwrap(), 1);
    // Left to finish, the same call is admitted after the wait.
    let busy = busy_server(&server, 200);
    runtime
        .block_on(limiter.acquire_async(3, Duration::from_secs(10)))
        .unwrap();
    busy.join().unwrap();
    assert_eq!(limiter.usage().unwrap()[0].used, 4);
}

/// An async acquire the server does not answer within the per-call timeout is refused
/// (the default outage policy) and taken back once the server runs it: a refused caller
/// is not charged.
#[cfg(feature = "tokio")]
#[test]
fn an_async_acquire_that_timed_out_is_taken_back() {
    let Some((_dir, server)) = local_server() else {
        return;
    };
    let (limiter, runtime) = connected(&server, Duration::from_millis(100));
    let busy = busy_server(&server, 600);
    let denied = runtime
        .block_on(limiter.acquire_async(3, Duration::ZERO))
        .unwrap_err();
    assert!(
        matches!(denied.kind(), DenialKind::Unreachable { .. }),
        "{denied:?}"
    );
    busy.join().unwrap();
    run_for(&runtime, 300);
    assert_eq!(limiter.usage().unwrap()[0].used, 1);
    assert_eq!(counter(&server, &limiter, "undone"), 1);
}
