//! The Redis backend across real processes, on a real `redis-server` each test starts on a
//! free loopback port: processes hammering one limiter (exact windows on the recorded
//! timestamps, no false denial), clients `SIGKILL`ed mid-call, the server killed with
//! `kill -9` and restarted from its append-only file, and each outage policy.
//!
//! Without `redis-server` the tests say so and pass, except under `CI=true` (they fail).
//!
//! Workers are this binary re-executed (`redis::redis_worker`): they connect, hammer for a
//! while and write the lines of `support::Output` (times: the real-time clock, which is the
//! clock the server's `TIME` reads on this host, in ns rounded outwards to whole µs).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hostlimit::redis::OnOutage;
use hostlimit::redis::server::{self, LocalServer};
use hostlimit::{DenialKind, Limiter, Rate};

use crate::support::{self, Admission, Output};

const WORKER: &str = "HOSTLIMIT_REDIS_WORKER";

/// The real-time clock in ns (the server's `TIME`, on this host).
fn realtime() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `URL NAME RATES MILLIS WEIGHTS PAUSE_US`: connect, then for MILLIS acquire a random
/// weight and pause a random time (at most the retry-after after a denial).
#[test]
fn redis_worker() {
    let Ok(script) = std::env::var(WORKER) else {
        return;
    };
    let words: Vec<&str> = script.split(' ').collect();
    let out_path = std::env::var("HOSTLIMIT_REDIS_OUT").unwrap();
    let mut out = OpenOptions::new()
        .append(true)
        .create(true)
        .open(out_path)
        .unwrap();
    let mut line = |text: String| out.write_all(text.as_bytes()).unwrap();
    let rates: Vec<Rate> = words[2].split(',').map(|r| r.parse().unwrap()).collect();
    let limiter = Limiter::connect(words[0], words[1], &rates).unwrap();
    line(format!("O {}\n", std::process::id()));
    let millis: u64 = words[3].parse().unwrap();
    let weights: Vec<u64> = words[4].split(',').map(|w| w.parse().unwrap()).collect();
    let pause_us: u64 = words[5].parse().unwrap();
    let mut random = support::Random((u64::from(std::process::id()) * 0x9e37_79b9) | 1);
    let end = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < end {
        let weight = weights[random.below(weights.len() as u64) as usize];
        let before = realtime() / 1000 * 1000;
        let result = limiter.try_acquire_stamped(weight);
        let after = realtime().div_ceil(1000) * 1000;
        let mut pause = Duration::from_micros(random.below(pause_us + 1));
        match result {
            Ok(Some(stamp)) => line(format!(
                "A {before} {after} {} {} {weight}\n",
                stamp.timestamp, stamp.sequence
            )),
            Ok(None) => line(format!("F {before} {after} {weight}\n")),
            Err(denied) => {
                let (retry, kind) = match denied.kind() {
                    DenialKind::Exhausted { retry_after } => {
                        pause = pause.min(retry_after);
                        (retry_after.as_nanos().to_string(), 'X')
                    }
                    DenialKind::NeverFits { .. } => ("-".into(), 'N'),
                    _ => ("-".into(), 'U'),
                };
                line(format!(
                    "D {before} {after} {weight} {} {retry} {kind}\n",
                    denied.rate_index()
                ));
            }
        }
        std::thread::sleep(pause);
    }
}

