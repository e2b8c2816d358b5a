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
//! Beside them: the script of key layout 4 (`redis_script_v4.lua`, the log a sorted set,
//! before the list of layout 5), called with the very `EVALSHA` the library
//! sends (built the same way, in one buffer), to measure the changes in the same run; and
//! 1 against 4 threads sharing one limiter (its pool of connections: calls per second of
//! all threads together). (The scripts of layouts 2 and 3 left the bench with layout 5;
//! their figures are in the README of their time.)
//!
//! Every other case is one client, one connection, calls one after the other (the latency a
//! caller sees, whose floor is one round trip). Limits never bind, so every call admits;
//! the bench checks that. Rounds of all cases alternate, and the median round counts.
//!
//! Then the refusal path, layout 4 against 5, each script called with the same `EVALSHA`:
//! a limiter at its limit, every call refused (the bench checks that), with 1,000
//! admissions in its window: 1 rate counting requests (layout 5 reads one entry; layout 4
//! one `ZREVRANGEBYSCORE` and one `ZRANGE`), and 2 rates of which the refusing one counts
//! weight (two bisections: `LINDEX`es against `ZRANGE`s). Then the server's time per call
//! of `limits`' script and of layouts 4 and 5 (the same cases), each 50,000 calls
//! pipelined 500 at a time, 7 runs in alternating order: the steadier figure on a shared
//! box, where calls per second with a round trip each move by up to 3x. Last, the memory
//! of the log (`MEMORY USAGE ... SAMPLES 0`) after 10,000 admissions, layout 4 against 5.
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

/// hostlimit's script of key layout 4 (the log a sorted set of text members), kept here to
/// measure the change in the same run.
const OURS_V4: &str = include_str!("redis_script_v4.lua");

/// The library's script (layout 5), for the cases that call a script directly.
const OURS_V5: &str = include_str!("../src/redis/script.lua");

/// A rate as layouts 4 and 5 take it: limit, window (µs), requests.
type Packed = (u64, u64, bool);

/// The rates of [`Case::Denied`]: 1 rate counting requests, or a weight rate (the one that
/// refuses) and a request rate that never binds; each at 1,000 in an hour.
fn denied_rates(weighted: bool) -> &'static [Packed] {
    if weighted {
        &[
            (1000, 3_600_000_000, false),
            (1_000_000_000, 60_000_000, true),
        ]
    } else {
        &[(1000, 3_600_000_000, true)]
    }
}

/// The `EVALSHA` of an acquire as the library builds it (one buffer; the head's field
/// `h<LAYOUT> RULES`, the numbers packed), for the script `sha` of layout `layout`.
fn acquire_command(
    sha: &str,
    keys: &[String; 2],
    layout: u8,
    rates: &[Packed],
    weight: u64,
) -> redis::Cmd {
    let text = |&(limit, window_us, requests): &Packed| {
        format!(
            "{limit}/{}/{}",
            window_us * 1000,
            if requests { "r" } else { "w" }
        )
    };
    let mut order: Vec<usize> = (0..rates.len()).collect();
    order.sort_by_key(|&i| text(&rates[i]));
    let rules: Vec<String> = order.iter().map(|&i| text(&rates[i])).collect();
    let longest_ms = rates.iter().map(|r| r.1).max().unwrap_or(0).div_ceil(1000);
    let mut numbers = Vec::new();
    for value in [
        -1.0,
        weight as f64,
        weight as f64,
        (longest_ms + 1000) as f64,
    ] {
        numbers.extend_from_slice(&f64::to_be_bytes(value));
    }
    for &i in &order {
        let (limit, window_us, requests) = rates[i];
        numbers.extend_from_slice(&(limit as f64).to_be_bytes());
        numbers.extend_from_slice(&(window_us as f64).to_be_bytes());
        numbers.push(u8::from(requests));
        numbers.push(i as u8);
    }
    if layout >= 5 {
        // The call's nonce (none: zeros).
        numbers.extend_from_slice(&[0; 8]);
    }
    let mut command = redis::cmd("EVALSHA");
    command
        .arg(sha)
        .arg(2)
        .arg(&keys[0])
        .arg(&keys[1])
        .arg("acquire")
        .arg(format!("h{layout} {}", rules.join(",")))
        .arg("rates as written")
        .arg(numbers);
    command
}

