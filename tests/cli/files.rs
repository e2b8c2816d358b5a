//! Limiter files by path and by name: outside the directory, `create`, `reset`, `rm`.

use super::*;

#[test]
fn a_path_names_a_limiter_outside_the_directory() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("elsewhere").join("api");
    let path_text = path.to_str().unwrap();
    // A missing directory is created only when asked for (a typo creates nothing).
    let missing = fx.expect(NO_INPUT, &["acquire", path_text, "--rate", "5/s"]);
    assert!(
        missing.stderr.contains("no such directory"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("--parents"), "{}", missing.stderr);
    assert!(!path.parent().unwrap().exists());
    fx.expect(0, &["acquire", path_text, "--rate", "5/s", "--parents"]);
    assert!(path.exists());
    assert!(!fx.limiters().exists(), "the directory was not used");
    // --dir wins over HOSTLIMIT_DIR.
    let dir = fx.dir.path().join("elsewhere");
    let status = fx
        .expect(0, &["--dir", dir.to_str().unwrap(), "status", "--json"])
        .json();
    assert_eq!(status["limiters"][0]["name"], "api");
    assert_eq!(status["limiters"][0]["admitted"], 1);
}

#[test]
fn create_is_idempotent_and_a_mismatch_names_both_configurations() {
    let fx = Fixture::new();
    fx.expect(
        0,
        &[
            "create", "api", "--rate", "10/s", "--rate", "600/min", "--mode", "0640",
        ],
    );
    fx.expect(0, &["create", "api", "--rate", "600/min", "--rate", "10/s"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(fx.path("api")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);

    let mismatch = fx.expect(DATA, &["create", "api", "--rate", "5/s"]);
    for rate in ["10/s", "600/min", "5/s"] {
        assert!(
            mismatch.stderr.contains(rate),
            "{rate}: {}",
            mismatch.stderr
        );
    }
    assert!(
        mismatch
            .stderr
            .contains(&fx.path("api").display().to_string())
    );
    // `acquire --rate` checks the same way.
    fx.expect(DATA, &["acquire", "api", "--rate", "5/s"]);
    let rates = fx.status_json("api")["rates"].clone();
    assert_eq!(rates.as_array().unwrap().len(), 2, "the file is unchanged");
}

#[test]
fn reset_refuses_while_the_file_is_mapped_and_works_with_force() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "1/h"]);
    fx.expect(0, &["acquire", "api"]);
    fx.expect(TEMP_FAIL, &["acquire", "api", "-n"]);

    // This test process maps the file, as any user of the limiter would.
    let user = Limiter::attach(fx.path("api")).unwrap();
    let refused = fx.expect(TEMP_FAIL, &["reset", "api"]);
    let me = std::process::id().to_string();
    assert!(
        refused.stderr.contains(&me),
        "names our pid {me}: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(fx.status_json("api")["rates"][0]["used"], 1, "not reset");

    let forced = fx.expect(0, &["reset", "--force", "api"]);
    assert!(forced.stderr.contains(&me), "{}", forced.stderr);
    let after = fx.status_json("api");
    assert_eq!(after["rates"][0]["used"], 0);
    assert_eq!(after["admitted"], 0);
    // The process that still held the old file moves to the fresh one.
    assert!(user.try_acquire(1).is_ok());
    drop(user);
    assert_eq!(fx.status_json("api")["rates"][0]["used"], 1);

    // Nobody maps it now: no --force needed.
    fx.expect(0, &["reset", "api"]);
    assert_eq!(fx.status_json("api")["rates"][0]["used"], 0);
}

#[test]
fn rm_removes_and_refuses_while_the_file_is_mapped() {
    let fx = Fixture::new();
    fx.expect(0, &["create", "api", "--rate", "3/s"]);
    let user = Limiter::attach(fx.path("api")).unwrap();
    let refused = fx.expect(TEMP_FAIL, &["rm", "api"]);
    assert!(refused.stderr.contains(&std::process::id().to_string()));
    assert!(fx.path("api").exists());
    drop(user);
    fx.expect(0, &["rm", "api"]);
    assert!(!fx.path("api").exists());
    fx.expect(NO_INPUT, &["rm", "api"]);

    // A file that is not a limiter is removed only with --force.
    std::fs::write(fx.path("junk"), b"not a limiter").unwrap();
    fx.expect(DATA, &["rm", "junk"]);
    assert!(fx.path("junk").exists());
    fx.expect(0, &["rm", "--force", "junk"]);
    assert!(!fx.path("junk").exists());
}
