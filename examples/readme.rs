//! The README's Rust example: everything below this comment is the README's text, word for
//! word (`tests/readme.rs` checks it, and runs this example).

use std::time::Duration;

use hostlimit::{Limiter, Rate};

fn main() -> Result<(), hostlimit::Error> {
    // The file /dev/shm/hostlimit/openai ($HOSTLIMIT_DIR/openai), created if missing: every
    // process that opens it shares these limits.
    let limiter = Limiter::named(
        "openai",
        &[
            Rate::new(10, Duration::from_secs(1)),   // 10 per second
            Rate::new(600, Duration::from_secs(60)), // and 600 per minute
        ],
    )?;
    for request in 1..=20 {
        // Sleeps until both rates have room (not polling), for at most 30 s.
        match limiter.acquire(1, Duration::from_secs(30)) {
            Ok(()) => println!("request {request}: admitted, call the API now"),
            Err(denied) => eprintln!("request {request}: {denied}"),
        }
    }
    // Or never wait: a denial says which rate refused and when to retry.
    if let Err(denied) = limiter.try_acquire(1) {
        println!("not now: {denied}");
    }
    Ok(())
}
