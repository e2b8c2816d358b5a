//! `hostlimit metrics`: the counters and gauges in the Prometheus text exposition format
//! (version 0.0.4), for a node-exporter textfile collector or a scrape wrapper.

use std::path::Path;

use crate::cli::exit::{Exit, Failure};
use crate::cli::report::{self, Snapshot, State};
use crate::cli::time::unix_nanos;
use crate::cli::{print_json, print_out};

/// One metric family: its name, type, help text, and how to get its samples from a state.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    per_rate: bool,
    value: fn(&State, usize) -> f64,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "hostlimit_admitted_total",
        kind: "counter",
        help: "Admissions since the limiter file was created, by all processes.",
        per_rate: false,
        value: |state, _| state.admitted as f64,
    },
    Family {
        name: "hostlimit_denied_total",
        kind: "counter",
        help: "Requests this rate refused since the limiter file was created, by all processes; \
               a waiting acquire counts once, when it gives up, and not at all if it is admitted \
               in the end (NaN: the file's counter holds garbage).",
        per_rate: true,
        value: |state, rate| count(state.counters.denied.get(rate).copied().flatten()),
    },
    Family {
        name: "hostlimit_never_fits_total",
        kind: "counter",
        help: "Requests refused because their weight exceeds a limit and can never fit \
               (also counted in hostlimit_denied_total; NaN: garbage).",
        per_rate: false,
        value: |state, _| count(state.counters.never_fits),
    },
    Family {
        name: "hostlimit_timed_out_total",
        kind: "counter",
        help: "Waiting acquires that gave up, not admitted within their timeout \
               (also counted in hostlimit_denied_total; NaN: garbage).",
        per_rate: false,
        value: |state, _| count(state.counters.timed_out),
    },
    Family {
        name: "hostlimit_limit",
        kind: "gauge",
        help: "The most weight (or requests) this rate admits in any sliding window.",
        per_rate: true,
        value: |state, rate| state.usage[rate].rate.limit() as f64,
    },
    Family {
        name: "hostlimit_window_seconds",
        kind: "gauge",
        help: "The length of this rate's sliding window.",
        per_rate: true,
        value: |state, rate| state.usage[rate].rate.window().as_secs_f64(),
    },
    Family {
        name: "hostlimit_used",
        kind: "gauge",
        help: "Weight (or requests) admitted in the current window.",
        per_rate: true,
        value: |state, rate| state.usage[rate].used as f64,
    },
    Family {
        name: "hostlimit_remaining",
        kind: "gauge",
        help: "Weight (or requests) still admissible in the current window.",
        per_rate: true,
        value: |state, rate| state.usage[rate].remaining as f64,
    },
    Family {
        name: "hostlimit_next_free_seconds",
        kind: "gauge",
        help: "Seconds until the oldest admission leaves the window (0 if the window is empty).",
        per_rate: true,
        value: |state, rate| state.usage[rate].next_free.map_or(0.0, |d| d.as_secs_f64()),
    },
    Family {
        name: "hostlimit_created_timestamp_seconds",
        kind: "gauge",
        help: "When the limiter file was created, in seconds since the Unix epoch.",
        per_rate: false,
        value: |state, _| unix_nanos(state.info.created) as f64 / 1e9,
    },
];

/// A counter's sample: NaN for one that holds garbage.
fn count(value: Option<u64>) -> f64 {
    value.map_or(f64::NAN, |n| n as f64)
}

/// `hostlimit metrics`: the exposition text, or with `--json` the same samples as one
/// document (`{"ok": true, "samples": [{"name", "labels", "value"}]}`, `null` for NaN).
pub fn metrics(dir: &Path, names: &[String], json: bool) -> Result<Exit, Failure> {
    let snapshots = report::read_all(dir, names)?;
    let text = exposition(&snapshots);
    if !json {
        print_out(&text)?;
        return Ok(Exit::Success);
    }
    let samples: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, rest) = line.split_once('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .split("\",")
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((
                        key.to_string(),
                        value.trim_end_matches('"').to_string().into(),
                    ))
                })
                .collect();
            let value: f64 = value.parse().ok()?;
            Some(serde_json::json!({"name": name, "labels": labels, "value": value}))
        })
        .collect();
    print_json(&serde_json::json!({"ok": true, "samples": samples}))?;
    Ok(Exit::Success)
}

/// The exposition text. A file that is not a usable limiter shows as `hostlimit_up 0` and
/// has no other samples.
pub fn exposition(snapshots: &[Snapshot]) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP hostlimit_up 1 if the file is a usable limiter, 0 if it cannot be read.\n",
    );
    out.push_str("# TYPE hostlimit_up gauge\n");
    for snapshot in snapshots {
        let up = u8::from(snapshot.state.is_ok());
        out.push_str(&format!(
            "hostlimit_up{{limiter=\"{}\"}} {up}\n",
            escape(&snapshot.target.name)
        ));
    }
    for family in FAMILIES {
        out.push_str(&format!("# HELP {} {}\n", family.name, family.help));
        out.push_str(&format!("# TYPE {} {}\n", family.name, family.kind));
        for snapshot in snapshots {
            let Ok(state) = &snapshot.state else { continue };
            let limiter = escape(&snapshot.target.name);
            if family.per_rate {
                for (index, usage) in state.usage.iter().enumerate() {
                    out.push_str(&format!(
                        "{}{{limiter=\"{limiter}\",rate=\"{}\"}} {}\n",
                        family.name,
                        escape(&usage.rate.to_string()),
                        (family.value)(state, index)
                    ));
                }
            } else {
                out.push_str(&format!(
                    "{}{{limiter=\"{limiter}\"}} {}\n",
                    family.name,
                    (family.value)(state, 0)
                ));
            }
        }
    }
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
