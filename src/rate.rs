//! [`Rate`]: a limit over a sliding window, what it counts, its validation and its text form.

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

/// At most `limit` in any sliding window of length `window`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use hostlimit::Rate;
///
/// let per_second = Rate::new(10, Duration::from_secs(1));
/// let tokens: Rate = "90000tok/min".parse().unwrap();
/// let calls: Rate = "60req/min".parse().unwrap();
/// assert_eq!(per_second.to_string(), "10/s");
/// assert_eq!(tokens.limit(), 90_000);
/// assert_eq!(calls, Rate::requests(60, Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u64,
    window: Duration,
    counts: Counts,
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
        }
    }

    /// At most `limit` acquires in any window of `window`, whatever their weight.
    pub fn requests(limit: u64, window: Duration) -> Rate {
        Rate {
            limit,
            window,
            counts: Counts::Requests,
        }
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
        Ok(Rule {
            limit: self.limit,
            window: self.window.as_nanos() as u64,
            requests: self.counts == Counts::Requests,
        })
    }

    /// The rate a protocol rule stands for (the inverse of [`Rate::rule`]).
    pub(crate) fn from_rule(rule: &Rule) -> Rate {
        let window = Duration::from_nanos(rule.window);
        if rule.requests {
            Rate::requests(rule.limit, window)
        } else {
            Rate::new(rule.limit, window)
        }
    }
}

const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("second", 1_000_000_000),
    ("seconds", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("minute", 60_000_000_000),
    ("minutes", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("hour", 3_600_000_000_000),
    ("hours", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("day", 86_400_000_000_000),
    ("days", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
    ("week", 604_800_000_000_000),
    ("weeks", 604_800_000_000_000),
];

/// The units used when printing, largest first.
const PRINT_UNITS: &[(&str, u64)] = &[
    ("w", 604_800_000_000_000),
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("min", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

fn parse_number(digits: &str) -> Option<u64> {
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() || digits.starts_with('_') {
        None
    } else {
        clean.parse().ok()
    }
}

impl FromStr for Rate {
    type Err = Error;

    /// Parses `LIMIT[WORD]/[N]UNIT`: `10/s`, `600/min`, `10000/day`, `90000tok/min`,
    /// `60req/min`, `5/2s`, `1_000/100ms`. `req`, `reqs` and `requests` count requests; any
    /// other word (`tok`, `bytes`, ...) or none counts weight. Units: ns us ms s sec m min h
    /// d w and their long names.
    fn from_str(text: &str) -> Result<Rate, Error> {
        let invalid = |reason: &str| Error::InvalidRate {
            rate: text.to_string(),
            reason: reason.into(),
        };
        let expected = "expected LIMIT[WORD]/[N]UNIT, as in 10/s, 600/min, 90000tok/min, 60req/min";
        let (left, right) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid(expected))?;
        let (digits, word) = split_number(left.trim());
        let limit = parse_number(digits).ok_or_else(|| invalid("the limit is not a number"))?;
        let counts = match word.trim() {
            "req" | "reqs" | "request" | "requests" => Counts::Requests,
            w if w.chars().all(|c| c.is_ascii_alphabetic()) => Counts::Weight,
            _ => return Err(invalid(expected)),
        };
        let (count, unit) = split_number(right.trim());
        let count = if count.is_empty() {
            1
        } else {
            parse_number(count).ok_or_else(|| invalid("the window count is not a number"))?
        };
        let unit_ns = UNITS
            .iter()
            .find(|(name, _)| *name == unit.trim())
            .map(|(_, ns)| *ns)
            .ok_or_else(|| invalid("unknown time unit; use ns us ms s min h d w"))?;
        let window_ns = count
            .checked_mul(unit_ns)
            .ok_or_else(|| invalid("the window is too long"))?;
        let rate = Rate {
            limit,
            window: Duration::from_nanos(window_ns),
            counts,
        };
        rate.rule().map_err(|e| match e {
            Error::InvalidRate { reason, .. } => Error::InvalidRate {
                rate: text.to_string(),
                reason,
            },
            other => other,
        })?;
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.counts {
            Counts::Weight => "",
            Counts::Requests => "req",
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
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("10/s", Rate::new(10, Duration::from_secs(1))),
            ("600/min", Rate::new(600, Duration::from_secs(60))),
            ("10000/day", Rate::new(10_000, Duration::from_secs(86_400))),
            ("90000tok/min", Rate::new(90_000, Duration::from_secs(60))),
            ("60req/min", Rate::requests(60, Duration::from_secs(60))),
            ("5/2s", Rate::new(5, Duration::from_secs(2))),
            ("1_000/100ms", Rate::new(1_000, Duration::from_millis(100))),
            (" 3 / 1h ", Rate::new(3, Duration::from_secs(3600))),
        ];
        for (text, rate) in cases {
            assert_eq!(text.parse::<Rate>().unwrap(), rate, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "10/s",
            "600/min",
            "10000/d",
            "90000/min",
            "60req/min",
            "5/2s",
            "7/100ms",
            "3/90s",
        ] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        for text in [
            "",
            "10",
            "x/s",
            "10/",
            "10/parsec",
            "0/s",
            "10/0s",
            "10 tok!/s",
            "5000000000/s",
            "1/400d",
        ] {
            let err = text.parse::<Rate>().unwrap_err();
            assert!(matches!(err, Error::InvalidRate { .. }), "{text}: {err}");
            assert!(err.to_string().contains("invalid rate"), "{err}");
        }
    }

    #[test]
    fn validation_rejects_zero_limit_and_zero_window() {
        assert!(Rate::new(0, Duration::from_secs(1)).rule().is_err());
        assert!(Rate::new(1, Duration::ZERO).rule().is_err());
        assert!(
            Rate::new(MAX_LIMIT + 1, Duration::from_secs(1))
                .rule()
                .is_err()
        );
        assert!(Rate::new(MAX_LIMIT, Duration::from_secs(1)).rule().is_ok());
    }
}
