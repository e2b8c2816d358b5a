//! The Redis backend (feature `redis`): the same limiter, shared by a fleet through one Redis
//! (or Valkey) server instead of a file shared by one host.
//!
//! # The data layout (version 5)
//!
//! Two keys per limiter, both with the name in a hash tag so that they live in one Cluster
//! slot:
//!
//! * `hostlimit:{NAME}:log`: a list, newest first, **one entry per admission** (never one
//!   per unit of weight): 20 bytes, big-endian `SEQ` (u64), `TS` (u64: the recorded
//!   timestamp in microseconds of the server's clock) and `CUM` (u32: the cumulative weight
//!   of admissions `1..=SEQ` modulo 2^32). Sequence numbers are consecutive, so the entry of
//!   sequence `S` is at index `SEQ - S` (the newest `SEQ` is in the head): one `LINDEX`,
//!   checked against the entry's own sequence number.
//! * `hostlimit:{NAME}:head`: a hash: `v` (layout version), `rules` (the rates in canonical
//!   form: each `LIMIT/WINDOW_NS/r|w`, sorted), `rates` (as their owner wrote them), the
//!   head in one binary field named `h5 RULES` (the layout and the rules: one `HGET` of our
//!   field finds the head only if the limiter has our layout and our rates; a caller of
//!   other rates or another layout finds none, and then `v` and `rules` say which, read
//!   only then), and the counters (`denied:I`, `never_fits`, `timed_out`, `undone`,
//!   `kept`). The head is `7 + n` big-endian unsigned 64-bit integers `SEQ, CUM, TS, FIRST,
//!   EXP, TRIM, BOUND_1, ..., NONCE`: the newest admission, the oldest entry's sequence
//!   number (the list's last), when the expiry must next be pushed back, when the next trim
//!   is due, per rate a bound on its window's use, and the nonce of the acquire that made
//!   the newest admission (an async one's: random, 52 bits; 0 for a blocking one, which
//!   nothing undoes), which an undo must name; one `struct.unpack` reads it, and a head of another length
//!   or with a value from 2^53 on is garbage. Rates are numbered in canonical order (the
//!   order of `rules`), whatever order a caller gave them in, so that callers with the
//!   same rates in other orders share each rate's bound and counter. Version 4 kept the
//!   log in a sorted set (score = timestamp, member = the text `SEQ:CUM`), whose insert
//!   (a skiplist node, a dict entry and the member) costs more than a list entry's;
//!   version 3 kept the same head in a field `h` (checked against `v` and `rules` at every
//!   call) with the rates numbered in each caller's order (two callers with one limiter's
//!   rates in different orders read each other's bounds, and could admit past a limit);
//!   version 2 as decimal text (`SEQ:CUM:...`), version 1 in five fields without the
//!   bounds; a limiter of another version is refused, naming both.
//!
//! # The script
//!
//! One Lua script (`src/redis/script.lua`, carrying the layout version) does a whole call
//! atomically on the server: it reads the server's clock (`TIME`) and records
//! `max(server time, last recorded)`. Per rate the head keeps a bound: at least what the
//! window holds, now and later (the exact use when the log was last searched, plus what was
//! admitted since; windows only slide forward). While `bound + units` is within the limit
//! the rate admits without reading the log, so a call far from every limit is four
//! commands (`HGET` of the head, `TIME`, one `LPUSH`, `HSET` of the head) on four arguments
//! (the mode, the head's field, the rates as written, and every number in one binary
//! string), and its reply is one 16-byte value (the timestamp and the sequence number).
//! Otherwise, for a rate that counts requests, it reads one entry, the limit-th newest: if
//! that one is outside the window (or was trimmed, or there is none) the window holds at
//! most `limit - 1`, which becomes the bound, and the request fits; if it is inside, the
//! window is full until it leaves, the exact retry time. For a rate that counts weight it
//! finds the newest admission at or before `t - window` (a bisection over the list by
//! index, O(log n) `LINDEX`) and takes the window's exact use as a difference of
//! cumulative sums, so the cost does not depend on the weight, and the retry time by a
//! second bisection on the sums. If every rate has room it adds one entry and the new
//! head, all rates at once; otherwise it changes nothing. Every 64 admissions it trims
//! (`LTRIM`) what lies before the newest admission outside the longest window, so the log
//! holds at most one window's admissions plus 65 (and a trim removes about 64), and keeps
//! both keys set to expire when idle for between one and two longest windows (plus a
//! second): nothing in them counts then. The expiry is pushed back only when less than one
//! window is left, not at every call.
//!
//! An async acquire dropped before its reply (by its caller, or by the per-call timeout)
//! queues an undo on the same connection, naming its nonce: the script takes the newest
//! admission back (the entry popped, the head as before it but for the expiry and the next
//! trim) if it carries that nonce, and otherwise changes nothing (counted under `kept`):
//! an acquire that never ran, or one another admission followed, whose caller holds its
//! sequence number.
//!
//! The guarantee is the file's, stated in the recorded timestamps of the server: in every
//! window of every rate, at most the limit. Windows are counted in whole microseconds (a
//! window that is not a whole number of microseconds is rounded up, which only admits less).
//!
//! # What the server must keep
//!
//! Replication is asynchronous: a failover to a replica can lose the admissions the primary
//! had not yet sent it, and the limit can then be exceeded by at most what was admitted in
//! that gap. A server restarted from its append-only file keeps what was fsynced:
//! `appendfsync always` loses nothing, `everysec` (Redis's default) up to a second of
//! admissions. A client whose cached script is gone after a restart loads it again.

