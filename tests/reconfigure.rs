//! Changing the rates of a limiter in use (`hostlimit::reconfigure`, `hostlimit set`): the
//! admissions inside the new windows keep counting, nothing committed while the file is
//! swapped is lost, every process adopts the new rates at its next call and none brings the
//! old ones back, and a later opener with the old rates is told what changed.

use std::fs;
use std::time::Duration;

use hostlimit::{Error, Limiter, Rate};

use crate::support::{self, Admission, Output};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// How long any worker may take: far beyond what each needs, so only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap()
}

/// For every admission of `after` and every rate, the window of that rate ending at its
/// timestamp holds at most the limit, counting every admission of `all` (the old file's and
/// the new one's) inside it.
fn check_windows_ending_at(
    after: &[Admission],
    all: &[Admission],
    rates: &[Rate],
) -> Result<(), String> {
    for admission in after {
        for rate in rates {
            let window = nanos(rate.window());
            let inside: Vec<&Admission> = all
                .iter()
                .filter(|a| a.ts <= admission.ts && a.ts + window > admission.ts)
                .collect();
            let used: u64 = inside.iter().map(|a| support::units(rate, a.weight)).sum();
            if used > rate.limit() {
                return Err(format!(
                    "{rate} exceeded after the change: {used} in the window ending at {}: \
                     {inside:?}",
                    admission.ts
                ));
            }
        }
    }
    Ok(())
}

/// Four processes spin on a limiter (thousands of commits a second, so that commits race
/// the swap) while its rates change under them. Checked exactly on the recorded timestamps:
/// the old file's admissions are one complete log within the old rates, all of which the
/// change read (none was committed after its read); the new file's are the records after its
/// history, each once; every window of the new rates that ends at a later admission holds at
/// most the new limit, counting the old file's admissions inside it; every process adopted
/// the new rates without ever being refused as unavailable; the denials before the change
/// were due under the old rates.
#[test]
fn set_while_four_processes_hammer_keeps_every_window_exact_across_the_change() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    // The new windows are no longer than the old ones, so the old ring (4096 slots) holds
    // every old admission inside them.
    let old_rates = [
        Rate::new(500, Duration::from_millis(100)),
        Rate::requests(3_000, SEC),
    ];
    let new_rates = [
        Rate::new(200, Duration::from_millis(100)),
        Rate::requests(1_000, SEC),
    ];
    drop(Limiter::open(&path, &old_rates).unwrap());
    let open = format!("open {}", support::rates_arg(&old_rates));
    let mut workers: Vec<support::Worker> = (0..4)
        .map(|i| {
            let script = format!("{open}; touch ready.{i}; wait go; hammer 2500 1,2 200; usage");
            support::spawn(dir.path(), &path, &format!("w{i}"), &script, &[])
        })
        .collect();
    for i in 0..4 {
        support::wait_for_file(&dir.path().join(format!("ready.{i}")), HANG);
    }
    support::touch(&dir.path().join("go"));
    std::thread::sleep(Duration::from_millis(600));
    let done = hostlimit::reconfigure(&path, &new_rates).unwrap();
    let set_after = support::now();
    let outputs: Vec<Output> = workers.iter_mut().map(|w| w.finish(HANG)).collect();
    assert!(done.changed);
    assert_eq!(done.old_rates, old_rates);

    let admitted: Vec<Admission> = outputs.iter().flat_map(|o| o.admissions.clone()).collect();
    support::check_stamps(&admitted).unwrap();
    // Single-threaded workers: the old file's admissions are stamped before its log was
    // closed, the new file's after.
    let (old, new): (Vec<Admission>, Vec<Admission>) = admitted
        .iter()
        .copied()
        .partition(|a| a.ts < done.closed_at);
    assert!(
        !old.is_empty() && !new.is_empty(),
        "{} / {}",
        old.len(),
        new.len()
    );
    support::check_sequence(&old).unwrap();
    support::check_windows(&old, &old_rates).unwrap();
    assert_eq!(
        done.read,
        (old.len() as u64).min(done.capacity.0 - 2),
        "the change read every old admission its ring held"
    );
    // The new file's log: its history (records 1..=kept), then the processes' admissions.
    let mut seqs: Vec<u32> = new.iter().map(|a| a.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<u32> = (1..=new.len() as u32)
        .map(|i| i + done.kept as u32)
        .collect();
    assert!(
        seqs == expected,
        "the new file's admissions are not records {}..={} once each: {} of them, from {:?} \
         to {:?}",
        done.kept + 1,
        done.kept + new.len() as u64,
        seqs.len(),
        seqs.first(),
        seqs.last()
    );
    check_windows_ending_at(&new, &admitted, &new_rates).unwrap();

    for (index, output) in outputs.iter().enumerate() {
        // Each process moved to the new file: its last reading has the new limits.
        let last = output.usages.last().expect("a usage line");
        let limits: Vec<u64> = last.iter().map(|u| u.used + u.remaining).collect();
        assert_eq!(limits, [200, 1_000], "worker {index} did not adopt");
        assert!(
            output
                .admissions
                .iter()
                .all(|a| a.ts >= done.closed_at || a.before < set_after),
            "worker {index} admitted on the old file after the change"
        );
        for denial in &output.denials {
            assert_eq!(denial.kind, 'X', "worker {index}: {denial:?}");
        }
    }
    let denials: Vec<support::Denial> = outputs.iter().flat_map(|o| o.denials.clone()).collect();
    let before: Vec<_> = denials
        .iter()
        .filter(|d| d.after < done.closed_at)
        .copied()
        .collect();
    support::check_denials(&old, &before, &old_rates).unwrap();
    assert!(!before.is_empty(), "the old rates bound");
    // And the new ones: the request rate's window ending at some new admission is full.
    let most = new
        .iter()
        .map(|a| {
            let inside = |b: &&Admission| b.ts <= a.ts && b.ts + nanos(SEC) > a.ts;
            admitted.iter().filter(inside).count()
        })
        .max();
    assert_eq!(most, Some(1_000), "the new request rate bound");
    assert_eq!(Limiter::attach(&path).unwrap().rates(), new_rates);
    println!(
        "{} admissions on the old file ({} read), {} on the new one ({} records kept), {} \
         denials",
        old.len(),
        done.read,
        new.len(),
        done.kept,
        denials.len()
    );
}

