//! Pacing: shaping a limiter's rates so that the other side of the limit (an API that counts
//! requests by their arrival) sees no more than the limit either.
//!
//! The windows are exact in the timestamps the log records, but what a downstream service
//! sees is when each caller's request reaches it, a little later and by a varying amount
//! (a fork and exec, a connection, scheduling). Two things keep its view within the limit:
//!
//! * **A margin** lengthens every window: `5/s` with a margin of 100 ms becomes `5/1100ms`,
//!   so any six admissions span at least 1.1 s, and the downstream sees at most five in any
//!   second as long as the requests' delays differ by less than 100 ms.
//! * **Spacing** adds one rate that counts requests: at most `burst` per `burst × spacing`,
//!   where `spacing` is the longest `window / limit` of the (margined) rates, so admissions
//!   come evenly instead of a full window's worth at once followed by a pause. `5/s` paced
//!   with burst 1 admits at most one request per 200 ms.
//!
//! Both are a transformation of the rates, applied before the file is created or checked:
//! the file holds the shaped rates, so every process that uses it paces, whatever it was
//! opened with. A process that opens it must ask for the same rates and the same pacing (or
//! attach and adopt the file's rates).

use std::time::Duration;

use crate::error::Error;
use crate::protocol::MAX_RATES;
use crate::rate::{MAX_WINDOW, Rate};

/// How to shape rates for a downstream service's view; see [`Builder::pace`](super::Builder::pace).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use hostlimit::{Pacing, Rate};
///
/// let rates: Vec<Rate> = vec!["5/s".parse()?, "100/min".parse()?];
/// let paced = Pacing::spaced().margin(Duration::from_millis(100)).apply(&rates)?;
/// let text: Vec<String> = paced.iter().map(Rate::to_string).collect();
/// assert_eq!(text, ["5/1100ms", "100/60100ms", "1req/601ms"]);
/// # Ok::<(), hostlimit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pacing {
    burst: Option<u64>,
    margin: Duration,
}

impl Pacing {
    /// No shaping: the rates as given (the default).
    pub fn none() -> Pacing {
        Pacing::default()
    }

    /// Admissions spaced evenly: at most one per `window / limit` of the slowest rate.
    pub fn spaced() -> Pacing {
        Pacing {
            burst: Some(1),
            ..Pacing::default()
        }
    }

    /// Spacing that allows bursts of up to `burst` admissions (at most `burst` per
    /// `burst × window / limit`); a burst of 0 turns spacing off.
    pub fn burst(self, burst: u64) -> Pacing {
        Pacing {
            burst: (burst > 0).then_some(burst),
            ..self
        }
    }

    /// Every window lengthened by `margin`.
    pub fn margin(self, margin: Duration) -> Pacing {
        Pacing { margin, ..self }
    }

    /// Whether this shapes anything.
    pub fn is_none(&self) -> bool {
        self.burst.is_none() && self.margin.is_zero()
    }

