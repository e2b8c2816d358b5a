//! The guarantees across real processes sharing a real file: exact windows, no false denial,
//! every admission accounted for; processes killed or stopped at any moment; many processes
//! creating the file at once; a file deleted, replaced, reset or removed under its users.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hostlimit::{DenialKind, Limiter, Rate};
use nix::sys::signal::Signal;

use crate::support::{self, Admission, Denial, Output, Worker};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const MS: u64 = 1_000_000;
/// How long any worker may take: far beyond what each needs, so only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// Starts `count` workers that open the limiter, say they are ready, wait for `go`, then run
/// `then`; returns them once all are ready. `env(i)` gives worker `i` extra variables.
fn start_together(
    dir: &Path,
    path: &Path,
    count: usize,
    open: &str,
    then: &dyn Fn(usize) -> String,
    env: &dyn Fn(usize) -> Vec<(&'static str, &'static str)>,
) -> Vec<Worker> {
    let workers: Vec<Worker> = (0..count)
        .map(|i| {
            let script = format!("{open}; touch ready.{i}; wait go; {}", then(i));
            support::spawn(dir, path, &format!("w{i}"), &script, &env(i))
        })
        .collect();
    for i in 0..count {
        support::wait_for_file(&dir.join(format!("ready.{i}")), HANG);
    }
    workers
}

fn all_admissions(outputs: &[Output]) -> Vec<Admission> {
    outputs.iter().flat_map(|o| o.admissions.clone()).collect()
}

fn all_denials(outputs: &[Output]) -> Vec<Denial> {
    outputs.iter().flat_map(|o| o.denials.clone()).collect()
}

/// The seed scenario: four processes hammer "10 per second and 25 per minute" with weights
/// for four seconds, so that both rates bind. Checked exactly on recorded timestamps: no
/// window exceeded, no false denial, every admission in the log once and the log nothing
/// else.
#[test]
fn processes_hammering_two_rates_never_exceed_a_window_nor_deny_falsely() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [Rate::new(10, SEC), Rate::new(25, MIN)];
    let limiter = Limiter::open(&path, &rates).unwrap();
    let open = format!("open {}", support::rates_arg(&rates));
    // Half the workers use the baseline 128-bit atomics: cmpxchg16b loads instead of AVX
    // ones on x86_64, ldxp/stxp instead of LSE casp and LSE2 ldp on aarch64.
    let mut workers = start_together(
        dir.path(),
        &path,
        4,
        &open,
        &|_| "hammer 4000 1,2,3 2000".into(),
        &|i| {
            if i % 2 == 0 {
                vec![("HOSTLIMIT_NO_VMOVDQA", "1"), ("HOSTLIMIT_NO_LSE", "1")]
            } else {
                vec![]
            }
        },
    );
    support::touch(&dir.path().join("go"));
    let outputs: Vec<Output> = workers.iter_mut().map(|w| w.finish(HANG)).collect();

    let admitted = all_admissions(&outputs);
    let denied = all_denials(&outputs);
    support::check_stamps(&admitted).unwrap();
    support::check_sequence(&admitted).unwrap();
    support::check_windows(&admitted, &rates).unwrap();
    support::check_denials(&admitted, &denied, &rates).unwrap();
    // The file's own log is exactly what the workers recorded.
    let ring = support::ring_log(&path).unwrap();
    assert_eq!(support::match_ring(&ring, &admitted).unwrap(), vec![]);
    assert_eq!(ring.len(), admitted.len());
    assert_eq!(limiter.admitted().unwrap(), admitted.len() as u64);

    // Both rates bound, and the per-rate denial counters saw every denial.
    let usage = limiter.usage().unwrap();
    for (index, rate) in rates.iter().enumerate() {
        let by_rate = denied.iter().filter(|d| d.rate == index).count() as u64;
        assert!(
            by_rate > 0,
            "{rate} never refused anything: not a test of it"
        );
        assert_eq!(usage[index].denied, by_rate, "{rate}'s denial counter");
    }
    let weight: u64 = admitted.iter().map(|a| a.weight).sum();
    assert!(
        weight > 25 - 3,
        "the minute's limit was not reached: {weight}"
    );
    assert_eq!(usage[1].used, weight, "everything is within the minute");
    println!(
        "{} admissions (weight {weight}), {} denials from {} workers",
        admitted.len(),
        denied.len(),
        outputs.len()
    );
}

