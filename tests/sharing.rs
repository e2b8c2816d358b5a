//! Sharing a host between users, with real users: service accounts sharing a limiter in the
//! directory of named limiters (created shared, `01777`, by whoever comes first), a
//! monitoring account that can only read, and another user planting links and files.
//!
//! The accounts are made by the test (`useradd`, `groupadd`: unique names, removed at the
//! end) and the command runs as them through `setpriv`. That needs root: elsewhere each test
//! says loudly that it could not run, and fails where `CI=true`.
//!
//! Also here, without other users: the library's read-only observer (`Limiter::observe`),
//! `create` of an existing limiter with other permissions, and missing directories.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hostlimit::{DenialKind, Error, Limiter, Rate};

use crate::support;

const BIN: &str = env!("CARGO_BIN_EXE_hostlimit");
const SEC: Duration = Duration::from_secs(1);

/// Users and groups made for one test, removed when it ends.
struct Accounts {
    tag: String,
    users: Vec<String>,
    groups: Vec<String>,
}

/// The accounts of a test, or `None` (after saying so loudly) where they cannot be made;
/// under `CI=true` that is a failure, never a silent pass.
fn accounts(test: &str) -> Option<Accounts> {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("it must run as root to create users")
    } else if !["useradd", "groupadd", "setpriv"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) {
        Some("useradd, groupadd or setpriv is missing")
    } else {
        None
    };
    if let Some(why) = why {
        let message = format!(
            "\n\n*** sharing::{test} COULD NOT RUN: {why}; the multi-user guarantees are NOT \
             tested here ***\n"
        );
        eprintln!("{message}");
        println!("{message}");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message} (CI=true: this is a failure)"
        );
        return None;
    }
    // Short, unique, valid user names: `hl` + pid + a per-test counter.
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(Accounts {
        tag: format!("hl{}x{n}", std::process::id()),
        users: Vec::new(),
        groups: Vec::new(),
    })
}

/// Runs an account-management command, retrying while another process holds the lock on
/// `/etc/passwd` (other tests may be making users at the same moment).
fn manage(args: &[&str]) {
    let mut last = String::new();
    for _ in 0..50 {
        let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
        if output.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{args:?}: {last}");
}

impl Accounts {
    /// A new group; its name.
    fn group(&mut self, name: &str) -> String {
        let group = format!("{}{name}", self.tag);
        manage(&["groupadd", &group]);
        self.groups.push(group.clone());
        group
    }

    /// A new system user (no home, no login) with a group of its own, in `groups` too.
    fn user(&mut self, name: &str, groups: &[&str]) -> String {
        let user = format!("{}{name}", self.tag);
        let mut args = vec![
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ];
        let list = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &list]);
        }
        args.push(&user);
        manage(&args);
        self.users.push(user.clone());
        user
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = Command::new("userdel").arg(user).output();
        }
        for group in &self.groups {
            let _ = Command::new("groupdel").arg(group).output();
        }
    }
}

fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

fn gid(group: &str) -> u32 {
    nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

/// What one command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// What a finished command did, printed after `prompt` and its arguments.
    fn of(prompt: &str, args: &[&str], output: &std::process::Output) -> Run {
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        println!(
            "{prompt} {}\n{}{}[exit {}]",
            args.join(" "),
            run.stdout,
            run.stderr,
            run.code
        );
        run
    }
}

/// Runs `hostlimit ARGS` as `user` (with its groups), with `HOSTLIMIT_DIR` set to `dir`.
fn hostlimit_as(user: &str, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    run_as(user, dir, env, BIN, args)
}

fn run_as(user: &str, dir: &Path, env: &[(&str, &str)], program: &str, args: &[&str]) -> Run {
    let output = Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "--",
            program,
        ])
        .args(args)
        .env("HOSTLIMIT_DIR", dir)
        .envs(env.iter().copied())
        .current_dir("/")
        .output()
        .unwrap();
    Run::of(&format!("{user}$ {program}"), args, &output)
}

/// A place like `/dev/shm`: a sticky directory anyone may write to, in which the directory
/// of named limiters does not exist yet.
struct Host {
    _temp: tempfile::TempDir,
    /// The directory of named limiters (`HOSTLIMIT_DIR`), not yet created.
    dir: PathBuf,
}

fn host() -> Host {
    let temp = support::temp_dir();
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = temp.path().join("hostlimit");
    Host { _temp: temp, dir }
}

