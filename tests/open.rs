//! Opening a limiter: rate validation, mismatched configurations, damaged and foreign files,
//! file hygiene (permissions, symlinks, directories) and the clock a file is bound to; plus
//! the single-process contract on a manual clock, where time is exact.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hostlimit::{DenialKind, Error, Limiter, MAX_LIMIT, MAX_WINDOW, ManualClock, Rate, Stamp};
use proptest::prelude::*;

use crate::support;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

/// Offset of the ring (`src/layout.rs`), of the hint word and of the lap counter.
const RING_OFFSET: u64 = 12_288;
const HINT_OFFSET: u64 = 1024;
const LAPS_OFFSET: u64 = 1152;

fn rates() -> Vec<Rate> {
    vec![Rate::new(5, SEC), Rate::new(20, MIN)]
}

/// Runs `f` on another thread and fails if it takes longer than `limit` (a hang).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    match receive.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

#[test]
fn invalid_rates_are_refused_before_anything_is_created() {
    let dir = support::temp_dir();
    let path = dir.path().join("new-dir").join("lim");
    let invalid_rate = [
        Rate::new(0, SEC),
        Rate::new(1, Duration::ZERO),
        Rate::new(MAX_LIMIT + 1, SEC),
        Rate::new(1, MAX_WINDOW + Duration::from_nanos(1)),
        Rate::requests(0, SEC),
    ];
    for rate in invalid_rate {
        let error = Limiter::open(&path, &[Rate::new(10, SEC), rate]).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRate { rate: text, .. } if *text == rate.to_string()),
            "{rate:?}: {error:?}"
        );
        assert!(error.to_string().contains("invalid rate"), "{error}");
    }
    // The extremes are valid.
    // (The largest limit over the longest window is a valid rate, but needs too large a ring.)
    match Limiter::open(
        dir.path().join("max-limit"),
        &[Rate::new(MAX_LIMIT, MAX_WINDOW)],
    ) {
        Ok(_) => {}
        Err(error) => assert!(matches!(error, Error::TooLarge { .. }), "{error:?}"),
    }
    Limiter::open(
        dir.path().join("max-window"),
        &[Rate::requests(1, MAX_WINDOW)],
    )
    .unwrap();

    let nine: Vec<Rate> = (1..=9).map(|i| Rate::new(i, SEC * i as u32)).collect();
    let lists: [(&[Rate], &str); 3] = [
        (&[], "at least one"),
        (
            &[Rate::new(10, SEC), Rate::new(5, MIN), Rate::new(10, SEC)],
            "twice",
        ),
        (&nine, "at most"),
    ];
    for (list, reason) in lists {
        let error = Limiter::open(&path, list).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRates(text) if text.contains(reason)),
            "{list:?}: {error:?}"
        );
    }
    // A weight rate and a request rate with the same numbers are different rates.
    Limiter::open(
        dir.path().join("both-kinds"),
        &[Rate::new(10, SEC), Rate::requests(10, SEC)],
    )
    .unwrap();
    // Ten million weight units a day need a ring larger than accepted.
    let error =
        Limiter::open(&path, &[Rate::new(10_000_000, Duration::from_secs(86_400))]).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { needed_slots, max_slots } if needed_slots > u128::from(max_slots)),
        "{error:?}"
    );
    assert!(
        !path.parent().unwrap().exists(),
        "a refused configuration created the directory"
    );
}