/// A ring the new rates need larger is grown, and the admissions still inside the new
/// windows count against the new limits; a process that had the limiter open adopts the new
/// rates at its next call, and a deleted file comes back with them, not the old ones.
#[test]
fn set_grows_the_ring_keeps_the_windows_and_the_old_users_adopt_it() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let old_rates = [Rate::new(3, MIN)];
    let user = Limiter::builder(&old_rates)
        .check_interval(Duration::ZERO)
        .open(&path)
        .unwrap();
    for _ in 0..3 {
        user.try_acquire(1).unwrap();
    }
    assert!(user.try_acquire(1).is_err());
    let before = user.info().capacity;

    let new_rates = [Rate::new(50, MIN), Rate::new(60, HOUR)];
    let done = hostlimit::reconfigure(&path, &new_rates).unwrap();
    assert_eq!((done.read, done.kept), (3, 3));
    assert_eq!(done.capacity.0, before);
    assert!(done.capacity.1 > before, "{:?}", done.capacity);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        12_288 + 16 * done.capacity.1
    );

    // The user still holds the old file until its next call, which adopts the new one.
    assert_eq!(user.rates(), old_rates);
    user.try_acquire(1).unwrap();
    assert_eq!(user.rates(), new_rates);
    assert_eq!(user.info().capacity, done.capacity.1);
    // The three earlier admissions count: 46 more fit the minute, not 50.
    let mut more = 1;
    while user.try_acquire(1).is_ok() {
        more += 1;
    }
    assert_eq!(more, 47);
    let usage = user.usage().unwrap();
    assert_eq!((usage[0].used, usage[1].used), (50, 50));

    // Deleted, the file is re-created by its user with the rates it adopted.
    fs::remove_file(&path).unwrap();
    user.try_acquire(1).unwrap();
    assert_eq!(Limiter::attach(&path).unwrap().rates(), new_rates);
    // The same rates again change nothing.
    let again = hostlimit::reconfigure(&path, &new_rates).unwrap();
    assert!(!again.changed);
}