mod builder;
mod connection;
mod outage;
#[doc(hidden)]
pub mod server;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
#[cfg(any(feature = "tokio", test))]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::clock::ClockIdentity;
use crate::denied::{DenialKind, Denied};
use crate::error::Error;
use crate::limiter::{FileInfo, Limiter, RateUsage, Stamp};
use crate::protocol::{MAX_RATES, Rule};
use crate::rate::Rate;
use redis::{FromRedisValue, Value};

pub use builder::RedisBuilder;
use builder::keys_for;
#[cfg(test)]
use builder::without_credentials;
use connection::{Link, is_outage};
pub use outage::{OnOutage, Outages};

/// The script's text, versioned with the key layout.
const SCRIPT: &str = include_str!("redis/script.lua");

/// The key layout the script reads and writes.
const LAYOUT: &str = "5";

/// The per-call timeout unless [`RedisBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// A limiter whose log is on a Redis server: the Redis backend behind [`Limiter`].
#[derive(Debug)]
pub(crate) struct RedisLimiter {
    /// The server (without credentials) and the name, for messages.
    target: String,
    path: PathBuf,
    keys: [String; 2],
    rates: Vec<Rate>,
    rules: Vec<Rule>,
    /// Per rate (in the caller's order), its number in the script: the rates' canonical
    /// order, the same for every caller of these rates whatever order each gave them in.
    canonical: Vec<usize>,
    /// The head's field, `h5 ` and the canonical rates: the layout and the rules in one
    /// name, so that the script's one `HGET` finds the head only for a caller like us.
    field: String,
    /// The rates as written, stored for messages and [`Limiter::redis`] without rates.
    written: String,
    /// The numbers after the clock, weight and charge: the expiry (ms), then per rate in
    /// canonical order limit and window in µs (rounded up), as big-endian doubles, and as
    /// one byte each requests (1) or weight (0) and the rate's index in our order, which
    /// the replies name (`>d` then `>ddBB` per rate).
    numbers: Vec<u8>,
    script: redis::Script,
    link: Link,
    on_outage: OnOutage,
    outages: outage::Counts,
    /// The host-wide limiter of [`OnOutage::FallBack`].
    fallback: Option<Box<Limiter>>,
    /// The count behind the next async acquire's nonce ([`RedisLimiter::nonce`]), from a
    /// random start.
    #[cfg(any(feature = "tokio", test))]
    nonces: AtomicU64,
}