#[test]
fn mismatched_rates_are_refused_with_both_configurations() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let hour = Duration::from_secs(3600);
    let file_rates = [Rate::new(10, MIN), Rate::requests(600, hour)];
    let limiter = Limiter::open(&path, &file_rates).unwrap();
    limiter.try_acquire(3).unwrap();
    let before = fs::read(&path).unwrap();

    let others: [&[Rate]; 4] = [
        &[Rate::new(20, MIN), Rate::requests(600, hour)],
        &[Rate::new(10, MIN)],
        &[Rate::new(10, MIN), Rate::new(600, hour)],
        &[
            Rate::new(10, MIN),
            Rate::requests(600, hour),
            Rate::new(1, SEC),
        ],
    ];
    for requested in others {
        let error = Limiter::open(&path, requested).unwrap_err();
        let Error::ConfigMismatch {
            path: error_path,
            file,
            requested: asked,
            ..
        } = &error
        else {
            panic!("{requested:?}: {error:?}");
        };
        assert_eq!(error_path, &path);
        assert_eq!(file, &file_rates);
        assert_eq!(asked, requested);
        let text = error.to_string();
        assert!(text.contains("[10/min, 600req/h]"), "{text}");
        assert!(
            text.contains(&format!(
                "[{}]",
                support::rates_arg(requested).replace(',', ", ")
            )),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a refused open changed the file"
    );

    // The same rates in another order are the same limiter: it keeps the file's order and
    // sees what the first handle admitted.
    let reordered = Limiter::open(&path, &[file_rates[1], file_rates[0]]).unwrap();
    assert_eq!(reordered.rates(), file_rates);
    assert_eq!(reordered.usage().unwrap()[0].used, 3);
    // Attaching adopts the file's rates.
    let attached = Limiter::attach(&path).unwrap();
    assert_eq!(attached.rates(), file_rates);
    assert_eq!(attached.info().rates, file_rates);
    assert_eq!(attached.usage().unwrap()[1].used, 1);
    attached.try_acquire(7).unwrap();
    assert_eq!(limiter.try_acquire(1).unwrap_err().rate_index(), 0);
    // Attaching creates nothing.
    let missing = dir.path().join("missing");
    let error = Limiter::attach(&missing).unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(!missing.exists());
}