/// Thousands of admissions a second from processes spinning on the limiter, so that commits
/// race all the time: the log stays complete and ordered (a caller whose clock read is older
/// than a racing commit records the later timestamp), and both rates hold exactly.
#[test]
fn racing_commits_keep_the_log_ordered_and_every_window_exact() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [
        Rate::new(500, Duration::from_millis(100)),
        Rate::requests(3_000, SEC),
    ];
    let limiter = Limiter::open(&path, &rates).unwrap();
    let open = format!("open {}", support::rates_arg(&rates));
    let mut workers = start_together(
        dir.path(),
        &path,
        4,
        &open,
        &|_| "hammer 1500 1,2 0 quiet".into(),
        &|i| {
            if i % 2 == 0 {
                vec![("HOSTLIMIT_NO_VMOVDQA", "1"), ("HOSTLIMIT_NO_LSE", "1")]
            } else {
                vec![]
            }
        },
    );
    support::touch(&dir.path().join("go"));
    let outputs: Vec<Output> = workers.iter_mut().map(|w| w.finish(HANG)).collect();
    let admitted = all_admissions(&outputs);
    support::check_stamps(&admitted).unwrap();
    support::check_sequence(&admitted).unwrap();
    support::check_windows(&admitted, &rates).unwrap();
    assert_eq!(limiter.admitted().unwrap(), admitted.len() as u64);
    let usage = limiter.usage().unwrap();
    for (u, rate) in usage.iter().zip(&rates) {
        assert!(
            u.denied > 0,
            "{rate} never refused anything: not a test of it"
        );
    }
    // A record with its predecessor's timestamp was (almost surely) raised to it: its caller
    // read the clock before a racing commit. Those are the races this test is about.
    let mut by_seq = admitted.clone();
    by_seq.sort_by_key(|a| a.seq);
    let raised = by_seq.windows(2).filter(|p| p[0].ts == p[1].ts).count();
    println!(
        "{} admissions, {} denials; {raised} recorded with the previous record's timestamp",
        admitted.len(),
        usage.iter().map(|u| u.denied).sum::<u64>()
    );
}

/// `1/s`: after an admission by one process, 1.5 s later another process is admitted (the
/// window has passed for everyone); right after an admission, a denial says to retry within
/// a second, exactly when the admission leaves the window.
#[test]
fn one_per_second_admits_any_process_once_the_window_has_passed() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let wait = |name: &str| support::wait_for_file(&dir.path().join(name), HANG);
    let mut first = support::spawn(
        dir.path(),
        &path,
        "first",
        "open 1/s; acquire 1; acquire 1; touch p1; wait go; acquire 1; touch p2; wait go2; acquire 1",
        &[],
    );
    wait("p1");
    let out = first.output();
    let a = out.admissions[0];
    let d = out.denials[0];
    // The denial's retry instant is exactly when the admission leaves the window.
    let retry = d.retry.expect("an exhausted denial");
    assert!(retry > 0 && retry <= 1_000 * MS, "{d:?}");
    assert!(
        a.ts + 1_000 * MS >= d.before + retry && a.ts + 1_000 * MS <= d.after + retry,
        "retry-after {retry} ns does not point at {} + 1 s: {d:?}",
        a.ts
    );

    support::sleep_until(a.ts + 1_500 * MS);
    let mut second = support::spawn(dir.path(), &path, "second", "open 1/s; acquire 1", &[]);
    let b = second.finish(HANG);
    assert_eq!(
        b.denials,
        vec![],
        "a fresh process was denied 1.5 s after the only admission"
    );
    let b = b.admissions[0];
    assert!(b.ts >= a.ts + 1_500 * MS);
    assert_eq!(b.seq, 2);

    // The first process sees the second's admission.
    support::touch(&dir.path().join("go"));
    wait("p2");
    let third = first.output().order[2];
    let out = first.output();
    if third.0 {
        let late = out.admissions[third.1];
        assert!(
            late.before >= b.ts + 1_000 * MS,
            "admitted within a second of another process's admission: {late:?} after {b:?}"
        );
    } else {
        let d = out.denials[third.1];
        let retry = d.retry.expect("an exhausted denial");
        assert!(b.ts + 1_000 * MS >= d.before + retry && b.ts + 1_000 * MS <= d.after + retry);
    }
    // And is admitted itself once that window has passed.
    support::sleep_until(b.ts + 1_500 * MS);
    support::touch(&dir.path().join("go2"));
    let out = first.finish(HANG);
    let (admitted, index) = *out.order.last().unwrap();
    assert!(admitted, "denied 1.5 s after the last admission: {out:?}");
    assert!(out.admissions[index].ts >= b.ts + 1_500 * MS);
    support::check_windows(
        &[out.admissions.clone(), vec![b]].concat(),
        &[Rate::new(1, SEC)],
    )
    .unwrap();
}