/// What a call of the script asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Acquire,
    Usage,
    Check,
    Read,
    Count,
    Reset,
    /// Made by a dropped async acquire (and tests).
    #[cfg(any(feature = "tokio", test))]
    Undo,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Acquire => "acquire",
            Mode::Usage => "usage",
            Mode::Check => "check",
            Mode::Read => "read",
            Mode::Count => "count",
            Mode::Reset => "reset",
            #[cfg(any(feature = "tokio", test))]
            Mode::Undo => "undo",
        }
    }
}

/// The nonce of count `n` (splitmix64's finalizer: consecutive counts give unrelated
/// nonces), 52 bits (exact as the script's doubles); never 0, which names no call.
#[cfg(any(feature = "tokio", test))]
fn nonce_of(n: u64) -> u64 {
    let mut z = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 12).max(1)
}

/// Microseconds, the server clock's unit, as nanoseconds.
fn micros_to_nanos(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1000)
}

impl RedisLimiter {
    fn new(
        target: String,
        name: &str,
        rates: Vec<Rate>,
        rules: Vec<Rule>,
        link: Link,
        on_outage: OnOutage,
        fallback: Option<Box<Limiter>>,
    ) -> RedisLimiter {
        let window_us = |rule: &Rule| rule.window.div_ceil(1000);
        let text = |r: &Rule| {
            format!(
                "{}/{}/{}",
                r.limit,
                r.window,
                if r.requests { "r" } else { "w" }
            )
        };
        // The rates in canonical order: sorted by their text.
        let texts: Vec<String> = rules.iter().map(text).collect();
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by(|&a, &b| texts[a].cmp(&texts[b]));
        let mut canonical = vec![0; rules.len()];
        for (number, &i) in order.iter().enumerate() {
            canonical[i] = number;
        }
        let rules_text: Vec<&str> = order.iter().map(|&i| texts[i].as_str()).collect();
        let written: Vec<String> = rates.iter().map(ToString::to_string).collect();
        let longest_ms = rules
            .iter()
            .map(window_us)
            .max()
            .unwrap_or(0)
            .div_ceil(1000);
        // Doubles: the script's numbers (exact to 2^53, as the script's text was). A second
        // beyond the longest window: idle that long, nothing counts.
        let mut numbers = Vec::with_capacity(8 + 18 * rules.len());
        numbers.extend_from_slice(&(longest_ms.saturating_add(1000) as f64).to_be_bytes());
        for &i in &order {
            let rule = &rules[i];
            numbers.extend_from_slice(&(rule.limit as f64).to_be_bytes());
            numbers.extend_from_slice(&(window_us(rule) as f64).to_be_bytes());
            numbers.push(u8::from(rule.requests));
            numbers.push(u8::try_from(i).expect("at most MAX_RATES rates"));
        }
        RedisLimiter {
            path: PathBuf::from(&target),
            target,
            keys: keys_for(name),
            rates,
            rules,
            canonical,
            field: format!("h{LAYOUT} {}", rules_text.join(",")),
            written: written.join(", "),
            numbers,
            script: redis::Script::new(SCRIPT),
            link,
            on_outage,
            outages: outage::Counts::default(),
            fallback,
            #[cfg(any(feature = "tokio", test))]
            nonces: AtomicU64::new(crate::limiter::random_seed()),
        }
    }

    /// A new async acquire's nonce, which the script keeps with the newest admission so
    /// that an undo (`Mode::Undo`) takes back only the admission it names: distinct for each
    /// call of this limiter, and between limiters (and processes) by their random start;
    /// never 0, which names no call. Only what can be undone needs one: a blocking acquire
    /// sends 0.
    #[cfg(any(feature = "tokio", test))]
    fn nonce(&self) -> u64 {
        nonce_of(self.nonces.fetch_add(1, Ordering::Relaxed))
    }

    /// The limiter's keys: its log and its head (one hash tag, one Cluster slot).
    #[cfg(test)]
    pub(crate) fn keys(&self) -> &[String; 2] {
        &self.keys
    }

    /// The head's field in the head hash (named after the layout and the rates).
    #[cfg(test)]
    pub(crate) fn head_field(&self) -> &str {
        &self.field
    }

