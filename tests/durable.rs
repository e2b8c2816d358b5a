//! Durability belongs to the limiter: a limiter journaled once keeps its windows across a
//! "reboot" (its shared file deleted, with its directory, as the loss of the tmpfs does)
//! whoever opens it first afterwards — the command line without `--journal`, the library
//! without `.journal`, `Limiter::attach`, a journaled process, a process that was attached
//! without a journal when the file went — or the open fails clearly when the journal is gone
//! or broken. Reset and remove do what they say to the journal.
//!
//! Every process here is real (this test binary re-executed as a worker, or the `hostlimit`
//! command), on real files, with a state directory of its own (`HOSTLIMIT_STATE_DIR`). The
//! limit is checked on the recorded timestamps of every admission, before and after the
//! reboot (`CLOCK_BOOTTIME` goes on across the deletion, so they compare).
//!
//! Workers run `durable::durable_worker` with [`HOW_ENV`] saying how they open the limiter
//! (`journal`: the builder with `.journal(DIR)`; `strict`: the same in strict mode; `plain`:
//! the builder without; `attach`; `observer`: `Limiter::attach_without_journal`) and a script
//! of steps separated by `;`: `acquire N` (N `try_acquire_stamped(1)`), `sleep MS`, `ready`
//! (creates `OUT.ready`), `signal NAME` (creates `OUT.NAME`), `await NAME` (waits for
//! `OUT.NAME`), `status`. Output lines: `A <timestamp> <seq>`, `D <denial>`, `E <open error>`,
//! `S <journal status> journaled=<the header's flag>`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use hostlimit::{Durability, Limiter, Rate};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{self, Admission};

const HOW_ENV: &str = "HOSTLIMIT_DURABLE_HOW";
const SCRIPT_ENV: &str = "HOSTLIMIT_DURABLE_SCRIPT";
const PATH_ENV: &str = "HOSTLIMIT_DURABLE_PATH";
const JOURNAL_ENV: &str = "HOSTLIMIT_DURABLE_JOURNAL";
const OUT_ENV: &str = "HOSTLIMIT_DURABLE_OUT";
const STATE_ENV: &str = "HOSTLIMIT_STATE_DIR";
const BIN: &str = env!("CARGO_BIN_EXE_hostlimit");

const HOUR: Duration = Duration::from_secs(3600);
const TIMEOUT: Duration = Duration::from_secs(120);

/// The limiter: 10 per hour.
fn rates() -> [Rate; 1] {
    [Rate::new(10, HOUR)]
}

/// The entry point of worker processes; does nothing in the test process itself.
#[test]
fn durable_worker() {
    let Some(how) = std::env::var_os(HOW_ENV) else {
        return;
    };
    let var = |name: &str| PathBuf::from(std::env::var_os(name).expect(name));
    let (path, out) = (var(PATH_ENV), var(OUT_ENV));
    let script = std::env::var(SCRIPT_ENV).expect(SCRIPT_ENV);
    let mut lines = Vec::new();
    let opened = match how.to_str().expect("UTF-8") {
        "journal" => Limiter::builder(&rates())
            .journal(
                var(JOURNAL_ENV),
                Durability::Periodic(Duration::from_millis(50)),
            )
            .open(&path),
        "strict" => Limiter::builder(&rates())
            .journal(
                var(JOURNAL_ENV),
                Durability::Strict {
                    lease: Duration::from_millis(50),
                },
            )
            .open(&path),
        "plain" => Limiter::open(&path, &rates()),
        "attach" => Limiter::attach(&path),
        "observer" => Limiter::attach_without_journal(&path),
        other => panic!("unknown way to open {other}"),
    };
    match opened {
        Err(e) => lines.push(format!("E {e}")),
        Ok(limiter) => {
            for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let words: Vec<&str> = step.split_whitespace().collect();
                let number = || words[1].parse::<u64>().expect("a number");
                match words[0] {
                    "acquire" => {
                        for _ in 0..number() {
                            lines.push(match limiter.try_acquire_stamped(1) {
                                Ok(Some(stamp)) => {
                                    format!("A {} {}", stamp.timestamp, stamp.sequence)
                                }
                                Ok(None) => "A - -".to_string(),
                                Err(denied) => format!("D {denied}"),
                            });
                        }
                    }
                    "sleep" => std::thread::sleep(Duration::from_millis(number())),
                    "ready" => {
                        std::fs::write(out.with_extension("ready"), b"").expect("ready file");
                    }
                    "signal" => {
                        std::fs::write(out.with_extension(words[1]), b"").expect("signal file");
                    }
                    "await" => support::wait_for_file(&out.with_extension(words[1]), TIMEOUT),
                    "status" => lines.push(format!(
                        "S {:?} journaled={}",
                        limiter.journal_status(),
                        limiter.info().journaled
                    )),
                    other => panic!("unknown step {other}"),
                }
            }
            // Dropped here: a journaled limiter journals what is left before it exits.
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&out, text).expect("worker output");
}