/// A small random generator for kill times (xorshift64*); the seed is printed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// Workers are SIGKILLed at random moments (eleven kills, each victim replaced at once) while
/// all hammer: the others finish in bounded time; the file's log holds every admission anyone
/// recorded, identically, plus at most one unrecorded admission per killed worker (the one it died committing); no window was
/// exceeded and no denial was false, on that complete log; and once the windows have passed,
/// a fresh process gets exactly each rate's full capacity, then a denial.
#[test]
fn killed_workers_never_block_leak_or_invent_capacity() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [Rate::new(10, SEC), Rate::new(15, 3 * SEC)];
    let limiter = Limiter::open(&path, &rates).unwrap();
    // Both rates bind within the run, and the ring (32 slots) holds its whole history: the
    // run is shorter than the 3 s window, so at most 15 admissions.
    assert_eq!(limiter.info().capacity, 32);
    let open = format!("open {}", support::rates_arg(&rates));
    // Three victim slots and three survivors. Victims spin, recording admissions only, so
    // that most of their time (and so most kills) falls inside the library's calls; each
    // killed victim is replaced at once by a new one, which joins the run. Victims run until
    // killed (the last ones at the end of the run), so every victim dies by SIGKILL.
    const SLOTS: usize = 3;
    const KILLS: usize = 8;
    const RUN_MS: u64 = 2_500;
    let victim_script = "hammer 60000 1,2,3 0 quiet";
    let mut workers = start_together(
        dir.path(),
        &path,
        SLOTS + 3,
        &open,
        &|i| {
            if i < SLOTS {
                victim_script.to_string()
            } else {
                format!("hammer {RUN_MS} 1,2,3 1000")
            }
        },
        &|_| vec![],
    );
    let seed = support::now() | 1;
    println!("kill seed {seed}");
    let mut random = Random(seed);
    support::touch(&dir.path().join("go"));
    let go = support::now();
    let end = go + RUN_MS * MS;
    let mut kill_times: Vec<u64> = (0..KILLS)
        .map(|_| go + 100 * MS + random.below(RUN_MS - 300) * MS)
        .collect();
    kill_times.sort_unstable();
    let mut killed = Vec::new();
    for (k, at) in kill_times.into_iter().enumerate() {
        support::sleep_until(at);
        let slot = k % SLOTS;
        workers[slot].signal(Signal::SIGKILL);
        let script = format!("{open}; {victim_script}");
        let name = format!("replacement{k}");
        let replacement = support::spawn(dir.path(), &path, &name, &script, &[]);
        killed.push(std::mem::replace(&mut workers[slot], replacement));
    }
    support::sleep_until(end);
    for victim in workers.drain(..SLOTS) {
        victim.signal(Signal::SIGKILL);
        killed.push(victim);
    }
    let mut outputs = Vec::new();
    for mut victim in killed {
        let status = victim.wait(HANG);
        assert_eq!(
            status.signal(),
            Some(9),
            "{} was not killed: {status}",
            victim.name()
        );
        outputs.push(victim.output());
    }
    // The survivors finish normally, in bounded time.
    for worker in &mut workers {
        outputs.push(worker.finish(HANG));
    }
    let recorded = all_admissions(&outputs);
    let denied = all_denials(&outputs);
    support::check_stamps(&recorded).unwrap();

    // The file's log: complete (sequence numbers 1..=n, timestamps in order), a superset of
    // what was recorded, with at most one unrecorded admission per killed worker.
    let ring = support::ring_log(&path).unwrap();
    support::check_sequence(&ring).unwrap();
    let unrecorded = support::match_ring(&ring, &recorded).unwrap();
    assert!(
        unrecorded.len() <= KILLS + SLOTS,
        "{} admissions nobody recorded (invented?): {unrecorded:?}",
        unrecorded.len()
    );
    assert!(ring.iter().all(|a| (1..=3).contains(&a.weight)), "{ring:?}");
    assert_eq!(limiter.admitted().unwrap(), ring.len() as u64);
    support::check_windows(&ring, &rates).unwrap();
    support::check_denials(&ring, &denied, &rates).unwrap();
    assert!(
        denied.iter().any(|d| d.rate == 1),
        "the 3 s rate never bound"
    );
    let slowest = outputs[KILLS + SLOTS..]
        .iter()
        .flat_map(|o| {
            o.admissions
                .iter()
                .map(|a| a.after - a.before)
                .chain(o.denials.iter().map(|d| d.after - d.before))
        })
        .max()
        .unwrap_or(0);
    println!(
        "{} admissions ({} unrecorded), {} denials; slowest survivor call {} µs",
        ring.len(),
        unrecorded.len(),
        denied.len(),
        slowest / 1000
    );

    // Once every window has passed: exactly the full capacity, per rate.
    let last = ring.last().map_or(go, |a| a.ts);
    support::sleep_until(last + 3_000 * MS + 50 * MS);
    let script =
        format!("{open}; usage; acquire 10; acquire 1; sleep 1100; acquire 5; acquire 1; usage");
    let fresh = support::spawn(dir.path(), &path, "fresh", &script, &[]).finish(HANG);
    for (usage, rate) in fresh.usages[0].iter().zip(&rates) {
        assert_eq!(
            (usage.used, usage.remaining, usage.next_free),
            (0, rate.limit(), None)
        );
    }
    let calls: Vec<(bool, u64, usize)> = fresh
        .order
        .iter()
        .map(|&(admitted, i)| {
            if admitted {
                (true, fresh.admissions[i].weight, 0)
            } else {
                (false, fresh.denials[i].weight, fresh.denials[i].rate)
            }
        })
        .collect();
    assert_eq!(
        calls,
        [(true, 10, 0), (false, 1, 0), (true, 5, 0), (false, 1, 1)],
        "not exactly 10 for the 1 s rate and 15 for the 3 s rate: {fresh:?}"
    );
    let end = &fresh.usages[1];
    assert_eq!((end[0].used, end[1].used), (5, 15));
}