fn spawn(dir: &Path, name: &str, script: &str) -> Child {
    let exe = std::env::current_exe().unwrap();
    support::command(exe)
        .args([
            "--exact",
            "redis::redis_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER, script)
        .env("HOSTLIMIT_REDIS_OUT", dir.join(format!("{name}.out")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap()
}

/// The whole log as the server holds it, oldest first (seq, ts in ns, weight from the
/// cumulative sums): layout 5's list, newest first, of 20-byte entries `>I8I8I4`.
fn server_log(server: &LocalServer, name: &str) -> Vec<Admission> {
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(format!("hostlimit:{{{name}}}:log"))
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let number = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
    let mut previous = 0u64;
    entries
        .iter()
        .rev()
        .map(|entry| {
            assert_eq!(entry.len(), 20, "{entry:?}");
            let cum = number(&entry[16..]);
            let weight = (cum + (1 << 32) - previous) % (1 << 32);
            previous = cum;
            Admission {
                before: 0,
                after: u64::MAX,
                ts: number(&entry[8..16]) * 1000,
                seq: u32::try_from(number(&entry[..8])).unwrap(),
                weight,
            }
        })
        .collect()
}

/// Four processes hammer one Redis limiter with two rates: every sequence number once, in
/// timestamp order, each timestamp within its call, every window of every rate within its
/// limit, and no denial while the log had room.
#[test]
fn processes_hammering_one_limiter_never_over_admit_nor_falsely_deny() {
    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let rates: Vec<Rate> = vec!["40/200ms".parse().unwrap(), "150req/s".parse().unwrap()];
    let rates_text = rates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let script = format!("{} hammer {rates_text} 1500 1,2,5,9 300", server.url());
    let mut workers: Vec<Child> = (0..4)
        .map(|i| spawn(dir.path(), &format!("w{i}"), &script))
        .collect();
    for (i, worker) in workers.iter_mut().enumerate() {
        let status = worker.wait().unwrap();
        assert!(
            status.success(),
            "worker w{i}: {status}: {}",
            std::fs::read_to_string(dir.path().join(format!("w{i}.err"))).unwrap_or_default()
        );
    }
    let outputs: Vec<Output> = (0..4)
        .map(|i| Output::read(&dir.path().join(format!("w{i}.out"))))
        .collect();
    let admissions: Vec<Admission> = outputs.iter().flat_map(|o| o.admissions.clone()).collect();
    let denials: Vec<support::Denial> = outputs.iter().flat_map(|o| o.denials.clone()).collect();
    assert!(outputs.iter().all(|o| o.opened.is_some()));
    // The weight rate binds: 40 per 200 ms over 1.5 s admits about 8 windows' worth (320),
    // in about 95 to 150 admissions depending on the random weights, so the count alone is
    // no measure of a busy run; the weight is.
    let weight: u64 = admissions.iter().map(|a| a.weight).sum();
    assert!(
        admissions.len() > 50 && weight > 200 && !denials.is_empty(),
        "{} admitted ({weight} weight), {} denied",
        admissions.len(),
        denials.len()
    );
    support::check_sequence(&admissions).unwrap();
    support::check_stamps(&admissions).unwrap();
    support::check_windows(&admissions, &rates).unwrap();
    support::check_denials(&admissions, &denials, &rates).unwrap();
    // Timestamps never decrease along the log.
    let mut by_seq = admissions.clone();
    by_seq.sort_by_key(|a| a.seq);
    assert!(by_seq.windows(2).all(|p| p[0].ts <= p[1].ts));
}

/// Clients killed with `SIGKILL` at random moments, mid-call among them, leave a log that
/// is whole: consecutive sequence numbers, every window within its limit, and every
/// admission a surviving line reports is in it, the same.
#[test]
fn clients_killed_mid_call_leave_a_whole_log() {
    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let name = "killed";
    // The long rate keeps every admission of the test in the log (no trim).
    let rates: Vec<Rate> = vec!["30/100ms".parse().unwrap(), "100000/min".parse().unwrap()];
    let script = format!("{} {name} 30/100ms,100000/min 3000 1,3,7 0", server.url());
    let mut random = support::Random(7);
    let mut killed = 0;
    for round in 0..4 {
        let mut workers: Vec<Child> = (0..3)
            .map(|i| spawn(dir.path(), &format!("k{round}-{i}"), &script))
            .collect();
        // Let them connect and hammer, then kill them one by one, at random moments.
        std::thread::sleep(Duration::from_millis(300));
        for worker in &mut workers {
            std::thread::sleep(Duration::from_millis(random.below(40)));
            worker.kill().unwrap();
            worker.wait().unwrap();
            killed += 1;
        }
    }
    let log = server_log(&server, name);
    assert!(log.len() > 50, "{} admissions", log.len());
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a.seq as usize, i + 1, "consecutive sequence numbers");
    }
    support::check_windows(&log, &rates).unwrap();
    let mut reported = 0;
    for round in 0..4 {
        for i in 0..3 {
            let output = Output::read(&dir.path().join(format!("k{round}-{i}.out")));
            for a in &output.admissions {
                let on_server = &log[a.seq as usize - 1];
                assert_eq!((on_server.ts, on_server.weight), (a.ts, a.weight), "{a:?}");
                reported += 1;
            }
        }
    }
    assert!(reported > 0 && killed == 12);
    // And the limiter goes on.
    let limiter = Limiter::connect(&server.url(), name, &rates).unwrap();
    assert_eq!(limiter.admitted().unwrap(), log.len() as u64);
}

/// The server killed with `kill -9` and restarted from its append-only file (fsync always)
/// keeps the log: the admissions, the same denial; the client reconnects by itself and
/// loads the script the new server does not have.
#[test]
fn a_server_killed_and_restarted_from_its_aof_keeps_the_log() {
    let dir = support::temp_dir();
    let Some(mut server) = server::for_test(dir.path(), true) else {
        return;
    };
    let rates = [Rate::new(5, Duration::from_secs(60))];
    let limiter = Limiter::connect(&server.url(), "durable", &rates).unwrap();
    for _ in 0..5 {
        limiter.try_acquire(1).unwrap();
    }
    assert!(limiter.try_acquire(1).is_err());
    server.restart().unwrap();
    // The first call may find its old connection dead (the outage policy denies it); the
    // next connects again. Nothing is admitted either way: the window is full.
    let mut unreachable = 0;
    let denied = loop {
        let denied = limiter.try_acquire(1).unwrap_err();
        match denied.kind() {
            DenialKind::Unreachable { .. } => unreachable += 1,
            _ => break denied,
        }
        assert!(unreachable <= 1, "{denied}");
    };
    assert!(denied.retry_after().is_some(), "{denied}");
    assert_eq!(limiter.admitted().unwrap(), 5);
    let outages = limiter.outages().unwrap();
    assert_eq!(outages.denied, unreachable);
    assert!(outages.reconnects >= 1);
    let usage = limiter.usage().unwrap();
    assert_eq!((usage[0].used, usage[0].remaining), (5, 0));
}

/// Each outage policy, against a server that stops answering (`SIGSTOP`: the per-call
/// timeout) and one that is gone: deny (a denial of kind `Unreachable`), allow, fall back
/// to the host-wide file with the same rates; every decision counted; back to the server
/// when it answers again.
#[test]
fn each_outage_policy_decides_and_is_counted() {
    let dir = support::temp_dir();
    let Some(mut server) = server::for_test(dir.path(), false) else {
        return;
    };
    let rates = [Rate::new(2, Duration::from_secs(60))];
    let url = server.url();
    let connect = |policy: OnOutage, name: &str| {
        Limiter::redis(&url, name, &rates)
            .timeout(Duration::from_millis(200))
            .on_outage(policy)
            .fallback_path(dir.path().join(format!("{name}.file")))
            .connect()
            .unwrap()
    };
    let deny = connect(OnOutage::Deny, "deny");
    let allow = connect(OnOutage::Allow, "allow");
    let fall = connect(OnOutage::FallBack, "fall");
    for limiter in [&deny, &allow, &fall] {
        limiter.try_acquire(2).unwrap();
    }
    // A server that does not answer: every call ends after its timeout.
    server.pause(true).unwrap();
    let started = Instant::now();
    let denied = deny.try_acquire(1).unwrap_err();
    assert!(
        matches!(denied.kind(), DenialKind::Unreachable { .. }),
        "{denied}"
    );
    assert!(denied.to_string().contains("deny"), "{denied}");
    assert!(!denied.is_final() && denied.retry_after().is_none());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(allow.try_acquire_stamped(1).unwrap(), None);
    // The file has its own, empty log: 2 fit, the third does not.
    assert!(fall.try_acquire_stamped(1).unwrap().is_some());
    assert!(fall.try_acquire(1).is_ok());
    let file_denial = fall.try_acquire(1).unwrap_err();
    assert!(
        matches!(file_denial.kind(), DenialKind::Exhausted { .. }),
        "{file_denial}"
    );
    // A waiting acquire gives up at once on an unreachable server.
    assert!(matches!(
        deny.acquire(1, Duration::from_secs(30)).unwrap_err().kind(),
        DenialKind::Unreachable { .. }
    ));
    server.pause(false).unwrap();
    // Back: the server decides again (the windows are full there).
    let back = deny.try_acquire(1).unwrap_err();
    assert!(
        matches!(back.kind(), DenialKind::Exhausted { .. }),
        "{back}"
    );
    assert!(matches!(
        allow.try_acquire(1).unwrap_err().kind(),
        DenialKind::Exhausted { .. }
    ));
    assert!(matches!(
        fall.try_acquire(1).unwrap_err().kind(),
        DenialKind::Exhausted { .. }
    ));
    assert_eq!(deny.outages().unwrap().denied, 2);
    assert_eq!(allow.outages().unwrap().allowed, 1);
    assert_eq!(fall.outages().unwrap().fell_back, 3);
    assert!(deny.outages().unwrap().reconnects >= 1);
    // A server that is gone: the connection is refused, the policy decides the same way.
    server.kill9();
    assert!(matches!(
        deny.try_acquire(1).unwrap_err().kind(),
        DenialKind::Unreachable { .. }
    ));
    assert_eq!(allow.try_acquire_stamped(1).unwrap(), None);
    assert_eq!(deny.outages().unwrap().denied, 3);
    // Connecting to a server that is gone is an error, whatever the policy.
    assert!(matches!(
        Limiter::redis(&url, "new", &rates)
            .timeout(Duration::from_millis(200))
            .connect(),
        Err(hostlimit::Error::Redis { .. })
    ));
}

/// The async wait on Redis sleeps until the server's retry time and is admitted there.
#[cfg(feature = "tokio")]
#[test]
fn the_async_wait_is_admitted_at_the_servers_retry_time() {
    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let limiter = Limiter::connect(
        &server.url(),
        "async",
        &[Rate::new(3, Duration::from_millis(300))],
    )
    .unwrap();
    limiter.try_acquire(3).unwrap();
    let retry = limiter.try_acquire(1).unwrap_err().retry_after().unwrap();
    let started = Instant::now();
    let runtime = current_thread();
    runtime
        .block_on(limiter.acquire_async(2, Duration::from_secs(30)))
        .unwrap();
    assert!(started.elapsed() + Duration::from_millis(1) >= retry);
    assert_eq!(limiter.admitted().unwrap(), 2);
    assert_eq!(limiter.counters().unwrap().denied_total(), Some(1));
}

/// A runtime of one thread, with the timer and the IO driver (the async Redis client).
#[cfg(feature = "tokio")]
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The async round trip does not block the runtime's only thread: while `acquire_async`
/// waits for a server that does not answer, another task keeps running; the outage policy
/// then decides (deny, counted), as for the blocking path; and once the server answers the
/// same future type is admitted.
#[cfg(feature = "tokio")]
#[test]
fn the_async_round_trip_lets_other_tasks_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let limiter = Limiter::redis(
        &server.url(),
        "nonblocking",
        &[Rate::new(5, Duration::from_secs(60))],
    )
    .timeout(Duration::from_millis(800))
    .connect()
    .unwrap();
    let runtime = current_thread();
    // Connected (the async connection made) before the server stops answering.
    runtime
        .block_on(limiter.acquire_async(1, Duration::from_secs(30)))
        .unwrap();
    server.pause(true).unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let (outcome, during) = runtime.block_on(async {
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let outcome = limiter.acquire_async(1, Duration::from_secs(30)).await;
        // Read before this task yields again: only what ran while acquire_async waited.
        let during = ticks.load(Ordering::Relaxed);
        ticker.abort();
        (outcome, during)
    });
    server.pause(false).unwrap();
    let denied = outcome.unwrap_err();
    assert!(
        matches!(denied.kind(), DenialKind::Unreachable { .. }),
        "{denied}"
    );
    assert_eq!(limiter.outages().unwrap().denied, 1);
    // A blocked thread would have run the ticker at most once (it starts only when the
    // waiting task yields); 800 ms of waiting at 5 ms per tick gives many, even loaded.
    assert!(during >= 3, "the other task ran {during} times");
    // The unanswered call's request reached the server, which runs it once it answers
    // again, and its undo after it (queued on the same connection when the call timed
    // out): the refused caller is not charged. The runtime runs the connection's task only
    // inside `block_on`: a short one lets it send the undo.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    let before = limiter.admitted().unwrap();
    assert_eq!(before, 1);
    runtime
        .block_on(limiter.acquire_async(1, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(limiter.admitted().unwrap(), before + 1);
}

/// Dropping `acquire_async` while it sleeps changes nothing (no admission, no refusal
/// counted); dropped during a round trip, its admission is taken back once the server runs
/// it, and the connection stays in step: the next call gets its own reply.
#[cfg(feature = "tokio")]
#[test]
fn a_dropped_async_acquire_changes_nothing() {
    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let limiter = Limiter::redis(
        &server.url(),
        "cancel",
        &[Rate::new(3, Duration::from_secs(60))],
    )
    .timeout(Duration::from_secs(5))
    .connect()
    .unwrap();
    let runtime = current_thread();
    runtime
        .block_on(limiter.acquire_async(2, Duration::from_secs(30)))
        .unwrap();
    // Asleep: the window is full for a minute; dropped after 100 ms.
    let asleep = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(100),
            limiter.acquire_async(2, Duration::from_secs(120)),
        )
        .await
    });
    assert!(asleep.is_err(), "{asleep:?}");
    assert_eq!(limiter.admitted().unwrap(), 1);
    assert_eq!(limiter.counters().unwrap().denied_total(), Some(0));
    assert_eq!(limiter.usage().unwrap()[0].used, 2);
    // During the round trip: the server does not answer, the future is dropped; the server
    // then runs what it had received: the acquire, then its undo.
    server.pause(true).unwrap();
    let mid_call = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(100),
            limiter.acquire_async(1, Duration::from_secs(30)),
        )
        .await
    });
    server.pause(false).unwrap();
    assert!(mid_call.is_err(), "{mid_call:?}");
    // In step: the next call on the connection is answered after the dropped one and its
    // undo, and gets its own reply: admitted, into the room the undo gave back (without the
    // undo the window would be full).
    runtime
        .block_on(limiter.acquire_async(1, Duration::ZERO))
        .unwrap();
    assert_eq!(limiter.admitted().unwrap(), 2);
    assert_eq!(limiter.usage().unwrap()[0].used, 3);
}

