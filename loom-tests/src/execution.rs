//! One explored execution: its calls and how each ended, the committed history rebuilt from
//! the final ring, and the checks of every invariant.

use super::*;

/// How one acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It returned.
    Returned(Outcome),
    /// Its thread was killed during it.
    Crashed,
}

/// One acquire of one execution. Thread 0 is the setup; modelled threads are 1, 2, ...
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub(crate) thread: usize,
    pub(crate) index: usize,
    pub(crate) op: Op,
    pub(crate) ended: Ended,
}

impl Call {
    fn admitted(&self) -> Option<Record> {
        match self.ended {
            Ended::Returned(Outcome::Admitted(record)) => Some(record),
            _ => None,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.thread == 0 {
            "setup".to_string()
        } else {
            format!("thread {}", self.thread)
        };
        write!(
            f,
            "{who} acquire {} (now {}, weight {})",
            self.index, self.op.now, self.op.weight
        )
    }
}

pub(crate) fn pattern(calls: &[Call], threads: usize) -> String {
    let mut out = String::new();
    for thread in 1..=threads {
        out.push('[');
        for call in calls.iter().filter(|call| call.thread == thread) {
            match call.ended {
                Ended::Returned(Outcome::Admitted(record)) => write!(out, "A{}", record.seq),
                Ended::Returned(Outcome::Denied { rate, .. }) => write!(out, "D{rate}"),
                Ended::Returned(other) => write!(out, "{other:?}"),
                Ended::Crashed => write!(out, "X"),
            }
            .unwrap();
            out.push(' ');
        }
        out.push(']');
    }
    out
}

/// One finished execution, ready to be checked.
pub(crate) struct Execution<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) calls: &'a [Call],
    /// The final ring, sequence numbers relative to [`Scenario::first_seq`].
    pub(crate) ring: &'a [Record],
    /// The final lap counter.
    pub(crate) laps: u64,
}

/// The committed history rebuilt from the final ring and the returned outcomes.
pub(crate) struct History {
    /// `records[k]` is record `k` (index 0 is the sentinel); `None` where nothing tells.
    records: Vec<Option<Record>>,
    /// `owner[k]`: the call whose record `k` is (index into the calls).
    pub(crate) owner: Vec<Option<usize>>,
}

