//! `hostlimit demo`: workers sharing one limiter, and its verdict that no window was exceeded.

use super::*;

#[test]
fn demo_completes_with_no_window_exceeded() {
    let fx = Fixture::new();
    let demo = fx.expect(0, &["demo", "--seconds", "2", "--workers", "3"]);
    assert!(
        demo.stdout.contains("verdict: no window exceeded"),
        "{}",
        demo.stdout
    );
    for expected in ["50/s", "200/10s", "max in any window", "denied", "removed"] {
        assert!(
            demo.stdout.contains(expected),
            "{expected}: {}",
            demo.stdout
        );
    }
    // One progress line per second.
    assert!(
        demo.stdout.contains("1.0s") && demo.stdout.contains("2.0s"),
        "{}",
        demo.stdout
    );
    // It said where its limiter lived, and removed it.
    let path = demo
        .stdout
        .split_whitespace()
        .find(|w| w.contains("/demo-"))
        .expect("the demo names its limiter");
    assert!(Path::new(path).starts_with(fx.limiters()), "{path}");
    let left: Vec<_> = std::fs::read_dir(fx.limiters()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[test]
fn demo_admits_exactly_the_limit_when_one_rate_binds() {
    let fx = Fixture::new();
    // 30 per 10 s with 1 s of workers: exactly 30 are admitted, whatever the timing.
    let demo = fx.expect(
        0,
        &[
            "demo",
            "--seconds",
            "1",
            "--workers",
            "2",
            "--rate",
            "30/10s",
        ],
    );
    assert!(demo.stdout.contains("admitted 30,"), "{}", demo.stdout);
    assert!(demo.stdout.contains("verdict: no window exceeded"));
}
