//! The life of a limiter file around its users: resets and removes racing each other, a reset
//! or remove that fails half-way, a reset by another user, hundreds of re-attaches in one
//! long-lived process, and damaged files cleaned up with the command.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use hostlimit::{Limiter, Rate};

use crate::support::{self, Output};

const HOUR: Duration = Duration::from_secs(3600);
/// How long any worker may take: far beyond what each needs, so only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);
/// The unprivileged user the tests run workers as when they run as root.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Lets `NOBODY` reach paths under `dir` (a temporary directory is 0700) and make its
/// signal files there (sticky, as `/tmp`).
fn open_to_everyone(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Tries of the race between two administrators (`kinds`: `reset` or `remove`) and a user
/// that follows them, on a limiter of 30,000 per hour (a ring of 32,768 slots, so that making
/// a file takes long enough for the two to overlap). Returns the tries where, once both
/// administrators were done, the user and a newcomer admitted on two different files.
fn race(kinds: [&str; 2], tries: u64) -> Vec<String> {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [Rate::new(30_000, HOUR)];
    Limiter::open(&path, &rates).unwrap();
    let mut user = support::spawn(
        dir.path(),
        &path,
        "user",
        &format!("follow {tries} 30000/h"),
        &[],
    );
    let mut admins: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            support::spawn(
                dir.path(),
                &path,
                &format!("r{i}"),
                &format!("admin {kind} {tries}"),
                &[],
            )
        })
        .collect();
    let mut newcomer = Vec::new();
    for index in 0..tries {
        let file = |name: &str| dir.path().join(format!("{name}.{index}"));
        support::wait_for_file(&file("ready"), HANG);
        support::touch(&file("go"));
        support::wait_for_file(&file("done"), HANG);
        // Whatever the path names now is the limiter everyone shares from now on.
        let limiter = Limiter::builder(&rates)
            .check_interval(HOUR)
            .open(&path)
            .unwrap();
        newcomer.push(limiter.try_acquire_stamped(1).unwrap().unwrap().sequence);
    }
    let user: Output = user.finish(HANG);
    for admin in &mut admins {
        let output = admin.finish(HANG);
        for line in &output.admin {
            // Losing a race to a remove is the only acceptable failure.
            assert!(
                line.ends_with(" ok") || line.contains("No such file"),
                "{}: {line}",
                admin.name()
            );
        }
    }
    assert_eq!(user.admissions.len() as u64, tries, "{user:?}");
    user.admissions
        .iter()
        .zip(&newcomer)
        .enumerate()
        .filter(|(_, (mine, theirs))| **theirs != mine.seq + 1)
        .map(|(index, (mine, theirs))| {
            format!(
                "try {index}: the user admitted as record {} and the newcomer as record {theirs}",
                mine.seq
            )
        })
        .collect()
}

