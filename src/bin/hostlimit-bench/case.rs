//! The parent's side of one case: making the file, spawning P workers, stopping the victim
//! (`SIGSTOP`, `SIGCONT`), collecting and merging the workers' stats.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hostlimit::Limiter;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::baselines::LockedLog;
use crate::stats::Stats;
use crate::worker::{now, sleep_until};
use crate::{Design, JOURNAL_ENV, SLICE_NS, rates};

pub(crate) struct Case {
    pub(crate) design: Design,
    pub(crate) processes: usize,
    pub(crate) seconds: f64,
    pub(crate) per_process: Vec<Stats>,
    pub(crate) total: Stats,
    pub(crate) stop: Option<StopResult>,
}

pub(crate) struct StopResult {
    pub(crate) before: f64,
    pub(crate) during: f64,
    pub(crate) others_max_ns: u64,
    pub(crate) stopped_for: f64,
}

/// The stop to apply in a case: after `after` ns, for `length` ns.
#[derive(Clone, Copy)]
pub(crate) struct Stop {
    pub(crate) after: u64,
    pub(crate) length: u64,
}

/// Where a case's files go: the limiter files (a tmpfs), the journals (a disk).
pub(crate) struct Dirs {
    pub(crate) shm: PathBuf,
    pub(crate) journal: PathBuf,
}

fn spawn_worker(
    exe: &Path,
    design: Design,
    (path, journal): (&Path, &Path),
    start: u64,
    end: u64,
    stop_at: u64,
) -> std::io::Result<Child> {
    Command::new(exe)
        .env(JOURNAL_ENV, journal)
        .arg("worker")
        .arg(design.name())
        .arg(path)
        .args([start.to_string(), end.to_string(), stop_at.to_string()])
        .stdout(Stdio::piped())
        .spawn()
}

pub(crate) fn run_case(
    dirs: &Dirs,
    design: Design,
    processes: usize,
    seconds: f64,
    stop: Option<Stop>,
) -> Result<Case, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let name = format!(
        "{}-{processes}{}",
        design.name(),
        if stop.is_some() { "-stop" } else { "" }
    );
    let path = dirs.shm.join(&name);
    let journal = dirs.journal.join(format!("{name}.journal"));
    let _ = std::fs::remove_file(&path);
    match design.lock_kind() {
        None => drop(Limiter::open(&path, &rates()).map_err(|e| e.to_string())?),
        Some(kind) => drop(
            LockedLog::create(&path, kind, &rates())
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
    }
    let length = (seconds * 1e9) as u64;
    let start = now() + 300_000_000 + 30_000_000 * processes as u64;
    let end = start + length;
    let mut children = Vec::with_capacity(processes);
    for index in 0..processes {
        let stop_at = match stop {
            Some(stop) if index == 0 && design.stops_itself() => start + stop.after,
            _ => 0,
        };
        let child = spawn_worker(&exe, design, (&path, &journal), start, end, stop_at)
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        children.push(child);
    }
    let stopped = match stop {
        Some(stop) => Some(stop_victim(
            &children[0],
            design,
            (start + stop.after, stop.length),
            end,
        )?),
        None => None,
    };
    let mut per_process = Vec::with_capacity(processes);
    for child in children {
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "a {} worker failed: {}",
                design.name(),
                output.status
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        per_process.push(Stats::decode(&text).ok_or("unreadable worker output")?);
    }
    let _ = std::fs::remove_file(&path);
    remove_journal(&journal);
    let mut total = Stats::new(1);
    for stats in &per_process {
        total.merge(stats);
    }
    let stop = stopped.map(|(t_stop, t_cont)| stop_result(&per_process, start, t_stop, t_cont));
    Ok(Case {
        design,
        processes,
        seconds,
        per_process,
        total,
        stop,
    })
}

/// Removes a journal (a file with its `-wal` and `-shm`, or a directory).
fn remove_journal(journal: &Path) {
    let _ = std::fs::remove_dir_all(journal);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = journal.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Stops the victim at `at` for `length` ns; returns when it was stopped and continued.
fn stop_victim(
    victim: &Child,
    design: Design,
    (at, length): (u64, u64),
    end: u64,
) -> Result<(u64, u64), String> {
    let pid = Pid::from_raw(victim.id() as i32);
    sleep_until(at);
    if !design.stops_itself() {
        kill(pid, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP: {e}"))?;
    }
    // A lock design's victim stops itself once it holds the lock.
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
        Ok(WaitStatus::Stopped(..)) => {}
        other => return Err(format!("the stopped worker: {other:?}")),
    }
    let t_stop = now();
    if t_stop + length > end {
        let _ = kill(pid, Signal::SIGCONT);
        return Err(format!(
            "the {} victim stopped {:.2} s late, too late to measure a {:.2} s stop; run again \
             on a quieter machine",
            design.name(),
            t_stop.saturating_sub(at) as f64 / 1e9,
            length as f64 / 1e9
        ));
    }
    sleep_until(t_stop + length);
    let t_cont = now();
    kill(pid, Signal::SIGCONT).map_err(|e| format!("SIGCONT: {e}"))?;
    Ok((t_stop, t_cont))
}

/// The other workers' rate before and during the stop, from their time slices.
fn stop_result(per_process: &[Stats], start: u64, t_stop: u64, t_cont: u64) -> StopResult {
    let others = &per_process[1..];
    // Slices wholly inside [from, to), and their calls per second.
    let rate = |from: u64, to: u64| {
        let first = (from.saturating_sub(start)).div_ceil(SLICE_NS) as usize;
        let first = first.min(others.iter().map(|s| s.slices.len()).min().unwrap_or(0));
        let last = (to.saturating_sub(start) / SLICE_NS) as usize;
        if last <= first {
            return 0.0;
        }
        let calls: u64 = others
            .iter()
            .map(|s| {
                s.slices[first..last.min(s.slices.len())]
                    .iter()
                    .sum::<u64>()
            })
            .sum();
        calls as f64 / ((last - first) as f64 * SLICE_NS as f64 / 1e9)
    };
    StopResult {
        before: rate(start + 100_000_000, t_stop.saturating_sub(20_000_000)),
        during: rate(t_stop, t_cont),
        others_max_ns: others.iter().map(|s| s.max_ns).max().unwrap_or(0),
        stopped_for: (t_cont - t_stop) as f64 / 1e9,
    }
}
