//! Durations on the command line (`--timeout 60s`, `--interval 500ms`) and times in reports.

use std::time::{Duration, SystemTime};

/// Parses `NUMBER[UNIT]`: `60s`, `1.5s`, `500ms`, `2min`, `1h`; a bare number is seconds, as
/// for `flock -w` and `timeout`. Units: ns us ms s sec m min h d.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; expected NUMBER[UNIT] as in 60s, 500ms, 2min")
    })?;
    let unit_seconds = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ns us ms s min h d"
            ));
        }
    };
    Duration::try_from_secs_f64(value * unit_seconds)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// Parses a `--timeout`: a duration, or `inf` (also `infinity`, `forever`, `none`) to wait
/// as long as it takes ([`Duration::MAX`]).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match text.trim().to_lowercase().as_str() {
        "inf" | "infinity" | "forever" | "none" => Ok(Duration::MAX),
        _ => parse_duration(text).map_err(|e| format!("{e}, or inf to wait as long as it takes")),
    }
}

/// A timeout for people: `30s`, or `inf`.
pub fn format_timeout(timeout: Duration) -> String {
    if timeout == Duration::MAX {
        "inf".into()
    } else {
        format_duration(timeout)
    }
}

/// A short human form: `850us`, `83ms`, `1.2s`, `12m03s`, `3h20m`, `2d04h`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration < Duration::from_millis(1) {
        format!("{}us", duration.as_micros())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if seconds < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else if seconds < 86_400 {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    } else {
        format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600)
    }
}

/// Nanoseconds in a `Duration`, saturating (for JSON).
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, nanos)
}

/// RFC 3339 in UTC, to the second: `2025-01-31T12:00:00Z`.
pub fn format_utc(time: SystemTime) -> String {
    let seconds = unix_nanos(time) / 1_000_000_000;
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, from "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn parses_timeouts_including_infinity() {
        assert_eq!(parse_timeout("inf"), Ok(Duration::MAX));
        assert_eq!(parse_timeout("INF"), Ok(Duration::MAX));
        assert_eq!(parse_timeout("forever"), Ok(Duration::MAX));
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_timeout("soon").unwrap_err().contains("inf"));
        assert_eq!(format_timeout(Duration::MAX), "inf");
        assert_eq!(format_timeout(Duration::from_millis(50)), "50ms");
    }

    #[test]
    fn formats_durations_and_dates() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850us");
        assert_eq!(format_duration(Duration::from_millis(83)), "83ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(723)), "12m03s");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_utc(time), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