/// Two resets (or a reset and a remove, or two removes) at once must not leave a process on
/// a file nobody else sees: each retires the file it actually replaced, so that whoever had
/// moved to the other's new file moves on again. Checked after every try: the user, which
/// followed the administrators during the race, and a newcomer afterwards share one file
/// (the newcomer's admission is the next record after the user's).
#[test]
fn racing_resets_and_removes_never_leave_a_process_on_an_orphaned_file() {
    let _serial = support::exclusive();
    let tries = std::env::var("HOSTLIMIT_RACE_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut violations = Vec::new();
    for kinds in [
        ["reset", "reset"],
        ["reset", "remove"],
        ["remove", "remove"],
    ] {
        let found = race(kinds, tries);
        eprintln!(
            "{kinds:?}: {} of {tries} tries left the user on an orphaned file",
            found.len()
        );
        violations.extend(found.into_iter().map(|v| format!("{kinds:?} {v}")));
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// A remove or reset that fails (a user who may write the file but not its directory)
/// changes nothing: the limiter stays open for everyone, with its history, and calls leak
/// no descriptors. As root, the worker gives up root first (root ignores permission bits).
#[test]
fn a_failed_remove_or_reset_leaves_the_limiter_working() {
    let dir = support::temp_dir();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    let path = locked.join("lim");
    let rates = [Rate::new(1000, HOUR)];
    let limiter = Limiter::builder(&rates).mode(0o666).open(&path).unwrap();
    limiter.try_acquire(1).unwrap();
    let inode = fs::metadata(&path).unwrap().ino();
    let setuid = if is_root() {
        open_to_everyone(dir.path());
        format!("setuid {NOBODY}; ")
    } else {
        String::new()
    };
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let script = format!(
        "{setuid}attach; acquire 1; remove; acquire 1; reset; acquire 1; resources; \
         fill 1 50; resources; remove; reset; resources"
    );
    let output = support::spawn(dir.path(), &path, "user", &script, &[]).finish(HANG);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(output.errors, Vec::<String>::new());
    assert_eq!(output.admin.len(), 4, "{output:?}");
    for line in &output.admin {
        assert!(
            line.contains("error") && line.contains("ermission denied"),
            "{line}"
        );
    }
    assert!(output.denials.is_empty(), "{:?}", output.denials);
    let seqs: Vec<u32> = output.admissions.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (2..=54).collect::<Vec<u32>>(), "the history was lost");
    let (before, after) = (output.resources[0], output.resources[2]);
    assert!(
        after.0 <= before.0 && after.1 <= before.1,
        "descriptors and mappings grew from {before:?} to {after:?}"
    );
    // Nothing changed for the others either: the same file, open, with every admission.
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
    assert_eq!(limiter.admitted().unwrap(), 54);
    limiter.try_acquire(1).unwrap();
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 1, "a stray file");
}

/// A long-lived process survives any number of resets and removes with bounded resources:
/// 300 rounds (each a reset or a remove, then an admission on the fresh file) under a limit
/// of 64 descriptors, ending with as many descriptors and mapped files as it started with.
#[test]
fn hundreds_of_resets_keep_descriptors_and_mappings_bounded() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let output = support::spawn(
        dir.path(),
        &path,
        "churn",
        "open 1000/h interval=3600000; nofile 64; acquire 1; resources; churn 300; resources",
        &[],
    )
    .finish(HANG);
    assert_eq!(output.errors, Vec::<String>::new());
    let failed: Vec<&String> = output
        .admin
        .iter()
        .filter(|line| !line.ends_with(" ok"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 300 rounds failed, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(output.denials.is_empty(), "{:?}", output.denials);
    assert_eq!(output.admissions.len(), 301);
    assert!(
        output.admissions.iter().all(|a| a.seq == 1),
        "an admission after a reset was not on a fresh file"
    );
    let (start, end) = (output.resources[0], output.resources[1]);
    eprintln!("descriptors and mapped files: {start:?} before, {end:?} after 300 rounds");
    assert!(
        end.0 <= start.0 + 1 && end.1 <= start.1 + 2,
        "resources grew from {start:?} to {end:?} (descriptors, mappings)"
    );
}

/// Root's reset of another user's limiter keeps the file theirs: the new file has the old
/// one's owner, group and mode, so its users go on using it. A user who cannot give a new
/// file to the old file's owner is refused, and nothing changes.
#[test]
fn a_reset_keeps_the_owner_group_and_mode_or_is_refused() {
    if !is_root() {
        eprintln!("not root: a reset can only make files of our own; nothing to check");
        return;
    }
    let dir = support::temp_dir();
    open_to_everyone(dir.path());
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let path = home.join("lim");
    let mut user = support::spawn(
        dir.path(),
        &path,
        "user",
        &format!(
            "setuid {NOBODY}; open 5/min mode=640 interval=3600000; fill 1 10; touch made; \
             wait reset; acquire 1; usage"
        ),
        &[],
    );
    support::wait_for_file(&dir.path().join("made"), HANG);
    // Give the file the user's group too, so that both owner and group are checked.
    std::os::unix::fs::chown(&path, None, Some(NOBODY)).unwrap();
    hostlimit::reset(&path).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (NOBODY, NOBODY, 0o640),
        "the reset file changed hands"
    );
    support::touch(&dir.path().join("reset"));
    let output = user.finish(HANG);
    assert_eq!(output.errors, Vec::<String>::new());
    assert_eq!(output.admissions.len(), 6, "{output:?}");
    assert_eq!(output.admissions[5].seq, 1, "not on the fresh file");
    assert_eq!(output.usages[0][0].used, 1);

    // The user cannot give a new file to root: refused, and the file is left as it was.
    let theirs = home.join("roots");
    Limiter::builder(&[Rate::new(5, HOUR)])
        .mode(0o666)
        .open(&theirs)
        .unwrap()
        .try_acquire(1)
        .unwrap();
    let inode = fs::metadata(&theirs).unwrap().ino();
    let output = support::spawn(
        dir.path(),
        &theirs,
        "refused",
        &format!("setuid {NOBODY}; reset; attach; acquire 1"),
        &[],
    )
    .finish(HANG);
    assert_eq!(output.admin.len(), 1);
    assert!(
        output.admin[0].contains("error") && output.admin[0].contains("owner"),
        "{:?}",
        output.admin
    );
    assert_eq!(output.admissions.len(), 1, "{output:?}");
    assert_eq!(output.admissions[0].seq, 2, "the old file was retired");
    let meta = fs::metadata(&theirs).unwrap();
    assert_eq!((meta.ino(), meta.uid()), (inode, 0));
    let names: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "a stray file: {names:?}");
}

