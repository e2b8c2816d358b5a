//! Tests of the 128-bit word: its semantics, for every primitive this CPU has; its atomicity
//! across threads; and across processes on a shared file, with controls that show each
//! cross-process test can fail (a plain load-and-store loses updates, two 64-bit loads tear).
//!
//! The cross-process tests re-execute this test binary as workers (through the program in
//! `HOSTLIMIT_TEST_RUNNER`, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`, when it is set) so
//! that each worker is a fresh process, as the limiter's users are. Under an emulator they are
//! the check that the emulator itself is atomic across processes.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;

use super::{AtomicPair, check_machine, primitives};

#[path = "../../../tests/runner.rs"]
mod runner;

/// Checks one compare-exchange and load implementation on a local word: matches and
/// mismatches in either half, the extremes, and that a failed exchange changes nothing.
pub(super) fn exercise(
    name: &str,
    compare_exchange: &dyn Fn(&AtomicPair, u128, u128) -> Result<u128, u128>,
    load: &dyn Fn(&AtomicPair) -> u128,
) {
    let high = |h: u64, l: u64| (u128::from(h) << 64) | u128::from(l);
    let pair = AtomicPair::new(high(7, 5));
    assert_eq!(load(&pair), high(7, 5), "{name}: load");
    for wrong in [high(7, 4), high(8, 5), high(8, 4), 0, u128::MAX] {
        assert_eq!(
            compare_exchange(&pair, wrong, 1),
            Err(high(7, 5)),
            "{name}: {wrong:#x} does not match"
        );
        assert_eq!(load(&pair), high(7, 5), "{name}: a failed exchange wrote");
    }
    assert_eq!(
        compare_exchange(&pair, high(7, 5), u128::MAX),
        Ok(high(7, 5))
    );
    assert_eq!(load(&pair), u128::MAX, "{name}");
    assert_eq!(compare_exchange(&pair, u128::MAX, 0), Ok(u128::MAX));
    assert_eq!(load(&pair), 0, "{name}");
    assert_eq!(compare_exchange(&pair, 0, 0), Ok(0), "{name}");
    assert_eq!(compare_exchange(&pair, 0, high(1, 0)), Ok(0), "{name}");
    assert_eq!(load(&pair), high(1, 0), "{name}");
}

#[test]
fn pair_compare_exchange_and_load() {
    exercise(
        "AtomicPair",
        &AtomicPair::compare_exchange,
        &AtomicPair::load,
    );
}

/// The primitives `check_machine` chose; CI names the ones each CPU model must get
/// (`HOSTLIMIT_EXPECT_ATOMICS=COMPARE_EXCHANGE,LOAD`), so that a run that silently took
/// another path than it was meant to test fails.
#[test]
fn primitives_are_the_ones_expected() {
    check_machine().unwrap();
    let chosen = primitives();
    println!("128-bit atomics: {chosen:?}");
    assert_eq!(
        chosen.load_writes,
        !matches!(chosen.load, "vmovdqa" | "ldp" | "AtomicU128"),
        "{chosen:?}"
    );
    if let Ok(expected) = std::env::var("HOSTLIMIT_EXPECT_ATOMICS") {
        assert_eq!(
            format!("{},{}", chosen.compare_exchange, chosen.load),
            expected,
            "not the primitives this run was meant to test"
        );
    }
}

