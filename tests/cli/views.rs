//! What the command shows: `status`, `list`, `watch` and `metrics`.

use super::*;

#[test]
fn status_lists_every_limiter_and_reports_files_that_are_not_limiters() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "alpha", "--rate", "10/s"]);
    fx.expect(0, &["create", "beta", "--rate", "1/min", "--rate", "5/h"]);
    fx.expect(0, &["acquire", "beta"]);
    std::fs::write(fx.path("garbage"), vec![0xAB; 20_000]).unwrap();
    std::fs::write(fx.path(".hidden-temp"), b"x").unwrap();

    let text = fx.expect(0, &["status"]);
    for expected in [
        "alpha",
        "beta",
        "10/s",
        "1/min",
        "5/h",
        "garbage",
        "not a usable limiter",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected} missing:\n{}",
            text.stdout
        );
    }
    assert!(!text.stdout.contains(".hidden-temp"));

    let json = fx.expect(0, &["status", "--json"]).json();
    let limiters = json["limiters"].as_array().unwrap();
    let names: Vec<&str> = limiters
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "garbage"]);
    assert_eq!(limiters[0]["valid"], true);
    assert_eq!(limiters[1]["admitted"], 1);
    assert_eq!(limiters[1]["rates"][1]["used"], 1);
    assert_eq!(limiters[2]["valid"], false);
    let error = limiters[2]["error"].as_str().unwrap();
    assert!(
        error.contains("garbage") && error.contains("not a hostlimit file"),
        "{error}"
    );

    // Asked for by name, a file that is not a limiter is an error.
    let named = fx.expect(DATA, &["status", "alpha", "garbage"]);
    assert!(named.stdout.contains("alpha"));
    assert!(
        named.stderr.contains("not a hostlimit file"),
        "{}",
        named.stderr
    );

    // An empty or missing directory lists nothing, successfully.
    let empty = Fixture::new();
    let json = empty.expect(0, &["status", "--json"]).json();
    assert_eq!(json["limiters"].as_array().unwrap().len(), 0);
}