/// One host: a tmpfs directory for the limiter (deleted by a "reboot"), a state directory
/// and a journal directory that survive it.
struct Host {
    dir: TempDir,
    workers: std::cell::Cell<u32>,
}

/// What a worker or a command did.
#[derive(Debug, Default)]
struct Outcome {
    admitted: Vec<Admission>,
    denied: usize,
    errors: Vec<String>,
    statuses: Vec<String>,
}

impl Host {
    fn new() -> Host {
        let host = Host {
            dir: support::temp_dir(),
            workers: std::cell::Cell::new(0),
        };
        std::fs::create_dir(host.shm()).expect("make the limiter directory");
        host
    }

    fn shm(&self) -> PathBuf {
        self.dir.path().join("shm")
    }

    fn path(&self) -> PathBuf {
        self.shm().join("daily")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// The loss of the tmpfs: the limiter's file is gone (and its directory is made again,
    /// empty).
    fn reboot(&self) {
        // A reboot empties the tmpfs; the directory of named limiters comes back empty (it is
        // made again by the first opener, or by systemd-tmpfiles).
        std::fs::remove_dir_all(self.shm()).expect("delete the limiter directory");
        std::fs::create_dir(self.shm()).expect("make the limiter directory again");
        assert!(!self.path().exists());
    }

    /// Runs a worker that opens the limiter `how` and runs `script`, to its end.
    fn worker(&self, how: &str, script: &str) -> Outcome {
        self.worker_with(how, script, &self.journal())
    }

    fn worker_with(&self, how: &str, script: &str, journal: &Path) -> Outcome {
        let (out, child) = self.start(how, script, journal);
        Host::finish(how, &out, child)
    }

    /// Waits for a worker [`Host::start`]ed to end, and reads what it did.
    fn finish(how: &str, out: &Path, mut child: std::process::Child) -> Outcome {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "worker {how} hung");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success(), "worker {how} failed: {status}");
        parse_worker(&std::fs::read_to_string(out).expect("worker output"))
    }

    fn start(&self, how: &str, script: &str, journal: &Path) -> (PathBuf, std::process::Child) {
        let n = self.workers.get() + 1;
        self.workers.set(n);
        let out = self.dir.path().join(format!("worker-{n}.out"));
        let exe = std::env::current_exe().expect("the test binary");
        let child = support::command(exe)
            .args([
                "--exact",
                "durable::durable_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOW_ENV, how)
            .env(SCRIPT_ENV, script)
            .env(PATH_ENV, self.path())
            .env(JOURNAL_ENV, journal)
            .env(OUT_ENV, &out)
            .env(STATE_ENV, self.state())
            // The limiter directory is the directory of named limiters, made again (shared)
            // after the reboot, as `/dev/shm/hostlimit` would be.
            .env("HOSTLIMIT_DIR", self.shm())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn a worker");
        (out, child)
    }

    /// Runs the `hostlimit` command with this host's state directory.
    fn cli(&self, args: &[&str]) -> Output {
        let output = support::command(BIN)
            .args(args)
            .env(STATE_ENV, self.state())
            .env("HOSTLIMIT_DIR", self.shm())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run hostlimit");
        eprintln!(
            "$ hostlimit {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `hostlimit acquire PATH --rate 10/h -n --json`, `times` times.
    fn cli_acquires(&self, times: usize) -> Outcome {
        let path = self.path();
        let mut outcome = Outcome::default();
        for _ in 0..times {
            let output = self.cli(&[
                "acquire",
                path.to_str().unwrap(),
                "--rate",
                "10/h",
                "-n",
                "--json",
            ]);
            let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
            match output.status.code() {
                Some(0) => outcome.admitted.push(admission(
                    json["timestamp_ns"].as_u64().expect("a timestamp"),
                    json["sequence"].as_u64().expect("a sequence") as u32,
                )),
                Some(75) => outcome.denied += 1,
                _ => outcome.errors.push(json["error"].to_string()),
            }
        }
        outcome
    }

    fn status_json(&self) -> Value {
        let output = self.cli(&["status", self.path().to_str().unwrap(), "--json"]);
        assert!(output.status.success(), "status failed");
        serde_json::from_slice(&output.stdout).expect("JSON")
    }
}

fn admission(ts: u64, seq: u32) -> Admission {
    Admission {
        before: ts,
        after: ts,
        ts,
        seq,
        weight: 1,
    }
}

fn parse_worker(text: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match line.split_once(' ') {
            Some(("A", rest)) => {
                let (ts, seq) = rest.split_once(' ').expect("A TS SEQ");
                outcome
                    .admitted
                    .push(admission(ts.parse().unwrap(), seq.parse().unwrap()));
            }
            Some(("D", _)) => outcome.denied += 1,
            Some(("E", error)) => outcome.errors.push(error.to_string()),
            Some(("S", status)) => outcome.statuses.push(status.to_string()),
            _ => panic!("unknown worker line {line:?}"),
        }
    }
    outcome
}

/// Seven of the ten admitted by a journaled process, then the reboot.
fn seven_then_reboot(host: &Host) -> Vec<Admission> {
    let before = host.worker("journal", "acquire 7");
    assert_eq!(before.admitted.len(), 7, "{before:?}");
    assert!(host.path().exists());
    host.reboot();
    before.admitted
}

/// The rest of the reboot scenario: `first` opened the limiter first after the reboot; it
/// must have had exactly the 3 left, and a journaled process and a plain one after it none.
/// Every window of every admission's recorded timestamp holds at most 10.
fn check_after_reboot(host: &Host, before: Vec<Admission>, first: Outcome, who: &str) {
    assert!(first.errors.is_empty(), "{who}: {:?}", first.errors);
    assert_eq!(
        first.admitted.len(),
        3,
        "{who} as the first opener after the reboot must get what was left (3 of 10): {first:?}"
    );
    let journaled = host.worker("journal", "acquire 5");
    let plain = host.worker("plain", "acquire 5");
    assert!(
        journaled.admitted.is_empty() && plain.admitted.is_empty(),
        "{who}: more after the limit: {journaled:?} {plain:?}"
    );
    let mut all = before;
    all.extend(first.admitted);
    support::check_windows(&all, &rates()).unwrap_or_else(|e| panic!("{who}: {e}"));
    // The re-created file says it is journaled, and status shows where.
    let status = host.status_json();
    let limiter = &status["limiters"][0];
    assert_eq!(limiter["journal"]["journaled"], true, "{who}: {limiter}");
    assert_eq!(
        limiter["journal"]["dir"].as_str(),
        Some(host.journal().to_str().unwrap()),
        "{who}"
    );
    assert_eq!(limiter["journal"]["durability"], "periodic", "{who}");
    assert_eq!(limiter["rates"][0]["used"], 10, "{who}");
}

#[test]
fn after_a_reboot_the_command_line_without_journal_restores_the_windows() {
    let host = Host::new();
    let before = seven_then_reboot(&host);
    let first = host.cli_acquires(10);
    check_after_reboot(&host, before, first, "hostlimit acquire --rate 10/h");
}

#[test]
fn after_a_reboot_the_library_without_journal_restores_the_windows() {
    let host = Host::new();
    let before = seven_then_reboot(&host);
    let mut first = host.worker("plain", "acquire 10; status");
    // It journals (the recorded journal), and the file it made says it is journaled.
    assert_eq!(first.statuses, ["Ok(()) journaled=true"], "{first:?}");
    first.statuses.clear();
    check_after_reboot(&host, before, first, "Limiter::open without .journal");
}

#[test]
fn a_process_that_cannot_open_the_recorded_journal_uses_the_existing_file_and_says_so() {
    let host = Host::new();
    let before = host.worker("journal", "acquire 7");
    assert_eq!(before.admitted.len(), 7);
    std::fs::write(host.journal().join("1-garbage.sqlite"), vec![0x5a; 8192]).unwrap();
    // The file is there: nothing to restore, so it attaches without the journal, and says so.
    let degraded = host.worker("plain", "acquire 10; status");
    assert_eq!(degraded.admitted.len(), 3, "{degraded:?}");
    assert!(
        degraded.statuses[0].contains("could not open the limiter's recorded journal")
            && degraded.statuses[0].contains("1-garbage.sqlite"),
        "{degraded:?}"
    );
    // Gone: nobody re-creates it without the history.
    host.reboot();
    for how in ["plain", "attach"] {
        let outcome = host.worker(how, "acquire 10");
        assert!(
            outcome.admitted.is_empty() && outcome.errors[0].contains("1-garbage.sqlite"),
            "{how}: {outcome:?}"
        );
    }
    assert!(!host.path().exists());
}

#[test]
fn after_a_reboot_attach_re_creates_the_limiter_with_its_history() {
    let host = Host::new();
    let before = seven_then_reboot(&host);
    let first = host.worker("attach", "acquire 10");
    check_after_reboot(&host, before, first, "Limiter::attach");
}

#[test]
fn after_a_reboot_a_journaled_process_restores_the_windows() {
    let host = Host::new();
    let before = seven_then_reboot(&host);
    let first = host.worker("journal", "acquire 10");
    check_after_reboot(&host, before, first, "a journaled process");
}

#[test]
fn a_process_attached_without_journal_re_creates_a_deleted_file_with_its_history() {
    let host = Host::new();
    let before = host.worker("journal", "acquire 7");
    assert_eq!(before.admitted.len(), 7);
    // Attached without a journal (as `status` is), it outlives the file.
    let (out, mut child) = host.start("observer", "ready; sleep 1500; acquire 10", &host.journal());
    support::wait_for_file(&out.with_extension("ready"), TIMEOUT);
    host.reboot();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "observer hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = parse_worker(&std::fs::read_to_string(out).unwrap());
    check_after_reboot(
        &host,
        before.admitted,
        first,
        "a process attached without journal",
    );
}

#[test]
fn a_missing_journal_makes_every_opener_fail_instead_of_starting_empty() {
    let host = Host::new();
    seven_then_reboot(&host);
    std::fs::remove_dir_all(host.journal()).unwrap();
    for how in ["plain", "attach", "journal"] {
        let outcome = host.worker(how, "acquire 10");
        assert!(outcome.admitted.is_empty(), "{how}: {outcome:?}");
        let error = outcome
            .errors
            .first()
            .unwrap_or_else(|| panic!("{how}: no error"));
        assert!(
            error.contains("missing") && error.contains(host.journal().to_str().unwrap()),
            "{how}: {error}"
        );
    }
    let cli = host.cli_acquires(1);
    assert!(cli.admitted.is_empty(), "{cli:?}");
    assert!(cli.errors[0].contains("missing"), "{:?}", cli.errors);
    assert!(!host.path().exists(), "nothing was created empty");
    // The way to give the history up: rm forgets the journal of a limiter without a file.
    let rm = host.cli(&["rm", host.path().to_str().unwrap(), "--json"]);
    assert!(rm.status.success());
    let rm: Value = serde_json::from_slice(&rm.stdout).unwrap();
    assert_eq!(rm["journal_action"], "removed");
    let fresh = host.worker("plain", "acquire 10");
    assert_eq!(fresh.admitted.len(), 10, "{fresh:?}");
}

#[test]
fn an_unreadable_journal_or_record_or_another_journal_is_an_error() {
    let host = Host::new();
    seven_then_reboot(&host);
    // A garbage database in the journal: a restore cannot read it.
    let garbage = host.journal().join("1-garbage.sqlite");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let outcome = host.worker("plain", "acquire 1");
    assert!(
        outcome.errors[0].contains("1-garbage.sqlite: not a SQLite database"),
        "{outcome:?}"
    );
    std::fs::remove_file(&garbage).unwrap();
    // Another journal than the recorded one.
    let other = host.dir.path().join("other-journal");
    let outcome = host.worker_with("journal", "acquire 1", &other);
    assert!(
        outcome.errors[0].contains("must use the same journal"),
        "{outcome:?}"
    );
    // A damaged record: whether it is journaled cannot be told.
    let record = std::fs::read_dir(host.state())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "limiter"))
        .expect("a journal record");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("periodic", "sometimes")).unwrap();
    let outcome = host.worker("plain", "acquire 1");
    assert!(
        outcome.errors[0].contains("unreadable journal record"),
        "{outcome:?}"
    );
    assert!(!host.path().exists(), "nothing was created empty");
    // Repaired, the limiter comes back with its history.
    std::fs::write(&record, text).unwrap();
    assert_eq!(host.worker("plain", "acquire 10").admitted.len(), 3);
}