    /// The script's call (`EVALSHA`) in `mode`, built in one buffer; `now_us` replaces the
    /// server's clock (tests only), `weight` is the weight to acquire (else 0), `counted`
    /// the fields mode count increments.
    fn command(
        &self,
        mode: Mode,
        now_us: Option<u64>,
        weight: u64,
        counted: [&str; 2],
        nonce: u64,
    ) -> redis::Cmd {
        // The clock (negative: the server's), the weight capped at 2^32 and the charge
        // (mod 2^32), all exact as doubles; then the numbers that do not change.
        // Assembled on the stack: the command's own buffer is the call's one allocation.
        let clock = now_us.map_or(-1.0, |n| n as f64);
        // The nonce last (below 2^52: exact as a double).
        let mut buffer = [0u8; 24 + 8 + 18 * MAX_RATES + 8];
        let length = 24 + self.numbers.len() + 8;
        buffer[..8].copy_from_slice(&clock.to_be_bytes());
        buffer[8..16].copy_from_slice(&(weight.min(1 << 32) as f64).to_be_bytes());
        buffer[16..24].copy_from_slice(&((weight % (1 << 32)) as f64).to_be_bytes());
        buffer[24..length - 8].copy_from_slice(&self.numbers);
        buffer[length - 8..length].copy_from_slice(&(nonce as f64).to_be_bytes());
        let numbers = &buffer[..length];
        let mut command = redis::Cmd::with_capacity(
            11,
            160 + self.field.len() + self.written.len() + numbers.len(),
        );
        command
            .arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(2)
            .arg(&self.keys[0])
            .arg(&self.keys[1])
            .arg(mode.word())
            .arg(&self.field)
            .arg(&self.written)
            .arg(numbers);
        if mode == Mode::Count {
            command.arg(counted[0]).arg(counted[1]);
        }
        command
    }

    /// Runs the script in `mode`, blocking; `now_us` replaces the server's clock (tests only).
    fn run<T: FromRedisValue>(
        &self,
        mode: Mode,
        now_us: Option<u64>,
        weight: u64,
        counted: [&str; 2],
    ) -> redis::RedisResult<T> {
        let command = self.command(mode, now_us, weight, counted, 0);
        self.link
            .call(|connection| connection::eval(connection, &self.script, &command))
    }

    /// Runs the script in `mode` on the async connection: the task yields while it waits.
    /// An acquire dropped before its reply (its future dropped, or the timeout) is taken
    /// back: its undo follows it on the same connection (see [`Link::eval_async`]).
    #[cfg(feature = "tokio")]
    async fn run_async<T: FromRedisValue>(
        &self,
        mode: Mode,
        weight: u64,
        counted: [&str; 2],
    ) -> redis::RedisResult<T> {
        if mode != Mode::Acquire {
            let command = self.command(mode, None, weight, counted, 0);
            return self.link.eval_async(&self.script, &command, None).await;
        }
        let nonce = self.nonce();
        let command = self.command(mode, None, weight, counted, nonce);
        let undo = || self.command(Mode::Undo, None, 0, ["", ""], nonce);
        self.link
            .eval_async(&self.script, &command, Some(&undo))
            .await
    }

    /// Takes back the admission of the acquire with `nonce` if it is still the newest, as a
    /// dropped async acquire does: true if it was undone (tests only).
    #[cfg(test)]
    pub(crate) fn undo(&self, nonce: u64) -> Result<bool, Error> {
        let command = self.command(Mode::Undo, None, 0, ["", ""], nonce);
        self.link
            .call(|connection| connection::eval::<Vec<i64>>(connection, &self.script, &command))
            .map(|reply| reply.first() == Some(&1))
            .map_err(|e| self.refused(&e))
    }

    /// One blocking try that names a nonce, as an async one does, and the nonce (tests
    /// only: what an undo names).
    #[cfg(test)]
    pub(crate) fn try_named(&self, weight: u64) -> (Result<Option<Stamp>, Denied>, u64) {
        let nonce = self.nonce();
        let command = self.command(Mode::Acquire, None, weight, ["", ""], nonce);
        let reply = self
            .link
            .call(|connection| connection::eval(connection, &self.script, &command));
        (self.decide(reply, weight), nonce)
    }

