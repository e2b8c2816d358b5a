//! Exit codes, help, completions and man pages, messages, and the rate grammar on the command
//! line.

use super::*;

#[test]
fn acquire_exit_codes_admitted_denied_timeout_never_fits() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "2/s", "--rate", "100/min"]);
    let first = fx.expect(ADMITTED, &["acquire", "api", "--json"]).json();
    assert_eq!(first["admitted"], true);
    assert_eq!(first["sequence"], 1);
    fx.expect(ADMITTED, &["acquire", "api"]);

    // Full: one try (-n) is refused at once, with the rate and the retry-after on stderr.
    let denied = fx.expect(TEMP_FAIL, &["acquire", "api", "-n"]);
    assert!(denied.stderr.contains("2/s"), "{}", denied.stderr);
    assert!(denied.stderr.contains("retry after"), "{}", denied.stderr);
    assert!(denied.stdout.is_empty());

    // A timeout shorter than the retry-after gives up at once.
    let started = Instant::now();
    let timed_out = fx.expect(TEMP_FAIL, &["acquire", "api", "--timeout", "50ms"]);
    assert!(
        timed_out
            .stderr
            .contains("not admitted within --timeout 50ms")
            && timed_out.stderr.contains("gave up at once"),
        "{}",
        timed_out.stderr
    );
    assert!(started.elapsed() < Duration::from_millis(900));

    // A long enough timeout waits for the window to move: the third admission is recorded at
    // least one second after the first.
    let third = fx
        .expect(ADMITTED, &["acquire", "api", "--timeout", "5s", "--json"])
        .json();
    assert_eq!(third["sequence"], 3);
    let gap = third["timestamp_ns"].as_u64().unwrap() - first["timestamp_ns"].as_u64().unwrap();
    assert!(
        gap >= 1_000_000_000,
        "third admission only {gap} ns after the first"
    );
    assert!(third["waited_ns"].as_u64().unwrap() > 0);

    // A weight above a limit can never be admitted: not "try later".
    let started = Instant::now();
    let never = fx.expect(DATA, &["acquire", "api", "--weight", "3"]);
    assert!(never.stderr.contains("can never fit"), "{}", never.stderr);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "waited for nothing"
    );
}

#[test]
fn bad_input_and_missing_limiters_have_their_own_exit_codes() {
    let fx = Fixture::new();
    let bad_rate = fx.expect(USAGE, &["acquire", "api", "--rate", "10/parsec"]);
    assert!(bad_rate.stderr.contains("10/parsec"), "{}", bad_rate.stderr);
    assert!(!fx.path("api").exists(), "nothing is created on bad input");

    let missing = fx.expect(NO_INPUT, &["acquire", "api"]);
    assert!(
        missing
            .stderr
            .contains(&fx.path("api").display().to_string()),
        "the error names the file: {}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("no such limiter"),
        "{}",
        missing.stderr
    );

    let bad_name = fx.expect(USAGE, &["acquire", "no good", "--rate", "1/s"]);
    assert!(
        bad_name.stderr.contains("invalid limiter name"),
        "{}",
        bad_name.stderr
    );
    fx.expect(USAGE, &["acquire", ".hidden", "--rate", "1/s"]);
    fx.expect(USAGE, &["acquire", "api", "--timeout", "soon"]);
    fx.expect(USAGE, &["create", "api", "--rate", "1/s", "--mode", "999"]);
    fx.expect(USAGE, &["create", "api"]);
    fx.expect(USAGE, &["acquire", "api", "--no-such-flag"]);
    fx.expect(USAGE, &["frobnicate"]);
    fx.expect(NO_INPUT, &["rm", "api"]);
    fx.expect(NO_INPUT, &["reset", "api"]);
    fx.expect(NO_INPUT, &["status", "api"]);
    assert!(!fx.limiters().join("api").exists());
}