#[test]
fn a_reset_limiter_does_not_come_back_with_its_old_admissions_after_a_reboot() {
    let host = Host::new();
    let old = host.worker("journal", "acquire 7");
    assert_eq!(old.admitted.len(), 7);
    let reset = host.cli(&["reset", host.path().to_str().unwrap(), "--json"]);
    assert!(reset.status.success());
    let reset: Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(reset["journal_action"], "marked_reset", "{reset}");
    assert_eq!(reset["journal"].as_str(), host.journal().to_str());
    let after_reset = host.worker("journal", "acquire 2");
    assert_eq!(after_reset.admitted.len(), 2);
    host.reboot();
    // The 2 after the reset count, the 7 before it do not: 8 left.
    let first = host.worker("plain", "acquire 10");
    assert_eq!(first.admitted.len(), 8, "{first:?}");
    let mut since_reset = after_reset.admitted;
    since_reset.extend(first.admitted);
    support::check_windows(&since_reset, &rates()).unwrap();
    // Still journaled: another reboot keeps the ten.
    host.reboot();
    assert!(host.worker("attach", "acquire 10").admitted.is_empty());
}

#[test]
fn remove_takes_the_journal_away_unless_asked_to_keep_it() {
    let host = Host::new();
    assert_eq!(host.worker("journal", "acquire 7").admitted.len(), 7);
    let kept = host.cli(&[
        "rm",
        host.path().to_str().unwrap(),
        "--keep-journal",
        "--json",
    ]);
    assert!(kept.status.success());
    let kept: Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(kept["journal_action"], "kept");
    // Kept: the next opener re-creates it with its history, as after a reboot.
    assert_eq!(host.worker("plain", "acquire 10").admitted.len(), 3);
    let removed = host.cli(&["rm", host.path().to_str().unwrap(), "--json"]);
    assert!(removed.status.success());
    let removed: Value = serde_json::from_slice(&removed.stdout).unwrap();
    assert_eq!(removed["journal_action"], "removed");
    assert!(!host.journal().exists(), "the journal directory is gone");
    let records = std::fs::read_dir(host.state()).unwrap().count();
    assert_eq!(records, 0, "the record is gone");
    // Removed: a plain opener starts it empty, and not journaled.
    assert_eq!(host.worker("plain", "acquire 10").admitted.len(), 10);
    let status = host.status_json();
    assert_eq!(status["limiters"][0]["journal"]["journaled"], false);
}

