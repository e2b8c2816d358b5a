//! What `top` shows, sampled by `top` itself: each limiter's last reading (through
//! `report::read`, the same reader as `status`) and a short history of admissions and denials
//! per second, derived from the file's counters between two readings. Nothing is added to
//! the limiter's hot path.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::report::{Snapshot, State};

/// How much history a sparkline covers.
pub const HISTORY: Duration = Duration::from_secs(60);

/// The most points kept per series, whatever the interval (a 100 ms interval keeps the last
/// 600 points: a minute).
const MAX_POINTS: usize = 600;

/// How the limiters are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Closest to a limit first (used / limit of its fullest rate).
    Closeness,
    /// Most denials per second first.
    Denials,
    /// By name.
    Name,
}

impl Sort {
    /// The next order, as the `s` key cycles through them.
    pub fn next(self) -> Sort {
        match self {
            Sort::Closeness => Sort::Denials,
            Sort::Denials => Sort::Name,
            Sort::Name => Sort::Closeness,
        }
    }

    /// Its name in the header.
    pub fn label(self) -> &'static str {
        match self {
            Sort::Closeness => "closeness",
            Sort::Denials => "denials",
            Sort::Name => "name",
        }
    }
}

/// Who made a file: a file replaced under the same name (`reset`, `rm` + re-create) has
/// another identity, and its counters start again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    created: SystemTime,
    creator_pid: u64,
    capacity: u64,
    rates: Vec<String>,
}

impl Identity {
    fn of(state: &State) -> Identity {
        Identity {
            created: state.info.created,
            creator_pid: state.info.creator_pid,
            capacity: state.info.capacity,
            rates: state.info.rates.iter().map(ToString::to_string).collect(),
        }
    }
}

/// One limiter as `top` knows it.
#[derive(Debug)]
pub struct Entry {
    /// The last reading (or why the file could not be read).
    pub snapshot: Snapshot,
    /// Admissions per second, oldest first, one point per reading.
    pub admitted_per_s: VecDeque<u64>,
    /// Per rate: denials per second, oldest first.
    pub denied_per_s: Vec<VecDeque<u64>>,
    /// Denials per second over all rates, oldest first.
    pub denied_total_per_s: VecDeque<u64>,
    /// When the file was seen to be replaced (its history restarted then).
    pub replaced_at: Option<SystemTime>,
    /// used / limit of the fullest rate at the last good reading (kept while the file is
    /// unreadable, so that it stays in place).
    pub closeness: f64,
    identity: Option<Identity>,
    last: Option<(Instant, u64, Vec<Option<u64>>)>,
    /// Readings per second (at least 1), for the figures "in the last second".
    points_per_second: usize,
}

impl Entry {
    fn new(snapshot: Snapshot, interval: Duration) -> Entry {
        Entry {
            snapshot,
            admitted_per_s: VecDeque::new(),
            denied_per_s: Vec::new(),
            denied_total_per_s: VecDeque::new(),
            replaced_at: None,
            closeness: 0.0,
            identity: None,
            last: None,
            points_per_second: ((1.0 / interval.as_secs_f64().max(1e-3)).round() as usize).max(1),
        }
    }

    /// The index of the rate closest to its limit (the one that binds first).
    pub fn binding_rate(&self) -> Option<usize> {
        let state = self.snapshot.state.as_ref().ok()?;
        (0..state.usage.len()).max_by(|&a, &b| {
            fullness(state, a)
                .partial_cmp(&fullness(state, b))
                .unwrap_or(std::cmp::Ordering::Equal)
                // The first of equally full rates binds.
                .then(b.cmp(&a))
        })
    }

    /// Denials per second over all rates, in the last second.
    pub fn denials_now(&self) -> u64 {
        last_second(&self.denied_total_per_s, self.points_per_second)
    }

    /// Admissions per second, in the last second.
    pub fn admissions_now(&self) -> u64 {
        last_second(&self.admitted_per_s, self.points_per_second)
    }

    /// Denials per second of one rate, in the last second.
    pub fn rate_denials_now(&self, index: usize) -> u64 {
        self.denied_per_s
            .get(index)
            .map_or(0, |series| last_second(series, self.points_per_second))
    }

