//! Calls per second on a loopback `redis-server` this run starts: hostlimit's script (1 and
//! 2 rates, weight 1 and 1000) side by side with its floor (a plain `SET`: one round trip)
//! and with the two published designs the issue compares against, each re-implemented
//! here in a script of our own that reads the server's clock like ours:
//!
//! * **list-per-unit moving window** (the design of `limits`' moving window): one list per
//!   rate, one entry per unit of weight; check the entry `limit - weight` from the head, push
//!   `weight` timestamps, trim to the limit. Single rate.
//! * **sorted-set-per-unit** (the design of PyrateLimiter's Redis bucket): one sorted set,
//!   one member per unit of weight; per rate a `ZCOUNT` over the window, then `weight`
//!   `ZADD`s. Two rates here, like ours.
//!
//! Beside them: the scripts of key layouts 2 (`redis_script_v2.lua`, before the binary head,
//! the packed rates and the closures made only when the log is searched) and 3
//! (`redis_script_v3.lua`, before the head found by one `HGET` of a field named after the
//! layout and the rates, and four arguments in place of ten), each called with the
//! arguments that library sent (through the redis crate's `ScriptInvocation`, as those
//! libraries did), to measure the changes in the same run; and 1 against 4
//! threads sharing one limiter (its pool of connections: calls per second of all threads
//! together).
//!
//! Every other case is one client, one connection, calls one after the other (the latency a
//! caller sees, whose floor is one round trip). Limits never bind, so every call admits;
//! the bench checks that. Rounds of all cases alternate, and the median round counts.
//!
//! `cargo bench --features redis --bench redis` (needs `redis-server` on the `PATH`).

use std::time::{Duration, Instant};

use hostlimit::redis::server::{self, LocalServer};
use hostlimit::{Limiter, Rate};

/// The `limits`-style list per unit (single rate), reading the server's clock.
const LIST_PER_UNIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, window, weight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = redis.call('LINDEX', KEYS[1], limit - weight)
if oldest and tonumber(oldest) >= now - window then
  return 0
end
local stamps = {}
for i = 1, weight do stamps[i] = string.format('%.6f', now) end
redis.call('LPUSH', KEYS[1], unpack(stamps))
redis.call('LTRIM', KEYS[1], 0, limit)
redis.call('EXPIRE', KEYS[1], window)
return 1
";

/// The PyrateLimiter-style sorted set per unit (any number of rates), reading the server's
/// clock (milliseconds, as its items carry).
const ZSET_PER_UNIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local weight, id = tonumber(ARGV[1]), ARGV[2]
for i = 1, tonumber(ARGV[3]) do
  local interval, limit = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if limit - redis.call('ZCOUNT', KEYS[1], now - interval, now) < weight then
    return 0
  end
end
for i = 1, weight do redis.call('ZADD', KEYS[1], now, id .. ':' .. i) end
return 1
";

/// hostlimit's script of key layout 2 (the head as decimal text, the rates as separate
/// arguments, the log search's closures made at every call), kept here to measure the
/// change in the same run.
const OURS_V2: &str = include_str!("redis_script_v2.lua");

/// The rates of [`rates`] as layouts 2 and 3 sent them: limit, window (µs), requests.
const RATES_AS_SENT: [(u64, u64, u8); 2] = [
    (4_000_000_000, 1_000_000, 0),
    (1_000_000_000, 60_000_000, 1),
];

/// hostlimit's script of key layout 3 (the head in a field `h` read with `v` and `rules` by
/// one `HMGET`, twelve arguments), kept here to measure the change in the same run.
const OURS_V3: &str = include_str!("redis_script_v3.lua");

#[derive(Clone, Copy, Debug)]
enum Case {
    Set,
    Ours {
        rates: usize,
        weight: u64,
    },
    /// Layout 2's script, called directly with the arguments the library gave it.
    OursV2 {
        rates: usize,
        weight: u64,
    },
    /// Layout 3's script, called directly with the arguments the library gave it.
    OursV3 {
        rates: usize,
        weight: u64,
    },
    /// `threads` threads on one limiter (1 rate, weight 1): calls per second of all together.
    Threads {
        threads: usize,
    },
    ListPerUnit {
        weight: u64,
    },
    ZsetPerUnit {
        weight: u64,
    },
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Set => "plain SET (one round trip)".into(),
            Case::Ours { rates, weight } => format!("hostlimit, {rates} rate(s), weight {weight}"),
            Case::OursV2 { rates, weight } => {
                format!("hostlimit layout 2 (script only), {rates} rate(s), weight {weight}")
            }
            Case::OursV3 { rates, weight } => {
                format!("hostlimit layout 3 (script only), {rates} rate(s), weight {weight}")
            }
            Case::Threads { threads } => {
                format!("hostlimit, 1 rate, weight 1, {threads} threads on one limiter")
            }
            Case::ListPerUnit { weight } => {
                format!("list per unit (limits), 1 rate, weight {weight}")
            }
            Case::ZsetPerUnit { weight } => {
                format!("zset per unit (pyrate), 2 rates, weight {weight}")
            }
        }
    }

    /// Calls per round: fewer for the designs whose state grows with the weight.
    fn calls(self) -> u64 {
        match self {
            Case::ListPerUnit { weight: 1000 } | Case::ZsetPerUnit { weight: 1000 } => 300,
            _ => 3000,
        }
    }
}