/// FNV-1a over header words 3..40, as `layout.rs` computes the checksum.
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in &bytes[3 * 8..40 * 8] {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

fn word(bytes: &[u8], index: usize) -> u64 {
    u64::from_le_bytes(bytes[index * 8..index * 8 + 8].try_into().unwrap())
}

fn set_word(bytes: &mut [u8], index: usize, value: u64) {
    bytes[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

fn seal(bytes: &mut [u8]) {
    let sum = checksum(bytes);
    set_word(bytes, 2, sum);
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The bytes of a valid limiter file at `path` with one admission of weight 2.
fn valid_file(path: &Path) -> Vec<u8> {
    Limiter::open(path, &rates())
        .unwrap()
        .try_acquire(2)
        .unwrap();
    fs::read(path).unwrap()
}

#[test]
fn damaged_and_foreign_files_are_refused_with_the_right_error() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let valid = valid_file(&path);
    assert_eq!(
        word(&valid, 2),
        checksum(&valid),
        "the test's checksum is the file's"
    );

    type Expect = fn(&Error) -> bool;
    let mut cases: Vec<(&str, Vec<u8>, Expect)> = Vec::new();
    cases.push((
        "garbage",
        random_bytes(valid.len(), 7),
        |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("magic")),
    ));
    cases.push(("zeros", vec![0; valid.len()], |e| {
        matches!(e, Error::Corrupt { .. })
    }));
    cases.push(("text", b"hostlimit? no.\n".repeat(1000), |e| {
        matches!(e, Error::Corrupt { .. })
    }));
    let mut magic = valid.clone();
    magic[7] = 2;
    cases.push(("wrong magic", magic, |e| matches!(e, Error::Corrupt { .. })));
    for version in [0, 2, u64::MAX] {
        let mut other = valid.clone();
        set_word(&mut other, 1, version);
        cases.push((
            "another version",
            other,
            |e| matches!(e, Error::Version { found, expected: 1, .. } if *found != 1),
        ));
    }
    let mut sum = valid.clone();
    sum[2 * 8] ^= 0x10;
    cases.push((
        "damaged checksum",
        sum,
        |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("checksum")),
    ));
    for index in [3, 4, 5, 6, 12, 16, 17, 18, 39] {
        let mut damaged = valid.clone();
        damaged[index * 8 + 1] ^= 0x40;
        cases.push((
            "damaged word",
            damaged,
            |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        ));
    }
    // Checksummed but impossible headers.
    let sealed: [(usize, u64); 5] = [
        (5, 0),                   // no rates
        (5, 9),                   // too many rates
        (16, 0),                  // a zero limit
        (18, 2),                  // an unknown kind of rate
        (4, word(&valid, 4) * 2), // a ring the rates do not imply
    ];
    for (index, value) in sealed {
        let mut impossible = valid.clone();
        set_word(&mut impossible, index, value);
        seal(&mut impossible);
        cases.push(("impossible header", impossible, |e| {
            matches!(e, Error::Corrupt { .. })
        }));
    }
    let mut size = valid.clone();
    set_word(&mut size, 3, word(&valid, 3) + 16);
    seal(&mut size);
    cases.push(("wrong recorded size", size, |e| {
        matches!(e, Error::Corrupt { .. })
    }));

    for (what, bytes, expected) in cases {
        fs::write(&path, &bytes).unwrap();
        for attach in [false, true] {
            let error = if attach {
                Limiter::attach(&path).unwrap_err()
            } else {
                Limiter::open(&path, &rates()).unwrap_err()
            };
            assert!(expected(&error), "{what} (attach: {attach}): {error:?}");
            assert!(
                error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
        }
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{what}: a refused open changed the file"
        );
        assert!(matches!(
            hostlimit::reset(&path).unwrap_err(),
            Error::Corrupt { .. } | Error::Version { .. }
        ));
    }
}

/// A damaged limiter file can be cleaned up by its owner: removed whatever the damage (a ring
/// of garbage, a truncated file, a damaged header, another layout version, an empty file),
/// and reset wherever its rates can still be read (so that the fresh file has them). A file
/// that is not a hostlimit file at all is neither removed nor overwritten.
#[test]
fn damaged_limiters_can_be_removed_and_reset_where_their_rates_are_readable() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let valid = valid_file(&path);
    let ring = RING_OFFSET as usize;
    let mut garbage_ring = valid.clone();
    garbage_ring[ring..].copy_from_slice(&random_bytes(valid.len() - ring, 3));
    let mut checksum = valid.clone();
    checksum[2 * 8] ^= 0x10;
    let mut version = valid.clone();
    set_word(&mut version, 1, 7);
    // (what, bytes, the words its description must contain, whether a reset can make it new)
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        ("a ring of garbage", garbage_ring, "corrupt ring", true),
        (
            "a truncated ring",
            valid[..valid.len() - 16].to_vec(),
            "truncated",
            true,
        ),
        (
            "only the header page",
            valid[..ring].to_vec(),
            "truncated",
            true,
        ),
        (
            "half a header page",
            valid[..2000].to_vec(),
            "truncated",
            true,
        ),
        ("a damaged header", checksum, "checksum", false),
        ("another version", version, "version 7", false),
        ("an empty file", Vec::new(), "empty", false),
    ];
    for (what, bytes, reason, resettable) in cases {
        fs::write(&path, &bytes).unwrap();
        let removed = hostlimit::remove(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(removed.to_string().contains(reason), "{what}: {removed}");
        assert!(!path.exists(), "{what}: not removed");

        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        match hostlimit::reset(&path) {
            Ok(found) if resettable => {
                assert!(found.to_string().contains(reason), "{what}: {found}");
                let fresh = Limiter::open(&path, &rates()).unwrap();
                assert_eq!(fresh.usage().unwrap()[0].used, 0, "{what}");
                assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
                fs::remove_file(&path).unwrap();
            }
            Ok(found) => panic!("{what}: reset without its rates ({found})"),
            Err(error) if resettable => panic!("{what}: {error}"),
            Err(error) => {
                let text = error.to_string();
                assert!(
                    text.contains(reason) && text.contains("remove"),
                    "{what}: {text}"
                );
                assert_eq!(
                    fs::read(&path).unwrap(),
                    bytes,
                    "{what}: a refused reset changed it"
                );
                fs::remove_file(&path).unwrap();
            }
        }
    }
    // Not a hostlimit file: left alone, and said so.
    for (what, bytes) in [
        ("random bytes", random_bytes(valid.len(), 9)),
        ("text", b"precious data\n".repeat(100)),
    ] {
        fs::write(&path, &bytes).unwrap();
        for error in [
            hostlimit::remove(&path).unwrap_err(),
            hostlimit::reset(&path).unwrap_err(),
        ] {
            assert!(
                matches!(&error, Error::Corrupt { reason, .. } if reason.contains("not a hostlimit file")),
                "{what}: {error:?}"
            );
        }
        assert_eq!(fs::read(&path).unwrap(), bytes, "{what}: changed");
    }
}

