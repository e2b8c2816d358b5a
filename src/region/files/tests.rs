//! Files by name on real files: a read-only region never writes, the two-step replacement
//! and taking away displace exactly the file they say.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::fstat;

use super::displace::exchange_in_two_steps;
use super::*;
use crate::clock::ClockIdentity;
use crate::error::Error;
use crate::layout::{self, Header};
use crate::protocol::Rule;
use crate::region::{OpenSpec, Region};

fn header() -> Header {
    Header {
        capacity: 4,
        rules: vec![Rule {
            limit: 1,
            window: 1_000_000_000,
            requests: false,
        }],
        clock: ClockIdentity {
            clock_id: 7,
            boot_id: [1; 16],
            time_namespace: 2,
        },
        created_wall_ns: 1,
        created_clock_ns: 1,
        creator_pid: 1,
        creator_uid: 0,
        labels: 0,
        flags: 0,
        lineage: Default::default(),
    }
}

fn owner() -> Owner {
    Owner {
        uid: None,
        gid: None,
        mode: 0o600,
    }
}

fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn limiter_at(path: &Path) -> Region {
    let header = header();
    let spec = OpenSpec {
        create: Some(&header),
        mode: 0o600,
        group: None,
        dirs: Dirs::Existing,
    };
    Region::open_with_history(path, &spec, &[]).unwrap()
}

/// A read-only region never writes to its file: the protocol steps that write get a
/// stand-in ring (reported corrupt; on the real `PROT_READ` mapping they would fault),
/// the counters a stand-in word; loads see the file as it is.
#[test]
#[cfg_attr(miri, ignore)] // real files
fn a_read_only_region_never_writes_to_its_file() {
    use crate::protocol::{self, Hints, NoHook, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lim");
    let writer = limiter_at(&path);
    let rules = header().rules;
    let Ok(outcome) = protocol::acquire(
        &writer.words(),
        &rules,
        5,
        1,
        &mut Hints::default(),
        &NoHook,
    );
    assert!(matches!(outcome, Outcome::Admitted(_)), "{outcome:?}");
    if crate::region::atomic::primitives().load_writes {
        let error = Region::observe(&path).unwrap_err();
        assert!(matches!(error, Error::Unsupported(_)), "{error:?}");
        return;
    }
    let reader = Region::observe(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let Ok(usage) = protocol::usage(&reader.read_words(), &rules, 6, &NoHook);
    assert_eq!(usage.unwrap().rates[0].used, 1);
    let Ok(outcome) = protocol::acquire(
        &reader.words(),
        &rules,
        2_000_000_000,
        1,
        &mut Hints::default(),
        &NoHook,
    );
    assert!(matches!(outcome, Outcome::Corrupt(_)), "{outcome:?}");
    let Ok(retired) = protocol::retire(&reader.words(), &NoHook);
    assert!(retired.is_err(), "{retired:?}");
    reader
        .denial_counter(0)
        .fetch_add(1, crate::sync::Ordering::Relaxed);
    reader
        .tally_counter(layout::Tally::NeverFits)
        .fetch_add(1, crate::sync::Ordering::Relaxed);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read-only region wrote"
    );
    assert_eq!(writer.denials(0), Some(0));
    // The writer's changes are seen.
    writer
        .denial_counter(0)
        .fetch_add(1, crate::sync::Ordering::Relaxed);
    assert_eq!(reader.denials(0), Some(1));
}

/// Where the file system cannot exchange names, the old file is renamed away and the new
/// one linked in its place: the caller still gets exactly the file it replaced, and
/// nothing is left behind.
#[test]
#[cfg_attr(miri, ignore)] // real files
fn the_two_step_replacement_displaces_exactly_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lim");
    let old = limiter_at(&path);
    let old_ino = ino(&path);
    let (dir_path, name) = split(&path).unwrap();
    let dir_fd = open_dir(&dir_path).unwrap();
    let fresh = Fresh {
        header: &header(),
        history: &[],
    };
    let made = make(&path, &dir_fd, &dir_path, name, &fresh, &owner()).unwrap();
    let displaced = exchange_in_two_steps(&path, dir_fd, name, made).unwrap();
    assert_ne!(ino(&path), old_ino, "not replaced");
    let displaced_ino = fstat(displaced.fd().unwrap()).unwrap().st_ino;
    assert_eq!(displaced_ino, old_ino, "displaced another file");
    assert_eq!(names(dir.path()).len(), 2);
    displaced.delete().unwrap();
    assert_eq!(names(dir.path()), ["lim"]);
    // The new file is a complete limiter file.
    assert_eq!(limiter_at(&path).header(), old.header());
}

/// A file taken away goes back where it was if nothing took its place, and is kept
/// under its temporary name (and said so) if something did.
#[test]
#[cfg_attr(miri, ignore)] // real files
fn a_file_taken_away_is_put_back_or_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lim");
    std::fs::write(&path, b"precious").unwrap();
    let inode = ino(&path);
    let (dir_path, name) = split(&path).unwrap();
    let taken = take_away(&path, open_dir(&dir_path).unwrap(), name).unwrap();
    assert!(!path.exists());
    taken.put_back().unwrap();
    assert_eq!((ino(&path), names(dir.path())), (inode, vec!["lim".into()]));

    let taken = take_away(&path, open_dir(&dir_path).unwrap(), name).unwrap();
    std::fs::write(&path, b"newer").unwrap();
    let error = taken.put_back().unwrap_err().to_string();
    assert!(error.contains("kept here"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    let kept: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n != "lim")
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(error.contains(&kept[0]), "{error}");
    assert_eq!(
        std::fs::read(dir.path().join(&kept[0])).unwrap(),
        b"precious"
    );
}