/// What an acquire's reply says: admitted (16 bytes), refused (`{0, rate, retry}`), or
/// anything else (a panic: the bench measures only these two).
fn admitted(reply: &redis::Value) -> bool {
    match reply {
        redis::Value::BulkString(bytes) if bytes.len() == 16 => true,
        redis::Value::Array(items) if matches!(items.first(), Some(redis::Value::Int(0))) => false,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Loads `script` (its text) on the server; its SHA1, for `EVALSHA`.
fn load(con: &mut redis::Connection, script: &str) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script)
        .query(con)
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Set,
    Ours {
        rates: usize,
        weight: u64,
    },
    /// Layout 4's script, called with the `EVALSHA` the library builds.
    OursV4 {
        rates: usize,
        weight: u64,
    },
    /// A limiter at its limit (1,000 in its window), every call refused: the script of
    /// `layout` (4 or 5) called directly; 1 request rate, or 2 rates refused by weight.
    Denied {
        layout: u8,
        weighted: bool,
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
            Case::OursV4 { rates, weight } => {
                format!("hostlimit layout 4 (script only), {rates} rate(s), weight {weight}")
            }
            Case::Denied { layout, weighted } => format!(
                "denied, layout {layout} (script only), {}",
                if weighted {
                    "2 rates, refused by weight"
                } else {
                    "1 request rate"
                }
            ),
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

/// The server's time per call of `command` (`set`, `evalsha`), from `INFO commandstats`
/// (reset before the round): what the script costs the server, apart from the round trip.
fn server_micros(con: &mut redis::Connection, command: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
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
    let script_keys = [format!("{key}:log"), format!("{key}:head")];
    // The scripts called with the library's `EVALSHA`: loaded, and their commands built
    // once (a fresh limiter per round; the denied ones filled to their limit).
    let direct = match case {
        Case::OursV4 { rates, weight } => {
            let sha = load(&mut con, OURS_V4);
            let all = [
                (4_000_000_000, 1_000_000, false),
                (1_000_000_000, 60_000_000, true),
            ];
            Some(acquire_command(
                &sha,
                &script_keys,
                4,
                &all[..rates],
                weight,
            ))
        }
        Case::Denied { layout, weighted } => {
            let sha = load(&mut con, if layout == 4 { OURS_V4 } else { OURS_V5 });
            let command = acquire_command(&sha, &script_keys, layout, denied_rates(weighted), 1);
            for _ in 0..1000 {
                assert!(
                    admitted(&command.query(&mut con).unwrap()),
                    "{case:?}: a fill was denied"
                );
            }
            Some(command)
        }
        _ => None,
    };
    let mut call = |i: u64| -> bool {
        match case {
            Case::Set => {
                let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut con).unwrap();
                true
            }
            Case::Ours { weight, .. } => limiter.as_ref().unwrap().try_acquire(weight).is_ok(),
            Case::OursV4 { .. } => admitted(&direct.as_ref().unwrap().query(&mut con).unwrap()),
            // Refused: what this case measures (a call admitted fails the bench).
            Case::Denied { .. } => !admitted(&direct.as_ref().unwrap().query(&mut con).unwrap()),
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
    let command = if matches!(case, Case::Set) {
        "set"
    } else {
        "evalsha"
    };
    (rate, server_micros(&mut stats, command))
}

/// What [`server_time`] measures: the scripts, each called as its library calls it.
const SERVER_TIME_CASES: [&str; 9] = [
    "list per unit (limits), 1 rate",
    "layout 4, 1 rate",
    "layout 5, 1 rate",
    "layout 4, 2 rates",
    "layout 5, 2 rates",
    "layout 4, denied, 1 request rate",
    "layout 5, denied, 1 request rate",
    "layout 4, denied, 2 rates refused by weight",
    "layout 5, denied, 2 rates refused by weight",
];

/// The server's µs per call of case `index` of [`SERVER_TIME_CASES`] (`INFO commandstats`),
/// `calls` calls pipelined 500 at a time: the server kept busy with one script, so that
/// the figure is the script's, with less of the noise of a round trip per call.
fn server_time(url: &str, index: usize, run: usize, calls: usize) -> f64 {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys = [
        format!("time:{run}:{index}:log"),
        format!("time:{run}:{index}:head"),
    ];
    let layout = if SERVER_TIME_CASES[index].starts_with("layout 4") {
        4
    } else {
        5
    };
    let sha = load(&mut con, if layout == 4 { OURS_V4 } else { OURS_V5 });
    let all = [
        (4_000_000_000, 1_000_000, false),
        (1_000_000_000, 60_000_000, true),
    ];
    let (command, fill, refused) = match index {
        0 => {
            let mut command = redis::cmd("EVALSHA");
            command
                .arg(load(&mut con, LIST_PER_UNIT))
                .arg(1)
                .arg(&keys[0])
                .arg(1_000_000_000u64)
                .arg(1)
                .arg(1);
            (command, 0, false)
        }
        1 | 2 => (acquire_command(&sha, &keys, layout, &all[..1], 1), 0, false),
        3 | 4 => (acquire_command(&sha, &keys, layout, &all, 1), 0, false),
        _ => {
            let weighted = index >= 7;
            (
                acquire_command(&sha, &keys, layout, denied_rates(weighted), 1),
                1000,
                true,
            )
        }
    };
    for _ in 0..fill {
        assert!(admitted(&command.query(&mut con).unwrap()));
    }
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..500 {
        pipe.add_command(command.clone());
    }
    for _ in 0..calls / 500 {
        let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
        for reply in &replies {
            let ok = if index == 0 {
                matches!(reply, redis::Value::Int(1))
            } else {
                admitted(reply) != refused
            };
            assert!(ok, "{}: {reply:?}", SERVER_TIME_CASES[index]);
        }
    }
    let _: () = redis::cmd("DEL").arg(&keys[..]).query(&mut con).unwrap();
    server_micros(&mut con, "evalsha")
}

/// The log's memory (bytes, `MEMORY USAGE ... SAMPLES 0`: every element counted) after
/// `admissions` admissions of 1 rate that keeps them all, by the script of `layout`; and
/// the count of entries, to check.
fn log_memory(url: &str, layout: u8, admissions: u64) -> (u64, u64) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys = [
        format!("memory:{layout}:log"),
        format!("memory:{layout}:head"),
    ];
    let sha = load(&mut con, if layout == 4 { OURS_V4 } else { OURS_V5 });
    let command = acquire_command(
        &sha,
        &keys,
        layout,
        &[(1_000_000_000, 3_600_000_000, true)],
        1,
    );
    for _ in 0..admissions {
        assert!(admitted(&command.query(&mut con).unwrap()));
    }
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&keys[0])
        .arg("SAMPLES")
        .arg(0)
        .query(&mut con)
        .unwrap();
    let count: u64 = redis::cmd(if layout == 4 { "ZCARD" } else { "LLEN" })
        .arg(&keys[0])
        .query(&mut con)
        .unwrap();
    (bytes, count)
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
    let ours = |rates, weight| Case::Ours { rates, weight };
    let cases = [
        Case::Set,
        ours(1, 1),
        ours(1, 1000),
        ours(2, 1),
        ours(2, 1000),
        Case::OursV4 {
            rates: 1,
            weight: 1,
        },
        Case::OursV4 {
            rates: 2,
            weight: 1,
        },
        Case::Threads { threads: 1 },
        Case::Threads { threads: 4 },
        Case::ListPerUnit { weight: 1 },
        Case::ListPerUnit { weight: 1000 },
        Case::ZsetPerUnit { weight: 1 },
        Case::ZsetPerUnit { weight: 1000 },
        Case::Denied {
            layout: 4,
            weighted: false,
        },
        Case::Denied {
            layout: 5,
            weighted: false,
        },
        Case::Denied {
            layout: 4,
            weighted: true,
        },
        Case::Denied {
            layout: 5,
            weighted: true,
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
    let server_us: Vec<f64> = results
        .iter()
        .map(|r| median(&mut r.iter().map(|x| x.1).collect()))
        .collect();
    let set = medians[0];
    println!("| case | calls/s (median of {rounds}) | vs plain SET | server µs per call |");
    println!("|------|------|------|------|");
    for ((case, m), us) in cases.iter().zip(&medians).zip(&server_us) {
        println!("| {} | {m:.0} | {:.2}x | {us:.2} |", case.label(), m / set);
    }
    // Ratios of calls per second (and of server µs), by case.
    let at = |case: Case| {
        cases
            .iter()
            .position(|c| c.label() == case.label())
            .unwrap()
    };
    let ratio = |a: Case, b: Case| medians[at(a)] / medians[at(b)];
    let server_ratio = |a: Case, b: Case| server_us[at(a)] / server_us[at(b)];
    let v4 = |rates| Case::OursV4 { rates, weight: 1 };
    let denied = |layout, weighted| Case::Denied { layout, weighted };
    println!();
    println!(
        "weight 1000 / weight 1, 1 rate: {:.2}x (target >= 0.9)",
        ratio(ours(1, 1000), ours(1, 1))
    );
    println!(
        "weight 1000 / weight 1, 2 rates: {:.2}x (target >= 0.9)",
        ratio(ours(2, 1000), ours(2, 1))
    );
    println!(
        "1 rate / list per unit (limits), weight 1: {:.2}x (target >= 1); server µs {:.2}x",
        ratio(ours(1, 1), Case::ListPerUnit { weight: 1 }),
        server_ratio(ours(1, 1), Case::ListPerUnit { weight: 1 })
    );
    println!(
        "library (layout 5) / layout 4's script, weight 1: 1 rate {:.2}x, 2 rates {:.2}x; server µs {:.2}x, {:.2}x",
        ratio(ours(1, 1), v4(1)),
        ratio(ours(2, 1), v4(2)),
        server_ratio(ours(1, 1), v4(1)),
        server_ratio(ours(2, 1), v4(2))
    );
    println!(
        "denied, layout 5 / layout 4: 1 request rate {:.2}x (server µs {:.2}x); 2 rates, by weight {:.2}x (server µs {:.2}x)",
        ratio(denied(5, false), denied(4, false)),
        server_ratio(denied(5, false), denied(4, false)),
        ratio(denied(5, true), denied(4, true)),
        server_ratio(denied(5, true), denied(4, true))
    );
    println!(
        "4 threads / 1 thread on one limiter: {:.2}x (calls/s of all threads together)",
        ratio(Case::Threads { threads: 4 }, Case::Threads { threads: 1 })
    );
    println!(
        "2 rates / plain SET, weight 1: {:.2}x (target >= 0.5)",
        ratio(ours(2, 1), Case::Set)
    );
    println!(
        "2 rates / zset per unit (pyrate), weight 1: {:.2}x; weight 1000: {:.2}x",
        ratio(ours(2, 1), Case::ZsetPerUnit { weight: 1 }),
        ratio(ours(2, 1000), Case::ZsetPerUnit { weight: 1000 })
    );
    // The server's time per call, pipelined: 7 runs alternating the order, medians.
    let mut times = vec![Vec::new(); SERVER_TIME_CASES.len()];
    for run in 0..7 {
        for k in 0..SERVER_TIME_CASES.len() {
            let index = if run % 2 == 0 {
                k
            } else {
                SERVER_TIME_CASES.len() - 1 - k
            };
            times[index].push(server_time(&url, index, run, 50_000));
        }
    }
    let times: Vec<f64> = times.iter_mut().map(median).collect();
    println!();
    println!(
        "| script, pipelined (50,000 calls, 500 a batch) | server µs per call (median of 7) |"
    );
    println!("|------|------|");
    for (name, us) in SERVER_TIME_CASES.iter().zip(&times) {
        println!("| {name} | {us:.2} |");
    }
    println!(
        "server µs, layout 5 / limits' list, 1 rate: {:.2}x; layout 5 / layout 4: 1 rate {:.2}x, 2 rates {:.2}x; denied, 1 request rate {:.2}x, 2 rates by weight {:.2}x",
        times[2] / times[0],
        times[2] / times[1],
        times[4] / times[3],
        times[6] / times[5],
        times[8] / times[7]
    );
    let (v4_bytes, v4_count) = log_memory(&url, 4, 10_000);
    let (v5_bytes, v5_count) = log_memory(&url, 5, 10_000);
    assert_eq!((v4_count, v5_count), (10_000, 10_000));
    println!(
        "the log after 10,000 admissions (MEMORY USAGE, SAMPLES 0): layout 4 {v4_bytes} bytes ({:.1} a member), layout 5 {v5_bytes} bytes ({:.1} an entry): {:.2}x",
        v4_bytes as f64 / 1e4,
        v5_bytes as f64 / 1e4,
        v5_bytes as f64 / v4_bytes as f64
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