#[test]
fn truncated_files_are_refused_never_mapped() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let full = Limiter::open(&path, &rates()).unwrap().info().size;
    let valid = fs::read(&path).unwrap();
    assert_eq!(valid.len() as u64, full);
    for len in [
        0,
        8,
        100,
        4095,
        RING_OFFSET - 1,
        RING_OFFSET,
        RING_OFFSET + 16,
        full - 1,
    ] {
        fs::write(&path, &valid[..len as usize]).unwrap();
        let error = Limiter::open(&path, &rates()).unwrap_err();
        assert!(
            matches!(error, Error::Truncated { size, expected, .. } if size == len && expected == full),
            "{len} bytes: {error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("truncated") && text.contains(&len.to_string()),
            "{text}"
        );
        // Attaching with no rates to expect still reads the size the header implies, once
        // there is a header.
        let error = Limiter::attach(&path).unwrap_err();
        let Error::Truncated { size, expected, .. } = error else {
            panic!("{len} bytes, attach: {error:?}");
        };
        assert_eq!(size, len);
        assert!(expected == full || (len < RING_OFFSET && expected == RING_OFFSET));
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            len,
            "a refused open resized the file"
        );
    }
    // A directory or a FIFO at the path is not a limiter either.
    let not_file = dir.path().join("dir");
    fs::create_dir(&not_file).unwrap();
    assert!(matches!(
        Limiter::open(&not_file, &rates()).unwrap_err(),
        Error::Io { .. } | Error::Corrupt { .. }
    ));
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let error = bounded("open a FIFO", Duration::from_secs(20), move || {
        Limiter::open(&fifo, &rates()).unwrap_err().to_string()
    });
    assert!(error.contains("not a regular file"), "{error}");
}

/// Fills the ring (and the hint and lap words) of a limiter's file with `ring`, `hint` and
/// `laps`, through the file (the page cache is the mapping's: the limiter sees it at once).
fn scribble(path: &Path, ring: &[u8], hint: u64, laps: u64) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(ring, RING_OFFSET).unwrap();
    file.write_all_at(&hint.to_le_bytes(), HINT_OFFSET).unwrap();
    file.write_all_at(&laps.to_le_bytes(), LAPS_OFFSET).unwrap();
}

/// Every call on a limiter whose ring holds garbage returns (a denial, an admission, a value
/// or an error); what a denial says must be coherent.
fn exercise(limiter: &Limiter) {
    for weight in [1, 0, 5, 6] {
        match limiter.try_acquire_stamped(weight) {
            Ok(_) => {}
            Err(denied) => {
                if matches!(denied.kind(), DenialKind::Unavailable { .. }) {
                    assert!(denied.is_final() && denied.retry_after().is_none());
                }
                if weight == 6 {
                    assert!(matches!(denied.kind(), DenialKind::NeverFits { weight: 6 }));
                }
            }
        }
    }
    let _ = limiter.usage();
    let _ = limiter.admitted();
    let _ = limiter.acquire(1, Duration::from_millis(20));
}