/// `hostlimit rm` and `hostlimit reset` clean up a damaged limiter, saying what it was; a
/// file that is not a hostlimit file is removed only with `--force`, and never reset.
#[cfg(feature = "cli")]
#[test]
fn the_command_cleans_up_damaged_files_and_says_what_they_were() {
    use std::os::unix::fs::FileExt;
    use std::process::Command;

    let dir = support::temp_dir();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_hostlimit"))
            .args(args)
            .env("HOSTLIMIT_DIR", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        eprintln!("$ hostlimit {}\n{stderr}", args.join(" "));
        (output.status.code(), stderr)
    };
    let garbage = |name: &str| {
        let path = dir.path().join(name);
        Limiter::open(&path, &[Rate::new(5, HOUR)]).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xa5; 64], 12_288 + 16).unwrap();
        path
    };

    let path = garbage("ring");
    let (code, stderr) = run(&["rm", "ring"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("corrupt ring"), "{stderr}");
    assert!(!path.exists());

    let path = garbage("ring");
    let (code, stderr) = run(&["reset", "ring"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("corrupt ring"), "{stderr}");
    let fresh = Limiter::attach(&path).unwrap();
    assert_eq!(fresh.rates(), [Rate::new(5, HOUR)]);
    fresh.try_acquire(1).unwrap();
    drop(fresh);

    let truncated = dir.path().join("short");
    fs::write(&truncated, &fs::read(&path).unwrap()[..5000]).unwrap();
    let (code, stderr) = run(&["rm", "short"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(!truncated.exists());

    let junk = dir.path().join("junk");
    fs::write(&junk, b"not a limiter").unwrap();
    for args in [
        &["rm", "junk"][..],
        &["reset", "junk"],
        &["reset", "--force", "junk"],
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(65), "{args:?}: {stderr}");
        assert!(stderr.contains("not a hostlimit file"), "{stderr}");
    }
    assert!(run(&["rm", "junk"]).1.contains("--force"));
    assert_eq!(fs::read(&junk).unwrap(), b"not a limiter");
    let (code, stderr) = run(&["rm", "--force", "junk"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!junk.exists());
}

/// `Limiter::reset` on an observer is the path's reset (`hostlimit::reset`): the observer's
/// own handle never writes to the file, but it may replace it, and both the writer and the
/// observer follow to the fresh file.
#[test]
fn an_observer_resets_the_path_and_everyone_follows() {
    let dir = support::temp_dir();
    let path = dir.path().join("l");
    let writer = Limiter::open(&path, &[Rate::new(1, Duration::from_secs(3600))]).unwrap();
    writer.try_acquire(1).unwrap();
    assert!(writer.try_acquire(1).is_err());
    let observer = Limiter::observe(&path).unwrap();
    assert!(
        observer.try_acquire(1).is_err(),
        "an observer never acquires"
    );
    assert_eq!(observer.usage().unwrap()[0].used, 1);
    assert!(observer.reset().unwrap());
    assert_eq!(
        observer.usage().unwrap()[0].used,
        0,
        "the observer follows the reset"
    );
    writer.try_acquire(1).unwrap();
    assert_eq!(
        observer.usage().unwrap()[0].used,
        1,
        "the writer moved to the fresh file"
    );
}