/// A worker SIGSTOPped (possibly inside a call) for 1.5 s holds nothing: the others keep
/// being admitted, about as much as the rate allows, and none of their calls waits; once
/// continued, the stopped worker carries on and finishes normally.
#[test]
fn a_stopped_worker_blocks_nobody() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rate = Rate::new(20, SEC);
    let _limiter = Limiter::open(&path, &[rate]).unwrap();
    let mut workers = start_together(
        dir.path(),
        &path,
        3,
        "open 20/s",
        &|i| format!("hammer 3500 1 {}", if i == 0 { 50 } else { 2000 }),
        &|_| vec![],
    );
    support::touch(&dir.path().join("go"));
    std::thread::sleep(SEC);
    workers[0].signal(Signal::SIGSTOP);
    let asked = Instant::now();
    while !workers[0].is_stopped() {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "SIGSTOP did not stop the worker"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let stopped = support::now();
    std::thread::sleep(Duration::from_millis(1500));
    let resumed = support::now();
    workers[0].signal(Signal::SIGCONT);
    let outputs: Vec<Output> = workers.iter_mut().map(|w| w.finish(HANG)).collect();

    let admitted = all_admissions(&outputs);
    support::check_stamps(&admitted).unwrap();
    support::check_sequence(&admitted).unwrap();
    support::check_windows(&admitted, &[rate]).unwrap();
    support::check_denials(&admitted, &all_denials(&outputs), &[rate]).unwrap();

    let others = &outputs[1..];
    let during = all_admissions(others)
        .iter()
        .filter(|a| a.ts > stopped && a.ts < resumed)
        .count() as u64;
    // 1.5 s of a saturated 20/s rate frees about 30; at most 40 fit (checked exactly above).
    assert!(
        during >= rate.limit() / 2,
        "only {during} admissions while a worker was stopped"
    );
    for o in others {
        let calls = o
            .admissions
            .iter()
            .map(|a| (a.before, a.after))
            .chain(o.denials.iter().map(|d| (d.before, d.after)));
        for (before, after) in calls {
            assert!(
                after - before < 1_000 * MS,
                "a call waited {} ms while a worker was stopped",
                (after - before) / MS
            );
        }
    }
    let victim = &outputs[0];
    let resumed_calls = victim
        .admissions
        .iter()
        .map(|a| a.before)
        .chain(victim.denials.iter().map(|d| d.before))
        .filter(|&before| before > resumed)
        .count();
    assert!(resumed_calls > 0, "the stopped worker did not carry on");
    println!(
        "{during} admissions by the others during the stop; {} in all",
        admitted.len()
    );
}

