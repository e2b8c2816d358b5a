//! Hostile files: processes call every entry point of a limiter with a large ring while
//! another process scribbles random bytes and plausible-looking records into its header,
//! hint, counters and ring. Nothing may panic, crash or hang, and no call may take long,
//! whatever the file holds.
//!
//! The bound, per call: [`CALL_CPU`] of CPU time of the calling thread (CPU time, so that a
//! loaded machine does not fail the test by descheduling a process), and [`CALL_WALL`] of
//! wall time (a hang). One run of the built `hostlimit status` (a process start included)
//! may take [`CLI_CPU`]. A call that has to make a new file (a reset, or any call that
//! re-creates a removed file) may instead take three times what making one file takes in
//! this build, measured first, if that is more: it only is on the largest ring, whose 64 MiB
//! a debug build takes most of a second to write.
//!
//! `HOSTLIMIT_FUZZ_SECS` sets how long the processes run (default 3 s), and
//! `HOSTLIMIT_FUZZ_RING` the ring's size as a power of two (default 16: 65,536 slots, a
//! 1 MiB file; 22 for the largest ring).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostlimit::{Limiter, Rate};

use crate::support::{self, Latency, Random};

/// Rates that need a ring of 2^`log2` slots.
fn rates_for(log2: u32) -> String {
    format!("{}/h,1000/s", (1u64 << log2) / 8 * 7)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// The most CPU time one call that makes no file may use.
const CALL_CPU: Duration = Duration::from_millis(50);
/// The most CPU time one run of `hostlimit status` may use, its process start included.
const CLI_CPU: Duration = Duration::from_millis(250);
/// The longest any call may take, in wall time: beyond it, a call hung (the machine may be
/// loaded: wall time is only a bound for hangs).
const CALL_WALL: Duration = Duration::from_secs(20);

/// Offsets of `src/layout.rs`.
const HINT_OFFSET: u64 = 1024;
const LAPS_OFFSET: u64 = 1152;
const JOURNALED_OFFSET: u64 = 1280;
const COUNTERS_OFFSET: u64 = 4096;
const RING_OFFSET: u64 = 12_288;
const HEADER_BYTES: u64 = 320;

/// The built command, where this test binary was built with it.
const BIN: Option<&str> = option_env!("CARGO_BIN_EXE_hostlimit");

/// Several processes call every entry point while another scribbles into the file: no panic,
/// no crash, no hang, and no call beyond its bound (see the module documentation). The worst
/// latencies are printed (`--nocapture` shows them).
#[test]
fn hostile_files_never_panic_crash_hang_or_stall_a_call() {
    let _serial = support::exclusive();
    let seconds = env_number("HOSTLIMIT_FUZZ_SECS", 3);
    let log2 = env_number("HOSTLIMIT_FUZZ_RING", 16).clamp(4, 22) as u32;
    let millis = seconds * 1000;
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let rates_text = rates_for(log2);
    let rates: Vec<Rate> = rates_text.split(',').map(|r| r.parse().unwrap()).collect();
    assert_eq!(
        Limiter::open(&path, &rates).unwrap().info().capacity,
        1 << log2
    );
    // What making one such file costs here.
    let (probe, _, make_cpu) = timed(|| Limiter::open(dir.path().join("probe"), &rates));
    drop(probe.unwrap());
    let make_bound = CALL_CPU.max(make_cpu * 3);
    // Resets and removes make every process re-create the file: one in a while per process,
    // or nothing else would get done on the largest ring.
    let admin_pause = (make_cpu * 2).max(Duration::from_millis(20)).as_millis();
    let started = Instant::now();
    let mut workers: Vec<support::Worker> = (0..3)
        .map(|i| {
            let script = format!("chaos {millis} {} {rates_text} {admin_pause}", 17 + i);
            support::spawn(dir.path(), &path, &format!("chaos{i}"), &script, &[])
        })
        .collect();
    workers.push(support::spawn(
        dir.path(),
        &path,
        "scribbler",
        &format!("scribble {millis} 99"),
        &[],
    ));
    if let Some(bin) = BIN {
        workers.push(support::spawn(
            dir.path(),
            &path,
            "cli",
            &format!("cli-status {millis} {bin}"),
            &[],
        ));
    }
    let mut worst: BTreeMap<String, Latency> = BTreeMap::new();
    let mut calls = 0;
    for worker in &mut workers {
        let output = worker.finish(Duration::from_secs(seconds + 120));
        assert_eq!(output.errors, Vec::<String>::new(), "{}", worker.name());
        for latency in output.latencies {
            calls += latency.calls;
            let entry = worst.entry(latency.what.clone()).or_insert(Latency {
                calls: 0,
                worst_wall: 0,
                worst_cpu: 0,
                ..latency.clone()
            });
            entry.calls += latency.calls;
            entry.worst_wall = entry.worst_wall.max(latency.worst_wall);
            if latency.worst_cpu >= entry.worst_cpu {
                entry.worst_cpu = latency.worst_cpu;
                entry.worst_call = latency.worst_call;
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{calls} calls in {elapsed:.1?} on a ring of 2^{log2} slots (making one file: \
         {make_cpu:.1?} of CPU); worst per call:"
    );
    let mut over = Vec::new();
    for (what, latency) in &worst {
        let cpu_bound = if what == "cli-status" {
            CLI_CPU
        } else if what.ends_with("+make") {
            make_bound
        } else {
            CALL_CPU
        };
        let (cpu, wall) = (
            Duration::from_nanos(latency.worst_cpu),
            Duration::from_nanos(latency.worst_wall),
        );
        eprintln!(
            "  {what:<18} {:>7} calls  cpu {cpu:>10.2?} (bound {cpu_bound:?})  wall {wall:>10.2?}  \
             slowest: {}",
            latency.calls, latency.worst_call
        );
        if cpu > cpu_bound || wall > CALL_WALL {
            over.push(format!(
                "{what}: cpu {cpu:?} wall {wall:?}: {}",
                latency.worst_call
            ));
        }
    }
    for kind in ["try_acquire", "acquire", "usage", "scribble"] {
        assert!(
            worst.get(kind).is_some_and(|l| l.calls >= 10),
            "too few {kind} calls to mean anything: {worst:?}"
        );
    }
    assert!(over.is_empty(), "calls over their bound: {over:#?}");
}

// ---------------------------------------------------------------------------------------------
// The workers' steps (run by `support`'s worker entry point).
// ---------------------------------------------------------------------------------------------

/// Runs one of this module's worker steps: `chaos MS SEED RATES ADMIN_PAUSE_MS`,
/// `scribble MS SEED` or `cli-status MS BIN`; `line` writes one line of the worker's output.
pub fn step(words: &[&str], path: &Path, line: &mut dyn FnMut(&str)) {
    let millis: u64 = words[1].parse().expect("milliseconds");
    let end = Instant::now() + Duration::from_millis(millis);
    let mut stats = Stats::default();
    match words[0] {
        "chaos" => chaos(
            path,
            end,
            words[2].parse().expect("a seed"),
            words[3],
            Duration::from_millis(words[4].parse().expect("milliseconds")),
            &mut stats,
        ),
        "scribble" => scribble(path, end, words[2].parse().expect("a seed"), &mut stats),
        "cli-status" => cli_status(path, end, words[2], &mut stats, line),
        other => panic!("unknown hostile step {other:?}"),
    }
    for (what, latency) in stats.0 {
        line(&format!(
            "L {what} {} {} {} {}",
            latency.calls, latency.worst_wall, latency.worst_cpu, latency.worst_call
        ));
    }
}

/// Worst latencies per kind of call.
#[derive(Default)]
struct Stats(BTreeMap<String, Latency>);

impl Stats {
    fn record(&mut self, what: &str, wall: Duration, cpu: Duration, call: &str) {
        let entry = self.0.entry(what.to_string()).or_insert_with(|| Latency {
            what: what.to_string(),
            calls: 0,
            worst_wall: 0,
            worst_cpu: 0,
            worst_call: String::new(),
        });
        entry.calls += 1;
        entry.worst_wall = entry.worst_wall.max(nanos(wall));
        if nanos(cpu) >= entry.worst_cpu {
            entry.worst_cpu = nanos(cpu);
            let mut text: String = call.chars().filter(|c| *c != '\n').take(160).collect();
            if text.is_empty() {
                text.push('-');
            }
            entry.worst_call = text;
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time used by the calling thread.
fn thread_cpu() -> Duration {
    let spec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("thread CPU clock");
    Duration::new(spec.tv_sec() as u64, spec.tv_nsec() as u32)
}

/// Runs `call`, returning its result and its wall and CPU time.
fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let result = call();
    (result, wall.elapsed(), thread_cpu().saturating_sub(cpu))
}

fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(error) => format!("err {error}"),
    }
}

/// Bytes this thread wrote with `write`-like calls (`/proc/thread-self/io`): making a limiter
/// file writes the whole file (`pwrite`), nothing else a call does writes more than a page.
fn written() -> u64 {
    std::fs::read_to_string("/proc/thread-self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Calls every entry point at random until `end`, a reset or remove at most once per
/// `admin_pause`.
fn chaos(
    path: &Path,
    end: Instant,
    seed: u64,
    rates: &str,
    admin_pause: Duration,
    stats: &mut Stats,
) {
    let rates: Vec<Rate> = rates.split(',').map(|r| r.parse().unwrap()).collect();
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut limiter: Option<Limiter> = None;
    let mut last_admin = Instant::now();
    while Instant::now() < end {
        let before = written();
        let mut choice = random.below(100);
        if choice < 5 && last_admin.elapsed() < admin_pause {
            choice += 5;
        }
        // An operator removes a file nobody can open any more.
        if limiter.is_none() && random.below(20) == 0 {
            choice = 3;
        }
        if choice < 5 {
            last_admin = Instant::now();
        }
        let (what, text, wall, cpu) = match (choice, &limiter) {
            (0..3, _) => {
                let (r, wall, cpu) = timed(|| hostlimit::reset(path));
                ("reset", outcome(&r), wall, cpu)
            }
            (3..5, _) => {
                let (r, wall, cpu) = timed(|| hostlimit::remove(path));
                ("remove", outcome(&r), wall, cpu)
            }
            (5..12, _) | (_, None) => {
                let attach = random.below(4) == 0;
                let (r, wall, cpu) = timed(|| {
                    if attach {
                        Limiter::attach(path)
                    } else {
                        Limiter::open(path, &rates)
                    }
                });
                let text = match &r {
                    Ok(_) => "ok".to_string(),
                    Err(error) => format!("err {error}"),
                };
                limiter = r.ok();
                (if attach { "attach" } else { "open" }, text, wall, cpu)
            }
            (12..50, Some(current)) => {
                let weight = [0, 1, 3][random.below(3) as usize];
                let (r, wall, cpu) = timed(|| current.try_acquire_stamped(weight));
                ("try_acquire", outcome(&r), wall, cpu)
            }
            (50..65, Some(current)) => {
                let (r, wall, cpu) = timed(|| current.acquire(1, Duration::from_millis(5)));
                ("acquire", outcome(&r), wall, cpu)
            }
            (65..85, Some(current)) => {
                let (r, wall, cpu) = timed(|| current.usage());
                ("usage", outcome(&r), wall, cpu)
            }
            (_, Some(current)) => {
                let (r, wall, cpu) = timed(|| current.admitted());
                ("admitted", outcome(&r), wall, cpu)
            }
        };
        // A call that made a file (a reset; a call that re-created a removed file, even one
        // that then lost the race to link it) wrote a whole ring.
        let what = if written() - before >= RING_OFFSET {
            format!("{what}+make")
        } else {
            what.to_string()
        };
        stats.record(&what, wall, cpu, &text);
        if text.starts_with("err") && what.starts_with("open") {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The ring of a file holding one consistent chain of records, except that the last slot
/// claims a record one lap later, with the hint at 0 (the garbage that made every call walk
/// the ring a thousand times, issue 9 defect 1).
fn lap_ahead_chain(capacity: u64, now: u64) -> Vec<u8> {
    let mut ring = Vec::with_capacity((capacity * 16) as usize);
    for index in 0..capacity {
        let seq = if index == capacity - 1 {
            index + capacity
        } else {
            index
        };
        ring.extend_from_slice(&slot(now + index, index as u32, seq as u32));
    }
    ring
}

fn slot(ts: u64, cum: u32, seq: u32) -> [u8; 16] {
    (u128::from(ts) | u128::from(cum) << 64 | u128::from(seq) << 96).to_le_bytes()
}

/// Scribbles into whatever file the path names, until `end`: never shrinking it.
fn scribble(path: &Path, end: Instant, seed: u64, stats: &mut Stats) {
    let mut random = Random(seed | 1);
    let now = support::now();
    let mut chain: Option<Vec<u8>> = None;
    while Instant::now() < end {
        let Ok(file) = OpenOptions::new().write(true).read(true).open(path) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let size = file.metadata().map_or(0, |m| m.len());
        let capacity = size.saturating_sub(RING_OFFSET) / 16;
        if capacity < 2 {
            continue;
        }
        let mut hint = [0u8; 8];
        let _ = file.read_exact_at(&mut hint, HINT_OFFSET);
        let head = u64::from_le_bytes(hint);
        let slot_offset = |seq: u64| RING_OFFSET + (seq % capacity) * 16;
        let bytes = |len: usize, random: &mut Random| -> Vec<u8> {
            (0..len).map(|_| random.below(256) as u8).collect()
        };
        let choice = random.below(100);
        let (what, writes): (&str, Vec<(u64, Vec<u8>)>) = match choice {
            // The header: the file is unusable for newcomers until someone removes it.
            0..1 => {
                let at = random.below(HEADER_BYTES - 8);
                ("header", vec![(at, bytes(8, &mut random))])
            }
            1..12 => {
                let value = match random.below(4) {
                    0 => random.below(u64::MAX),
                    1 => u64::MAX,
                    2 => head.wrapping_add(random.below(capacity * 3)),
                    _ => head.wrapping_sub(random.below(capacity)),
                };
                ("hint", vec![(HINT_OFFSET, value.to_le_bytes().to_vec())])
            }
            12..17 => {
                let at = [LAPS_OFFSET, JOURNALED_OFFSET][random.below(2) as usize];
                ("laps", vec![(at, bytes(8, &mut random))])
            }
            17..27 => {
                let at = COUNTERS_OFFSET + random.below((RING_OFFSET - COUNTERS_OFFSET) / 8) * 8;
                let value =
                    [u64::MAX, u64::MAX / 2 + 1, random.below(u64::MAX)][random.below(3) as usize];
                ("counters", vec![(at, value.to_le_bytes().to_vec())])
            }
            27..45 => {
                let at = RING_OFFSET + random.below(capacity) * 16;
                let len = (1 + random.below(64)) as usize * 16;
                ("ring bytes", vec![(at, bytes(len, &mut random))])
            }
            // Records where they would belong, after the head: committed-looking garbage
            // (random times, weights and tombstones), some a lap or more ahead.
            45..70 => {
                let count = 1 + random.below(32);
                let writes = (1..=count)
                    .map(|k| {
                        let seq = head.wrapping_add(k);
                        let lap = [0, 0, 0, capacity, capacity * 7][random.below(5) as usize];
                        let ts = match random.below(4) {
                            0 => u64::MAX,
                            1 => random.below(u64::MAX),
                            _ => now.wrapping_add(random.below(4_000_000_000)),
                        };
                        let record = slot(
                            ts,
                            random.below(1 << 32) as u32,
                            seq.wrapping_add(lap) as u32,
                        );
                        (slot_offset(seq), record.to_vec())
                    })
                    .collect();
                ("ring records", writes)
            }
            70..74 => {
                let at = RING_OFFSET + random.below(capacity) * 16;
                let len = (1 + random.below(4096)) as usize * 16;
                ("ring zeros", vec![(at, vec![0; len])])
            }
            74..76 => {
                let ring = chain.get_or_insert_with(|| lap_ahead_chain(capacity, now));
                if ring.len() as u64 != capacity * 16 {
                    continue;
                }
                (
                    "lap-ahead chain",
                    vec![(RING_OFFSET, ring.clone()), (HINT_OFFSET, vec![0; 8])],
                )
            }
            _ => {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
        };
        let ((), wall, cpu) = timed(|| {
            for (at, data) in &writes {
                // Never past the end: the file is never grown or shrunk.
                if at + data.len() as u64 <= size {
                    let _ = file.write_all_at(data, *at);
                }
            }
        });
        stats.record("scribble", wall, cpu, what);
        // Some damage stays for a while, so that every caller meets it.
        let pause = if what == "lap-ahead chain" {
            100_000
        } else {
            random.below(300)
        };
        std::thread::sleep(Duration::from_micros(pause));
    }
}

/// CPU time used by this process's waited-for children.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let time =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

/// Runs `hostlimit status` (text and JSON) on the file until `end`; a panic or a signal is an
/// error line.
fn cli_status(path: &Path, end: Instant, bin: &str, stats: &mut Stats, line: &mut dyn FnMut(&str)) {
    let target = path.display().to_string();
    while Instant::now() < end {
        for json in [false, true] {
            let mut command = Command::new(bin);
            command.arg("status");
            if json {
                command.arg("--json");
            }
            command.arg(&target);
            let cpu = children_cpu();
            let started = Instant::now();
            let output = command.output().expect("run hostlimit");
            let wall = started.elapsed();
            let cpu = children_cpu().saturating_sub(cpu);
            let stderr = String::from_utf8_lossy(&output.stderr).replace('\n', " ");
            if output.status.signal().is_some() || output.status.code() == Some(101) {
                line(&format!(
                    "E hostlimit status crashed ({}): {stderr}",
                    output.status
                ));
            }
            let text = format!("exit {:?} {stderr}", output.status.code());
            stats.record("cli-status", wall, cpu, &text);
        }
    }
}
