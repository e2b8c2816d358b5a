//! What one worker measured: its calls, admissions, latency histogram (log-linear, 16
//! buckets per power of two) and per-slice timeline, and their text form between processes.

use std::fmt::Write as _;

use crate::SLICE_NS;

/// Sub-buckets per power of two: 16, so a bucket spans at most 1/16 of its value.
const SUB_BITS: u32 = 4;
/// Buckets: values below 32 exactly, then 16 per power of two up to 2^64.
const HIST_LEN: usize = 32 + 59 * 16;

fn bucket(ns: u64) -> usize {
    if ns < 32 {
        ns as usize
    } else {
        let exponent = 63 - ns.leading_zeros();
        let mantissa = (ns >> (exponent - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        32 + (exponent as usize - 5) * 16 + mantissa as usize
    }
}

/// The middle of a bucket's range.
fn bucket_value(index: usize) -> u64 {
    if index < 32 {
        index as u64
    } else {
        let exponent = ((index - 32) / 16 + 5) as u32;
        let mantissa = ((index - 32) % 16) as u64;
        let width = 1u64 << (exponent - SUB_BITS);
        (16 + mantissa) * width + width / 2
    }
}

/// What one worker measured.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) calls: u64,
    pub(crate) admitted: u64,
    pub(crate) max_ns: u64,
    pub(crate) hist: Vec<u64>,
    /// Calls completed in each `SLICE_NS` slice after the start.
    pub(crate) slices: Vec<u64>,
}

impl Stats {
    pub(crate) fn new(slices: usize) -> Stats {
        Stats {
            calls: 0,
            admitted: 0,
            max_ns: 0,
            hist: vec![0; HIST_LEN],
            slices: vec![0; slices],
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, latency: u64, since_start: u64, admitted: bool) {
        self.calls += 1;
        self.admitted += u64::from(admitted);
        self.max_ns = self.max_ns.max(latency);
        self.hist[bucket(latency)] += 1;
        let slice = ((since_start / SLICE_NS) as usize).min(self.slices.len() - 1);
        self.slices[slice] += 1;
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        self.calls += other.calls;
        self.admitted += other.admitted;
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            *a += b;
        }
    }

    pub(crate) fn percentile(&self, q: f64) -> u64 {
        let total: u64 = self.hist.iter().sum();
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_value(index).min(self.max_ns);
            }
        }
        self.max_ns
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = format!(
            "calls {} admitted {} max {}\nhist",
            self.calls, self.admitted, self.max_ns
        );
        for (index, count) in self.hist.iter().enumerate().filter(|(_, c)| **c > 0) {
            let _ = write!(out, " {index}:{count}");
        }
        out.push_str("\nslices");
        for count in &self.slices {
            let _ = write!(out, " {count}");
        }
        out.push('\n');
        out
    }

    pub(crate) fn decode(text: &str) -> Option<Stats> {
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .step_by(2)
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        let mut stats = Stats::new(1);
        let [calls, admitted, max_ns] = head[..] else {
            return None;
        };
        (stats.calls, stats.admitted, stats.max_ns) = (calls, admitted, max_ns);
        for pair in lines.next()?.strip_prefix("hist")?.split_whitespace() {
            let (index, count) = pair.split_once(':')?;
            *stats.hist.get_mut(index.parse::<usize>().ok()?)? = count.parse().ok()?;
        }
        stats.slices = lines
            .next()?
            .strip_prefix("slices")?
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        Some(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let index = bucket(ns);
            assert!(index >= last && index < HIST_LEN, "{ns}");
            last = index;
            let mid = bucket_value(index) as f64;
            assert!(
                (mid - ns as f64).abs() <= ns as f64 / 16.0 + 1.0,
                "{ns} -> {mid}"
            );
        }
    }

    #[test]
    fn stats_round_trip() {
        let mut stats = Stats::new(3);
        stats.record(40, 0, true);
        stats.record(1_000_000, 25_000_000, false);
        let back = Stats::decode(&stats.encode()).unwrap();
        assert_eq!((back.calls, back.admitted, back.max_ns), (2, 1, 1_000_000));
        assert_eq!(back.hist, stats.hist);
        assert_eq!(back.slices, vec![1, 0, 1]);
        assert_eq!(back.percentile(0.5), bucket_value(bucket(40)));
    }
}