#[test]
fn garbage_in_the_ring_gives_denials_or_admissions_never_a_panic_or_hang() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let limiter = Arc::new(Limiter::open(&path, &rates()).unwrap());
    limiter.try_acquire(2).unwrap();
    let capacity = limiter.info().capacity as usize;
    let ring_len = capacity * 16;
    let slot = |ts: u64, cum: u32, seq: u32| -> [u8; 16] {
        (u128::from(ts) | u128::from(cum) << 64 | u128::from(seq) << 96).to_le_bytes()
    };
    let mut patterns: Vec<(&str, Vec<u8>, u64)> = vec![
        ("zeros", vec![0; ring_len], 0),
        ("ones", vec![0xff; ring_len], u64::MAX),
        (
            "every slot claims record 5",
            slot(1, 1, 5).repeat(capacity),
            5,
        ),
    ];
    for seed in 1..=8 {
        patterns.push(("random", random_bytes(ring_len, seed), seed * 0x9e37_79b9));
    }
    // Sequence numbers in order but timestamps and weights that make no sense.
    let ordered = |ts: &dyn Fn(u32) -> u64, cum: &dyn Fn(u32) -> u32| -> Vec<u8> {
        (0..capacity as u32)
            .flat_map(|i| slot(ts(i), cum(i), i))
            .collect()
    };
    patterns.push((
        "timestamps far ahead",
        ordered(&|i| u64::MAX - 64 + u64::from(i), &|i| i),
        3,
    ));
    patterns.push((
        "timestamps decreasing",
        ordered(&|i| 1_000_000 - u64::from(i), &|i| i),
        3,
    ));
    patterns.push((
        "weights decreasing",
        ordered(&|i| u64::from(i), &|i| u32::MAX - i),
        3,
    ));
    let last = capacity as u32 - 1;
    patterns.push((
        "a closed log",
        ordered(&|i| if i == last { u64::MAX } else { u64::from(i) }, &|_| 0),
        3,
    ));
    patterns.push((
        "a tombstone inside the log",
        ordered(&|i| if i == 3 { u64::MAX } else { u64::from(i) }, &|_| 0),
        3,
    ));
    patterns.push(("a full lap ahead", ordered(&|i| u64::from(i), &|i| i), 0));
    patterns.push((
        "next lap everywhere",
        (0..capacity as u32)
            .flat_map(|i| slot(u64::from(i), i, i + capacity as u32))
            .collect(),
        0,
    ));
    for (what, ring, hint) in patterns {
        scribble(&path, &ring, hint, hint ^ 0x5555);
        let shared = limiter.clone();
        bounded(what, Duration::from_secs(30), move || exercise(&shared));
        // Another handle, opened on the damaged file, behaves the same: the header is intact.
        bounded(what, Duration::from_secs(30), {
            let path = path.clone();
            move || exercise(&Limiter::open(&path, &rates()).unwrap())
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any contents of the ring, the hint and the lap counter: every call returns.
    #[test]
    fn any_ring_contents_are_survived(
        slots in proptest::collection::vec((any::<u64>(), any::<u32>(), 0u32..80), 32),
        hint in 0u64..80,
        laps in any::<u64>(),
    ) {
        let dir = support::temp_dir();
        let path = dir.path().join("lim");
        let limiter = Limiter::open(&path, &rates()).unwrap();
        prop_assert_eq!(limiter.info().capacity, 32);
        // Small sequence numbers and timestamps near the real clock's, so that some rings are
        // almost consistent.
        let now = support::now();
        let ring: Vec<u8> = slots
            .iter()
            .flat_map(|&(ts, cum, seq)| {
                let ts = if ts % 2 == 0 { now.wrapping_add(ts % 4_000_000_000).wrapping_sub(2_000_000_000) } else { ts };
                (u128::from(ts) | u128::from(cum % 64) << 64 | u128::from(seq) << 96).to_le_bytes()
            })
            .collect();
        scribble(&path, &ring, hint, laps);
        let limiter = Arc::new(limiter);
        bounded("random ring", Duration::from_secs(30), move || exercise(&limiter));
    }
}

/// A missing directory is not created unless asked for (a typo must not create state), and
/// the error says it is missing; with `create_dirs(true)` the directories are made, private.
#[test]
fn files_are_private_by_default_and_directories_are_created_only_when_asked() {
    let dir = support::temp_dir();
    let path = dir.path().join("a").join("b").join("lim");
    let error = Limiter::open(&path, &rates()).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::Io { path: at, source, .. }
            if *at == dir.path().join("a").join("b")
                && source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(text.contains("no such directory"), "{text}");
    assert!(text.contains("create_dirs"), "{text}");
    assert!(
        !dir.path().join("a").exists(),
        "a missing directory was created"
    );
    let limiter = Limiter::builder(&rates())
        .create_dirs(true)
        .open(&path)
        .unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(
        meta.mode() & 0o777,
        0o600,
        "default file mode {:o}",
        meta.mode()
    );
    assert_eq!(meta.len(), limiter.info().size);
    for created in [dir.path().join("a"), dir.path().join("a").join("b")] {
        let mode = fs::metadata(&created).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", created.display());
        assert_eq!(mode & 0o700, 0o700, "{}: mode {mode:o}", created.display());
    }
    let info = limiter.info();
    assert_eq!(info.creator_pid, u64::from(std::process::id()));
    assert_eq!(info.creator_uid, u64::from(nix::unistd::getuid().as_raw()));
    assert_eq!(info.path, path);
    // Only the limiter: no temporary file left next to it.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["lim"]);
}

/// `mode(0o660)` gives exactly 0660 even where the umask would remove the group's bits;
/// checked in a worker process, since the umask is process-wide.
#[test]
fn the_requested_mode_is_exact_whatever_the_umask() {
    let dir = support::temp_dir();
    for (mode, file_mode) in [("660", 0o660), ("644", 0o644), ("600", 0o600)] {
        let path = dir.path().join(format!("m{mode}")).join("lim");
        let script = format!("umask 077; open 5/s mode={mode} parents; acquire 1");
        let mut worker = support::spawn(dir.path(), &path, &format!("mode{mode}"), &script, &[]);
        let output = worker.finish(Duration::from_secs(60));
        assert_eq!(output.errors, Vec::<String>::new());
        assert_eq!(output.admissions.len(), 1);
        let actual = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(
            actual, file_mode,
            "mode={mode} under umask 077 gave {actual:o}"
        );
        // A reset keeps the permissions.
        hostlimit::reset(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, file_mode);
    }
}

/// The builder documents that a created directory gets search permission wherever the mode
/// grants read (0o660 -> 0o770); a umask must not narrow that, or the group can create a
/// 0660 file nobody in the group can reach.
#[test]
fn the_directory_mode_follows_the_file_mode_whatever_the_umask() {
    let dir = support::temp_dir();
    let path = dir.path().join("shared-dir").join("lim");
    let script = "umask 077; open 5/s mode=660 parents";
    let mut worker = support::spawn(dir.path(), &path, "dirmode", script, &[]);
    assert_eq!(
        worker.finish(Duration::from_secs(60)).errors,
        Vec::<String>::new()
    );
    let mode = fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
    assert_eq!(format!("{mode:o}"), "770", "directory mode");
}

#[test]
fn a_symlink_at_the_path_is_refused_and_its_target_untouched() {
    let dir = support::temp_dir();
    let target = dir.path().join("precious");
    fs::write(&target, b"precious data").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("lim");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.path().join("dangling");
    let nowhere = dir.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();

    for path in [&link, &dangling] {
        let errors = [
            Limiter::open(path, &rates()).unwrap_err(),
            Limiter::attach(path).unwrap_err(),
            hostlimit::reset(path).unwrap_err(),
            hostlimit::remove(path).unwrap_err(),
        ];
        for error in errors {
            assert!(matches!(error, Error::Io { .. }), "{error:?}");
            let text = error.to_string();
            assert!(text.contains("symbolic link"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        assert!(fs::symlink_metadata(path).unwrap().file_type().is_symlink());
    }
    assert_eq!(fs::read(&target).unwrap(), b"precious data");
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o644);
    assert!(
        !nowhere.exists(),
        "the dangling symlink's target was created"
    );
}

/// The directory can be redirected neither: a symbolic link as the limiter directory, or a
/// directory anyone may write to without the sticky bit, is refused; with the sticky bit
/// (as `/dev/shm` has) it is accepted.
#[test]
fn a_symlinked_or_world_writable_directory_is_refused() {
    let dir = support::temp_dir();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let error = Limiter::open(link.join("lim"), &rates()).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        0,
        "created through the link"
    );

    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let error = Limiter::open(open.join("lim"), &rates()).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("world-writable"), "{error}");
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    Limiter::open(open.join("lim"), &rates()).unwrap();
}

#[test]
fn an_unusable_directory_is_a_clear_io_error() {
    let dir = support::temp_dir();
    // A path whose parent is a regular file.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let path = file.join("lim");
    let error = Limiter::builder(&rates())
        .create_dirs(true)
        .open(&path)
        .unwrap_err();
    let Error::Io {
        path: at,
        op,
        source,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(at, &file);
    assert_eq!(*op, "create directory");
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert_ne!(source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(fs::read(&file).unwrap(), b"x");

    // A directory the process may not write to. Root ignores permission bits, so as root the
    // open runs in a worker that gave up root first.
    let readonly = dir.path().join("readonly");
    fs::create_dir(&readonly).unwrap();
    fs::set_permissions(&readonly, fs::Permissions::from_mode(0o555)).unwrap();
    let path = readonly.join("lim");
    let text = if nix::unistd::geteuid().is_root() {
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut worker = support::spawn(dir.path(), &path, "nobody", "setuid 65534; open 5/s", &[]);
        let output = worker.finish(Duration::from_secs(60));
        assert!(output.opened.is_none(), "opened in a read-only directory");
        assert_eq!(output.errors.len(), 1, "{output:?}");
        output.errors[0].clone()
    } else {
        let error = Limiter::open(&path, &rates()).unwrap_err();
        assert!(
            matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
            "{error:?}"
        );
        error.to_string()
    };
    assert!(text.contains(&readonly.display().to_string()), "{text}");
    assert!(text.contains("ermission denied"), "{text}");
    // Whose the directory is, and what to do.
    assert!(text.contains("mode 0555"), "{text}");
    assert!(text.contains("ask its owner"), "{text}");
    assert_eq!(fs::read_dir(&readonly).unwrap().count(), 0);
}

#[test]
fn a_file_made_with_another_clock_is_refused() {
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let manual = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&path)
        .unwrap();
    assert_eq!(manual.info().clock.clock_id, ManualClock::ID);
    manual.try_acquire(1).unwrap();
    let before = fs::read(&path).unwrap();
    let errors = [
        Limiter::open(&path, &rates()).unwrap_err(),
        Limiter::attach(&path).unwrap_err(),
        hostlimit::reset(&path).unwrap_err(),
    ];
    for error in errors {
        assert!(
            matches!(&error, Error::ClockMismatch { path: p, .. } if *p == path),
            "{error:?}"
        );
        assert!(error.to_string().contains("clock"), "{error}");
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    // A manual clock joins it; the host clock's file refuses the manual clock.
    let again = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&path)
        .unwrap();
    assert_eq!(again.usage().unwrap()[0].used, 1);
    let host = dir.path().join("host");
    Limiter::open(&host, &rates()).unwrap();
    let error = Limiter::builder(&rates())
        .clock(Arc::new(ManualClock::new(1)))
        .open(&host)
        .unwrap_err();
    assert!(matches!(error, Error::ClockMismatch { .. }), "{error:?}");
}

/// On a manual clock every number is exact: recorded timestamps, retry-afters, the sliding
/// window's boundary, usage; and a weight that can never fit charges nothing.
#[test]
fn windows_retry_afters_and_usage_are_exact_on_a_manual_clock() {
    const MS: u64 = 1_000_000;
    let dir = support::temp_dir();
    let path = dir.path().join("lim");
    let clock = Arc::new(ManualClock::new(1));
    let rates = [Rate::new(2, SEC), Rate::requests(3, 10 * SEC)];
    let limiter = Limiter::builder(&rates)
        .clock(clock.clone())
        .open(&path)
        .unwrap();
    let stamp = |ts, sequence| {
        Ok(Some(Stamp {
            timestamp: ts,
            sequence,
        }))
    };

    assert_eq!(limiter.try_acquire_stamped(1), stamp(1, 1));
    clock.advance(Duration::from_millis(300));
    assert_eq!(limiter.try_acquire_stamped(1), stamp(300 * MS + 1, 2));
    let denied = limiter.try_acquire(1).unwrap_err();
    assert_eq!(denied.rate_index(), 0);
    assert_eq!(denied.rate(), Some(rates[0]));
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(700)));
    assert!(!denied.is_final());
    let usage = limiter.usage().unwrap();
    assert_eq!(
        (usage[0].used, usage[0].remaining, usage[0].denied),
        (2, 0, 1)
    );
    assert_eq!(usage[0].next_free, Some(Duration::from_millis(700)));
    assert_eq!(
        (usage[1].used, usage[1].remaining, usage[1].denied),
        (2, 1, 0)
    );
    assert_eq!(usage[1].next_free, Some(Duration::from_millis(9_700)));
    assert_eq!(limiter.usage().unwrap(), usage, "usage consumed something");

    // Never fits: final, no retry, nothing charged; a refused request of the rate it exceeds,
    // and a never-fits.
    let never = limiter.try_acquire(3).unwrap_err();
    assert_eq!(never.kind(), &DenialKind::NeverFits { weight: 3 });
    assert_eq!(never.rate_index(), 0);
    assert!(never.is_final());
    assert_eq!(never.retry_after(), None);
    assert!(never.to_string().contains("never fit"), "{never}");
    let after = limiter.usage().unwrap();
    assert_eq!((after[0].used, after[0].denied), (2, 2));
    assert_eq!((after[1].used, after[1].denied), (2, 0));
    assert_eq!(limiter.admitted().unwrap(), 2);
    let started = std::time::Instant::now();
    assert_eq!(
        limiter.acquire(3, Duration::from_secs(30)).unwrap_err(),
        never
    );
    let counters = limiter.counters().unwrap();
    assert_eq!(counters.denied, [Some(3), Some(0)]);
    assert_eq!(counters.never_fits, Some(2));
    assert_eq!(counters.timed_out, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a final denial waited"
    );

    // One nanosecond before the first admission leaves the window, still full.
    clock.advance(Duration::from_nanos(700 * MS - 1));
    assert_eq!(
        limiter.try_acquire(1).unwrap_err().retry_after(),
        Some(Duration::from_nanos(1))
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(limiter.try_acquire_stamped(1), stamp(1000 * MS + 1, 3));
    // Weight 0 still counts one request: the request rate is now full for 9 s.
    let requests = limiter.try_acquire(0).unwrap_err();
    assert_eq!(requests.rate_index(), 1);
    assert_eq!(requests.retry_after(), Some(Duration::from_secs(9)));
    assert_eq!(limiter.admitted().unwrap(), 3);

    // Where no rate counts requests, weight 0 charges nothing at all.
    let weights_only = Limiter::builder(&[Rate::new(1, SEC)])
        .clock(clock.clone())
        .open(dir.path().join("weights"))
        .unwrap();
    weights_only.try_acquire(1).unwrap();
    assert_eq!(weights_only.try_acquire_stamped(0), Ok(None));
    assert_eq!(weights_only.admitted().unwrap(), 1);
    assert_eq!(weights_only.try_acquire(1).unwrap_err().rate_index(), 0);
}

/// Repeated denials (answered by the memo, without the locked count) are counted exactly:
/// by this process at once, by another handle (another process's view: only what reached
/// the file) at most 63 behind per thread, and exactly once the handle is let go. Threads
/// past the per-thread table (16) count in the file directly.
#[test]
fn repeated_denials_are_counted_exactly_by_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeats");
    let hour = Rate::requests(1, Duration::from_secs(3600));
    let limiter = Arc::new(Limiter::open(&path, &[hour]).unwrap());
    let other = Limiter::open(&path, &[hour]).unwrap();
    limiter.try_acquire(1).unwrap();
    let (threads, each) = (24u64, 500u64);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert!(limiter.try_acquire(1).is_err());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let refused = threads * each;
    assert_eq!(limiter.counters().unwrap().denied, [Some(refused)]);
    assert_eq!(limiter.usage().unwrap()[0].denied, refused);
    let seen = other.counters().unwrap().denied[0].unwrap();
    assert!(
        (refused - 16 * 63..=refused).contains(&seen),
        "another handle sees {seen} of {refused}"
    );
    // Let go, the handle's kept repeats reach the file.
    drop(limiter);
    assert_eq!(other.counters().unwrap().denied, [Some(refused)]);
}

/// A thread past the per-thread table (16 slots, one per live thread) counts its repeats in
/// the file at once: with 24 threads alive together, at least 8 of them have no slot, so
/// another handle sees at least their repeats although no lag or batch has passed (a
/// frozen clock, fewer than 64 repeats each), and the kept ones arrive when the handle is
/// let go.
#[test]
fn threads_past_the_table_count_their_repeats_in_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("past");
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let open = || {
        Limiter::builder(&[Rate::requests(1, Duration::from_secs(3600))])
            .clock(clock.clone())
            .open(&path)
            .unwrap()
    };
    let (limiter, other) = (Arc::new(open()), open());
    limiter.try_acquire(1).unwrap();
    let (threads, each) = (24u64, 50u64);
    let counted = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let checked = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (limiter, counted, checked) = (limiter.clone(), counted.clone(), checked.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert!(limiter.try_acquire(1).is_err());
                }
                // Alive until the check: a thread's slot is its own while it lives.
                counted.wait();
                checked.wait();
            })
        })
        .collect();
    counted.wait();
    let seen = other.counters().unwrap().denied[0].unwrap();
    checked.wait();
    for worker in workers {
        worker.join().unwrap();
    }
    let refused = threads * each;
    assert!(
        ((threads - 16) * each..=refused).contains(&seen),
        "another handle sees {seen} of {refused}: threads without a slot kept theirs"
    );
    assert_eq!(limiter.counters().unwrap().denied, [Some(refused)]);
    drop(limiter);
    assert_eq!(other.counters().unwrap().denied, [Some(refused)]);
}

