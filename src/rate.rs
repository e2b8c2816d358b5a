//! [`Rate`]: a limit over a sliding window, what it counts, its validation and its text form
//! (the grammar is documented on [`Rate`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;
use crate::protocol::Rule;

/// The largest limit a rate may have: window totals are kept modulo 2^32.
pub const MAX_LIMIT: u64 = u32::MAX as u64;

/// The longest window a rate may have.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// What a rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counts {
    /// The weight of each acquire (`try_acquire(1200)` counts 1200).
    Weight,
    /// Acquires, whatever their weight (`try_acquire(1200)` counts 1).
    Requests,
}

/// What the weight of a weight-counting rate measures. Only a name: it changes what the rate
/// prints as (`90000tok/min`), not what it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightUnit {
    /// Tokens (`tok`), as LLM APIs count them.
    Tokens,
    /// Bytes (`B`).
    Bytes,
}

impl WeightUnit {
    /// The short form `Display` writes.
    fn symbol(self) -> &'static str {
        match self {
            WeightUnit::Tokens => "tok",
            WeightUnit::Bytes => "B",
        }
    }

    /// The unit's code in a limiter file (0 is "no unit").
    pub(crate) fn code(unit: Option<WeightUnit>) -> u8 {
        match unit {
            None => 0,
            Some(WeightUnit::Tokens) => 1,
            Some(WeightUnit::Bytes) => 2,
        }
    }

    /// The unit a code in a limiter file stands for; `Err` for a code no version writes.
    pub(crate) fn from_code(code: u8) -> Result<Option<WeightUnit>, u8> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(WeightUnit::Tokens)),
            2 => Ok(Some(WeightUnit::Bytes)),
            other => Err(other),
        }
    }
}

/// At most `limit` in any sliding window of length `window`.
///
/// # Text form
///
/// The library's `FromStr` and the command line's `--rate` share one grammar, and `Display`
/// writes a text that parses back to the same rate:
///
/// ```text
/// RATE   = LIMIT [MULTIPLIER] [WORD] "/" [COUNT] UNIT       10/s  90000tok/min  60req/min  5/2s
/// LIMIT  = digits, with single "_" between digits          1_000
/// COUNT  = digits, as LIMIT                                  5/2s  1/100ms
/// MULTIPLIER (exact; case matters where it must)
///        = k | K  (1,000)   M (1,000,000)   G (10^9)
///        | Ki (1,024)       Mi (1,048,576)  Gi (2^30)
/// WORD   (any case)
///        = req | reqs | request | requests   counts requests, whatever their weight
///        | tok | toks | token | tokens       counts weight, measured in tokens
///        | B | byte | bytes                  counts weight, measured in bytes ("B" in capitals)
///        (none)                              counts weight
/// UNIT   (any case, except m)
///        = ns | us | µs | ms | s | sec | secs | second | seconds
///        | m (lower case only) | min | mins | minute | minutes
///        | h | hr | hrs | hour | hours | d | day | days | w | week | weeks
/// ```
///
/// Spaces around the parts are allowed (`" 3 / 1h "`). Everything else is an error that says
/// what was wrong and, where it can, what was probably meant: `10foo/min`, `10/parsec`,
/// `10/1.5s` (write `10/1500ms`), `10m/s` (`m` is not a multiplier: write `10M/s`), `5/M`
/// (minute or month? write `min`), `10b/s` (bits or bytes? write `B`).
///
/// `Display` writes the limit in plain digits, the word's short form (`req`, `tok`, `B`) and
/// the window in the largest unit that divides it (`10000/d`, `5/2s`, `7/100ms`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use hostlimit::{Rate, WeightUnit};
///
/// let per_second = Rate::new(10, Duration::from_secs(1));
/// let tokens: Rate = "90000tok/min".parse().unwrap();
/// let calls: Rate = "60req/min".parse().unwrap();
/// assert_eq!(per_second.to_string(), "10/s");
/// assert_eq!(tokens.limit(), 90_000);
/// assert_eq!(tokens, Rate::new(90_000, Duration::from_secs(60)).with_unit(WeightUnit::Tokens));
/// assert_eq!(tokens.to_string(), "90000tok/min");
/// assert_eq!(calls, Rate::requests(60, Duration::from_secs(60)));
/// assert_eq!("2M/day".parse::<Rate>().unwrap().limit(), 2_000_000);
/// assert!("10foo/min".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u64,
    window: Duration,
    counts: Counts,
    unit: Option<WeightUnit>,
}

