//! `status` and `watch`: what each limiter holds right now, as text or JSON.

use std::path::Path;
use std::time::{Duration, SystemTime};

use hostlimit::{
    ClockIdentity, Counters, Counts, Error, FileInfo, HostClock, Limiter, ManualClock, RateUsage,
};
use serde::Serialize;

use crate::cli::args::Output;
use crate::cli::exit::{Exit, Failure};
use crate::cli::journal::JournalView;
use crate::cli::target::{self, Target};
use crate::cli::terminal;
use crate::cli::time::{format_duration, format_utc, nanos, unix_nanos};
use crate::cli::{print_err, print_out};

/// One limiter read at one moment, or why it could not be read.
#[derive(Debug)]
pub struct Snapshot {
    /// The limiter as named or listed.
    pub target: Target,
    /// Its state, or the error that made it unreadable.
    pub state: Result<State, Failure>,
}

/// What a limiter file holds right now.
#[derive(Debug)]
pub struct State {
    /// What the file records about itself.
    pub info: FileInfo,
    /// Each rate's use now, in the file's order.
    pub usage: Vec<RateUsage>,
    /// Admissions since the file was created.
    pub admitted: u64,
    /// The file's counters (`None` where one holds garbage).
    pub counters: Counters,
    /// Its journal, if it is journaled.
    pub journal: JournalView,
}

/// A counter as people read it: the number, or `implausible` for garbage in the file.
pub fn count_text(count: Option<u64>) -> String {
    count.map_or_else(|| "implausible".into(), |n| n.to_string())
}

/// Reads one limiter. The file is observed read-only (read permission is enough), and mapped
/// only until the snapshot is taken; on a CPU whose 16-byte loads write (which a read-only
/// mapping cannot take), it is attached instead, which needs write permission.
pub fn read(target: Target) -> Snapshot {
    let state = (|| {
        let limiter = match target.remote_limiter() {
            Some(remote) => remote.map_err(|e| Failure::about(&target, e))?,
            None => observe(&target)?,
        };
        let usage = limiter.usage()?;
        let admitted = limiter.admitted()?;
        let counters = limiter.counters()?;
        let info = limiter.info();
        Ok(State {
            journal: JournalView::of(&target.path, &info),
            info,
            usage,
            admitted,
            counters,
        })
    })();
    Snapshot { target, state }
}

/// Attaches to look where observing read-only is not possible: without the journal (looking
/// opens no journal database).
/// A file observed read-only, and without its journal: looking opens no journal database.
fn observe(target: &Target) -> Result<Limiter, Failure> {
    match Limiter::observe(&target.path) {
        // Attaching needs write permission; without it, why observing did not work is the
        // useful message.
        Err(unsupported @ Error::Unsupported(_)) => {
            attach_to_look(&target.path).map_err(|error| match error {
                Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    unsupported
                }
                other => other,
            })
        }
        observed => observed,
    }
    .map_err(|e| crate::cli::journal::explain_missing(target, Failure::about(target, e)))
}

fn attach_to_look(path: &Path) -> Result<Limiter, Error> {
    #[cfg(feature = "journal")]
    return Limiter::attach_without_journal(path);
    #[cfg(not(feature = "journal"))]
    return Limiter::attach(path);
}

/// Reads the named limiters, or every one in `dir`.
///
/// # Errors
///
/// An invalid name or an unreadable directory; a file that is not a limiter is not an error
/// here but a snapshot with an error.
pub fn read_all(dir: &Path, names: &[String]) -> Result<Vec<Snapshot>, Failure> {
    Ok(target::named_or_all(dir, names)?
        .into_iter()
        .map(read)
        .collect())
}

/// `hostlimit status`.
pub fn status(dir: &Path, names: &[String], output: Output) -> Result<Exit, Failure> {
    let snapshots = read_all(dir, names)?;
    let named = !names.is_empty();
    if output == Output::Json {
        // A limiter asked for by name that cannot be read makes the document a failure.
        let ok = !(named && snapshots.iter().any(|s| s.state.is_err()));
        print_out(&format!("{}\n", to_json(dir, &snapshots, ok, true)))?;
    } else {
        let mut text = String::new();
        if snapshots.is_empty() {
            text.push_str(&format!("no limiters in {}\n", dir.display()));
        }
        for snapshot in &snapshots {
            // A limiter asked for by name that cannot be read is an error, reported on
            // stderr; in a directory listing it is one more thing found there.
            if !(named && snapshot.state.is_err()) {
                render(snapshot, output == Output::Wide, &mut text);
            }
        }
        print_out(&text)?;
    }
    let mut exit = Exit::Success;
    if named {
        for snapshot in &snapshots {
            if let Err(failure) = &snapshot.state {
                print_err(&failure.message);
                if exit == Exit::Success {
                    exit = failure.exit;
                }
            }
        }
    }
    Ok(exit)
}