    /// The rates shaped: each window lengthened by the margin, then the spacing rate, if
    /// any, after them (left out when one of the rates already implies it).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRate`] if a window with its margin exceeds [`MAX_WINDOW`];
    /// [`Error::InvalidRates`] for no rates, or when the spacing rate would make more than
    /// 8 rates.
    pub fn apply(&self, rates: &[Rate]) -> Result<Vec<Rate>, Error> {
        let mut shaped = Vec::with_capacity(rates.len() + 1);
        for rate in rates {
            let window = rate.window().saturating_add(self.margin);
            if window > MAX_WINDOW {
                return Err(Error::InvalidRate {
                    rate: rate.to_string(),
                    reason: format!(
                        "with a margin of {:?} the window exceeds 366 days",
                        self.margin
                    ),
                });
            }
            shaped.push(rate.with_window(window));
        }
        let Some(burst) = self.burst else {
            return Ok(shaped);
        };
        let spacing = shaped
            .iter()
            .filter(|r| r.limit() > 0)
            .map(|r| r.window().as_nanos().div_ceil(u128::from(r.limit())))
            .max()
            .ok_or_else(|| Error::InvalidRates("at least one rate is needed".into()))?;
        let window = Duration::from_nanos(
            u64::try_from(spacing.saturating_mul(u128::from(burst))).unwrap_or(u64::MAX),
        )
        .min(MAX_WINDOW);
        let pace = Rate::requests(burst, window);
        // A rate that counts requests, admits at most `burst` and has a window at least as
        // long already spaces admissions as much.
        let implied = shaped.iter().any(|r| {
            r.counts() == crate::Counts::Requests && r.limit() <= burst && r.window() >= window
        });
        if !implied {
            if shaped.len() >= MAX_RATES {
                return Err(Error::InvalidRates(format!(
                    "spacing adds a rate ({pace}), and a limiter has at most {MAX_RATES} rates"
                )));
            }
            shaped.push(pace);
        }
        Ok(shaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rates: &[Rate]) -> Vec<String> {
        rates.iter().map(Rate::to_string).collect()
    }

    fn rates(texts: &[&str]) -> Vec<Rate> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn no_pacing_leaves_the_rates_alone() {
        let given = rates(&["5/s", "100/min", "90000tok/min"]);
        assert_eq!(Pacing::none().apply(&given).unwrap(), given);
        assert!(Pacing::none().is_none());
        assert!(Pacing::spaced().burst(0).is_none());
        assert!(!Pacing::spaced().is_none());
        assert!(!Pacing::none().margin(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn spacing_follows_the_slowest_rate() {
        let given = rates(&["5/s", "100/min"]);
        assert_eq!(
            texts(&Pacing::spaced().apply(&given).unwrap()),
            ["5/s", "100/min", "1req/600ms"]
        );
        assert_eq!(
            texts(&Pacing::spaced().burst(3).apply(&rates(&["5/s"])).unwrap()),
            ["5/s", "3req/600ms"]
        );
        // Requests and tokens: one call per second.
        assert_eq!(
            texts(
                &Pacing::spaced()
                    .apply(&rates(&["60req/min", "90000tok/min"]))
                    .unwrap()
            ),
            ["60req/min", "90000tok/min", "1req/s"]
        );
        // Rounded up to whole nanoseconds: never faster than the rate.
        assert_eq!(
            texts(&Pacing::spaced().apply(&rates(&["3/s"])).unwrap()),
            ["3/s", "1req/333333334ns"]
        );
    }

    #[test]
    fn a_margin_lengthens_every_window_and_the_spacing() {
        let paced = Pacing::spaced()
            .margin(Duration::from_millis(100))
            .apply(&rates(&["5/s", "60req/min"]))
            .unwrap();
        assert_eq!(
            texts(&paced),
            ["5/1100ms", "60req/60100ms", "1req/1001666667ns"]
        );
        let only_margin = Pacing::none()
            .margin(Duration::from_millis(50))
            .apply(&rates(&["90000tok/min"]))
            .unwrap();
        assert_eq!(texts(&only_margin), ["90000tok/60050ms"]);
        let too_long = Pacing::none()
            .margin(Duration::from_secs(1))
            .apply(&rates(&["1/366d"]));
        assert!(
            matches!(too_long, Err(Error::InvalidRate { .. })),
            "{too_long:?}"
        );
    }

    #[test]
    fn spacing_is_left_out_when_a_rate_implies_it_and_refused_past_eight_rates() {
        assert_eq!(
            texts(&Pacing::spaced().apply(&rates(&["1req/s"])).unwrap()),
            ["1req/s"]
        );
        let eight = rates(&["1/s", "2/s", "3/s", "4/s", "5/s", "6/s", "7/s", "8/s"]);
        assert!(matches!(
            Pacing::spaced().apply(&eight),
            Err(Error::InvalidRates(_))
        ));
        assert!(matches!(
            Pacing::spaced().apply(&[]),
            Err(Error::InvalidRates(_))
        ));
    }
}