/// The samples of one metric: label text -> value.
fn samples(text: &str, metric: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let (name, labels) = name_labels.split_once('{')?;
            (name == metric).then(|| {
                (
                    labels.trim_end_matches('}').to_string(),
                    value.parse().unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn metrics_are_in_the_prometheus_text_format() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "3/s", "--rate", "100/min"]);
    for _ in 0..3 {
        fx.expect(0, &["acquire", "api"]);
    }
    fx.expect(TEMP_FAIL, &["acquire", "api", "-n"]);
    fx.expect(DATA, &["acquire", "api", "--weight", "4"]);
    fx.expect(TEMP_FAIL, &["acquire", "api", "--timeout", "10ms"]);
    std::fs::write(fx.path("junk"), b"junk").unwrap();
    let text = fx.expect(0, &["metrics"]).stdout;

    // Every sample belongs to a family announced by HELP and TYPE just before its samples,
    // and each line is `name{labels} value`.
    let mut announced: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            current = rest.split(' ').next().unwrap().to_string();
            assert!(!announced.contains(&current), "{current} announced twice");
            announced.push(current.clone());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(name, current);
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        } else {
            let (name, rest) = line.split_once('{').expect("labels");
            assert_eq!(name, current, "{line}");
            let (labels, value) = rest.rsplit_once("} ").expect("value");
            assert!(labels.starts_with("limiter=\""), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
    for family in [
        "hostlimit_up",
        "hostlimit_admitted_total",
        "hostlimit_denied_total",
        "hostlimit_used",
        "hostlimit_limit",
        "hostlimit_remaining",
    ] {
        assert!(announced.iter().any(|a| a == family), "{family} missing");
    }

    let get = |metric: &str, labels: &str| {
        samples(&text, metric)
            .into_iter()
            .find(|(l, _)| l == labels)
            .unwrap_or_else(|| panic!("{metric}{{{labels}}} missing:\n{text}"))
            .1
    };
    assert_eq!(get("hostlimit_up", r#"limiter="api""#), 1.0);
    assert_eq!(get("hostlimit_up", r#"limiter="junk""#), 0.0);
    assert_eq!(get("hostlimit_admitted_total", r#"limiter="api""#), 3.0);
    // One refused try, one weight that never fits, one wait that timed out.
    assert_eq!(
        get("hostlimit_denied_total", r#"limiter="api",rate="3/s""#),
        3.0
    );
    assert_eq!(get("hostlimit_never_fits_total", r#"limiter="api""#), 1.0);
    assert_eq!(get("hostlimit_timed_out_total", r#"limiter="api""#), 1.0);
    for (family, says) in [
        ("hostlimit_denied_total", "a waiting acquire counts once"),
        ("hostlimit_never_fits_total", "can never fit"),
        ("hostlimit_timed_out_total", "within their timeout"),
    ] {
        let help = text
            .lines()
            .find(|l| l.starts_with(&format!("# HELP {family} ")))
            .unwrap_or_else(|| panic!("{family} has no HELP"));
        assert!(help.contains(says), "{help}");
    }
    assert_eq!(
        get("hostlimit_denied_total", r#"limiter="api",rate="100/min""#),
        0.0
    );
    assert_eq!(get("hostlimit_limit", r#"limiter="api",rate="3/s""#), 3.0);
    assert_eq!(
        get("hostlimit_used", r#"limiter="api",rate="100/min""#),
        3.0
    );
    assert_eq!(
        get("hostlimit_remaining", r#"limiter="api",rate="3/s""#),
        0.0
    );
    assert_eq!(
        get("hostlimit_remaining", r#"limiter="api",rate="100/min""#),
        97.0
    );
    assert!(
        samples(&text, "hostlimit_admitted_total")
            .iter()
            .all(|(l, _)| !l.contains("junk"))
    );
}

#[test]
fn watch_count_stops_after_that_many_refreshes() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "4/s"]);
    fx.expect(0, &["acquire", "api", "--weight", "3"]);
    let started = Instant::now();
    let watch = fx.expect(0, &["watch", "--count", "2", "--interval", "100ms"]);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        watch.stdout.matches("(refresh ").count(),
        2,
        "{}",
        watch.stdout
    );
    assert!(watch.stdout.contains("(refresh 2)"));
    assert_eq!(watch.stdout.matches("api  ").count(), 2);
    assert!(
        !watch.stdout.contains('\x1b'),
        "no screen clearing when not a terminal"
    );

    let json = fx.expect(
        0,
        &[
            "watch",
            "api",
            "--count",
            "3",
            "--interval",
            "10ms",
            "--json",
        ],
    );
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["limiters"][0]["rates"][0]["used"], 3);
}

/// The default view fits 80 columns; the file's details are behind -o wide / --wide.
#[test]
fn status_fits_80_columns_and_wide_shows_the_file() {
    let fx = Fixture::new();
    fx.expect(
        0,
        &[
            "create",
            "a-long-limiter-name",
            "--rate",
            "4294967295tok/d",
            "--rate",
            "1000req/h",
            "--rate",
            "1000000/h",
            "--rate",
            "9999999/3us",
        ],
    );
    fx.expect(0, &["acquire", "a-long-limiter-name", "--weight", "123456"]);
    let normal = fx.expect(0, &["status"]).stdout;
    for line in normal.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    }
    assert!(!normal.contains("CLOCK_BOOTTIME"), "{normal}");
    let wide = fx.expect(0, &["status", "-o", "wide"]).stdout;
    assert!(wide.contains("clock CLOCK_BOOTTIME") && wide.contains("created by pid"));
    assert!(wide.starts_with(&normal.lines().next().unwrap().to_string()));
    assert_eq!(
        fx.expect(0, &["status", "--wide"]).stdout.lines().count(),
        wide.lines().count()
    );
    let json = fx.expect(0, &["status", "-o", "json"]).json();
    assert_eq!(json["limiters"][0]["clock"]["name"], "CLOCK_BOOTTIME");
    fx.expect(USAGE, &["status", "-o", "tall"]);
}

/// `watch -n 0` does not spin, and on a terminal the view fits the terminal's size.
#[test]
fn watch_clamps_its_interval_and_fits_the_terminal() {
    let fx = Fixture::new();
    for name in ["a", "b", "c", "d"] {
        fx.expect(
            0,
            &[
                "create",
                name,
                "--rate",
                "10/s",
                "--rate",
                "1000000000tok/d",
            ],
        );
    }
    let started = Instant::now();
    let watch = fx.expect(0, &["watch", "-n", "0", "-c", "3"]);
    assert!(started.elapsed() >= Duration::from_millis(200), "spun");
    assert!(watch.stderr.contains("every 100ms"), "{}", watch.stderr);

    // A terminal of 40 x 8, through script(1).
    let has_script = Command::new("script").arg("--version").output().is_ok();
    if !has_script {
        eprintln!("SKIPPED the terminal half: script(1) from util-linux is not installed");
        return;
    }
    let inner = format!("stty cols 40 rows 8; {BIN} watch -c 1");
    let output = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("HOSTLIMIT_DIR", fx.limiters())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let screen = String::from_utf8_lossy(&output.stdout).replace("\x1b[H\x1b[2J", "");
    let lines: Vec<&str> = screen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.len() <= 8, "{} lines:\n{screen}", lines.len());
    for line in &lines {
        assert!(line.chars().count() <= 40, "{line:?}");
    }
    assert!(screen.contains("more lines"), "{screen}");
}

#[test]
fn list_shows_each_limiter_with_its_rates() {
    let fx = Fixture::new();
    fx.expect(
        0,
        &["create", "alpha", "--rate", "10/s", "--rate", "60req/min"],
    );
    fx.expect(0, &["create", "beta", "--rate", "90000tok/min"]);
    std::fs::write(fx.path("junk"), b"hello world\n").unwrap();
    let list = fx.expect(0, &["list"]).stdout;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert_eq!(lines[0], "alpha  10/s, 60req/min");
    assert_eq!(lines[1], "beta   90000tok/min");
    assert!(
        lines[2].starts_with("junk   not a usable limiter")
            && lines[2].contains("not a hostlimit file")
    );
    let json = fx.expect(0, &["list", "--json"]).json();
    assert_eq!(json["limiters"][1]["rates"][0], "90000tok/min");
    assert_eq!(json["limiters"][2]["valid"], false);
    let empty = Fixture::new();
    assert!(
        empty
            .expect(0, &["list"])
            .stdout
            .starts_with("no limiters in ")
    );
}

/// Issue 9, defect 11: counters full of garbage must not panic `status` (a debug build
/// overflowed summing them) or print nonsense: they are shown as implausible.
#[test]
fn garbage_counters_are_shown_as_implausible() {
    use std::os::unix::fs::FileExt;
    /// The counter shards of a limiter file (`src/layout.rs`): 64 x 128 bytes at 4096.
    const COUNTERS: std::ops::Range<u64> = 4096..12_288;
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "3/s", "--rate", "100/min"]);
    fx.expect(0, &["acquire", "api"]);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(fx.path("api"))
        .unwrap();
    file.write_all_at(
        &vec![0xff; (COUNTERS.end - COUNTERS.start) as usize],
        COUNTERS.start,
    )
    .unwrap();
    drop(file);

    let text = fx.expect(0, &["status", "api"]);
    assert!(text.stdout.contains("implausible"), "{}", text.stdout);
    assert!(
        !text.stdout.contains("18446744073709551615"),
        "{}",
        text.stdout
    );
    assert!(!text.stderr.contains("panicked"), "{}", text.stderr);
    let json = fx.status_json("api");
    assert_eq!(json["admitted"], 1, "the ring is untouched");
    assert!(
        json["denied"].is_null() && json["rates"][0]["denied"].is_null(),
        "{json}"
    );
    assert!(json["never_fits"].is_null() && json["timed_out"].is_null());
    let metrics = fx.expect(0, &["metrics", "api"]).stdout;
    assert!(
        metrics.contains(r#"hostlimit_denied_total{limiter="api",rate="3/s"} NaN"#),
        "{metrics}"
    );
    // Counting on goes on: admissions are unaffected.
    fx.expect(0, &["acquire", "api"]);
    fx.expect(TEMP_FAIL, &["acquire", "api", "-n", "--weight", "2"]);
    fx.expect(0, &["watch", "api", "-c", "1"]);
    fx.expect(0, &["demo", "--seconds", "1", "--workers", "1"]);
}
