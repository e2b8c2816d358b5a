//! The checks of the contract, over recorded admissions. Each returns a description of the
//! first violation, so that `checks_detect_violations` can show that they can fail.

use super::*;

/// Offset of the ring in a limiter file (`src/layout.rs`).
const RING_OFFSET: usize = 12_288;
/// Bytes per ring slot.
const SLOT_SIZE: usize = 16;

/// Exact sliding windows: for every rate and every instant `t`, the weight (or requests)
/// recorded in `(t - window, t]` is at most the limit.
pub fn check_windows(log: &[Admission], rates: &[Rate]) -> Result<(), String> {
    let mut sorted = log.to_vec();
    sorted.sort_by_key(|a| a.ts);
    for (index, rate) in rates.iter().enumerate() {
        let window = nanos(rate.window());
        let (mut start, mut sum, mut i) = (0, 0u64, 0);
        // The most a window can hold is reached at some admission's timestamp: check the
        // window ending at each distinct timestamp, with every admission at that timestamp.
        while i < sorted.len() {
            let t = sorted[i].ts;
            while i < sorted.len() && sorted[i].ts == t {
                sum += units(rate, sorted[i].weight);
                i += 1;
            }
            while sorted[start].ts.saturating_add(window) <= t {
                sum -= units(rate, sorted[start].weight);
                start += 1;
            }
            if sum > rate.limit() {
                return Err(format!(
                    "rate {index} ({rate}) exceeded: {sum} > {} in the window ending at {t}: {:?}",
                    rate.limit(),
                    &sorted[start..i]
                ));
            }
        }
    }
    Ok(())
}

/// What `rate` had admitted in `(t - window, t]`, according to `log`.
fn used_at(log: &[Admission], rate: &Rate, t: Nanos) -> u64 {
    let window = nanos(rate.window());
    log.iter()
        .filter(|a| a.ts <= t && a.ts.saturating_add(window) > t)
        .map(|a| units(rate, a.weight))
        .sum()
}

/// No false denial, checked conservatively against `log` (which must hold every admission):
/// a denial by rate `r` observed during `[before, after]` is false if at every instant of
/// that interval the admissions recorded in `r`'s window left room for the request. Also: a
/// rate-exhausted denial's retry-after is positive and at most the window (plus the call's
/// own duration); other denial kinds are reported.
pub fn check_denials(log: &[Admission], denials: &[Denial], rates: &[Rate]) -> Result<(), String> {
    for denial in denials {
        if denial.kind != 'X' {
            return Err(format!("unexpected denial kind: {denial:?}"));
        }
        let rate = rates
            .get(denial.rate)
            .ok_or_else(|| format!("denial names no rate: {denial:?}"))?;
        let retry = denial
            .retry
            .ok_or_else(|| format!("exhausted without retry-after: {denial:?}"))?;
        let window = nanos(rate.window());
        if retry == 0 || retry > window + (denial.after - denial.before) {
            return Err(format!(
                "retry-after {retry} ns outside (0, window] for {rate}: {denial:?}"
            ));
        }
        // Use only grows at an admission's timestamp: the most the interval saw is at its
        // start or at one of those timestamps.
        let most = std::iter::once(denial.before)
            .chain(
                log.iter()
                    .map(|a| a.ts)
                    .filter(|&ts| ts > denial.before && ts <= denial.after),
            )
            .map(|t| used_at(log, rate, t))
            .max()
            .unwrap_or(0);
        if most + units(rate, denial.weight) <= rate.limit() {
            return Err(format!(
                "false denial by rate {} ({rate}): at most {most} used during the call, \
                 {} asked: {denial:?}",
                denial.rate,
                units(rate, denial.weight)
            ));
        }
    }
    Ok(())
}

/// Each recorded timestamp lies within its call.
pub fn check_stamps(admissions: &[Admission]) -> Result<(), String> {
    match admissions
        .iter()
        .find(|a| a.ts < a.before || a.ts > a.after)
    {
        Some(a) => Err(format!("timestamp outside its call: {a:?}")),
        None => Ok(()),
    }
}

/// The admissions form the whole log: sequence numbers exactly `1..=n`, timestamps never
/// decreasing along them.
pub fn check_sequence(log: &[Admission]) -> Result<(), String> {
    let mut sorted = log.to_vec();
    sorted.sort_by_key(|a| a.seq);
    for (index, pair) in sorted.windows(2).enumerate() {
        if pair[0].seq == pair[1].seq {
            return Err(format!("sequence number used twice: {pair:?}"));
        }
        if pair[1].ts < pair[0].ts {
            return Err(format!(
                "timestamps decrease along the log at {index}: {pair:?}"
            ));
        }
    }
    for (expected, admission) in (1u32..).zip(&sorted) {
        if admission.seq != expected {
            return Err(format!(
                "sequence numbers not 1..={}: {expected} missing (found {admission:?})",
                sorted.len()
            ));
        }
    }
    Ok(())
}