#[test]
fn every_command_has_help_with_the_exit_codes() {
    let fx = Fixture::new();
    for command in [
        "status",
        "watch",
        "list",
        "acquire",
        "run",
        "create",
        "set",
        "reset",
        "rm",
        "metrics",
        "demo",
        "completions",
        "man",
    ] {
        let help = fx.expect(0, &[command, "--help"]);
        assert!(
            help.stdout.contains("Usage: hostlimit"),
            "{command}: {}",
            help.stdout
        );
        assert!(
            help.stdout.contains("75"),
            "{command} --help lists the exit codes"
        );
    }
    let top = fx.expect(0, &["--help"]);
    assert!(top.stdout.contains("Exit codes"));
    assert!(
        !top.stdout.contains("__demo-worker"),
        "the worker command is hidden"
    );
}

/// Like flock(1): `acquire` waits by default, `-n` tries once, `--timeout` bounds the wait
/// (`inf` too), and a wait that cannot succeed returns at once.
#[test]
fn acquire_waits_like_flock_by_default() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "2/s"]);
    fx.expect(0, &["acquire", "api", "--weight", "2"]);
    let started = Instant::now();
    let waited = fx.expect(0, &["acquire", "api", "--json"]).json();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert!(waited["waited_ns"].as_u64().unwrap() >= 500 * MILLI);
    fx.expect(0, &["acquire", "api", "--timeout", "inf"]);
    fx.expect(0, &["acquire", "api", "--timeout", "INF", "-w", "0"]);
    fx.expect(USAGE, &["acquire", "api", "-n", "--timeout", "1s"]);
    let bad = fx.expect(USAGE, &["acquire", "api", "--timeout", "soon"]);
    assert!(bad.stderr.contains("inf"), "{}", bad.stderr);

    // The waits that were admitted in the end are not denials.
    let status = fx.status_json("api");
    assert_eq!(status["denied"], 0, "{status}");
    assert_eq!(status["rates"][0]["denied"], 0);

    // One refused try, one never-fits, one timed-out wait: three denials, each counted.
    fx.expect(TEMP_FAIL, &["acquire", "api", "-n"]);
    fx.expect(DATA, &["acquire", "api", "--weight", "3"]);
    fx.expect(TEMP_FAIL, &["acquire", "api", "--timeout", "20ms"]);
    let status = fx.status_json("api");
    assert_eq!(status["denied"], 3, "{status}");
    assert_eq!(status["rates"][0]["denied"], 3);
    assert_eq!(status["never_fits"], 1);
    assert_eq!(status["timed_out"], 1);
    let text = fx.expect(0, &["status", "api"]).stdout;
    assert!(
        text.contains("denied 3") && text.contains("1 never fit, 1 timed out waiting"),
        "{text}"
    );
}

/// The rate grammar is strict on the command line too, and what was written is what status
/// shows.
#[test]
fn rates_are_parsed_strictly_and_shown_as_written() {
    let fx = Fixture::new();
    for (rate, says) in [
        ("10foo/min", "unknown word \"foo\""),
        ("60rq/min", "did you mean req?"),
        ("10/1.5s", "1500ms"),
        ("10m/s", "write M for a million"),
        ("_5/s", "whole number"),
        ("1/367d", "366 days"),
    ] {
        let refused = fx.expect(USAGE, &["create", "x", "--rate", rate]);
        assert!(refused.stderr.contains(says), "{rate}: {}", refused.stderr);
    }
    assert!(!fx.limiters().join("x").exists());

    fx.expect(
        0,
        &[
            "create",
            "llm",
            "--rate",
            "60REQ/min",
            "--rate",
            "90ktok/min",
            "--rate",
            "10k/s",
        ],
    );
    let status = fx.status_json("llm");
    let rates = status["rates"].as_array().unwrap();
    let shown: Vec<&str> = rates.iter().map(|r| r["rate"].as_str().unwrap()).collect();
    assert_eq!(shown, ["60req/min", "90000tok/min", "10000/s"]);
    assert_eq!(rates[0]["counts"], "requests");
    // What it was created with is what a later --rate must say, in any spelling.
    fx.expect(
        0,
        &[
            "acquire",
            "llm",
            "--weight",
            "1200",
            "--rate",
            "60req/min",
            "--rate",
            "90000tokens/min",
            "--rate",
            "10000/s",
        ],
    );
    let status = fx.status_json("llm");
    assert_eq!(status["rates"][0]["used"], 1, "requests counted once");
    assert_eq!(status["rates"][1]["used"], 1200, "tokens counted by weight");
    let text = fx.expect(0, &["status", "llm"]).stdout;
    assert!(text.contains("90000tok/min"), "{text}");
    // Another unit of weight is another rate.
    fx.expect(
        DATA,
        &[
            "create",
            "llm",
            "--rate",
            "60req/min",
            "--rate",
            "90000B/min",
            "--rate",
            "10000/s",
        ],
    );
}