impl Rate {
    /// At most `limit` units of weight in any window of `window`.
    ///
    /// Validated when a limiter is opened: a zero limit, a zero window, a limit above
    /// [`MAX_LIMIT`] or a window above [`MAX_WINDOW`] is an [`Error::InvalidRate`].
    pub fn new(limit: u64, window: Duration) -> Rate {
        Rate {
            limit,
            window,
            counts: Counts::Weight,
            unit: None,
        }
    }

    /// At most `limit` acquires in any window of `window`, whatever their weight.
    pub fn requests(limit: u64, window: Duration) -> Rate {
        Rate {
            limit,
            window,
            counts: Counts::Requests,
            unit: None,
        }
    }

    /// The same rate, its weight named as `unit` (`90000tok/min`). A rate that counts
    /// requests has no unit: giving it one makes it invalid when a limiter is opened.
    pub fn with_unit(self, unit: WeightUnit) -> Rate {
        Rate {
            unit: Some(unit),
            ..self
        }
    }

    /// The same rate over another window.
    pub(crate) fn with_window(self, window: Duration) -> Rate {
        Rate { window, ..self }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// What the rate counts.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// What the weight measures, if it was named (`tok`, `B`).
    pub fn unit(&self) -> Option<WeightUnit> {
        self.unit
    }

    /// Checks the rate and turns it into the protocol's form.
    pub(crate) fn rule(&self) -> Result<Rule, Error> {
        let invalid = |reason: &str| Error::InvalidRate {
            rate: self.to_string(),
            reason: reason.into(),
        };
        if self.limit == 0 {
            return Err(invalid("the limit must be at least 1"));
        }
        if self.limit > MAX_LIMIT {
            return Err(invalid(&format!("the limit must be at most {MAX_LIMIT}")));
        }
        if self.window.is_zero() {
            return Err(invalid("the window must be longer than zero"));
        }
        if self.window > MAX_WINDOW {
            return Err(invalid("the window must be at most 366 days"));
        }
        if self.counts == Counts::Requests && self.unit.is_some() {
            return Err(invalid("a rate that counts requests has no unit of weight"));
        }
        Ok(Rule {
            limit: self.limit,
            window: self.window.as_nanos() as u64,
            requests: self.counts == Counts::Requests,
        })
    }

    /// The rate a protocol rule stands for (the inverse of [`Rate::rule`]), with no unit.
    pub(crate) fn from_rule(rule: &Rule) -> Rate {
        let window = Duration::from_nanos(rule.window);
        if rule.requests {
            Rate::requests(rule.limit, window)
        } else {
            Rate::new(rule.limit, window)
        }
    }

    /// The rate a protocol rule stands for, with the unit a file records for it.
    pub(crate) fn from_rule_with_unit(rule: &Rule, unit: Option<WeightUnit>) -> Rate {
        Rate {
            unit,
            ..Rate::from_rule(rule)
        }
    }
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Window units, as the parser accepts them (matched without regard to case, except `m`).
const UNITS: &[(&[&str], u64)] = &[
    (&["ns"], 1),
    (&["us", "µs"], 1_000),
    (&["ms"], 1_000_000),
    (&["s", "sec", "secs", "second", "seconds"], NANOS_PER_SECOND),
    (&["min", "mins", "minute", "minutes"], 60 * NANOS_PER_SECOND),
    (
        &["h", "hr", "hrs", "hour", "hours"],
        3_600 * NANOS_PER_SECOND,
    ),
    (&["d", "day", "days"], 86_400 * NANOS_PER_SECOND),
    (&["w", "week", "weeks"], 604_800 * NANOS_PER_SECOND),
];

/// The units used when printing, largest first.
const PRINT_UNITS: &[(&str, u64)] = &[
    ("w", 604_800 * NANOS_PER_SECOND),
    ("d", 86_400 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
    ("min", 60 * NANOS_PER_SECOND),
    ("s", NANOS_PER_SECOND),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// What the word after the limit says the rate counts.
type Meaning = (Counts, Option<WeightUnit>);

/// The words after the limit (matched without regard to case, except `B`).
const WORDS: &[(&[&str], Meaning)] = &[
    (
        &["req", "reqs", "request", "requests"],
        (Counts::Requests, None),
    ),
    (
        &["tok", "toks", "token", "tokens"],
        (Counts::Weight, Some(WeightUnit::Tokens)),
    ),
    (
        &["byte", "bytes"],
        (Counts::Weight, Some(WeightUnit::Bytes)),
    ),
];

/// Exact multipliers of the limit, longest first (so that `Ki` is not read as `K`).
const MULTIPLIERS: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
];

const EXPECTED: &str =
    "expected LIMIT[WORD]/[N]UNIT, as in 10/s, 600/min, 5/2s, 90000tok/min, 60req/min";

/// The unit word `text` names, in nanoseconds.
fn window_unit(text: &str) -> Option<u64> {
    if text == "m" {
        return Some(60 * NANOS_PER_SECOND);
    }
    let lower = text.to_lowercase();
    UNITS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, ns)| *ns)
}

/// What the word `text` after a limit means.
fn word_meaning(text: &str) -> Option<Meaning> {
    if text.is_empty() {
        return Some((Counts::Weight, None));
    }
    if text == "B" {
        return Some((Counts::Weight, Some(WeightUnit::Bytes)));
    }
    let lower = text.to_lowercase();
    WORDS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, meaning)| *meaning)
}