    /// An error the script or the server answered, in the user's words.
    fn refused(&self, error: &redis::RedisError) -> Error {
        match (error.code(), error.detail()) {
            (Some("HLMISMATCH"), detail) => Error::RedisMismatch {
                target: self.target.clone(),
                stored: detail.unwrap_or("?").to_string(),
                requested: self.rates.clone(),
            },
            (Some("HLLAYOUT"), detail) => Error::Redis {
                target: self.target.clone(),
                reason: format!(
                    "the limiter was written with key layout {}, this library writes {LAYOUT}",
                    detail.unwrap_or("?")
                ),
            },
            (Some("HLARGS"), detail) => Error::Redis {
                target: self.target.clone(),
                reason: format!(
                    "the script (key layout {LAYOUT}) cannot read its arguments: {}",
                    detail.unwrap_or("?")
                ),
            },
            (Some("HLCORRUPT"), detail) => Error::Redis {
                target: self.target.clone(),
                reason: format!("the limiter's keys hold garbage: {}", detail.unwrap_or("?")),
            },
            _ => Error::Redis {
                target: self.target.clone(),
                reason: error.to_string(),
            },
        }
    }

    /// Checks the stored rates against ours, storing ours for a new limiter.
    fn check(&self) -> Result<(), Error> {
        self.run::<Vec<i64>>(Mode::Check, None, 0, ["", ""])
            .map(|_| ())
            .map_err(|e| self.refused(&e))
    }

    fn denied(&self, rate_index: usize, kind: DenialKind) -> Denied {
        Denied::new(rate_index, self.rates.get(rate_index).copied(), kind)
    }

    /// One try, not counted as a refusal (a waiting acquire counts once, at its end).
    pub(crate) fn try_once(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        self.try_at(None, weight)
    }

    /// One try at `now_us` of the server's clock (`None`: the server reads its clock; a
    /// value only in tests, which replay the reference model through the script).
    fn try_at(&self, now_us: Option<u64>, weight: u64) -> Result<Option<Stamp>, Denied> {
        if let Some(decided) = self.before_call(weight) {
            return decided;
        }
        let reply = self.run::<Value>(Mode::Acquire, now_us, weight, ["", ""]);
        self.decide(reply, weight)
    }

    /// [`try_once`](Self::try_once) on the async connection: the round trip does not block
    /// the thread. Dropped before the reply, the admission is taken back
    /// ([`Link::eval_async`]).
    #[cfg(feature = "tokio")]
    pub(crate) async fn try_once_async(&self, weight: u64) -> Result<Option<Stamp>, Denied> {
        if let Some(decided) = self.before_call(weight) {
            return decided;
        }
        let reply = self
            .run_async::<Value>(Mode::Acquire, weight, ["", ""])
            .await;
        self.decide(reply, weight)
    }

    /// What is decided without a round trip (the rates are the server's: checked), if
    /// anything.
    fn before_call(&self, weight: u64) -> Option<Result<Option<Stamp>, Denied>> {
        let units = |rule: &Rule| if rule.requests { 1 } else { weight };
        if let Some(rate) = self.rules.iter().position(|r| units(r) > r.limit) {
            return Some(Err(self.denied(
                rate,
                DenialKind::NeverFits {
                    weight: units(&self.rules[rate]),
                },
            )));
        }
        self.rules.iter().all(|r| units(r) == 0).then_some(Ok(None))
    }

    /// The outcome of the script's acquire: its reply, the outage policy, or an error.
    fn decide(
        &self,
        reply: redis::RedisResult<Value>,
        weight: u64,
    ) -> Result<Option<Stamp>, Denied> {
        match reply {
            Ok(reply) => self.outcome(&reply, weight),
            Err(error) if is_outage(&error) => self.outage(weight, &error),
            Err(error) => Err(self.denied(
                usize::MAX,
                DenialKind::Unavailable {
                    reason: self.refused(&error).to_string(),
                },
            )),
        }
    }