#[test]
fn completions_and_man_pages_are_generated_from_the_same_definitions() {
    let fx = Fixture::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = fx.expect(0, &["completions", shell]).stdout;
        for word in ["acquire", "status", "nonblock", "completions"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    fx.expect(USAGE, &["completions", "cmd.exe"]);
    let bash = fx.expect(0, &["completions", "bash"]).stdout;
    let checked = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .unwrap();
    assert!(
        checked.success(),
        "the bash completion script does not parse"
    );

    let page = fx.expect(0, &["man"]).stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH hostlimit"),
        "{page}"
    );
    assert!(page.contains("acquire") && page.contains("Exit codes"));
    let acquire = fx.expect(0, &["man", "acquire"]).stdout;
    assert!(acquire.contains(".TH hostlimit-acquire") && acquire.contains("nonblock"));
    let unknown = fx.expect(USAGE, &["man", "frobnicate"]);
    assert!(unknown.stderr.contains("acquire"), "{}", unknown.stderr);
}

/// A command printed in a message can be run as printed: here `hostlimit` is not on PATH,
/// so the message names the binary by its path.
#[test]
fn messages_name_commands_the_user_can_run() {
    let fx = Fixture::new();
    let missing = fx.expect(NO_INPUT, &["acquire", "api"]);
    let command = missing
        .stderr
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {}", missing.stderr));
    // This binary, by the path it was run by (the tests run it by its absolute path from
    // the package's directory, where the printed relative path leads to it too).
    let program = command.split(" create ").next().unwrap();
    assert!(
        Path::new(program).canonicalize().unwrap() == Path::new(BIN).canonicalize().unwrap(),
        "{command}"
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(command.replace("RATE", "1/s"))
        .env("HOSTLIMIT_DIR", fx.limiters())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    fx.expect(0, &["acquire", "api"]);

    let mismatch = fx.expect(DATA, &["acquire", "api", "--rate", "5/s"]);
    assert!(!mismatch.stderr.contains("attach"), "{}", mismatch.stderr);
    assert!(
        mismatch.stderr.contains("leave out --rate")
            && mismatch
                .stderr
                .contains(&format!("{program} set api --rate")),
        "{}",
        mismatch.stderr
    );

    let demo = fx.expect(0, &["demo", "--seconds", "1", "--workers", "1"]);
    assert!(
        demo.stdout.contains(&format!("{program} watch ")),
        "{}",
        demo.stdout
    );

    let weight = fx.expect(USAGE, &["acquire", "api", "--weight", "-1"]);
    assert!(
        weight.stderr.contains("0 or more") && !weight.stderr.contains("-- -1"),
        "{}",
        weight.stderr
    );
    // Once it gave up at once, it says so rather than "within 10s".
    fx.expect(0, &["create", "slow", "--rate", "1/h"]);
    fx.expect(0, &["acquire", "slow"]);
    let gave_up = fx.expect(TEMP_FAIL, &["acquire", "slow", "--timeout", "10s"]);
    assert!(
        gave_up.stderr.contains("gave up at once"),
        "{}",
        gave_up.stderr
    );
}

#[test]
fn a_short_text_file_is_not_a_hostlimit_file() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.limiters()).unwrap();
    std::fs::write(fx.path("notes"), b"hello world\n").unwrap();
    let status = fx.expect(DATA, &["status", "notes"]);
    assert!(
        status.stderr.contains("not a hostlimit file"),
        "{}",
        status.stderr
    );
    assert!(!status.stderr.contains("truncated"), "{}", status.stderr);
    assert!(!status.stderr.contains("note:"), "{}", status.stderr);
}