impl Execution<'_> {
    /// The records in the final ring that are real (not the sentinel, not a fake previous-lap
    /// record of the new ring), by sequence number.
    fn ring_records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .ring
            .iter()
            .copied()
            .filter(|r| r.seq != 0 && (r.seq as i32) > 0)
            .collect();
        records.sort_by_key(|r| r.seq);
        records
    }

    pub(crate) fn crashed_call(&self) -> Option<usize> {
        self.calls.iter().position(|c| c.ended == Ended::Crashed)
    }

    /// The newest sequence number anyone knows of.
    fn newest(&self) -> u32 {
        let in_ring = self.ring_records().last().map_or(0, |r| r.seq);
        let told = self
            .calls
            .iter()
            .filter_map(Call::admitted)
            .map(|r| r.seq)
            .max()
            .unwrap_or(0);
        in_ring.max(told)
    }

    pub(crate) fn history(&self) -> History {
        let n = self.newest() as usize;
        let mut records = vec![None; n + 1];
        records[0] = Some(Record::SENTINEL);
        for call in self.calls.iter().filter_map(Call::admitted) {
            records[call.seq as usize] = Some(call);
        }
        // The ring wins: it is what later acquires read.
        for record in self.ring_records() {
            records[record.seq as usize] = Some(record);
        }
        let mut owner = vec![None; n + 1];
        for (k, record) in records.iter().enumerate().skip(1) {
            let Some(record) = record else { continue };
            owner[k] = self
                .calls
                .iter()
                .position(|c| c.admitted() == Some(*record))
                .or_else(|| {
                    // Not told to anyone: the crashed acquire's, if still in the ring.
                    let in_ring = self.ring_records().contains(record);
                    self.crashed_call().filter(|_| in_ring)
                });
        }
        History { records, owner }
    }

    pub(crate) fn check(&self, invariant: Invariant) -> Result<(), String> {
        match invariant {
            Invariant::NoOverAdmission => self.no_over_admission(),
            Invariant::AllOrNothing => self.all_or_nothing(),
            Invariant::NoFalseDenial => self.no_false_denial(),
            Invariant::NoLostCommit => self.no_lost_commit(),
            Invariant::Reference => self.reference(),
        }
    }

    /// (1) Over the admissions (every acquire told `Admitted`, plus the crashed acquire's
    /// record if it committed), no window of any rate holds more than the limit.
    fn no_over_admission(&self) -> Result<(), String> {
        let history = self.history();
        let mut admissions: Vec<(u64, u64, usize)> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.admitted().map(|r| (r.ts, c.op.weight, i)))
            .collect();
        if let Some(crashed) = self.crashed_call() {
            for (k, owner) in history.owner.iter().enumerate() {
                if *owner == Some(crashed) {
                    let record = history.records[k].unwrap();
                    admissions.push((record.ts, self.calls[crashed].op.weight, crashed));
                }
            }
        }
        for (index, rule) in self.scenario.rules.iter().enumerate() {
            for &(t, _, _) in &admissions {
                let inside: Vec<_> = admissions
                    .iter()
                    .filter(|&&(ts, _, _)| ts > t.saturating_sub(rule.window) && ts <= t)
                    .collect();
                let used: u64 = inside
                    .iter()
                    .map(|&&(_, w, _)| Reference::units(rule, w))
                    .sum();
                if used > rule.limit {
                    let who: Vec<String> = inside
                        .iter()
                        .map(|&&(ts, _, i)| format!("{} at {ts}", self.calls[i]))
                        .collect();
                    return Err(format!(
                        "rate {index} ({rule:?}) holds {used} > {} in ({}, {t}]: {}",
                        rule.limit,
                        t.saturating_sub(rule.window),
                        who.join("; ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// (2) Every admitted acquire owns one record whose weight is its weight; a crashed one
    /// owns at most one, with its full weight.
    fn all_or_nothing(&self) -> Result<(), String> {
        let history = self.history();
        for (i, call) in self.calls.iter().enumerate() {
            let owned: Vec<usize> = (1..history.owner.len())
                .filter(|&k| history.owner[k] == Some(i))
                .collect();
            let admitted = call.admitted().is_some();
            if admitted && owned.len() != 1 {
                return Err(format!(
                    "{call} was admitted but the history holds {} records of it: it is \
                     visible in no rate",
                    owned.len()
                ));
            }
            if !admitted && call.ended != Ended::Crashed && !owned.is_empty() {
                return Err(format!(
                    "{call} was not admitted but owns records {owned:?}"
                ));
            }
            if call.ended == Ended::Crashed && owned.len() > 1 {
                return Err(format!("{call} crashed but owns records {owned:?}"));
            }
            for k in owned {
                let (Some(record), Some(previous)) = (history.records[k], history.records[k - 1])
                else {
                    continue;
                };
                let charged = record.cum.wrapping_sub(previous.cum);
                if u64::from(charged) != call.op.weight {
                    return Err(format!(
                        "{call} is record {k}, counted once by the request rates but charged \
                         {charged} (not {}) to the weight rates",
                        call.op.weight
                    ));
                }
            }
        }
        Ok(())
    }

    /// (3) Every denial is the reference model's answer on a prefix of the history that its
    /// thread's own admissions allow.
    fn no_false_denial(&self) -> Result<(), String> {
        let history = self.history();
        let n = history.records.len() - 1;
        let setup = self.calls.iter().filter(|c| c.thread == 0).count();
        'calls: for call in self.calls {
            let Ended::Returned(denial @ Outcome::Denied { .. }) = call.ended else {
                continue;
            };
            let own = |before: bool| {
                self.calls
                    .iter()
                    .filter(move |c| c.thread == call.thread && (c.index < call.index) == before)
                    .filter(|c| c.index != call.index)
                    .filter_map(Call::admitted)
                    .map(|r| r.seq as usize)
            };
            let low = own(true).max().unwrap_or(0).max(setup);
            let high = own(false).min().map_or(n, |seq| seq - 1);
            let mut answers = Vec::new();
            for p in low..=high.min(n) {
                let Some(reference) = self.prefix(&history, p) else {
                    continue;
                };
                let answer = reference.answer(&self.scenario.rules, call.op.now, call.op.weight);
                if answer == denial {
                    continue 'calls;
                }
                answers.push(format!("{p}: {answer:?}"));
            }
            return Err(format!(
                "{call} returned {denial:?}, but the reference model answers, on the \
                 prefixes its position allows: [{}]",
                answers.join(", ")
            ));
        }
        Ok(())
    }

    /// The reference model holding records `1..=p` of the history, if they are all known.
    fn prefix(&self, history: &History, p: usize) -> Option<Reference> {
        let mut log = Vec::new();
        for k in 1..=p {
            let record = history.records[k]?;
            let owner = history.owner[k]?;
            log.push((record.ts, self.calls[owner].op.weight));
        }
        Some(Reference { log })
    }

    /// (4) Sequence numbers unique and contiguous; the final ring holds exactly what the
    /// acquires were told.
    fn no_lost_commit(&self) -> Result<(), String> {
        let n = self.newest();
        let capacity = self.scenario.capacity;
        let mut told: Vec<Option<(usize, Record)>> = vec![None; n as usize + 1];
        for (i, call) in self.calls.iter().enumerate() {
            let Some(record) = call.admitted() else {
                continue;
            };
            if record.seq == 0 {
                return Err(format!("{call} was told record 0, the sentinel"));
            }
            if let Some((other, _)) = told[record.seq as usize] {
                return Err(format!(
                    "record {} was committed twice: by {} and by {call}",
                    record.seq, self.calls[other]
                ));
            }
            told[record.seq as usize] = Some((i, record));
        }
        let ring = self.ring_records();
        let mut unclaimed = Vec::new();
        for record in &ring {
            match told[record.seq as usize] {
                Some((_, mine)) if mine == *record => {}
                Some((i, mine)) => {
                    return Err(format!(
                        "{} was told {mine:?} but the log holds {record:?}: its commit was lost",
                        self.calls[i]
                    ));
                }
                None => unclaimed.push(*record),
            }
        }
        let crashed = self.crashed_call();
        if unclaimed.len() > usize::from(crashed.is_some()) {
            return Err(format!(
                "the log holds records that no acquire was told: {unclaimed:?}"
            ));
        }
        for k in 1..=n {
            let in_ring = ring.iter().any(|r| r.seq == k);
            if told[k as usize].is_none() && !in_ring {
                return Err(format!(
                    "record {k} is neither in the log nor told to any acquire"
                ));
            }
            // Records n - capacity + 1 ..= n must still be in the ring.
            if k + capacity > n && !in_ring {
                let (i, mine) = told[k as usize].unwrap();
                return Err(format!(
                    "{} was told {mine:?}, but the ring no longer holds it while it should: \
                     its commit was lost",
                    self.calls[i]
                ));
            }
        }
        // The 64-bit total counts a lap each time the sequence number passes 0. A thread
        // killed between committing that record and counting the lap leaves it one short
        // (documented on `Words::admitted`).
        let first = self.scenario.first_seq;
        let wrapping = (1..=n).find(|&k| first.wrapping_add(k) == 0);
        let expected = u64::from(wrapping.is_some());
        let owner_killed = wrapping.is_some_and(|k| {
            let owner = self.history().owner[k as usize];
            owner.is_some() && owner == self.crashed_call()
        });
        if self.laps != expected && !(owner_killed && self.laps + 1 == expected) {
            return Err(format!(
                "the lap counter is {} after {n} records from {first}: expected {expected}",
                self.laps
            ));
        }
        Ok(())
    }

    /// (5) Every record is the reference model's admission on the history before it, and
    /// every other outcome is one the reference model can give.
    fn reference(&self) -> Result<(), String> {
        let history = self.history();
        for k in 1..history.records.len() {
            let (Some(record), Some(owner)) = (history.records[k], history.owner[k]) else {
                return Err(format!("record {k} is unknown or owned by no acquire"));
            };
            let call = &self.calls[owner];
            let Some(reference) = self.prefix(&history, k - 1) else {
                continue;
            };
            let answer = reference.answer(&self.scenario.rules, call.op.now, call.op.weight);
            if answer != Outcome::Admitted(record) {
                return Err(format!(
                    "{call} committed {record:?}; on the history before it the reference \
                     model answers {answer:?}"
                ));
            }
        }
        for call in self.calls {
            match call.ended {
                Ended::Crashed | Ended::Returned(Outcome::Admitted(_) | Outcome::Denied { .. }) => {
                }
                Ended::Returned(other) => {
                    let answer = Reference::default().answer(
                        &self.scenario.rules,
                        call.op.now,
                        call.op.weight,
                    );
                    if answer != other {
                        return Err(format!(
                            "{call} returned {other:?}; the reference model answers {answer:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Execution<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  rules: {:?}", self.scenario.rules)?;
        if self.scenario.first_seq != 0 {
            writeln!(
                f,
                "  sequence numbers relative to {}",
                self.scenario.first_seq
            )?;
        }
        for call in self.calls {
            writeln!(f, "  {call} -> {:?}", call.ended)?;
        }
        write!(f, "  final ring:")?;
        for (slot, record) in self.ring.iter().enumerate() {
            write!(f, "\n    slot {slot}: {record:?}")?;
        }
        Ok(())
    }
}