/// A process that opens the limiter after the change with the old rates is refused, and
/// told both configurations and how they changed; with the new rates it opens.
#[test]
fn an_opener_with_the_old_rates_is_told_what_changed() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let old_rates = [Rate::new(10, SEC), Rate::new(100, MIN)];
    drop(Limiter::open(&path, &old_rates).unwrap());
    // A process that sleeps through the change and a reset after it still adopts: the reset
    // file is the same limiter (its lineage), with the new rates.
    let stale = Limiter::open(&path, &old_rates).unwrap();
    let new_rates = [Rate::new(5, SEC), Rate::new(100, MIN)];
    hostlimit::reconfigure(&path, &new_rates).unwrap();
    hostlimit::reset(&path).unwrap();
    stale.try_acquire(1).unwrap();
    assert_eq!(stale.rates(), new_rates);
    let error = Limiter::open(&path, &old_rates).unwrap_err();
    let Error::ConfigMismatch {
        file,
        requested,
        reconfigured,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (file.as_slice(), requested.as_slice()),
        (&new_rates[..], &old_rates[..])
    );
    assert_eq!(*reconfigured, 1);
    let text = error.to_string();
    for part in [
        "the file limits [5/s, 100/min] but [10/s, 100/min] was asked for",
        "changed once",
        "[10/s] became [5/s]",
        "hostlimit::reconfigure",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    Limiter::open(&path, &new_rates).unwrap();
    // Changed back, the count goes on: it is the third configuration.
    hostlimit::reconfigure(&path, &old_rates).unwrap();
    hostlimit::reconfigure(&path, &[Rate::new(1, SEC)]).unwrap();
    let text = Limiter::open(&path, &old_rates).unwrap_err().to_string();
    assert!(text.contains("changed 3 times"), "{text}");
    assert!(text.contains("[10/s, 100/min] became [1/s]"), "{text}");
}

/// A limiter that is not there, or a file that is not a limiter, is reported and left alone.
#[test]
fn set_on_a_missing_or_foreign_file_changes_nothing() {
    let dir = support::temp_dir();
    let missing = dir.path().join("missing");
    assert!(matches!(
        hostlimit::reconfigure(&missing, &[Rate::new(1, SEC)]),
        Err(Error::Io { .. })
    ));
    assert!(!missing.exists());
    let foreign = dir.path().join("foreign");
    fs::write(&foreign, b"not a limiter").unwrap();
    let error = hostlimit::reconfigure(&foreign, &[Rate::new(1, SEC)]).unwrap_err();
    assert!(
        error.to_string().contains("not a hostlimit file"),
        "{error}"
    );
    assert_eq!(fs::read(&foreign).unwrap(), b"not a limiter");
}