    /// The script's reply as an outcome; anything unexpected is a denial.
    fn outcome(&self, reply: &Value, weight: u64) -> Result<Option<Stamp>, Denied> {
        let rate = |i: i64| usize::try_from(i).ok().filter(|i| *i < self.rules.len());
        // An admission: 16 bytes, the timestamp and the sequence number (one value to
        // parse, not an array of three).
        if let Value::BulkString(bytes) = reply
            && let Some((ts, seq)) = bytes.split_first_chunk::<8>()
            && let Ok(seq) = <[u8; 8]>::try_from(seq)
        {
            return Ok(Some(Stamp {
                timestamp: micros_to_nanos(i64::from_be_bytes(*ts)),
                sequence: u64::from_be_bytes(seq) as u32,
            }));
        }
        let integers = Vec::<i64>::from_redis_value_ref(reply).unwrap_or_default();
        match *integers {
            [2] => Ok(None),
            [0, index, retry_us] if let Some(index) = rate(index) => Err(self.denied(
                index,
                DenialKind::Exhausted {
                    retry_after: Duration::from_nanos(micros_to_nanos(retry_us)),
                },
            )),
            [3, index] if let Some(index) = rate(index) => {
                let weight = if self.rules[index].requests {
                    1
                } else {
                    weight
                };
                Err(self.denied(index, DenialKind::NeverFits { weight }))
            }
            _ => Err(self.denied(
                usize::MAX,
                DenialKind::Unavailable {
                    reason: format!("{}: unexpected reply {reply:?}", self.target),
                },
            )),
        }
    }

    /// The outage policy's decision for a call the server did not answer.
    fn outage(&self, weight: u64, error: &redis::RedisError) -> Result<Option<Stamp>, Denied> {
        self.outages.count(self.on_outage);
        match (self.on_outage, &self.fallback) {
            (OnOutage::Allow, _) => Ok(None),
            (OnOutage::FallBack, Some(file)) => file.try_once(weight),
            _ => Err(self.denied(
                usize::MAX,
                DenialKind::Unreachable {
                    reason: format!("{}: {error}", self.target),
                },
            )),
        }
    }

    /// What the outage policy decided so far, in this process.
    pub(crate) fn outages(&self) -> Outages {
        self.outages.read(self.link.reconnects())
    }

    /// Every rate's use now, as of the server's clock.
    pub(crate) fn usage(&self) -> Result<Vec<RateUsage>, Error> {
        self.usage_at(None)
    }

    fn usage_at(&self, now_us: Option<u64>) -> Result<Vec<RateUsage>, Error> {
        let reply = self
            .run::<Vec<i64>>(Mode::Usage, now_us, 0, ["", ""])
            .map_err(|e| self.refused(&e))?;
        let counters = self.counters()?;
        let malformed = || Error::Redis {
            target: self.target.clone(),
            reason: format!("unexpected reply to usage: {reply:?}"),
        };
        let (&t, pairs) = reply.split_first().ok_or_else(malformed)?;
        if pairs.len() != 2 * self.rules.len() {
            return Err(malformed());
        }
        Ok(self
            .rates
            .iter()
            .zip(&self.rules)
            .zip(&self.canonical)
            .zip(&counters.denied)
            .map(|(((rate, rule), &number), denied)| {
                let pair = &pairs[2 * number..2 * number + 2];
                let used = u64::try_from(pair[0]).unwrap_or(u64::MAX);
                RateUsage {
                    rate: *rate,
                    used,
                    remaining: rule.limit.saturating_sub(used),
                    next_free: (pair[1] >= 0)
                        .then(|| Duration::from_micros(u64::try_from(pair[1] - t).unwrap_or(0))),
                    denied: denied.unwrap_or(u64::MAX),
                }
            })
            .collect())
    }

    /// Reads fields of the head hash.
    fn head_fields(&self, fields: &[String]) -> Result<Vec<Option<String>>, Error> {
        self.link
            .call(|connection| {
                redis::cmd("HMGET")
                    .arg(&self.keys[1])
                    .arg(fields)
                    .query::<Vec<Option<String>>>(connection)
            })
            .map_err(|e| self.refused(&e))
    }