/// The shortest and longest interval `watch` accepts; others are clamped, with a note.
pub const WATCH_INTERVALS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

/// Terminals at least this wide get the wide view in `watch`.
const WIDE_COLUMNS: usize = 120;

/// `interval` kept within [`WATCH_INTERVALS`], with a note on stderr when it was not (for
/// `watch` and `top`).
pub fn clamp_interval(interval: Duration) -> Duration {
    let (shortest, longest) = WATCH_INTERVALS;
    let clamped = interval.clamp(shortest, longest);
    if clamped != interval {
        print_err(&format!(
            "note: refreshing every {} (the interval is kept between {} and {})",
            format_duration(clamped),
            format_duration(shortest),
            format_duration(longest)
        ));
    }
    clamped
}

/// `hostlimit watch`: `status` again every `interval`. On a terminal it clears the screen,
/// fits the view to the terminal's size (wide when there is room) and follows its resizing.
pub fn watch(
    dir: &Path,
    names: &[String],
    interval: Duration,
    count: Option<u64>,
    output: Output,
) -> Result<Exit, Failure> {
    let clamped = clamp_interval(interval);
    let mut refreshes = 0u64;
    loop {
        let snapshots = read_all(dir, names)?;
        refreshes += 1;
        let mut text = String::new();
        if output == Output::Json {
            text.push_str(&to_json(dir, &snapshots, true, false));
            text.push('\n');
        } else {
            let screen = terminal::size();
            let wide = output == Output::Wide
                || screen.is_some_and(|(columns, _)| columns >= WIDE_COLUMNS);
            let mut view = format!(
                "hostlimit watch {}  every {}  {}  (refresh {refreshes})\n",
                dir.display(),
                format_duration(clamped),
                format_utc(SystemTime::now()),
            );
            if snapshots.is_empty() {
                view.push_str("no limiters\n");
            }
            for snapshot in &snapshots {
                render(snapshot, wide, &mut view);
            }
            match screen {
                Some((columns, rows)) => {
                    // Cursor home, then clear the screen.
                    text.push_str("\x1b[H\x1b[2J");
                    text.push_str(&terminal::fit(&view, columns, rows));
                }
                None => {
                    text.push_str(&view);
                    text.push('\n');
                }
            }
        }
        print_out(&text)?;
        if count.is_some_and(|count| refreshes >= count) {
            return Ok(Exit::Success);
        }
        std::thread::sleep(clamped);
    }
}

/// Appends the text form of one limiter: what fits 80 columns, and with `wide` the file's
/// details too.
fn render(snapshot: &Snapshot, wide: bool, out: &mut String) {
    let target = &snapshot.target;
    out.push_str(&format!("{}  {}\n", target.name, target.path.display()));
    let state = match &snapshot.state {
        Ok(state) => state,
        Err(failure) => {
            out.push_str(&format!("  not a usable limiter: {}\n", failure.message));
            return;
        }
    };
    let mut rows = vec![vec![
        "rate".to_string(),
        "limit".into(),
        "used".into(),
        "remaining".into(),
        "next free".into(),
        "denied".into(),
    ]];
    for (index, usage) in state.usage.iter().enumerate() {
        rows.push(vec![
            usage.rate.to_string(),
            usage.rate.limit().to_string(),
            usage.used.to_string(),
            usage.remaining.to_string(),
            usage.next_free.map_or_else(|| "-".into(), format_duration),
            count_text(state.counters.denied.get(index).copied().flatten()),
        ]);
    }
    out.push_str(&table(&rows, "  "));
    let info = &state.info;
    let counters = &state.counters;
    out.push_str(&format!(
        "  admitted {}, denied {} since {}\n",
        state.admitted,
        count_text(counters.denied_total()),
        format_utc(info.created),
    ));
    if counters.never_fits != Some(0) || counters.timed_out != Some(0) {
        out.push_str(&format!(
            "  of the denied: {} never fit, {} timed out waiting\n",
            count_text(counters.never_fits),
            count_text(counters.timed_out),
        ));
    }
    out.push_str(&state.journal.line());
    if wide {
        out.push_str(&format!(
            "  created by pid {}, uid {}; ring of {} slots, {} bytes\n",
            info.creator_pid, info.creator_uid, info.capacity, info.size,
        ));
        out.push_str(&format!(
            "  clock {}, boot {}, time namespace {}\n",
            clock_name(&info.clock),
            info.clock.boot_id_text(),
            info.clock.time_namespace,
        ));
    }
}