/// Runs [`primitives_are_the_ones_expected`] in a fresh process of this test binary, with
/// `baseline` (one of [`BASELINE`]'s variables, or none of them) set, and checks that its
/// `check_machine` chose `expected` (`COMPARE_EXCHANGE,LOAD`). Used by the x86_64 tests.
#[cfg(target_arch = "x86_64")]
pub(super) fn expect_primitives(baseline: Option<&str>, expected: &str) {
    let test = format!(
        "{}::primitives_are_the_ones_expected",
        module_path!().split_once("::").unwrap().1
    );
    let mut command = runner::command(std::env::current_exe().unwrap());
    command
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env("HOSTLIMIT_EXPECT_ATOMICS", expected)
        .stdin(Stdio::null());
    for (name, _) in BASELINE {
        command.env_remove(name);
    }
    if let Some(name) = baseline {
        command.env(name, "1");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("start the test binary: {e}{}", runner::hint()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "with {baseline:?}, expected {expected}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn pair_is_atomic_across_threads() {
    let pair = std::sync::Arc::new(AtomicPair::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let pair = pair.clone();
            std::thread::spawn(move || {
                for _ in 0..if cfg!(miri) { 20 } else { 100_000 } {
                    let mut cur = pair.load();
                    // Both halves move together: low counts, high mirrors it.
                    loop {
                        let low = cur as u64 + 1;
                        let next = u128::from(low) | (u128::from(low) << 64);
                        match pair.compare_exchange(cur, next) {
                            Ok(_) => break,
                            Err(actual) => cur = actual,
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let end = pair.load();
    let n = if cfg!(miri) { 40 } else { 200_000 };
    assert_eq!(end, u128::from(n as u64) | (u128::from(n as u64) << 64));
}

// Cross-process tests. The shared file holds, at offset 0, the 128-bit word (both halves
// always equal when accessed atomically); at 64 the count of workers ready; at 128 the start
// signal; at 192 the signal that stops writers; at 256 the count of races lost by incrementers.

const WORKER_ENV: &str = "HOSTLIMIT_ATOMIC_WORKER";
const FILE_ENV: &str = "HOSTLIMIT_ATOMIC_FILE";
const READY_OFFSET: usize = 64;
const GO_OFFSET: usize = 128;
const STOP_OFFSET: usize = 192;
const RACES_OFFSET: usize = 256;
/// How many races the incrementers must lose together (over at least [`RUN`]) before they
/// stop: proof that they raced.
const RACES: u64 = 100;
/// How long each worker runs its job, at least.
const RUN: Duration = Duration::from_millis(300);
/// How many different values a reader must see (over at least [`RUN`]) before it stops.
const READER_CHANGES: u64 = 2_000;
/// How long a worker may run, and the test wait, before either calls it a hang (generous
/// for emulators and a loaded machine).
const HANG: Duration = Duration::from_secs(60);

/// A shared file of one page, mapped.
struct Shared {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    map: MmapRaw,
}

impl Shared {
    fn new() -> Shared {
        let mut builder = tempfile::Builder::new();
        builder.prefix("hostlimit-atomic.");
        let dir = builder
            .tempdir_in("/dev/shm")
            .or_else(|_| builder.tempdir())
            .unwrap();
        let path = dir.path().join("word");
        let map = map(&path, true);
        Shared {
            _dir: dir,
            path,
            map,
        }
    }

    fn pair(&self) -> &AtomicPair {
        pair(&self.map)
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        word(&self.map, offset)
    }
}

fn map(path: &Path, create: bool) -> MmapRaw {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .unwrap();
    if create {
        file.set_len(4096).unwrap();
    }
    MmapRaw::map_raw(&file).unwrap()
}

fn pair(map: &MmapRaw) -> &AtomicPair {
    assert!(map.len() >= 4096);
    // SAFETY: the mapping is page-aligned, so 16-byte aligned, at least 16 bytes long and
    // lives as long as the borrow; its first 16 bytes are only accessed through `AtomicPair`
    // (or, in the controls, through the two `AtomicU64` over the same bytes), from any process.
    unsafe { &*map.as_mut_ptr().cast::<AtomicPair>() }
}

fn word(map: &MmapRaw, offset: usize) -> &AtomicU64 {
    assert!(offset.is_multiple_of(8) && offset + 8 <= map.len());
    // SAFETY: 8-aligned inside the mapping (asserted), which lives as long as the borrow;
    // every process accesses these bytes only atomically.
    unsafe { AtomicU64::from_ptr(map.as_mut_ptr().add(offset).cast()) }
}

/// Both halves of a value, if they agree.
fn halves(value: u128) -> Option<u64> {
    (value as u64 == (value >> 64) as u64).then_some(value as u64)
}

/// What a worker does to the shared word, and when it stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Increments both halves with compare-exchanges, for [`RUN`] and until the incrementers
    /// have lost [`RACES`] races: `successes failures torn`.
    Increment,
    /// The same, until the stop signal: a writer for the readers.
    Write,
    /// Increments both halves with a 64-bit load and a store each, for [`RUN`] (the control
    /// that must lose updates): `increments 0 0`.
    Plain,
    /// Reads the word with `AtomicPair::load`, for [`RUN`] and until it has seen
    /// [`READER_CHANGES`] values: `reads changes torn`.
    Load,
    /// The same with two 64-bit loads (the control that must tear).
    Split,
}

impl Job {
    const ALL: [(&str, Job); 5] = [
        ("increment", Job::Increment),
        ("write", Job::Write),
        ("plain", Job::Plain),
        ("load", Job::Load),
        ("split", Job::Split),
    ];

    fn name(self) -> &'static str {
        Job::ALL.iter().find(|(_, job)| *job == self).unwrap().0
    }
}

/// The entry point of the workers (see [`Job`]); in the test process itself it does
/// nothing. A worker prints one line, `RESULT a b c`.
#[test]
#[cfg_attr(miri, ignore)] // a worker maps a file
fn cross_process_worker() {
    let Ok(name) = std::env::var(WORKER_ENV) else {
        return;
    };
    let job = Job::ALL.iter().find(|(n, _)| *n == name).unwrap().1;
    check_machine().unwrap();
    let map = map(Path::new(&std::env::var_os(FILE_ENV).unwrap()), false);
    let (pair, low, high) = (pair(&map), word(&map, 0), word(&map, 8));
    // Relaxed, here and below: the ready count and the signals only line the workers up in
    // time; the word itself is what is tested.
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    word(&map, READY_OFFSET).fetch_add(1, relaxed);
    let started = Instant::now();
    while word(&map, GO_OFFSET).load(relaxed) == 0 {
        assert!(started.elapsed() < HANG, "no start signal");
        std::thread::sleep(Duration::from_micros(100));
    }
    let (start, mut counts, mut last) = (Instant::now(), [0u64; 3], 0);
    for round in 0u64.. {
        if round % 256 == 0 {
            let ran = start.elapsed();
            let done = match job {
                Job::Write => word(&map, STOP_OFFSET).load(relaxed) != 0,
                Job::Load | Job::Split => ran >= RUN && counts[1] >= READER_CHANGES,
                Job::Increment => ran >= RUN && word(&map, RACES_OFFSET).load(relaxed) >= RACES,
                Job::Plain => ran >= RUN,
            };
            if done || ran >= HANG {
                break;
            }
        }
        match job {
            Job::Increment | Job::Write => {
                let current = pair.load();
                let Some(count) = halves(current) else {
                    counts[2] += 1;
                    continue;
                };
                let next = u128::from(count + 1) * ((1 << 64) + 1);
                match pair.compare_exchange(current, next) {
                    Ok(_) => counts[0] += 1,
                    Err(_) => {
                        counts[1] += 1;
                        word(&map, RACES_OFFSET).fetch_add(1, relaxed);
                    }
                }
            }
            Job::Plain => {
                let (l, h) = (low.load(relaxed), high.load(relaxed));
                low.store(l + 1, relaxed);
                high.store(h + 1, relaxed);
                counts[0] += 1;
            }
            Job::Load | Job::Split => {
                let value = if job == Job::Load {
                    pair.load()
                } else {
                    u128::from(low.load(relaxed)) | (u128::from(high.load(relaxed)) << 64)
                };
                counts[0] += 1;
                match halves(value) {
                    None => counts[2] += 1,
                    Some(count) if count != last => {
                        counts[1] += 1;
                        last = count;
                    }
                    Some(_) => {}
                }
            }
        }
    }
    println!("RESULT {} {} {}", counts[0], counts[1], counts[2]);
}

/// Runs one worker per `(job, environment)` on a fresh shared file, all started together;
/// writers are stopped once the others have finished. Returns the file and each worker's
/// three numbers.
fn run_workers(jobs: &[(Job, &[(&str, &str)])]) -> (Shared, Vec<[u64; 3]>) {
    let shared = Shared::new();
    let exe = std::env::current_exe().unwrap();
    let test = format!(
        "{}::cross_process_worker",
        module_path!().split_once("::").unwrap().1
    );
    let mut children: Vec<Child> = jobs
        .iter()
        .map(|(job, env)| {
            runner::command(&exe)
                .args(["--exact", &test, "--nocapture", "--test-threads=1"])
                .env(WORKER_ENV, job.name())
                .env(FILE_ENV, &shared.path)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start a worker: {e}{}", runner::hint()))
        })
        .collect();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let started = Instant::now();
    while shared.word(READY_OFFSET).load(relaxed) < jobs.len() as u64 {
        let exited = children.iter_mut().find_map(|c| c.try_wait().unwrap());
        if exited.is_some() || started.elapsed() > HANG {
            for child in &mut children {
                let _ = child.kill();
            }
            panic!("a worker exited before it was ready ({exited:?}), or hung");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    shared.word(GO_OFFSET).store(1, relaxed);
    let mut results = vec![[0; 3]; jobs.len()];
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| jobs[i].0 == Job::Write);
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    for i in order {
        if jobs[i].0 == Job::Write {
            shared.word(STOP_OFFSET).store(1, relaxed);
        }
        let output = children[i].take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "worker failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no result in {stdout}"));
        let numbers: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        results[i] = [numbers[0], numbers[1], numbers[2]];
    }
    (shared, results)
}

/// The environment that makes a worker use its architecture's baseline primitives.
const BASELINE: &[(&str, &str)] = &[("HOSTLIMIT_NO_VMOVDQA", "1"), ("HOSTLIMIT_NO_LSE", "1")];

/// Two processes increment the word with compare-exchanges, racing all the time: none is
/// lost, and no load inside the loops sees the halves disagree. Once with both on this
/// CPU's primitives, once with one of them on the baseline (mixing, say, `casp` with
/// `ldxp/stxp`).
#[test]
#[cfg_attr(miri, ignore)] // spawns processes
fn pair_is_atomic_across_processes() {
    check_machine().unwrap();
    println!("this process: {:?}", primitives());
    for second in [&[][..], BASELINE] {
        let (shared, results) = run_workers(&[(Job::Increment, &[]), (Job::Increment, second)]);
        let successes: u64 = results.iter().map(|r| r[0]).sum();
        let failures: u64 = results.iter().map(|r| r[1]).sum();
        let torn: u64 = results.iter().map(|r| r[2]).sum();
        println!("{second:?}: {successes} increments, {failures} lost races, {torn} torn");
        assert_eq!(torn, 0, "a load saw the halves disagree");
        assert_eq!(
            halves(shared.pair().load()),
            Some(successes),
            "increments were lost or torn"
        );
        assert!(
            failures >= RACES,
            "the workers hardly raced: not a test of atomicity"
        );
    }
}

/// The control: the same increments as a 64-bit load and a store per half lose updates, so
/// the test above can fail.
#[test]
#[cfg_attr(miri, ignore)] // spawns processes
fn plain_stores_lose_updates_across_processes() {
    let (shared, results) = run_workers(&[(Job::Plain, &[]), (Job::Plain, &[])]);
    let increments: u64 = results.iter().map(|r| r[0]).sum();
    let low = shared.word(0).load(std::sync::atomic::Ordering::Relaxed);
    println!("{increments} plain increments left the word at {low}");
    assert!(
        low < increments,
        "plain stores lost nothing: the test cannot tell an atomic exchange from none"
    );
}

/// A writer increments both halves together while two readers load the word (one on this
/// CPU's load, one on the baseline): no reader ever sees the halves disagree, and each sees
/// thousands of the writer's values.
#[test]
#[cfg_attr(miri, ignore)] // spawns processes
fn loads_never_tear_across_processes() {
    let (_, results) = run_workers(&[(Job::Write, &[]), (Job::Load, &[]), (Job::Load, BASELINE)]);
    for reader in &results[1..] {
        let [reads, changes, torn] = *reader;
        println!("{reads} loads saw {changes} values, {torn} torn");
        assert_eq!(torn, 0, "a load tore");
        assert!(
            changes >= READER_CHANGES,
            "the reader saw too few writes: not a test"
        );
    }
}

/// The control: reading the halves as two 64-bit loads does tear, so the test above can fail.
#[test]
#[cfg_attr(miri, ignore)] // spawns processes
fn split_loads_tear_across_processes() {
    let (_, results) = run_workers(&[(Job::Write, &[]), (Job::Split, &[])]);
    let [reads, changes, torn] = results[1];
    println!("{reads} split loads saw {changes} values, {torn} torn");
    assert!(
        torn > 0,
        "two 64-bit loads never tore: the test cannot tell an atomic load from none"
    );
}