/// `hostlimit set` as a user runs it: the new rates, the kept history, `--json`, and the
/// old rates refused afterwards with the way to change them.
#[cfg(feature = "cli")]
#[test]
fn the_set_command_changes_the_rates_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = support::command(env!("CARGO_BIN_EXE_hostlimit"))
            .args(args)
            .env("HOSTLIMIT_DIR", dir.path().join("limiters"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        eprintln!("$ hostlimit {}", args.join(" "));
        (
            output.status.code(),
            text(output.stdout),
            text(output.stderr),
        )
    };
    assert_eq!(run(&["create", "api", "--rate", "2/min"]).0, Some(0));
    assert_eq!(run(&["acquire", "api"]).0, Some(0));
    let (code, out, err) = run(&["set", "api", "--rate", "5/min", "--rate", "100/h"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2/min -> 5/min, 100/h"), "{out}");
    assert!(out.contains("1 of 1 recorded admissions"), "{out}");
    let (code, out, _) = run(&["set", "api", "--rate", "5/min", "--rate", "100/h", "--json"]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["action"], "unchanged");
    assert_eq!(json["rates"], serde_json::json!(["5/min", "100/h"]));
    // The admission made before the change counts: four more fit the minute.
    for _ in 0..4 {
        assert_eq!(run(&["acquire", "api", "-n"]).0, Some(0));
    }
    assert_eq!(run(&["acquire", "api", "-n"]).0, Some(75));
    let (code, _, err) = run(&["acquire", "api", "--rate", "2/min"]);
    assert_eq!(code, Some(65));
    assert!(err.contains("set api --rate"), "{err}");
    assert!(err.contains("were changed with `set`"), "{err}");
    assert!(
        err.contains("5/min, 100/h") && err.contains("(2/min)"),
        "{err}"
    );
    let (code, _, err) = run(&["set", "api"]);
    assert_eq!(code, Some(64), "--rate is required: {err}");
    let (code, _, err) = run(&["set", "nothing", "--rate", "1/s"]);
    assert_eq!(code, Some(66), "{err}");
}

/// Closes the log of the limiter file at `path` as a change of rates does first: writes the
/// tombstone after its `admitted` records of weight 1 (`protocol::retire`).
fn close_log(path: &std::path::Path, admitted: u32) {
    use std::os::unix::fs::FileExt;
    let tombstone =
        u128::from(u64::MAX) | (u128::from(admitted) << 64) | (u128::from(admitted + 1) << 96);
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    let offset = 12_288 + 16 * u64::from(admitted + 1);
    file.write_all_at(&tombstone.to_le_bytes(), offset).unwrap();
}

/// A change of rates whose process died after closing the old log leaves the closed file at
/// the path, held by nobody: its users are refused at once, saying what to do, and running
/// the change again finishes it (with the history of the closed file), after which they
/// adopt the new rates. A change in progress (the file held) is waited for, but not forever.
#[test]
fn a_change_that_died_half_way_is_reported_and_can_be_finished() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let old_rates = [Rate::new(5, MIN)];
    let user = Limiter::open(&path, &old_rates).unwrap();
    user.try_acquire(1).unwrap();
    user.try_acquire(1).unwrap();
    let observer = Limiter::observe(&path).unwrap();
    close_log(&path, 2);
    let unusable = observer.usage().unwrap_err().to_string();
    assert!(
        unusable.contains("no new file took its place"),
        "{unusable}"
    );
    let denied = user.try_acquire(1).unwrap_err();
    let text = denied.to_string();
    assert!(text.contains("no new file took its place"), "{text}");
    assert!(text.contains("hostlimit set"), "{text}");
    // Run again with the rates it has, the change is finished too.
    let same = hostlimit::reconfigure(&path, &old_rates).unwrap();
    assert!(same.changed);
    assert_eq!((same.read, same.kept), (2, 2));
    for _ in 0..3 {
        user.try_acquire(1).unwrap();
    }
    assert!(
        user.try_acquire(1).is_err(),
        "5 per minute, 2 of them before"
    );
    close_log(&path, 5);

    // In progress: another process holds the file. The user waits for it, then gives up.
    let holder = fs::File::open(&path).unwrap();
    let hold = nix::fcntl::Flock::lock(holder, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let started = std::time::Instant::now();
    let denied = user.try_acquire(1).unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(5), "{denied}");
    assert!(
        denied
            .to_string()
            .contains("has not put the new file in place"),
        "{denied}"
    );
    // Nor can a second change start while the first holds the file.
    let busy = hostlimit::reconfigure(&path, &[Rate::new(9, MIN)]).unwrap_err();
    assert!(
        busy.to_string()
            .contains("another process is changing them"),
        "{busy}"
    );
    drop(hold);

    let new_rates = [Rate::new(3, MIN)];
    let done = hostlimit::reconfigure(&path, &new_rates).unwrap();
    assert_eq!((done.read, done.kept), (5, 3));
    // Three of the five admissions of the closed file are kept (the new limit, all it can
    // count): none more fits.
    assert!(user.try_acquire(1).is_err());
    assert_eq!(user.rates(), new_rates);
    let new_rates = [Rate::new(5, MIN)];
    hostlimit::reconfigure(&path, &new_rates).unwrap();
    // Back to five per minute: the three kept count, two more fit.
    user.try_acquire(1).unwrap();
    assert_eq!(user.rates(), new_rates);
    user.try_acquire(1).unwrap();
    assert!(user.try_acquire(1).is_err());
    // The observer follows to the new file and its rates.
    let usage = observer.usage().unwrap();
    assert_eq!(
        (usage.len(), usage[0].rate, usage[0].used),
        (1, new_rates[0], 5)
    );
}

/// A journaled limiter, as the command line makes one (its journal recorded in a state
/// directory of its own): after `set`, its journal and record follow the new rates without
/// anyone asking, so that after a reboot (the shared file gone) any opener (`acquire` with
/// no rates) re-creates it with the new rates, restoring the old admissions against them.
#[cfg(all(feature = "journal", feature = "cli"))]
#[test]
fn a_journaled_limiter_keeps_its_journal_across_set_and_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let (limiters, state) = (dir.path().join("shm"), dir.path().join("state"));
    let run = |args: &[&str]| {
        let output = support::command(env!("CARGO_BIN_EXE_hostlimit"))
            .args(args)
            .env("HOSTLIMIT_DIR", &limiters)
            .env("HOSTLIMIT_STATE_DIR", &state)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8(output.stderr).unwrap();
        eprintln!("$ hostlimit {}\n{err}", args.join(" "));
        (output.status.code(), err)
    };
    assert_eq!(
        run(&["create", "api", "--rate", "5/h", "--journal"]).0,
        Some(0)
    );
    for _ in 0..3 {
        assert_eq!(run(&["acquire", "api", "-n"]).0, Some(0));
    }
    let (code, err) = run(&["set", "api", "--rate", "4/h", "--rate", "20/day"]);
    assert_eq!(code, Some(0), "{err}");
    let record: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "limiter"))
        .collect();
    assert_eq!(record.len(), 1, "{record:?}");
    let text = fs::read_to_string(&record[0]).unwrap();
    assert!(text.contains("rates 4/h 20/d\n"), "{text}");

    // The new file still says it is journaled.
    let observer = Limiter::attach_without_journal(limiters.join("api")).unwrap();
    assert!(observer.info().journaled);
    drop(observer);

    // The reboot: the shared file is gone; the next opener restores it from the journal.
    fs::remove_dir_all(&limiters).unwrap();
    fs::create_dir(&limiters).unwrap();
    let (code, err) = run(&["acquire", "api", "-n"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&["acquire", "api", "-n"]);
    assert_eq!(
        code,
        Some(75),
        "4 per hour, 3 of them before the change: {err}"
    );
    assert!(err.contains("4/h"), "{err}");
    let attached = Limiter::attach(limiters.join("api"));
    assert_eq!(
        attached.map(|l| l.rates()).ok(),
        Some(vec![Rate::new(4, HOUR), Rate::new(20, 24 * HOUR)])
    );
}