fn expect(run: &Run, code: i32, words: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    for word in words {
        assert!(
            run.stderr.contains(word) || run.stdout.contains(word),
            "{word:?} not said: {run:?}"
        );
    }
}

/// Two service accounts share a limiter in the directory of named limiters: the first one
/// to come creates the directory shared (`01777`) and the limiter for their group (`0660`);
/// the other uses it, and together they get exactly the limit. Without the group, the other
/// refuses the file (another user's, in a directory anyone may write to), saying what to do;
/// and any user may create limiters of its own there.
#[test]
fn two_service_accounts_share_a_limiter_in_the_shared_directory() {
    let Some(mut accounts) =
        accounts("two_service_accounts_share_a_limiter_in_the_shared_directory")
    else {
        return;
    };
    let group = accounts.group("g");
    let first = accounts.user("a", &[&group]);
    let second = accounts.user("b", &[&group]);
    let host = host();
    let dir = &host.dir;

    let created = hostlimit_as(
        &first,
        dir,
        &[],
        &[
            "create", "api", "--rate", "4/min", "--mode", "0660", "--group", &group,
        ],
    );
    expect(&created, 0, &[]);
    let dir_meta = fs::metadata(dir).unwrap();
    assert_eq!(
        dir_meta.mode() & 0o7777,
        0o1777,
        "the shared directory's mode"
    );
    assert_eq!(dir_meta.uid(), uid(&first), "made by whoever came first");
    let file = fs::metadata(dir.join("api")).unwrap();
    assert_eq!(
        (file.uid(), file.gid(), file.mode() & 0o7777),
        (uid(&first), gid(&group), 0o660)
    );

    // The other account, without the group: refused, with what to do.
    let refused = hostlimit_as(&second, dir, &[], &["acquire", "api", "-n"]);
    expect(
        &refused,
        77,
        &["planted", &format!("--group {group}"), &first],
    );

    // With it: one limiter between them, exactly 4 admissions in the window.
    let mut admitted = 0;
    let mut denied = 0;
    for i in 0..6 {
        let user = if i % 2 == 0 { &first } else { &second };
        let run = hostlimit_as(user, dir, &[], &["acquire", "api", "-n", "--group", &group]);
        match run.code {
            0 => admitted += 1,
            75 => denied += 1,
            _ => panic!("{run:?}"),
        }
    }
    assert_eq!((admitted, denied), (4, 2));
    let status = hostlimit_as(&second, dir, &[], &["status", "api", "--json"]);
    expect(&status, 0, &[]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["limiters"][0]["admitted"], 4);

    // Sharing a limiter is not owning it: in the sticky directory only its owner (or root)
    // may remove it, and the refusal says so.
    expect(
        &hostlimit_as(&second, dir, &[], &["rm", "api", "--force"]),
        77,
        &["may not remove it", &first, "sticky"],
    );
    assert!(dir.join("api").exists());

    // The directory is everyone's: the second account creates a limiter of its own in it.
    expect(
        &hostlimit_as(&second, dir, &[], &["create", "own", "--rate", "1/s"]),
        0,
        &[],
    );
    assert_eq!(fs::metadata(dir.join("own")).unwrap().uid(), uid(&second));
}