    /// Admissions since the limiter was created (or last expired or reset): the head's
    /// first number, read by the script's read-only mode, which checks the keys as an
    /// acquire does and creates nothing.
    pub(crate) fn admitted(&self) -> Result<u64, Error> {
        let reply = self
            .run::<Vec<i64>>(Mode::Read, None, 0, ["", ""])
            .map_err(|e| self.refused(&e))?;
        match *reply {
            [seq] => u64::try_from(seq).map_err(|_| seq),
            _ => Err(-1),
        }
        .map_err(|_| Error::Redis {
            target: self.target.clone(),
            reason: format!("unexpected reply to read: {reply:?}"),
        })
    }

    /// The counters stored beside the log; garbage reads as `None`.
    pub(crate) fn counters(&self) -> Result<crate::Counters, Error> {
        // Each rate's counter under its number in the script (shared by every caller).
        let mut fields: Vec<String> = self
            .canonical
            .iter()
            .map(|number| format!("denied:{number}"))
            .collect();
        fields.push("never_fits".into());
        fields.push("timed_out".into());
        let values = self.head_fields(&fields)?;
        let read = |v: &Option<String>| match v {
            None => Some(0),
            Some(text) => text.parse::<u64>().ok(),
        };
        let mut counts: Vec<Option<u64>> = values.iter().map(read).collect();
        counts.resize(self.rules.len() + 2, None);
        let timed_out = counts.pop().flatten();
        let never_fits = counts.pop().flatten();
        Ok(crate::Counters {
            denied: counts,
            never_fits,
            timed_out,
        })
    }

    /// The head's fields a refusal counts (its rate's, under the rate's number in the
    /// script, and a tally: `""` for none), if it is counted at all (only refusals for
    /// good: exhausted, or never fits).
    fn refusal_fields(&self, denied: &Denied, timed_out: bool) -> Option<[String; 2]> {
        let tally = if denied.is_exhausted() {
            timed_out.then_some("timed_out")
        } else if denied.is_never_fits() {
            Some("never_fits")
        } else {
            return None;
        };
        let number = self.canonical.get(denied.rate_index())?;
        Some([format!("denied:{number}"), tally.unwrap_or("").to_string()])
    }

    /// Counts a request refused for good, as the file does (best effort: an unreachable
    /// server misses the count).
    pub(crate) fn count_refusal(&self, denied: &Denied, timed_out: bool) {
        if let Some([rate, tally]) = self.refusal_fields(denied, timed_out) {
            let _ = self.run::<Vec<i64>>(Mode::Count, None, 0, [&rate, &tally]);
        }
    }

    /// [`count_refusal`](Self::count_refusal) on the async connection.
    #[cfg(feature = "tokio")]
    pub(crate) async fn count_refusal_async(&self, denied: &Denied, timed_out: bool) {
        if let Some([rate, tally]) = self.refusal_fields(denied, timed_out) {
            let _ = self
                .run_async::<Vec<i64>>(Mode::Count, 0, [&rate, &tally])
                .await;
        }
    }

    /// Empties the log, keeping the rates (and zeroing the counters): every client starts
    /// from an empty log at its next call. True if there was a log to drop.
    pub(crate) fn reset(&self) -> Result<bool, Error> {
        match self.run::<Vec<i64>>(Mode::Reset, None, 0, ["", ""]) {
            Ok(reply) => Ok(reply.first() == Some(&1)),
            Err(e) => Err(self.refused(&e)),
        }
    }

    pub(crate) fn rates(&self) -> Vec<Rate> {
        self.rates.clone()
    }

    /// The target (`redis://host:port/db#name`, without credentials) as a path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What a file would record, as far as it applies: the target and the rates; the
    /// fields that describe a file are zero (see [`Limiter::info`]).
    pub(crate) fn info(&self) -> FileInfo {
        FileInfo {
            path: self.path.clone(),
            rates: self.rates.clone(),
            capacity: 0,
            size: 0,
            created: SystemTime::UNIX_EPOCH,
            creator_pid: 0,
            creator_uid: 0,
            journaled: false,
            clock: ClockIdentity {
                clock_id: 0,
                boot_id: [0; 16],
                time_namespace: 0,
            },
        }
    }
}