/// Another process that had the limiter open before the change adopts the new rates at its
/// next call, and when the file is deleted afterwards it re-creates it with them: the old
/// configuration does not come back.
#[test]
fn a_process_attached_before_set_adopts_and_never_reverts() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let old_rates = [Rate::new(2, MIN)];
    let new_rates = [Rate::new(7, MIN), Rate::new(9, HOUR)];
    let script = format!(
        "open {} interval=0; acquire 1; touch ready; wait go; acquire 1; usage; touch \
         adopted; wait deleted; acquire 1; usage",
        support::rates_arg(&old_rates)
    );
    let mut worker = support::spawn(dir.path(), &path, "w", &script, &[]);
    support::wait_for_file(&dir.path().join("ready"), HANG);
    hostlimit::reconfigure(&path, &new_rates).unwrap();
    support::touch(&dir.path().join("go"));
    support::wait_for_file(&dir.path().join("adopted"), HANG);
    fs::remove_file(&path).unwrap();
    support::touch(&dir.path().join("deleted"));
    let output = worker.finish(HANG);
    assert_eq!(output.admissions.len(), 3, "{:?}", output.denials);
    let limits = |usage: &Vec<support::UsageLine>| -> Vec<u64> {
        usage.iter().map(|u| u.used + u.remaining).collect()
    };
    // Adopted with the history: the admission before the change counts.
    assert_eq!(limits(&output.usages[0]), [7, 9]);
    assert_eq!(output.usages[0][0].used, 2);
    // Re-created with the new rates, empty.
    assert_eq!(limits(&output.usages[1]), [7, 9]);
    assert_eq!(output.usages[1][0].used, 1);
    assert_eq!(Limiter::attach(&path).unwrap().rates(), new_rates);
}
