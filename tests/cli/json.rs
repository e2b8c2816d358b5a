//! `--json`: one JSON document per command, failures included.

use super::*;

#[test]
fn json_reports_what_was_done() {
    let fx = Fixture::new();
    let weights = [7u64, 3, 30];
    for weight in weights {
        let outcome = fx
            .expect(
                ADMITTED,
                &[
                    "acquire",
                    "tokens",
                    "--rate",
                    "60req/min",
                    "--rate",
                    "50tok/min",
                    "--weight",
                    &weight.to_string(),
                    "--json",
                ],
            )
            .json();
        assert_eq!(outcome["admitted"], true);
        assert_eq!(outcome["weight"], weight);
    }
    let denied = fx
        .expect(
            TEMP_FAIL,
            &["acquire", "tokens", "--weight", "20", "-n", "--json"],
        )
        .json();
    assert_eq!(denied["ok"], false);
    assert_eq!(denied["exit_code"], TEMP_FAIL);
    assert_eq!(denied["admitted"], false);
    assert_eq!(denied["rate"], "50tok/min");
    assert_eq!(denied["reason"], "exhausted");
    let retry = denied["retry_after_ns"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 60_000_000_000, "{retry}");

    let status = fx.status_json("tokens");
    assert_eq!(status["valid"], true);
    assert_eq!(status["admitted"], 3);
    assert_eq!(status["denied"], 1);
    let rates = status["rates"].as_array().unwrap();
    assert_eq!(rates[0]["rate"], "60req/min");
    assert_eq!(rates[0]["counts"], "requests");
    assert_eq!(rates[0]["used"], 3);
    assert_eq!(rates[0]["remaining"], 57);
    assert_eq!(rates[0]["denied"], 0);
    assert_eq!(rates[1]["rate"], "50tok/min");
    assert_eq!(rates[1]["counts"], "weight");
    assert_eq!(rates[1]["used"], weights.iter().sum::<u64>());
    assert_eq!(rates[1]["remaining"], 50 - weights.iter().sum::<u64>());
    assert_eq!(rates[1]["denied"], 1);
    assert_eq!(rates[1]["window_ns"], 60_000_000_000u64);
    assert!(rates[1]["next_free_ns"].as_u64().unwrap() <= 60_000_000_000);
    assert!(status["created"]["pid"].as_u64().unwrap() > 0);
    assert_eq!(
        status["created"]["uid"],
        u64::from(nix::unistd::getuid().as_raw())
    );
    assert_eq!(status["clock"]["name"], "CLOCK_BOOTTIME");
    assert_eq!(status["clock"]["boot_id"].as_str().unwrap().len(), 36);
}

/// Every command prints one JSON document with --json, failures included.
#[test]
fn every_command_prints_json_even_when_it_fails() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.limiters()).unwrap();
    std::fs::write(fx.path("junk"), b"hello world\n").unwrap();
    let cases: &[(i32, &[&str])] = &[
        (0, &["create", "api", "--rate", "1/min"]),
        (0, &["create", "api", "--rate", "1/min"]),
        (0, &["acquire", "api"]),
        (TEMP_FAIL, &["acquire", "api", "-n"]),
        (DATA, &["acquire", "api", "--weight", "2"]),
        (NO_INPUT, &["acquire", "missing"]),
        (DATA, &["acquire", "junk"]),
        (DATA, &["acquire", "api", "--rate", "2/min"]),
        (USAGE, &["acquire", "api", "--weight", "-1"]),
        (USAGE, &["create", "bad", "--rate", "10foo/min"]),
        (USAGE, &["create", "bad"]),
        (USAGE, &["frobnicate"]),
        (NO_INPUT, &["run", "missing", "true"]),
        (TEMP_FAIL, &["run", "-n", "api", "true"]),
        (NOT_FOUND, &["run", "api", "/nonexistent-cmd"]),
        (0, &["status"]),
        (NO_INPUT, &["status", "missing"]),
        (DATA, &["status", "junk"]),
        (0, &["list"]),
        (0, &["metrics"]),
        (0, &["watch", "--count", "1"]),
        (0, &["completions", "bash"]),
        (0, &["man"]),
        (USAGE, &["man", "nope"]),
        (0, &["reset", "api"]),
        (NO_INPUT, &["reset", "missing"]),
        (DATA, &["rm", "junk"]),
        (0, &["rm", "api"]),
        (NO_INPUT, &["rm", "api"]),
        (0, &["demo", "--seconds", "1", "--workers", "1"]),
    ];
    for (code, args) in cases {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let run = fx.expect(*code, &with_json);
        let document = run.json();
        assert_eq!(document["ok"], *code == 0, "{args:?}: {document}");
        if *code != 0 {
            if document.get("exit_code").is_some() {
                assert_eq!(document["exit_code"], *code, "{args:?}: {document}");
            } else {
                // status names a limiter it could not read: its document says which.
                assert_eq!(document["limiters"][0]["valid"], false, "{args:?}");
            }
            assert!(
                !run.stderr.is_empty(),
                "{args:?}: the reason goes to stderr too"
            );
        }
    }
    // `run --json` prints the admission as the first line, then the command's output.
    fx.expect(0, &["create", "api", "--rate", "5/min"]);
    let run = fx.expect(0, &["run", "--json", "api", "echo", "hello"]);
    let (first, rest) = run.stdout.split_once('\n').unwrap();
    let admission: Value = serde_json::from_str(first).unwrap();
    assert_eq!(admission["admitted"], true);
    assert_eq!(admission["command"][0], "echo");
    assert_eq!(rest, "hello\n");
}