/// A thread that keeps being refused sends its kept repeats to the file within 20 ms
/// (`Repeats::LAG`) or 64 repeats, and at its next call the memo does not answer: a monitor
/// in another process is never further behind while the thread is active.
#[test]
fn kept_repeats_reach_the_file_within_their_lag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lag");
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let open = || {
        Limiter::builder(&[Rate::requests(1, SEC)])
            .clock(clock.clone())
            .open(&path)
            .unwrap()
    };
    let (limiter, monitor) = (open(), open());
    let seen = || monitor.counters().unwrap().denied[0].unwrap();
    limiter.try_acquire(1).unwrap();
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 1, "a fresh denial is counted in the file at once");
    for _ in 0..3 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 1, "repeats are kept");
    assert_eq!(limiter.counters().unwrap().denied, [Some(4)]);
    clock.advance(Duration::from_millis(19));
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 1, "19 ms: still kept");
    clock.advance(Duration::from_millis(1));
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(
        seen(),
        6,
        "20 ms after the first kept repeat, all of them are in the file"
    );
    // 64 kept repeats go at once, whatever the time.
    for _ in 0..63 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 6);
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen(), 70);
    // The next call the memo does not answer (here an admission, once the window has
    // passed) sends what is kept.
    for _ in 0..5 {
        assert!(limiter.try_acquire(1).is_err());
    }
    assert_eq!(seen(), 70);
    clock.advance(SEC);
    limiter.try_acquire(1).unwrap();
    assert_eq!(seen(), 75);
    assert_eq!(limiter.counters().unwrap().denied, [Some(75)]);
}
