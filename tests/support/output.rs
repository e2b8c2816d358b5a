//! The worker's output format (see the table in `support.rs`), read back into admissions,
//! denials, usage lines and latencies.

use super::*;

/// One admission: how it was recorded, and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Clock read just before the call.
    pub before: Nanos,
    /// Clock read just after the call.
    pub after: Nanos,
    /// The recorded timestamp.
    pub ts: Nanos,
    /// The sequence number.
    pub seq: u32,
    /// The weight.
    pub weight: u64,
}

/// One denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Clock read just before the call.
    pub before: Nanos,
    /// Clock read just after the call.
    pub after: Nanos,
    /// The weight asked for.
    pub weight: u64,
    /// Index of the refusing rate (`usize::MAX` for none).
    pub rate: usize,
    /// The retry-after, in ns, for an exhausted rate.
    pub retry: Option<u64>,
    /// `X` exhausted, `N` never fits, `U` unavailable.
    pub kind: char,
}

/// One rate's usage as a worker recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLine {
    /// Weight or requests in the window.
    pub used: u64,
    /// What is left.
    pub remaining: u64,
    /// When room frees, in ns from the call.
    pub next_free: Option<u64>,
    /// Denials counted by the rate.
    pub denied: u64,
}

/// Everything a worker wrote.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// Pid of a successful open.
    pub opened: Option<u32>,
    /// Open (or reset) errors.
    pub errors: Vec<String>,
    /// Admissions, in call order.
    pub admissions: Vec<Admission>,
    /// Denials, in call order.
    pub denials: Vec<Denial>,
    /// Weight-0 calls that charged nothing.
    pub free: usize,
    /// `usage()` results.
    pub usages: Vec<Vec<UsageLine>>,
    /// Every call in order: `true` for an admission (index into `admissions`), `false` for
    /// a denial (index into `denials`).
    pub order: Vec<(bool, usize)>,
    /// Resets and removes: `reset ok`, `remove error <error>`.
    pub admin: Vec<String>,
    /// Resources in use: open descriptors, mappings of files in the worker's directory.
    pub resources: Vec<(usize, usize)>,
    /// Call latencies, per kind of call.
    pub latencies: Vec<Latency>,
}

/// The latencies of one kind of call, as a worker of `hostile.rs` measured them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latency {
    /// The kind of call (`try_acquire`, `usage`, ...).
    pub what: String,
    /// How many calls were made.
    pub calls: u64,
    /// The longest wall-clock time of one call, in ns.
    pub worst_wall: u64,
    /// The most CPU time (of the calling thread) one call used, in ns.
    pub worst_cpu: u64,
    /// What the slowest call (by CPU time) returned.
    pub worst_call: String,
}

fn field<T: std::str::FromStr>(fields: &[&str], index: usize, line: &str) -> T {
    fields
        .get(index)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("bad worker line {line:?}"))
}

fn optional(text: &str) -> Option<u64> {
    (text != "-").then(|| text.parse().expect("a number or -"))
}

impl Output {
    /// Parses a worker's output file; a last line without its newline (a worker killed while
    /// writing it) is ignored.
    pub fn read(path: &Path) -> Output {
        let text = fs::read_to_string(path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let mut output = Output::default();
        for line in complete.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[0] {
                "O" => output.opened = Some(field(&fields, 1, line)),
                "E" => output.errors.push(line[2..].to_string()),
                "A" => {
                    output.order.push((true, output.admissions.len()));
                    output.admissions.push(Admission {
                        before: field(&fields, 1, line),
                        after: field(&fields, 2, line),
                        ts: field(&fields, 3, line),
                        seq: field(&fields, 4, line),
                        weight: field(&fields, 5, line),
                    });
                }
                "D" => {
                    output.order.push((false, output.denials.len()));
                    output.denials.push(Denial {
                        before: field(&fields, 1, line),
                        after: field(&fields, 2, line),
                        weight: field(&fields, 3, line),
                        rate: field(&fields, 4, line),
                        retry: optional(fields[5]),
                        kind: field(&fields, 6, line),
                    });
                }
                "F" => output.free += 1,
                "U" => output.usages.push(
                    fields[1..]
                        .iter()
                        .map(|f| {
                            let parts: Vec<&str> = f.split(':').collect();
                            UsageLine {
                                used: field(&parts, 0, line),
                                remaining: field(&parts, 1, line),
                                next_free: optional(parts[2]),
                                denied: field(&parts, 3, line),
                            }
                        })
                        .collect(),
                ),
                "M" => output.admin.push(line[2..].to_string()),
                "R" => output
                    .resources
                    .push((field(&fields, 1, line), field(&fields, 2, line))),
                "L" => output.latencies.push(Latency {
                    what: fields[1].to_string(),
                    calls: field(&fields, 2, line),
                    worst_wall: field(&fields, 3, line),
                    worst_cpu: field(&fields, 4, line),
                    worst_call: fields[5..].join(" "),
                }),
                _ => panic!("unknown worker line {line:?}"),
            }
        }
        output
    }
}
