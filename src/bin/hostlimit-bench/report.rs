//! The run: the rounds of cases (contended, then with a stopped process) and the markdown
//! tables and summary they print.

use std::fmt::Write as _;

use crate::case::{Case, Dirs, Stop, run_case};
use crate::{Args, Design, RATES_TEXT};

fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.0} k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    if args.processes.is_empty() || args.processes.contains(&0) || args.duration <= 0.0 {
        return Err("process counts must be positive, and the duration too".into());
    }
    let name = format!("hostlimit-bench-{}", std::process::id());
    let dirs = Dirs {
        shm: args.dir.join(&name),
        journal: args.journal_dir.join(&name),
    };
    for dir in [&dirs.shm, &dirs.journal] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let result = run_in(args, &dirs);
    let _ = std::fs::remove_dir_all(&dirs.shm);
    let _ = std::fs::remove_dir_all(&dirs.journal);
    result
}

fn run_in(args: &Args, dirs: &Dirs) -> Result<(), String> {
    let mut summary = String::new();
    let mut out = String::new();
    eprintln!("machine: {}", machine());
    let mut cases: Vec<Case> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let mut index = 0;
        for &processes in &args.processes {
            for &design in &args.designs {
                eprintln!("round {round}: {} × {processes} ...", design.name());
                let case = run_case(dirs, design, processes, args.duration, None)?;
                if round == 1 {
                    cases.push(case);
                } else if case.total.calls > cases[index].total.calls {
                    cases[index] = case;
                }
                index += 1;
            }
        }
    }
    let _ = writeln!(
        out,
        "#### Contended: P processes on one limiter ({}; {RATES_TEXT}; {} s per case, best of {} round(s))\n",
        machine(),
        args.duration,
        args.rounds.max(1)
    );
    out.push_str(
        "| design | processes | calls/s (all processes) | vs robust mutex | fairness (min/max calls) | p50 | p99 | p99.9 | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in &cases {
        let per_second = case.total.calls as f64 / case.seconds;
        let mutex = cases.iter().find(|c| {
            c.design == Design::RobustMutex && c.processes == case.processes && c.stop.is_none()
        });
        let versus = mutex.map_or("".into(), |m| {
            format!(
                "{:.2}x",
                case.total.calls as f64 / m.total.calls.max(1) as f64
            )
        });
        let counts = case.per_process.iter().map(|s| s.calls);
        let fairness =
            counts.clone().min().unwrap_or(0) as f64 / counts.max().unwrap_or(1).max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            case.design.label(),
            case.processes,
            fmt_rate(per_second),
            versus,
            fairness,
            fmt_ns(case.total.percentile(0.50)),
            fmt_ns(case.total.percentile(0.99)),
            fmt_ns(case.total.percentile(0.999)),
            fmt_ns(case.total.max_ns),
        );
        let _ = writeln!(
            summary,
            "contended {} {} {per_second:.0} {fairness:.3}",
            case.design.name(),
            case.processes
        );
        if case.total.admitted != case.total.calls {
            let _ = writeln!(
                out,
                "\n(note: {} of {} calls were denied: the limits bound on this machine)\n",
                case.total.calls - case.total.admitted,
                case.total.calls
            );
        }
    }
    if args.stop > 0.0 && args.stop_processes >= 2 {
        let stop = Stop {
            after: 1_000_000_000,
            length: (args.stop * 1e9) as u64,
        };
        // A second after the stop, and one more for a victim that has to wait for a lock.
        let seconds = 1.0 + args.stop + 2.0;
        let mut stops = Vec::new();
        for &design in &args.designs {
            eprintln!(
                "{} × {} with a stop ...",
                design.name(),
                args.stop_processes
            );
            stops.push(run_case(
                dirs,
                design,
                args.stop_processes,
                seconds,
                Some(stop),
            )?);
        }
        let _ = writeln!(
            out,
            "\n#### One of {} processes stopped (SIGSTOP) for {} s\n",
            args.stop_processes, args.stop
        );
        out.push_str(
            "| design | how the victim was stopped | others' calls/s before | during the stop | kept | others' max latency |\n\
             |---|---|---:|---:|---:|---:|\n",
        );
        for case in &stops {
            let Some(result) = &case.stop else { continue };
            let kept = if result.before > 0.0 {
                result.during / result.before
            } else {
                0.0
            };
            let how = case.design.how_stopped();
            let _ = writeln!(
                out,
                "| {} | {how} | {} | {} | {:.0} % | {} |",
                case.design.label(),
                fmt_rate(result.before),
                fmt_rate(result.during),
                kept * 100.0,
                fmt_ns(result.others_max_ns),
            );
            let _ = writeln!(
                summary,
                "stop {} {} {:.0} {:.0} {kept:.3} {:.3}",
                case.design.name(),
                case.processes,
                result.before,
                result.during,
                result.stopped_for
            );
        }
        for case in &stops {
            if case.total.admitted != case.total.calls {
                let _ = writeln!(
                    out,
                    "\n(note: {}: {} of {} calls were denied)",
                    case.design.label(),
                    case.total.calls - case.total.admitted,
                    case.total.calls
                );
            }
        }
    }
    print!("{out}");
    if let Some(path) = &args.summary {
        std::fs::write(path, summary).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