    /// Takes a new reading into the history.
    fn update(&mut self, snapshot: Snapshot, at: Instant) {
        if let Ok(state) = &snapshot.state {
            let identity = Identity::of(state);
            let replaced = self.identity.as_ref().is_some_and(|old| *old != identity)
                || self
                    .last
                    .as_ref()
                    .is_some_and(|(_, admitted, _)| state.admitted < *admitted);
            if replaced {
                self.replaced_at = Some(SystemTime::now());
                self.admitted_per_s.clear();
                self.denied_total_per_s.clear();
                self.denied_per_s.clear();
                self.last = None;
            }
            self.identity = Some(identity);
            let n_rates = state.usage.len();
            self.denied_per_s.resize_with(n_rates, VecDeque::new);
            if let Some((then, admitted, denied)) = &self.last {
                let seconds = at.duration_since(*then).as_secs_f64().max(1e-3);
                let per_s = |now: u64, before: u64| {
                    (now.saturating_sub(before) as f64 / seconds).round() as u64
                };
                push(&mut self.admitted_per_s, per_s(state.admitted, *admitted));
                let mut total = 0u64;
                for (index, series) in self.denied_per_s.iter_mut().enumerate() {
                    let now = state.counters.denied.get(index).copied().flatten();
                    let before = denied.get(index).copied().flatten();
                    // A counter holding garbage counts as no denials rather than a spike.
                    let rate = match (now, before) {
                        (Some(now), Some(before)) => per_s(now, before),
                        _ => 0,
                    };
                    total = total.saturating_add(rate);
                    push(series, rate);
                }
                push(&mut self.denied_total_per_s, total);
            }
            self.last = Some((at, state.admitted, state.counters.denied.clone()));
            self.closeness = (0..n_rates)
                .map(|index| fullness(state, index))
                .fold(0.0, f64::max);
        }
        self.snapshot = snapshot;
    }
}

/// used / limit of one rate.
pub fn fullness(state: &State, index: usize) -> f64 {
    let usage = &state.usage[index];
    usage.used as f64 / usage.rate.limit().max(1) as f64
}

/// The mean of the last `points` points (a second's worth of readings).
fn last_second(series: &VecDeque<u64>, points: usize) -> u64 {
    let taken = series.len().min(points);
    if taken == 0 {
        return 0;
    }
    let sum: u64 = series.iter().rev().take(taken).sum();
    sum / taken as u64
}

fn push(series: &mut VecDeque<u64>, value: u64) {
    if series.len() == MAX_POINTS {
        series.pop_front();
    }
    series.push_back(value);
}

/// Every limiter `top` shows, and how.
#[derive(Debug)]
pub struct Model {
    entries: HashMap<PathBuf, Entry>,
    /// The order.
    pub sort: Sort,
    /// Only limiters whose name contains this are shown (empty: all).
    pub filter: String,
    /// The interval between readings.
    pub interval: Duration,
}

impl Model {
    /// An empty model.
    pub fn new(interval: Duration) -> Model {
        Model {
            entries: HashMap::new(),
            sort: Sort::Closeness,
            filter: String::new(),
            interval,
        }
    }

    /// Takes one reading of every limiter: entries for files that are gone are dropped, new
    /// ones are added.
    pub fn sample(&mut self, snapshots: Vec<Snapshot>, at: Instant) {
        let mut seen = HashMap::with_capacity(snapshots.len());
        for snapshot in snapshots {
            let path = snapshot.target.path.clone();
            let mut entry = self
                .entries
                .remove(&path)
                .unwrap_or_else(|| Entry::new(snapshot_placeholder(&snapshot), self.interval));
            entry.update(snapshot, at);
            seen.insert(path, entry);
        }
        self.entries = seen;
    }

    /// How many points a sparkline holds for the last [`HISTORY`].
    pub fn history_points(&self) -> usize {
        let interval = self.interval.as_secs_f64().max(1e-3);
        ((HISTORY.as_secs_f64() / interval).ceil() as usize).clamp(1, MAX_POINTS)
    }

    /// Every limiter known, filtered, in the chosen order.
    pub fn shown(&self) -> Vec<&Entry> {
        let filter = self.filter.to_lowercase();
        let mut shown: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.snapshot.target.name.to_lowercase().contains(&filter))
            .collect();
        shown.sort_by(|a, b| {
            let by_name = a.snapshot.target.name.cmp(&b.snapshot.target.name);
            match self.sort {
                Sort::Name => by_name,
                Sort::Closeness => b
                    .closeness
                    .partial_cmp(&a.closeness)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.denials_now().cmp(&a.denials_now()))
                    .then(by_name),
                Sort::Denials => b
                    .denials_now()
                    .cmp(&a.denials_now())
                    .then(
                        b.closeness
                            .partial_cmp(&a.closeness)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                    .then(by_name),
            }
        });
        shown
    }

    /// How many limiters there are before filtering.
    pub fn total(&self) -> usize {
        self.entries.len()
    }
}

/// A first entry's snapshot before its first reading replaces it.
fn snapshot_placeholder(snapshot: &Snapshot) -> Snapshot {
    Snapshot {
        target: snapshot.target.clone(),
        state: Err(crate::cli::exit::Failure::new(
            crate::cli::exit::Exit::Success,
            "not read yet",
        )),
    }
}