/// The whole admission log as the file holds it (ring records `1..=n`), read straight from
/// the file with the layout of `src/layout.rs`. Only `ts`, `seq` and `weight` are set.
/// Fails if the ring has wrapped (no longer holds the whole history).
pub fn ring_log(path: &Path) -> Result<Vec<Admission>, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let slots: Vec<(u64, u32, u32)> = bytes
        .get(RING_OFFSET..)
        .ok_or("file shorter than the ring offset")?
        .chunks_exact(SLOT_SIZE)
        .map(|slot| {
            let word = u128::from_le_bytes(slot.try_into().expect("16 bytes"));
            (word as u64, (word >> 64) as u32, (word >> 96) as u32)
        })
        .collect();
    let capacity = slots.len();
    if !capacity.is_power_of_two() || slots[0] != (0, 0, 0) {
        return Err(format!(
            "the ring ({capacity} slots) no longer starts with the sentinel: {:?}",
            slots[0]
        ));
    }
    let mut log = Vec::new();
    let mut cum = 0u32;
    for (index, &(ts, slot_cum, seq)) in slots.iter().enumerate().skip(1) {
        if seq as usize != index {
            // A fake record of the initial ring (previous lap): the history ends here.
            if seq != (index as u32).wrapping_sub(capacity as u32) || ts != 0 || slot_cum != 0 {
                return Err(format!("slot {index} holds garbage: {:?}", slots[index]));
            }
            break;
        }
        log.push(Admission {
            before: 0,
            after: 0,
            ts,
            seq,
            weight: u64::from(slot_cum.wrapping_sub(cum)),
        });
        cum = slot_cum;
    }
    Ok(log)
}

/// Every admission a worker recorded is in the file's log, identically (timestamp and
/// weight); returns the log's records no worker recorded.
pub fn match_ring(ring: &[Admission], recorded: &[Admission]) -> Result<Vec<Admission>, String> {
    let mut seen = vec![false; ring.len()];
    for a in recorded {
        let index = (a.seq as usize)
            .checked_sub(1)
            .filter(|&i| i < ring.len())
            .ok_or_else(|| format!("recorded admission missing from the file: {a:?}"))?;
        let r = ring[index];
        if r.ts != a.ts || r.weight != a.weight {
            return Err(format!(
                "recorded admission {a:?} differs from the file's {r:?}"
            ));
        }
        if std::mem::replace(&mut seen[index], true) {
            return Err(format!("admission recorded twice: {a:?}"));
        }
    }
    Ok(ring
        .iter()
        .zip(&seen)
        .filter(|(_, seen)| !**seen)
        .map(|(r, _)| *r)
        .collect())
}

fn admission(ts: Nanos, seq: u32, weight: u64) -> Admission {
    Admission {
        before: ts,
        after: ts,
        ts,
        seq,
        weight,
    }
}

fn exhausted(before: Nanos, after: Nanos, weight: u64, rate: usize, retry: u64) -> Denial {
    Denial {
        before,
        after,
        weight,
        rate,
        retry: Some(retry),
        kind: 'X',
    }
}

/// The checks above are not vacuous: each finds a violation planted in a synthetic log, and
/// accepts the same log without it.
#[test]
fn checks_detect_violations() {
    const S: u64 = 1_000_000_000;
    let rates = [
        Rate::new(3, Duration::from_secs(1)),
        Rate::requests(4, Duration::from_secs(10)),
    ];
    // 3 weight in (t - 1 s, t], 3 requests: fine.
    let good = vec![
        admission(10 * S, 1, 1),
        admission(10 * S + 1, 2, 2),
        admission(11 * S + 1, 3, 1),
    ];
    check_windows(&good, &rates).unwrap();
    check_sequence(&good).unwrap();
    check_stamps(&good).unwrap();
    // One more unit just before 11 s: the window ending there holds 1 + 2 + 1 > 3.
    let mut over = good.clone();
    over.push(admission(11 * S - 1, 4, 1));
    assert!(check_windows(&over, &rates).unwrap_err().contains("rate 0"));
    // A fifth request within 10 s exceeds the request rate (weight 0 counts as a request).
    let mut requests = good.clone();
    requests.push(admission(13 * S, 4, 0));
    requests.push(admission(14 * S, 5, 0));
    check_windows(&requests[..4], &rates).unwrap();
    assert!(
        check_windows(&requests, &rates)
            .unwrap_err()
            .contains("rate 1")
    );
    // Sequence numbers: a gap, a duplicate, a decreasing timestamp.
    let mut gap = good.clone();
    gap[2].seq = 4;
    assert!(check_sequence(&gap).is_err());
    let mut twice = good.clone();
    twice[2].seq = 2;
    assert!(check_sequence(&twice).is_err());
    let mut backwards = good.clone();
    backwards[2].ts = 9 * S;
    assert!(check_sequence(&backwards).is_err());
    let mut outside = good.clone();
    outside[0].after = outside[0].ts - 1;
    assert!(check_stamps(&outside).is_err());
    // Denials: during [10.5 s, 10.6 s] rate 0 holds 3, so weight 1 is rightly denied;
    // during [11.2 s, 11.3 s] it holds 1, so a denial of weight 1 (or 2) is false.
    let right = exhausted(10 * S + S / 2, 10 * S + S / 2 + S / 10, 1, 0, S / 2);
    check_denials(&good, &[right], &rates).unwrap();
    let wrong = exhausted(11 * S + S / 5, 11 * S + S / 5 + S / 10, 2, 0, S / 2);
    assert!(
        check_denials(&good, &[wrong], &rates)
            .unwrap_err()
            .contains("false denial")
    );
    // A denial whose interval contains the admission that fills the window is not false.
    let straddling = exhausted(10 * S - 1, 10 * S + 1, 1, 0, S / 2);
    check_denials(&good, &[straddling], &rates).unwrap();
    let mut no_retry = right;
    no_retry.retry = Some(0);
    assert!(check_denials(&good, &[no_retry], &rates).is_err());
    // The file's log against what workers recorded.
    let unrecorded = match_ring(&good, &good[..2]).unwrap();
    assert_eq!(unrecorded, vec![good[2]]);
    let mut forged = good[1];
    forged.weight = 3;
    assert!(match_ring(&good, &[forged]).is_err());
}