/// Splits `text` into its leading digits (and underscores) and the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Reads digits with single underscores between them (`1_000`); `what` names the number in
/// the error.
fn parse_number(digits: &str, what: &str) -> Result<u64, String> {
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__");
    if !well_formed {
        return Err(format!(
            "{what} must be a whole number (digits, with single _ between them as in 1_000)"
        ));
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    clean
        .parse()
        .map_err(|_| format!("{what} {digits} is too large"))
}

/// Levenshtein distance, for suggestions (short words only).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ` (did you mean X?)` for the closest of `candidates` to `text`, if one is close: one
/// edit away for a word of up to 4 letters, two for a longer one.
fn suggestion<'a>(text: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let lower = text.to_lowercase();
    candidates
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| {
            let len = c.chars().count();
            *d < len && *d <= if len <= 4 { 1 } else { 2 }
        })
        .min_by_key(|(d, _)| *d)
        .map_or_else(String::new, |(_, c)| format!(" (did you mean {c}?)"))
}

/// Reads the part before the `/`: the limit, an optional multiplier and an optional word.
fn parse_left(left: &str) -> Result<(u64, Meaning), String> {
    let (digits, rest) = split_number(left);
    if digits.is_empty() {
        return Err(format!("the limit must come first: {EXPECTED}"));
    }
    let number = parse_number(digits, "the limit")?;
    let rest = rest.trim();
    let (multiplier, word) = match word_meaning(rest) {
        Some(_) => (1, rest),
        None => match MULTIPLIERS.iter().find(|(m, _)| rest.starts_with(m)) {
            Some((m, factor)) => (*factor, rest[m.len()..].trim()),
            None => (1, rest),
        },
    };
    let Some(meaning) = word_meaning(word) else {
        return Err(unknown_word(digits, word, multiplier != 1));
    };
    let limit = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("the limit must be at most {MAX_LIMIT}"))?;
    Ok((limit, meaning))
}