/// Sixteen processes open a limiter that does not exist yet, in a directory that does not
/// exist yet, at the same instant: all succeed, one file results (no temporary files left),
/// and they share it: exactly the limit is admitted among them. The directory is made as
/// asked (`create_dirs`), and in the last round as the directory of named limiters
/// (`HOSTLIMIT_DIR`): shared, `01777`, whoever made it.
#[test]
fn many_processes_creating_the_file_at_once_share_one_limiter() {
    let _serial = support::exclusive();
    for round in 0..3 {
        let dir = support::temp_dir();
        let limiter_dir = dir.path().join("fresh");
        let path = limiter_dir.join("lim");
        let named = round == 2;
        let limiter_dir_text = limiter_dir.to_str().unwrap().to_string();
        let mut workers: Vec<Worker> = (0..16)
            .map(|i| {
                let parents = if named { "" } else { " parents" };
                let script = format!("touch ready.{i}; wait go; open 5/min{parents}; fill 1 20");
                let env: &[(&str, &str)] = if named {
                    &[("HOSTLIMIT_DIR", &limiter_dir_text)]
                } else {
                    &[]
                };
                support::spawn(dir.path(), &path, &format!("w{i}"), &script, env)
            })
            .collect();
        for i in 0..16 {
            support::wait_for_file(&dir.path().join(format!("ready.{i}")), HANG);
        }
        support::touch(&dir.path().join("go"));
        let outputs: Vec<Output> = workers.iter_mut().map(|w| w.finish(HANG)).collect();
        let pids: Vec<u64> = outputs
            .iter()
            .map(|o| {
                assert_eq!(o.errors, Vec::<String>::new(), "round {round}");
                u64::from(o.opened.expect("opened"))
            })
            .collect();
        let admitted = all_admissions(&outputs);
        assert_eq!(admitted.len(), 5, "round {round}: not one shared limiter");
        support::check_sequence(&admitted).unwrap();
        assert!(outputs.iter().all(|o| o.denials.len() == 1));
        let names: Vec<_> = fs::read_dir(&limiter_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["lim"], "round {round}");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(&limiter_dir).unwrap().mode() & 0o7777;
        let expected = if named { 0o1777 } else { 0o700 };
        assert_eq!(
            dir_mode, expected,
            "round {round}: directory mode {dir_mode:o}"
        );
        let strays: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.starts_with(".fresh"))
            .collect();
        assert_eq!(strays, Vec::<String>::new(), "temporary directories left");
        let shared = Limiter::attach(&path).unwrap();
        assert_eq!(shared.admitted().unwrap(), 5);
        assert!(pids.contains(&shared.info().creator_pid));
    }
}

/// A deleted file replaced by another process's new file: a process still mapping the old
/// one moves to the new one after its check interval, and sees what was admitted there.
#[test]
fn a_deleted_and_recreated_file_is_followed_so_there_is_no_split_brain() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let wait = |name: &str| support::wait_for_file(&dir.path().join(name), HANG);
    let mut a = support::spawn(
        dir.path(),
        &path,
        "a",
        "open 3/min interval=50; acquire 1; touch a1; wait go; acquire 1; usage",
        &[],
    );
    wait("a1");
    let old_inode = fs::metadata(&path).unwrap().ino();
    fs::remove_file(&path).unwrap();
    let b = support::spawn(dir.path(), &path, "b", "open 3/min; fill 1 10", &[]).finish(HANG);
    assert_eq!(b.admissions.len(), 3, "the new file was not fresh: {b:?}");
    assert_eq!(b.admissions[0].seq, 1);
    assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
    std::thread::sleep(Duration::from_millis(200));
    support::touch(&dir.path().join("go"));
    let a = a.finish(HANG);
    assert_eq!(a.admissions.len(), 1, "admitted on the deleted file: {a:?}");
    let denied = a.denials[0];
    assert_eq!((denied.kind, denied.rate), ('X', 0), "{a:?}");
    assert_eq!((a.usages[0][0].used, a.usages[0][0].remaining), (3, 0));
    assert_eq!(Limiter::attach(&path).unwrap().admitted().unwrap(), 3);
}

