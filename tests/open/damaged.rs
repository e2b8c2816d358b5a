//! Damaged, foreign and truncated files: refused with the right error, never mapped; removed
//! or reset by their owner.

use super::*;

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