/// A monitoring account that may only read a limiter file runs `status`, `watch`,
/// `metrics` and `list` on it: all work, report what the writers did, and change nothing in
/// the file; `acquire` is refused with the file's owner, mode and what to do. A file it
/// cannot read is reported in place, naming its owner and mode. Where observing needs loads
/// that write (`HOSTLIMIT_NO_VMOVDQA`/`HOSTLIMIT_NO_LSE` force them), the account is told so.
#[test]
fn a_read_only_account_runs_status_watch_and_metrics() {
    let Some(mut accounts) = accounts("a_read_only_account_runs_status_watch_and_metrics") else {
        return;
    };
    let group = accounts.group("g");
    let owner = accounts.user("o", &[&group]);
    let watcher = accounts.user("w", &[]);
    let host = host();
    let dir = &host.dir;
    expect(
        &hostlimit_as(
            &owner,
            dir,
            &[],
            &["create", "pub", "--rate", "10/min", "--mode", "0644"],
        ),
        0,
        &[],
    );
    expect(
        &hostlimit_as(&owner, dir, &[], &["acquire", "pub", "-w", "3"]),
        0,
        &[],
    );
    expect(
        &hostlimit_as(
            &owner,
            dir,
            &[],
            &[
                "create", "private", "--rate", "1/s", "--mode", "0660", "--group", &group,
            ],
        ),
        0,
        &[],
    );
    let before = fs::read(dir.join("pub")).unwrap();

    let status = hostlimit_as(&watcher, dir, &[], &["status", "pub", "--json"]);
    expect(&status, 0, &[]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["limiters"][0]["admitted"], 1);
    assert_eq!(json["limiters"][0]["rates"][0]["used"], 3);
    let metrics = hostlimit_as(&watcher, dir, &[], &["metrics", "pub"]);
    expect(&metrics, 0, &["hostlimit_admitted_total"]);
    assert!(
        metrics
            .stdout
            .lines()
            .any(|l| l.starts_with("hostlimit_admitted_total")
                && l.contains("pub")
                && l.ends_with(" 1")),
        "{}",
        metrics.stdout
    );
    let watch = hostlimit_as(
        &watcher,
        dir,
        &[],
        &["watch", "pub", "--count", "1", "--json"],
    );
    expect(&watch, 0, &["\"used\":3"]);
    // The whole directory: `pub` is read, `private` is reported in place with its owner.
    let listing = hostlimit_as(&watcher, dir, &[], &["status"]);
    expect(
        &listing,
        0,
        &[
            "pub",
            "private",
            "permission denied",
            &owner,
            "mode 0660",
            "read permission",
        ],
    );
    assert_eq!(
        fs::read(dir.join("pub")).unwrap(),
        before,
        "observing wrote to the file"
    );

    let refused = hostlimit_as(&watcher, dir, &[], &["acquire", "pub", "-n"]);
    expect(
        &refused,
        77,
        &[
            "permission denied",
            &owner,
            "mode 0644",
            "need only read permission",
        ],
    );
    assert_eq!(fs::read(dir.join("pub")).unwrap(), before);

    // A directory closed to the account (as an old version made the default directory:
    // 0700, its creator's): every error names the directory's owner and mode.
    let closed = dir.parent().unwrap().join("closed");
    expect(
        &hostlimit_as(&owner, &closed, &[], &["create", "x", "--rate", "1/s"]),
        0,
        &[],
    );
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
    let listing = hostlimit_as(&watcher, &closed, &[], &["status"]);
    expect(&listing, 77, &["ermission denied", &owner, "mode 0700"]);
    let open = hostlimit_as(&watcher, &closed, &[], &["acquire", "x", "--rate", "1/s"]);
    expect(
        &open,
        77,
        &["ermission denied", &owner, "mode 0700", "ask its owner"],
    );

    // Loads that write cannot observe a read-only mapping: the account is told why.
    let baseline = [("HOSTLIMIT_NO_VMOVDQA", "1"), ("HOSTLIMIT_NO_LSE", "1")];
    let old_cpu = hostlimit_as(&watcher, dir, &baseline, &["status", "pub"]);
    expect(&old_cpu, 74, &["16-byte load", "write access"]);
    // The owner, who may write, still sees it there (the command attaches instead).
    let owner_view = hostlimit_as(&owner, dir, &baseline, &["status", "pub", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&owner_view.stdout).unwrap();
    assert_eq!(json["limiters"][0]["rates"][0]["used"], 3, "{owner_view:?}");
}

/// Another user plants a symbolic link and a limiter file of its own in the shared
/// directory, and tries to replace a service's limiter: the link is refused and its target
/// untouched, the foreign file is refused (even by a process that names a group: the file
/// has the planter's), the sticky directory keeps the service's file, and a file planted
/// where the service's was (after it was removed) is refused too.
#[test]
fn a_planted_link_file_or_replacement_is_refused() {
    let Some(mut accounts) = accounts("a_planted_link_file_or_replacement_is_refused") else {
        return;
    };
    let group = accounts.group("g");
    let service = accounts.user("s", &[&group]);
    let mallory = accounts.user("m", &[]);
    let host = host();
    let dir = &host.dir;
    let as_service = |args: &[&str]| hostlimit_as(&service, dir, &[], args);
    expect(&as_service(&["create", "api", "--rate", "4/min"]), 0, &[]);
    let api = dir.join("api");
    let original = fs::read(&api).unwrap();
    let api_ino = fs::metadata(&api).unwrap().ino();

    // A link to the service's own file.
    let link = run_as(
        &mallory,
        dir,
        &[],
        "ln",
        &[
            "-s",
            api.to_str().unwrap(),
            dir.join("trap").to_str().unwrap(),
        ],
    );
    assert_eq!(link.code, 0, "{link:?}");
    expect(
        &as_service(&["acquire", "trap", "--rate", "4/min", "-n"]),
        74,
        &["symbolic link"],
    );
    expect(&as_service(&["status", "trap"]), 74, &["symbolic link"]);

    // A limiter file of the planter's, with the rates the service would ask for.
    expect(
        &hostlimit_as(
            &mallory,
            dir,
            &[],
            &["create", "db", "--rate", "100/s", "--mode", "0666"],
        ),
        0,
        &[],
    );
    let planted = fs::read(dir.join("db")).unwrap();
    expect(
        &as_service(&["acquire", "db", "--rate", "100/s", "-n"]),
        77,
        &["planted", &mallory],
    );
    expect(
        &as_service(&["acquire", "db", "--rate", "100/s", "-n", "--group", &group]),
        77,
        &["planted"],
    );
    assert_eq!(
        fs::read(dir.join("db")).unwrap(),
        planted,
        "the planted file was used"
    );

    // Replacing the service's file: the sticky directory does not let another user.
    let replace = run_as(
        &mallory,
        dir,
        &[],
        "mv",
        &[
            "-f",
            dir.join("db").to_str().unwrap(),
            api.to_str().unwrap(),
        ],
    );
    assert_ne!(replace.code, 0, "{replace:?}");
    assert_eq!(fs::metadata(&api).unwrap().ino(), api_ino);
    assert_eq!(
        fs::read(&api).unwrap(),
        original,
        "the trap's target was written to"
    );

    // Only a group's members can give a file the group: the planter cannot forge one.
    expect(
        &hostlimit_as(
            &mallory,
            dir,
            &[],
            &["create", "forged", "--rate", "1/s", "--group", &group],
        ),
        77,
        &["only the group's members"],
    );
    assert!(!dir.join("forged").exists());

    // Once the service's file is gone, one planted in its place is refused.
    fs::remove_file(&api).unwrap();
    expect(
        &hostlimit_as(
            &mallory,
            dir,
            &[],
            &["create", "api", "--rate", "4/min", "--mode", "0666"],
        ),
        0,
        &[],
    );
    expect(
        &as_service(&["acquire", "api", "--rate", "4/min", "-n"]),
        77,
        &["planted"],
    );
    // Observers are not writers: `status` reads any file it may read, whoever planted it.
    expect(&as_service(&["status", "api"]), 0, &["4/min"]);
}

/// The library's observer: reads what writers did (usage, admitted, counters), follows a
/// reset, refuses every acquire saying why, never writes a byte of the file (counters
/// included), does not re-create a removed file, and does not create a missing one.
#[test]
fn an_observer_reads_follows_and_never_writes() {
    let dir = support::temp_dir();
    let path = dir.path().join("api");
    let rates = [Rate::new(5, Duration::from_secs(3600))];
    let writer = Limiter::open(&path, &rates).unwrap();
    writer.try_acquire(2).unwrap();
    let observer = match Limiter::observe(&path) {
        Ok(observer) => observer,
        Err(Error::Unsupported(reason)) => {
            // This CPU's 16-byte loads write: the refusal must say what to do instead.
            assert!(reason.contains("write access"), "{reason}");
            println!("loads write on this CPU; observing is refused: {reason}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let before = fs::read(&path).unwrap();
    assert_eq!(observer.usage().unwrap()[0].used, 2);
    assert_eq!(observer.admitted().unwrap(), 1);
    assert_eq!(observer.rates(), rates);
    for _ in 0..3 {
        let denied = observer.try_acquire(1).unwrap_err();
        let DenialKind::Unavailable { reason } = denied.kind() else {
            panic!("{denied:?}");
        };
        assert!(reason.contains("read-only"), "{reason}");
        assert!(observer.acquire(1, Duration::from_millis(10)).is_err());
    }
    assert_eq!(observer.counters().unwrap().denied, [Some(0)]);
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the observer wrote to the file"
    );
    // The writer's denials are counted and seen.
    writer.try_acquire(4).unwrap_err();
    assert_eq!(observer.counters().unwrap().denied, [Some(1)]);
    assert_eq!(observer.usage().unwrap()[0].used, 2);

    // A reset: the observer moves to the fresh file.
    hostlimit::reset(&path).unwrap();
    writer.try_acquire(1).unwrap();
    assert_eq!(observer.usage().unwrap()[0].used, 1);

    // Removed: the observer reports it, and does not bring it back.
    drop(writer);
    hostlimit::remove(&path).unwrap();
    assert!(observer.usage().is_err());
    std::thread::sleep(SEC + Duration::from_millis(100));
    assert!(observer.usage().is_err());
    assert!(!path.exists(), "an observer re-created the file");
    let error = Limiter::observe(&path).unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(!path.exists());
}

/// `create` of an existing limiter with another `--mode` or `--group` says so and fails
/// (without them it is idempotent); a missing `--dir` is reported as missing, not as empty.
#[test]
fn create_checks_permissions_and_missing_directories_are_missing() {
    let dir = support::temp_dir();
    let limiters = dir.path().join("limiters");
    fs::create_dir(&limiters).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(["--dir", limiters.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        Run::of("$ hostlimit", args, &output)
    };
    expect(
        &run(&["create", "api", "--rate", "1/s", "--mode", "0640"]),
        0,
        &[],
    );
    expect(&run(&["create", "api", "--rate", "1/s"]), 0, &[]);
    expect(
        &run(&["create", "api", "--rate", "1/s", "--mode", "0640"]),
        0,
        &[],
    );
    expect(
        &run(&["create", "api", "--rate", "1/s", "--mode", "0660"]),
        65,
        &["mode 0640", "mode 0660"],
    );
    let other_group = if nix::unistd::getegid().as_raw() == 0 {
        "1"
    } else {
        "0"
    };
    expect(
        &run(&["create", "api", "--rate", "1/s", "--group", other_group]),
        65,
        &["mode 0640 and group", "asked for"],
    );
    assert_eq!(
        fs::metadata(limiters.join("api")).unwrap().mode() & 0o777,
        0o640,
        "create changed the file"
    );

    let missing = dir.path().join("nonexistent");
    let status = Command::new(BIN)
        .args(["status", "--dir", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(66));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("no such directory"), "{stderr}");
    let created = Command::new(BIN)
        .args([
            "create",
            "x",
            "--rate",
            "1/s",
            "--dir",
            missing.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(created.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&created.stderr).contains("--parents"));
    assert!(!missing.exists(), "a typo created a directory");
}

/// A running service whose limiter file is removed and replaced by another user's: at its
/// next path check the service finds the planted file and refuses it (its acquires are
/// denied as unavailable), instead of moving to a file the planter controls; the planted
/// file is not written to.
#[test]
fn a_running_service_does_not_move_to_a_planted_replacement() {
    let Some(mut accounts) = accounts("a_running_service_does_not_move_to_a_planted_replacement")
    else {
        return;
    };
    let service = accounts.user("s", &[]);
    let mallory = accounts.user("m", &[]);
    let host = host();
    let dir = &host.dir;
    expect(
        &hostlimit_as(&service, dir, &[], &["create", "api", "--rate", "4/min"]),
        0,
        &[],
    );
    let path = dir.join("api");
    let scratch = host.dir.parent().unwrap();
    let script = format!(
        "setuid {}; open 4/min interval=50; acquire 1; touch opened; wait go; sleep 300; \
         acquire 1; acquire 1",
        uid(&service)
    );
    let dir_text = dir.to_str().unwrap().to_string();
    let mut worker = support::spawn(
        scratch,
        &path,
        "service",
        &script,
        &[("HOSTLIMIT_DIR", &dir_text)],
    );
    support::wait_for_file(&scratch.join("opened"), Duration::from_secs(60));
    fs::remove_file(&path).unwrap();
    expect(
        &hostlimit_as(
            &mallory,
            dir,
            &[],
            &["create", "api", "--rate", "4/min", "--mode", "0666"],
        ),
        0,
        &[],
    );
    let planted = fs::read(&path).unwrap();
    support::touch(&scratch.join("go"));
    let output = worker.finish(Duration::from_secs(60));
    assert_eq!(output.errors, Vec::<String>::new());
    assert_eq!(output.admissions.len(), 1, "{output:?}");
    assert_eq!(output.denials.len(), 2, "{output:?}");
    assert!(output.denials.iter().all(|d| d.kind == 'U'), "{output:?}");
    assert_eq!(
        fs::read(&path).unwrap(),
        planted,
        "the planted file was used"
    );
    assert_eq!(fs::metadata(&path).unwrap().uid(), uid(&mallory));
}