/// `reset` empties a full limiter for every process at its very next call, whatever its
/// check interval, and keeps the file's permissions; they all share the new file.
#[test]
fn reset_empties_a_full_limiter_for_every_process_at_its_next_call() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let wait = |name: &str| support::wait_for_file(&dir.path().join(name), HANG);
    let rates = [Rate::new(3, MIN)];
    let parent = Limiter::builder(&rates).mode(0o640).open(&path).unwrap();
    let mut a = support::spawn(
        dir.path(),
        &path,
        "a",
        "open 3/min interval=3600000; touch a0; wait filled; acquire 1; touch a1; \
         wait reset; acquire 1; usage",
        &[],
    );
    wait("a0");
    let b = support::spawn(dir.path(), &path, "b", "open 3/min; fill 1 10", &[]).finish(HANG);
    assert_eq!((b.admissions.len(), b.denials.len()), (3, 1));
    support::touch(&dir.path().join("filled"));
    wait("a1");
    assert_eq!(a.output().denials.len(), 1, "a saw room in a full limiter");
    assert_eq!(parent.usage().unwrap()[0].used, 3);

    hostlimit::reset(&path).unwrap();
    support::touch(&dir.path().join("reset"));
    let a = a.finish(HANG);
    assert_eq!(
        a.admissions.len(),
        1,
        "not admitted right after the reset: {a:?}"
    );
    assert_eq!(a.admissions[0].seq, 1, "admitted on the old file");
    assert_eq!(a.usages[0][0].used, 1);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    // Another process shares the new file with `a`, and so does the parent's handle.
    let c = support::spawn(dir.path(), &path, "c", "open 3/min; fill 1 10", &[]).finish(HANG);
    let seqs: Vec<u32> = c.admissions.iter().map(|x| x.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(parent.usage().unwrap()[0].used, 3);
    assert_eq!(parent.try_acquire(1).unwrap_err().rate_index(), 0);
    assert_eq!(parent.admitted().unwrap(), 3);
}

/// `remove` deletes the file; a process still using it notices at its next call and makes a
/// fresh one with its rates (as the documentation says); removing nothing is an error.
#[test]
fn remove_deletes_the_file_and_its_users_notice_at_once() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let mut a = support::spawn(
        dir.path(),
        &path,
        "a",
        "open 3/min interval=3600000; fill 1 10; touch full; wait removed; acquire 1",
        &[],
    );
    support::wait_for_file(&dir.path().join("full"), HANG);
    hostlimit::remove(&path).unwrap();
    assert!(!path.exists());
    support::touch(&dir.path().join("removed"));
    let a = a.finish(HANG);
    assert_eq!(a.admissions.len(), 4, "{a:?}");
    assert_eq!(a.admissions[3].seq, 1, "not a fresh file");
    let again = Limiter::attach(&path).unwrap();
    assert_eq!(again.rates(), [Rate::new(3, MIN)]);
    assert_eq!(again.admitted().unwrap(), 1);
    drop(again);
    hostlimit::remove(&path).unwrap();
    assert!(!path.exists());
    let error = hostlimit::remove(&path).unwrap_err();
    assert!(
        matches!(&error, hostlimit::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
}

/// `usage` reports what other processes admitted (used, remaining, when room frees, denials),
/// and reading it consumes nothing: another process then gets exactly what it said remained.
#[test]
fn usage_reports_other_processes_admissions_and_consumes_nothing() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [Rate::new(10, MIN), Rate::requests(4, MIN)];
    let limiter = Limiter::open(&path, &rates).unwrap();
    let open = format!("open {}", support::rates_arg(&rates));
    let w = support::spawn(
        dir.path(),
        &path,
        "w",
        &format!("{open}; acquire 2; acquire 3; acquire 6"),
        &[],
    )
    .finish(HANG);
    assert_eq!(w.admissions.len(), 2);
    assert_eq!((w.denials[0].rate, w.denials[0].kind), (0, 'X'));
    let first = w.admissions[0].ts;

    let before = support::now();
    let usage = limiter.usage().unwrap();
    let after = support::now();
    assert_eq!(
        (usage[0].used, usage[0].remaining, usage[0].denied),
        (5, 5, 1)
    );
    assert_eq!(
        (usage[1].used, usage[1].remaining, usage[1].denied),
        (2, 2, 0)
    );
    for u in &usage {
        let next_free = u.next_free.expect("a non-empty window").as_nanos() as u64;
        assert!(
            next_free >= first + 60_000 * MS - after && next_free <= first + 60_000 * MS - before,
            "next_free {next_free} ns does not point at the first admission + 1 min"
        );
    }
    for _ in 0..3 {
        let again = limiter.usage().unwrap();
        for (a, b) in again.iter().zip(&usage) {
            assert_eq!(
                (a.used, a.remaining, a.denied),
                (b.used, b.remaining, b.denied)
            );
        }
    }
    assert_eq!(limiter.admitted().unwrap(), 2);

    let w =
        support::spawn(dir.path(), &path, "w2", &format!("{open}; fill 1 10"), &[]).finish(HANG);
    assert_eq!(
        w.admissions.len(),
        2,
        "usage said 2 requests remained: {w:?}"
    );
    assert_eq!(w.denials[0].rate, 1);
    let usage = limiter.usage().unwrap();
    assert_eq!(
        (usage[0].used, usage[1].used, usage[1].remaining),
        (7, 4, 0)
    );
    assert_eq!((usage[0].denied, usage[1].denied), (1, 1));
}