/// Why `word` is not a word after a limit, and what was probably meant.
fn unknown_word(digits: &str, word: &str, after_multiplier: bool) -> String {
    if word.chars().any(|c| !c.is_alphabetic()) {
        return format!("{word:?} after the limit is not a word: {EXPECTED}");
    }
    // A multiplier people may try: the rest is a word once it is taken off.
    let after = |prefix: char| {
        word.strip_prefix(prefix)
            .filter(|rest| !after_multiplier && word_meaning(rest).is_some())
    };
    if let Some(rest) = after('m') {
        return format!(
            "\"m\" is not a multiplier of the limit (milli?): write M for a million \
             ({digits}M{rest}), or k for a thousand"
        );
    }
    if after('T').is_some() {
        return format!("the largest multiplier is G (10^9); limits go up to {MAX_LIMIT}");
    }
    if word == "b" {
        return "\"b\" could be bits or bytes: write B or bytes for bytes".into();
    }
    let known = WORDS
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .chain(["B"]);
    format!(
        "unknown word {word:?} after the limit{}; use req (counts requests), tok or B (count \
         weight, in tokens or bytes), or nothing (counts weight)",
        suggestion(word, known)
    )
}

/// Reads the part after the `/`: the window.
fn parse_window(right: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(right);
    let unit = unit.trim();
    if unit.starts_with(['.', ',']) {
        return Err("the window must be a whole number of a unit: write 1500ms, not 1.5s".into());
    }
    let count = if digits.is_empty() {
        1
    } else {
        parse_number(digits, "the window count")?
    };
    if unit.is_empty() {
        return Err(format!(
            "the window needs a unit: ns us ms s min h d w ({EXPECTED})"
        ));
    }
    let unit_ns = match window_unit(unit) {
        Some(ns) => ns,
        None if unit == "M" => {
            return Err("\"M\" could be minutes or months: write min for minutes".into());
        }
        None if ["mo", "month", "months", "y", "yr", "year", "years"]
            .contains(&unit.to_lowercase().as_str()) =>
        {
            return Err("months and years vary in length: write days, as in 30d or 365d".into());
        }
        None => {
            let known = UNITS.iter().flat_map(|(names, _)| names.iter().copied());
            return Err(format!(
                "unknown time unit {unit:?}{}; use ns us ms s min h d w",
                suggestion(unit, known)
            ));
        }
    };
    count
        .checked_mul(unit_ns)
        .filter(|ns| u128::from(*ns) <= MAX_WINDOW.as_nanos())
        .ok_or_else(|| "the window must be at most 366 days".into())
}

impl FromStr for Rate {
    type Err = Error;

    /// Parses the text form documented on [`Rate`]: `10/s`, `600/min`,
    /// `10000/day`, `90000tok/min`, `60req/min`, `5/2s`, `1_000/100ms`, `10k/s`.
    fn from_str(text: &str) -> Result<Rate, Error> {
        let invalid = |reason: String| Error::InvalidRate {
            rate: text.to_string(),
            reason,
        };
        let (left, right) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid(EXPECTED.into()))?;
        let (limit, (counts, unit)) = parse_left(left.trim()).map_err(invalid)?;
        let window_ns = parse_window(right.trim()).map_err(invalid)?;
        let rate = Rate {
            limit,
            window: Duration::from_nanos(window_ns),
            counts,
            unit,
        };
        rate.rule().map_err(|e| match e {
            Error::InvalidRate { reason, .. } => invalid(reason),
            other => other,
        })?;
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match (self.counts, self.unit) {
            (Counts::Requests, _) => "req",
            (Counts::Weight, None) => "",
            (Counts::Weight, Some(unit)) => unit.symbol(),
        };
        write!(f, "{}{word}/", self.limit)?;
        let ns = self.window.as_nanos();
        if ns == 0 {
            return write!(f, "0s");
        }
        let (name, unit) = PRINT_UNITS
            .iter()
            .find(|(_, unit)| ns.is_multiple_of(u128::from(*unit)))
            .copied()
            .unwrap_or(("ns", 1));
        let count = ns / u128::from(unit);
        if count == 1 {
            write!(f, "{name}")
        } else {
            write!(f, "{count}{name}")
        }
    }
}

#[cfg(test)]
mod tests;