/// The command takes `redis://HOST:PORT/DB#NAME` wherever it takes a limiter: `acquire`
/// creates it with its rates or adopts the stored ones, denies when full, refuses other
/// rates naming both; `status` reads it; `run` waits on it; `reset` empties it.
#[cfg(feature = "cli")]
#[test]
fn the_command_takes_redis_targets() {
    let dir = support::temp_dir();
    let Some(server) = server::for_test(dir.path(), false) else {
        return;
    };
    let target = format!("{}#cli", server.url());
    let hostlimit = |args: &[&str]| {
        let output = support::command(env!("CARGO_BIN_EXE_hostlimit"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("$ hostlimit {}\n{stdout}{stderr}", args.join(" "));
        (output.status.code().unwrap_or(-1), stdout, stderr)
    };
    assert_eq!(
        hostlimit(&["acquire", &target, "--rate", "2/min", "-n"]).0,
        0
    );
    assert_eq!(
        hostlimit(&["acquire", &target, "-n"]).0,
        0,
        "adopts the stored rates"
    );
    let (code, _, stderr) = hostlimit(&["acquire", &target, "-n"]);
    assert_eq!(code, 75, "full: try later");
    assert!(stderr.contains("2/min"), "{stderr}");
    let (code, _, _) = hostlimit(&["run", &target, "--timeout", "100ms", "--", "true"]);
    assert_eq!(code, 75, "the retry time is past the timeout");
    let (code, stdout, _) = hostlimit(&["status", "--json", &target]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["limiters"][0]["rates"][0]["used"], 2, "{status}");
    let (code, _, stderr) = hostlimit(&["acquire", &target, "--rate", "5/min", "-n"]);
    assert_eq!(code, 65, "other rates: a data error");
    assert!(
        stderr.contains("[2/min]") && stderr.contains("[5/min]"),
        "{stderr}"
    );
    assert_eq!(hostlimit(&["reset", &target]).0, 0);
    assert_eq!(
        hostlimit(&["acquire", &target, "-n"]).0,
        0,
        "empty after the reset"
    );
    assert_ne!(
        hostlimit(&["acquire", "redis://127.0.0.1:1/0", "-n"]).0,
        0,
        "no #NAME"
    );
}

/// On a Redis Cluster of three nodes started here, limiters whose names hash to slots on
/// different nodes each work (the client follows the slots), blocking and (feature tokio)
/// async, and each limiter's two keys are in one slot (the hash tag).
#[test]
fn limiters_work_on_a_redis_cluster() {
    let dir = support::temp_dir();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node_dir = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        if !server::available() {
            server::for_test(&node_dir, false); // skips, or fails under CI
            return;
        }
        nodes.push(
            LocalServer::start_with(&node_dir, false, &["--cluster-enabled", "yes"]).unwrap(),
        );
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli (it comes with redis-server)");
    assert!(created.success());
    let node = |n: &LocalServer| {
        redis::Client::open(n.url())
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut node(n))
            .unwrap();
        info.contains("cluster_state:ok")
    }) {
        assert!(
            Instant::now() < deadline,
            "the cluster did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rates = [Rate::new(3, Duration::from_secs(60))];
    #[cfg(feature = "tokio")]
    let runtime = current_thread();
    let mut con = node(&nodes[0]);
    let mut thirds = std::collections::BTreeSet::new();
    for i in 0..12 {
        let name = format!("fleet{i}");
        let limiter = Limiter::redis(&nodes[i % 3].url(), &name, &rates)
            .cluster(true)
            .connect()
            .unwrap();
        // With feature tokio, the first call goes by the async cluster connection (it
        // follows the slots too), and so does a refusal after the blocking calls.
        #[cfg(feature = "tokio")]
        runtime
            .block_on(limiter.acquire_async(2, Duration::ZERO))
            .unwrap();
        #[cfg(not(feature = "tokio"))]
        limiter.try_acquire(2).unwrap();
        limiter.try_acquire(1).unwrap();
        let denied = limiter.try_acquire(1).unwrap_err();
        assert!(
            matches!(denied.kind(), DenialKind::Exhausted { .. }),
            "{name}: {denied}"
        );
        #[cfg(feature = "tokio")]
        {
            let denied = runtime
                .block_on(limiter.acquire_async(1, Duration::from_millis(1)))
                .unwrap_err();
            assert!(
                matches!(denied.kind(), DenialKind::Exhausted { .. }),
                "{name}: {denied}"
            );
        }
        assert_eq!(limiter.usage().unwrap()[0].used, 3);
        let mut slot = |key: String| -> u64 {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut con)
                .unwrap()
        };
        let log = slot(format!("hostlimit:{{{name}}}:log"));
        assert_eq!(log, slot(format!("hostlimit:{{{name}}}:head")), "{name}");
        thirds.insert(log * 3 / 16384);
    }
    assert!(
        thirds.len() > 1,
        "the names landed on one node only: {thirds:?}"
    );
}