/// A blocking acquire sleeps until the log says the request fits (not polling: one denial,
/// not hundreds) and returns soon after; it gives up at once when the room comes after its
/// deadline, and returns a final denial at once.
#[test]
fn blocking_acquire_waits_for_room_and_gives_up_at_once_when_it_cannot_make_it() {
    let _serial = support::exclusive();
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates = [Rate::new(2, Duration::from_millis(800))];
    let limiter = Limiter::open(&path, &rates).unwrap();
    let w = support::spawn(dir.path(), &path, "w", "open 2/800ms; fill 1 2", &[]).finish(HANG);
    assert_eq!(w.admissions.len(), 2);
    let room_at = w.admissions[0].ts + 800 * MS;
    let denied_before = limiter.usage().unwrap()[0].denied;
    let cpu_before = thread_cpu_ticks();
    let start = support::now();
    limiter.acquire(1, Duration::from_secs(10)).unwrap();
    let end = support::now();
    let cpu_ticks = thread_cpu_ticks() - cpu_before;
    assert!(
        end >= room_at,
        "admitted {} ms before there was room",
        (room_at - end) / MS
    );
    assert!(
        end <= start.max(room_at) + 300 * MS,
        "returned {} ms after there was room",
        (end - start.max(room_at)) / MS
    );
    // Admitted in the end: not a denial, however many tries it took.
    let denials = limiter.usage().unwrap()[0].denied - denied_before;
    assert_eq!(
        denials, 0,
        "a wait that was admitted counted {denials} denials"
    );
    // Sleeping, not spinning: at most a few 10 ms ticks of CPU for up to 800 ms of waiting.
    assert!(
        cpu_ticks <= 5,
        "{cpu_ticks} ticks of CPU while waiting: polling"
    );

    // Room only in 10 s: a 2 s timeout gives up at once, saying how far off room is.
    let slow = Limiter::open(dir.path().join("slow"), &[Rate::new(1, 10 * SEC)]).unwrap();
    slow.try_acquire(1).unwrap();
    let started = Instant::now();
    let denied = slow.acquire(1, 2 * SEC).unwrap_err();
    assert!(
        started.elapsed() < SEC,
        "waited {:?} for nothing",
        started.elapsed()
    );
    assert!(denied.retry_after().unwrap() > 2 * SEC, "{denied:?}");
    // A final denial comes at once, whatever the timeout.
    let started = Instant::now();
    let never = slow.acquire(2, 30 * SEC).unwrap_err();
    assert!(
        started.elapsed() < SEC,
        "a final denial waited {:?}",
        started.elapsed()
    );
    assert!(
        matches!(never.kind(), DenialKind::NeverFits { weight: 2 }),
        "{never:?}"
    );
    assert!(never.is_final());
}

/// CPU time this thread has used, in clock ticks (`utime + stime` of
/// `/proc/thread-self/stat`, usually 10 ms each).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