/// Aligns `rows` in columns: the first left-aligned, the others right-aligned.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                out.push_str(&format!("{cell:<width$}", width = widths[c]));
            } else {
                out.push_str(&format!("  {cell:>width$}", width = widths[c]));
            }
        }
        let kept = out.trim_end_matches(' ').len();
        out.truncate(kept);
        out.push('\n');
    }
    out
}

/// The clock's name as the user knows it.
pub fn clock_name(clock: &ClockIdentity) -> String {
    match clock.clock_id {
        HostClock::ID => "CLOCK_BOOTTIME".into(),
        ManualClock::ID => "manual".into(),
        other => format!("clock id {other}"),
    }
}

#[derive(Serialize)]
struct StatusJson {
    ok: bool,
    dir: String,
    time_utc: String,
    time_unix_ns: u64,
    limiters: Vec<LimiterJson>,
}

#[derive(Serialize)]
struct LimiterJson {
    name: String,
    path: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten)]
    state: Option<StateJson>,
}

#[derive(Serialize)]
struct StateJson {
    rates: Vec<RateJson>,
    admitted: u64,
    /// Refused requests over all rates (`null`: a counter holds garbage).
    denied: Option<u64>,
    never_fits: Option<u64>,
    timed_out: Option<u64>,
    created: CreatedJson,
    clock: ClockJson,
    capacity: u64,
    size_bytes: u64,
    journal: JournalView,
}

#[derive(Serialize)]
struct RateJson {
    rate: String,
    limit: u64,
    window_ns: u64,
    counts: &'static str,
    used: u64,
    remaining: u64,
    next_free_ns: Option<u64>,
    denied: Option<u64>,
}

#[derive(Serialize)]
struct CreatedJson {
    utc: String,
    unix_ns: u64,
    pid: u64,
    uid: u64,
}

#[derive(Serialize)]
struct ClockJson {
    id: u64,
    name: String,
    boot_id: String,
    time_namespace: u64,
}

/// The JSON document for `status --json` (one line per refresh for `watch --json`).
fn to_json(dir: &Path, snapshots: &[Snapshot], ok: bool, pretty: bool) -> String {
    let now = SystemTime::now();
    let document = StatusJson {
        ok,
        dir: dir.display().to_string(),
        time_utc: format_utc(now),
        time_unix_ns: unix_nanos(now),
        limiters: snapshots.iter().map(limiter_json).collect(),
    };
    let text = if pretty {
        serde_json::to_string_pretty(&document)
    } else {
        serde_json::to_string(&document)
    };
    text.expect("plain structs serialize")
}

fn limiter_json(snapshot: &Snapshot) -> LimiterJson {
    let (state, error) = match &snapshot.state {
        Ok(state) => (Some(state_json(state)), None),
        Err(failure) => (None, Some(failure.message.clone())),
    };
    LimiterJson {
        name: snapshot.target.name.clone(),
        path: snapshot.target.path.display().to_string(),
        valid: state.is_some(),
        error,
        state,
    }
}

fn state_json(state: &State) -> StateJson {
    let info = &state.info;
    StateJson {
        rates: state
            .usage
            .iter()
            .enumerate()
            .map(|(index, usage)| RateJson {
                rate: usage.rate.to_string(),
                limit: usage.rate.limit(),
                window_ns: nanos(usage.rate.window()),
                counts: match usage.rate.counts() {
                    Counts::Requests => "requests",
                    Counts::Weight => "weight",
                },
                used: usage.used,
                remaining: usage.remaining,
                next_free_ns: usage.next_free.map(nanos),
                denied: state.counters.denied.get(index).copied().flatten(),
            })
            .collect(),
        admitted: state.admitted,
        denied: state.counters.denied_total(),
        never_fits: state.counters.never_fits,
        timed_out: state.counters.timed_out,
        created: CreatedJson {
            utc: format_utc(info.created),
            unix_ns: unix_nanos(info.created),
            pid: info.creator_pid,
            uid: info.creator_uid,
        },
        clock: ClockJson {
            id: info.clock.clock_id,
            name: clock_name(&info.clock),
            boot_id: info.clock.boot_id_text(),
            time_namespace: info.clock.time_namespace,
        },
        capacity: info.capacity,
        size_bytes: info.size,
        journal: state.journal.clone(),
    }
}