#[test]
fn the_command_line_journals_with_journal_and_status_shows_it() {
    let host = Host::new();
    let path = host.path();
    let path = path.to_str().unwrap();
    let created = host.cli(&["create", path, "--rate", "10/h", "--journal", "--json"]);
    assert!(created.status.success());
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["journal_action"], "recorded");
    let journal = created["journal"].as_str().expect("a journal").to_string();
    assert!(
        journal.starts_with(host.state().to_str().unwrap()),
        "the default journal is in the state directory: {journal}"
    );
    // Admissions by the command without --journal, then the reboot.
    let before = host.cli_acquires(7);
    assert_eq!(before.admitted.len(), 7);
    host.reboot();
    // Looking creates nothing, and says the limiter comes back.
    let status = host.cli(&["status", path]);
    assert_eq!(status.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("it is journaled"),
        "{status:?}"
    );
    assert!(!host.path().exists());
    let after = host.cli_acquires(10);
    assert_eq!(after.admitted.len(), 3, "{after:?}");
    let mut all = before.admitted;
    all.extend(after.admitted);
    support::check_windows(&all, &rates()).unwrap();
    let text = host.cli(&["status", path]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("journal {journal} (periodic, every 1.0s)")),
        "{text}"
    );
    // `run --journal --strict` journals a limiter of its own, and status says how.
    let strict = host.shm().join("strict");
    let run = host.cli(&[
        "run",
        strict.to_str().unwrap(),
        "--rate",
        "10/h",
        "--journal",
        "--strict",
        "--",
        "true",
    ]);
    assert!(run.status.success());
    let text = host.cli(&["status", strict.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("(strict, leases of 1.0s)"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    std::fs::remove_file(&strict).unwrap();
    let again = host.cli(&["acquire", strict.to_str().unwrap(), "-n", "--json"]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        again["sequence"], 2,
        "the run's admission was restored: {again}"
    );
    // `create` with another journal than the recorded one says so and fails.
    let other = host.dir.path().join("elsewhere");
    let clash = host.cli(&[
        "create",
        path,
        "--rate",
        "10/h",
        "--journal-dir",
        other.to_str().unwrap(),
    ]);
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("must use the same journal"));
}

#[test]
fn a_change_of_rates_keeps_the_limiter_journaled_across_a_reboot() {
    let host = Host::new();
    let before = host.worker("journal", "acquire 7");
    assert_eq!(before.admitted.len(), 7);
    let path = host.path();
    let set = host.cli(&["set", path.to_str().unwrap(), "--rate", "12/h"]);
    assert!(set.status.success(), "{set:?}");
    let status = host.status_json();
    assert_eq!(status["limiters"][0]["journal"]["journaled"], true);
    host.reboot();
    // The first opener after the reboot takes the new rates from the record, and the
    // journal (which follows them) restores the 7: 5 left of 12.
    let first = host.worker("attach", "acquire 10; status");
    assert_eq!(first.admitted.len(), 5, "{first:?}");
    assert_eq!(first.statuses, ["Ok(()) journaled=true"], "{first:?}");
    let mut all = before.admitted;
    all.extend(first.admitted);
    support::check_windows(&all, &[Rate::new(12, HOUR)]).unwrap();
    // A process with the old rates is told they changed.
    let old = host.worker("plain", "acquire 1");
    assert!(
        old.errors
            .first()
            .is_some_and(|e| e.contains("12/h") && e.contains("10/h")),
        "{old:?}"
    );
}

#[test]
fn a_journaled_process_outlives_a_forced_remove_and_starts_the_limiter_again_empty() {
    let host = Host::new();
    let (out, mut child) = host.start(
        "journal",
        "acquire 7; ready; sleep 1500; acquire 10; status",
        &host.journal(),
    );
    support::wait_for_file(&out.with_extension("ready"), TIMEOUT);
    let rm = host.cli(&["rm", host.path().to_str().unwrap(), "--force", "--json"]);
    assert!(rm.status.success(), "{rm:?}");
    assert!(!host.journal().exists());
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "worker hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = parse_worker(&std::fs::read_to_string(out).unwrap());
    // 7 before the remove; after it, the limiter is forgotten with its journal: 10 more.
    assert_eq!(outcome.admitted.len(), 17, "{outcome:?}");
    assert!(outcome.errors.is_empty(), "{outcome:?}");
}

#[test]
fn a_change_of_rates_journals_what_the_old_file_held_that_was_not_journaled_yet() {
    let host = Host::new();
    let journaled = host.worker("journal", "acquire 3");
    assert_eq!(journaled.admitted.len(), 3);
    // Admitted by a process without a journal while no journaled process runs: only the ring
    // holds them.
    let unjournaled = host.worker("observer", "acquire 4");
    assert_eq!(unjournaled.admitted.len(), 4);
    let set = host.cli(&["set", host.path().to_str().unwrap(), "--rate", "12/h"]);
    assert!(set.status.success(), "{set:?}");
    host.reboot();
    // All 7 came back: 5 left of 12.
    let first = host.worker("attach", "acquire 10");
    assert_eq!(first.admitted.len(), 5, "{first:?}");
    let mut all = journaled.admitted;
    all.extend(unjournaled.admitted);
    all.extend(first.admitted);
    support::check_windows(&all, &[Rate::new(12, HOUR)]).unwrap();
}

#[test]
fn a_remove_that_keeps_the_journal_keeps_what_was_not_journaled_yet() {
    let host = Host::new();
    assert_eq!(host.worker("journal", "acquire 3").admitted.len(), 3);
    // Only the ring holds these: no journaled process runs.
    assert_eq!(host.worker("observer", "acquire 4").admitted.len(), 4);
    let rm = host.cli(&["rm", host.path().to_str().unwrap(), "--keep-journal"]);
    assert!(rm.status.success(), "{rm:?}");
    assert_eq!(host.worker("plain", "acquire 10").admitted.len(), 3);
}

/// A journaled process attached before `set` (10/h to 12/h) adopts the new rates at its next
/// call, and its journal with them: when the file is deleted while it runs (a reboot), its
/// next call (after the check interval, 1 s) re-creates the file with the history, counted
/// against the new rates (8 used before: 4 left of 12), not refused as unavailable nor
/// counted against the old ones.
fn a_journaled_process_follows_set_across_a_reboot(how: &str) {
    let host = Host::new();
    let (out, child) = host.start(
        how,
        "acquire 7; signal ready; await go; acquire 1; signal adopted; await deleted; \
         sleep 1200; acquire 10; status",
        &host.journal(),
    );
    support::wait_for_file(&out.with_extension("ready"), TIMEOUT);
    let set = host.cli(&["set", host.path().to_str().unwrap(), "--rate", "12/h"]);
    assert!(set.status.success(), "{set:?}");
    std::fs::write(out.with_extension("go"), b"").unwrap();
    support::wait_for_file(&out.with_extension("adopted"), TIMEOUT);
    host.reboot();
    std::fs::write(out.with_extension("deleted"), b"").unwrap();
    let outcome = Host::finish(how, &out, child);
    assert!(outcome.errors.is_empty(), "{how}: {outcome:?}");
    assert_eq!(
        outcome.statuses,
        ["Ok(()) journaled=true"],
        "{how}: {outcome:?}"
    );
    // 7 under the old rates, 1 under the new ones before the reboot, then what 12/h leaves.
    assert_eq!(outcome.admitted.len(), 12, "{how}: {outcome:?}");
    assert_eq!(outcome.denied, 6, "{how}: {outcome:?}");
    let (before, after) = outcome.admitted.split_at(8);
    support::check_windows(&before[..7], &rates()).unwrap();
    support::check_windows(&outcome.admitted, &[Rate::new(12, HOUR)]).unwrap();
    // The re-created file's ring starts with the 8 restored, so its own records follow them.
    assert!(
        after.iter().all(|a| a.ts > before[7].ts),
        "{how}: {outcome:?}"
    );
    // The file it re-created has the new rates, and its window is full.
    let status = host.status_json();
    let limiter = &status["limiters"][0];
    assert_eq!(limiter["rates"][0]["used"], 12, "{how}: {limiter}");
    assert_eq!(limiter["rates"][0]["remaining"], 0, "{how}: {limiter}");
}

#[test]
fn a_journaled_process_follows_set_across_a_reboot_periodic() {
    a_journaled_process_follows_set_across_a_reboot("journal");
}

#[test]
fn a_journaled_process_follows_set_across_a_reboot_strict() {
    a_journaled_process_follows_set_across_a_reboot("strict");
}