/// The server's time per call of the command `case` sends, from `INFO commandstats` (reset
/// before the round): what the script costs the server, apart from the round trip.
fn server_micros(con: &mut redis::Connection, case: Case) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    let command = if matches!(case, Case::Set) {
        "cmdstat_set:"
    } else {
        "cmdstat_evalsha:"
    };
    info.lines()
        .find_map(|line| line.strip_prefix(command))
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One round of `case`: calls per second, and the server's µs per call.
/// The rates of [`Case::Ours`]: they never bind in a round.
fn rates(count: usize) -> Vec<Rate> {
    let all = [
        Rate::new(4_000_000_000, Duration::from_secs(1)),
        Rate::requests(1_000_000_000, Duration::from_secs(60)),
    ];
    all[..count].to_vec()
}

/// A round of [`Case::Threads`]: each thread makes `calls / threads` calls.
fn threads_round(threads: usize, url: &str, round: usize, calls: u64) -> f64 {
    let limiter =
        Limiter::connect(url, &format!("bench-{round}-threads-{threads}"), &rates(1)).unwrap();
    let per_thread = calls / threads as u64;
    let work = |count: u64| {
        for _ in 0..count {
            assert!(limiter.try_acquire(1).is_ok(), "a call was denied");
        }
    };
    // Warm up: every thread's connection made.
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| work(20));
        }
    });
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| work(per_thread));
        }
    });
    (per_thread * threads as u64) as f64 / started.elapsed().as_secs_f64()
}

fn round(case: Case, url: &str, round: usize) -> (f64, f64) {
    if let Case::Threads { threads } = case {
        return (threads_round(threads, url, round, case.calls()), f64::NAN);
    }
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let calls = case.calls();
    let key = format!("bench:{round}:{case:?}");
    let list = redis::Script::new(LIST_PER_UNIT);
    let zset = redis::Script::new(ZSET_PER_UNIT);
    let v2 = redis::Script::new(OURS_V2);
    let v3 = redis::Script::new(OURS_V3);
    let limiter = match case {
        Case::Ours { rates: count, .. } => Some(
            Limiter::connect(
                url,
                &format!("bench-{round}-{count}-{case:?}").replace([' ', '{', '}', ':', ','], "_"),
                &rates(count),
            )
            .unwrap(),
        ),
        _ => None,
    };
    let v2_keys = [format!("{key}:log"), format!("{key}:head")];
    let mut call = |i: u64| -> bool {
        match case {
            Case::Set => {
                let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut con).unwrap();
                true
            }
            Case::Ours { weight, .. } => limiter.as_ref().unwrap().try_acquire(weight).is_ok(),
            Case::OursV2 { rates, weight } => {
                // What the library of layout 2 sent: mode, layout, rules, rates as
                // written, expiry (ms), clock, weight, charge, count of rates, then per
                // rate limit, window (µs), requests.
                let mut call = v2.prepare_invoke();
                call.key(&v2_keys[0]).key(&v2_keys[1]);
                call.arg("acquire")
                    .arg("2")
                    .arg("rules")
                    .arg("rates")
                    .arg(61_000);
                call.arg("").arg(weight).arg(weight).arg(rates);
                for &(limit, window_us, requests) in &RATES_AS_SENT[..rates] {
                    call.arg(limit).arg(window_us).arg(requests);
                }
                let reply: Vec<i64> = call.invoke(&mut con).unwrap();
                reply.first() == Some(&1)
            }
            Case::OursV3 { rates, weight } => {
                // What the library of layout 3 sent: mode, layout, rules, rates as
                // written, expiry (ms), clock, weight, charge, count of rates, then the
                // rates packed (`>ddB` per rate: limit, window in µs, requests).
                let mut packed = Vec::new();
                for &(limit, window_us, requests) in &RATES_AS_SENT[..rates] {
                    packed.extend_from_slice(&(limit as f64).to_be_bytes());
                    packed.extend_from_slice(&(window_us as f64).to_be_bytes());
                    packed.push(requests);
                }
                let mut call = v3.prepare_invoke();
                call.key(&v2_keys[0]).key(&v2_keys[1]);
                call.arg("acquire")
                    .arg("3")
                    .arg("rules")
                    .arg("rates")
                    .arg(61_000);
                call.arg("").arg(weight).arg(weight).arg(rates).arg(packed);
                let reply: Vec<i64> = call.invoke(&mut con).unwrap();
                reply.first() == Some(&1)
            }
            Case::Threads { .. } => unreachable!("measured by threads_round"),
            Case::ListPerUnit { weight } => {
                let admitted: i64 = list
                    .key(&key)
                    .arg(1_000_000_000u64)
                    .arg(1)
                    .arg(weight)
                    .invoke(&mut con)
                    .unwrap();
                admitted == 1
            }
            Case::ZsetPerUnit { weight } => {
                let admitted: i64 = zset
                    .key(&key)
                    .arg(weight)
                    .arg(i)
                    .arg(2)
                    .arg(1000)
                    .arg(1_000_000_000u64)
                    .arg(60_000)
                    .arg(1_000_000_000u64)
                    .invoke(&mut con)
                    .unwrap();
                admitted == 1
            }
        }
    };
    // Warm up: the script cached, the connection made.
    for i in 0..20 {
        assert!(call(i), "{case:?}: a warm-up call was denied");
    }
    let mut stats = client.get_connection().unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut stats)
        .unwrap();
    let started = Instant::now();
    for i in 20..20 + calls {
        assert!(
            call(i),
            "{case:?}: a call was denied; the bench measures admissions"
        );
    }
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    (rate, server_micros(&mut stats, case))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !server::available() {
        eprintln!("redis bench: no redis-server on the PATH, nothing measured");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hostlimit-redis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = LocalServer::start(&dir, false).expect("redis-server starts");
    let url = server.url();
    let cases = [
        Case::Set,
        Case::Ours {
            rates: 1,
            weight: 1,
        },
        Case::Ours {
            rates: 1,
            weight: 1000,
        },
        Case::Ours {
            rates: 2,
            weight: 1,
        },
        Case::Ours {
            rates: 2,
            weight: 1000,
        },
        Case::OursV2 {
            rates: 1,
            weight: 1,
        },
        Case::OursV2 {
            rates: 2,
            weight: 1,
        },
        Case::Threads { threads: 1 },
        Case::Threads { threads: 4 },
        Case::ListPerUnit { weight: 1 },
        Case::ListPerUnit { weight: 1000 },
        Case::ZsetPerUnit { weight: 1 },
        Case::ZsetPerUnit { weight: 1000 },
        Case::OursV3 {
            rates: 1,
            weight: 1,
        },
        Case::OursV3 {
            rates: 2,
            weight: 1,
        },
    ];
    let rounds: usize = std::env::var("HOSTLIMIT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    // `HOSTLIMIT_BENCH_ONLY=1,9`: only those cases (indexes into `cases`), e.g. to count
    // one case's system calls under `strace -c -f`; the table is printed only for all.
    let only: Option<Vec<usize>> = std::env::var("HOSTLIMIT_BENCH_ONLY")
        .ok()
        .map(|list| list.split(',').filter_map(|i| i.parse().ok()).collect());
    if let Some(only) = only {
        for r in 0..rounds {
            for &i in &only {
                let (rate, us) = round(cases[i], &url, r);
                println!("{}: {rate:.0} calls/s, server {us:.2} µs", cases[i].label());
            }
        }
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let mut results = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            results[i].push(round(*case, &url, r));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = results
        .iter()
        .map(|r| median(&mut r.iter().map(|x| x.0).collect()))
        .collect();
    let server: Vec<f64> = results
        .iter()
        .map(|r| median(&mut r.iter().map(|x| x.1).collect()))
        .collect();
    let set = medians[0];
    println!("| case | calls/s (median of {rounds}) | vs plain SET | server µs per call |");
    println!("|------|------|------|------|");
    for ((case, m), us) in cases.iter().zip(&medians).zip(&server) {
        println!("| {} | {m:.0} | {:.2}x | {us:.2} |", case.label(), m / set);
    }
    let ratio = |a: usize, b: usize| medians[a] / medians[b];
    println!();
    println!(
        "weight 1000 / weight 1, 1 rate: {:.2}x (target >= 0.9)",
        ratio(2, 1)
    );
    println!(
        "weight 1000 / weight 1, 2 rates: {:.2}x (target >= 0.9)",
        ratio(4, 3)
    );
    println!(
        "1 rate / list per unit (limits), weight 1: {:.2}x (target >= 1)",
        ratio(1, 9)
    );
    println!(
        "library (layout 4) / layout 3's script, weight 1: 1 rate {:.2}x, 2 rates {:.2}x",
        ratio(1, 13),
        ratio(3, 14)
    );
    println!(
        "library (layout 4) / layout 2's script, weight 1: 1 rate {:.2}x, 2 rates {:.2}x",
        ratio(1, 5),
        ratio(3, 6)
    );
    println!(
        "4 threads / 1 thread on one limiter: {:.2}x (calls/s of all threads together)",
        ratio(8, 7)
    );
    println!(
        "2 rates / plain SET, weight 1: {:.2}x (target >= 0.5)",
        ratio(3, 0)
    );
    println!(
        "2 rates / zset per unit (pyrate), weight 1: {:.2}x; weight 1000: {:.2}x",
        ratio(3, 11),
        ratio(4, 12)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
