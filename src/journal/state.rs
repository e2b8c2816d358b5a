//! The journal record: the knowledge "this limiter is journaled, its journal is there", on
//! disk, so that it survives the loss of the tmpfs the shared file lives on.
//!
//! A limiter opened with a journal records it in the *state directory*, in a small text file
//! named after the limiter's absolute path (`/dev/shm/hostlimit/daily` is
//! `dev+shm+hostlimit+daily.limiter`), written atomically (a temporary file renamed into
//! place):
//!
//! ```text
//! hostlimit journal record 1
//! limiter /dev/shm/hostlimit/daily
//! journal /var/lib/hostlimit/dev+shm+hostlimit+daily.journal
//! durability periodic 1000000000
//! rates 10/h
//! ```
//!
//! Every opener looks for the record before it may create the file: the library with or
//! without `.journal`, [`Limiter::attach`](crate::Limiter::attach), a running process that
//! re-creates a deleted file, the command line. A limiter with a record is opened with its
//! journal (and its history restored if the file is created), and an open whose journal is
//! missing or unreadable fails; nothing starts empty silently.
//!
//! Where records are written: `$HOSTLIMIT_STATE_DIR` if set, else `/var/lib/hostlimit` for
//! root, else `$XDG_STATE_HOME/hostlimit`, else `~/.local/state/hostlimit`. Where they are
//! looked for: `$HOSTLIMIT_STATE_DIR` alone if set, else the caller's own state directory and
//! `/var/lib/hostlimit` (root's records hold for every user). A state directory the caller
//! may not search is skipped (it can hold no record the caller could use). A record is read
//! as untrusted input: at most [`MAX_RECORD`] bytes, every line checked, and its `limiter`
//! line must name the path it was found for; a record that is there but cannot be read or
//! parsed is an error, never "not journaled".

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::rate::Rate;

use super::Durability;

/// The environment variable that names the state directory (for writing and for looking).
pub const STATE_DIR_ENV: &str = "HOSTLIMIT_STATE_DIR";

/// Root's state directory; also searched for every other user's limiters.
pub const ROOT_STATE_DIR: &str = "/var/lib/hostlimit";

/// The largest record read, in bytes.
pub const MAX_RECORD: u64 = 64 * 1024;

const FIRST_LINE: &str = "hostlimit journal record 1";
const RECORD: &str = "limiter";
const JOURNAL: &str = "journal";

/// A limiter's journal record: where its journal is, how it is written, and its rates (so
/// that [`Limiter::attach`](crate::Limiter::attach) can re-create the file after a reboot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The record file itself.
    pub record: PathBuf,
    /// The limiter's file (absolute).
    pub limiter: PathBuf,
    /// The journal directory.
    pub journal: PathBuf,
    /// How the process that recorded it journals; processes that open the limiter without
    /// `.journal` journal so too.
    pub durability: Durability,
    /// The rates of the file (as shaped by pacing, if any).
    pub rates: Vec<Rate>,
}

/// The state directory records are written to (see [the journal's docs](crate::journal#durability-belongs-to-the-limiter)); `None` if none
/// can be named (no `$HOSTLIMIT_STATE_DIR`, not root, no `$XDG_STATE_HOME` and no `$HOME`).
pub fn state_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env(STATE_DIR_ENV) {
        return Some(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from(ROOT_STATE_DIR));
    }
    if let Some(xdg) = env("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("hostlimit"));
    }
    env("HOME")
        .filter(|p| p.is_absolute())
        .map(|home| home.join(".local/state/hostlimit"))
}

/// The directories a record is looked for in, in order.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = state_dir().into_iter().collect();
    let root = PathBuf::from(ROOT_STATE_DIR);
    if std::env::var_os(STATE_DIR_ENV).is_none_or(|v| v.is_empty()) && !dirs.contains(&root) {
        dirs.push(root);
    }
    dirs
}

/// The limiter's path as records name it: absolute (symbolic links are not resolved, so
/// every process should name the limiter by the same path).
pub fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::io(path, "make the path absolute", e))
}

/// The file name (without extension) of a limiter's record: its absolute path without the
/// leading `/`, `/` written `+`, `[A-Za-z0-9._-]` as they are, every other byte `%XX`. One
/// path has one key and one key one path. `None` if the key would be too long for a file
/// name.
fn key(absolute: &Path) -> Option<String> {
    let bytes = absolute.as_os_str().as_bytes();
    let bytes = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let mut key = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'/' => key.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => key.push(char::from(b)),
            other => key.push_str(&format!("%{other:02X}")),
        }
    }
    (!key.is_empty() && key.len() <= 200).then_some(key)
}

/// Where `limiter`'s journal goes when none is named (the command line's `--journal`): a
/// directory beside its record in the [`state_dir`], `KEY.journal`.
///
/// # Errors
///
/// No state directory can be named, or the path is too long for one.
pub fn default_journal_dir(limiter: impl AsRef<Path>) -> Result<PathBuf, Error> {
    let absolute = absolute(limiter.as_ref())?;
    let dir = state_dir().ok_or_else(|| no_state_dir(&absolute))?;
    let key = key(&absolute).ok_or_else(|| too_long(&absolute))?;
    Ok(dir.join(format!("{key}.{JOURNAL}")))
}

fn no_state_dir(limiter: &Path) -> Error {
    Error::Journal {
        path: limiter.to_path_buf(),
        reason: format!(
            "no state directory to record the journal in: set {STATE_DIR_ENV} (or HOME, or \
             XDG_STATE_HOME)"
        ),
    }
}

fn too_long(limiter: &Path) -> Error {
    Error::Journal {
        path: limiter.to_path_buf(),
        reason: "the limiter's path is too long to be recorded as journaled".into(),
    }
}

/// The record of the limiter at `limiter`, if one exists in a searched directory.
///
/// # Errors
///
/// A record that exists but cannot be read or does not parse ([`Error::Journal`] naming it):
/// whether the limiter is journaled cannot be told then.
pub fn recorded(limiter: impl AsRef<Path>) -> Result<Option<JournalRecord>, Error> {
    let absolute = absolute(limiter.as_ref())?;
    let Some(key) = key(&absolute) else {
        return Ok(None);
    };
    for dir in search_dirs() {
        let record = dir.join(format!("{key}.{RECORD}"));
        match fs::File::open(&record) {
            Ok(file) => return read(&record, file, &absolute).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A state directory this user may not search (another user's, named by an
            // inherited HOSTLIMIT_STATE_DIR) holds no record this user could use; a record
            // that is there but unreadable is an error.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && fs::symlink_metadata(&record).is_err() => {}
            Err(e) => return Err(unreadable(&record, &e.to_string())),
        }
    }
    Ok(None)
}

fn unreadable(record: &Path, reason: &str) -> Error {
    Error::Journal {
        path: record.to_path_buf(),
        reason: format!(
            "unreadable journal record ({reason}): whether the limiter is journaled cannot be \
             told; repair or delete the record"
        ),
    }
}

fn read(record: &Path, file: fs::File, absolute: &Path) -> Result<JournalRecord, Error> {
    let mut text = String::new();
    file.take(MAX_RECORD + 1)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(record, &e.to_string()))?;
    if text.len() as u64 > MAX_RECORD {
        return Err(unreadable(record, "too long"));
    }
    parse(record, &text, absolute).map_err(|reason| unreadable(record, &reason))
}

fn parse(record: &Path, text: &str, absolute: &Path) -> Result<JournalRecord, String> {
    let mut lines = text.lines();
    if lines.next() != Some(FIRST_LINE) {
        return Err(format!("does not start with {FIRST_LINE:?}"));
    }
    let mut field = |name: &str| -> Result<&str, String> {
        lines
            .next()
            .and_then(|line| line.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(' '))
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("no {name:?} line where expected"))
    };
    let limiter = PathBuf::from(field(RECORD)?);
    let journal = PathBuf::from(field(JOURNAL)?);
    let durability = parse_durability(field("durability")?)?;
    let rates = field("rates")?
        .split(' ')
        .map(|r| r.parse::<Rate>().map_err(|e| format!("rate {r:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if limiter != absolute {
        return Err(format!(
            "it is the record of {}, not of {}",
            limiter.display(),
            absolute.display()
        ));
    }
    if !journal.is_absolute() {
        return Err("the journal's path is not absolute".into());
    }
    Ok(JournalRecord {
        record: record.to_path_buf(),
        limiter,
        journal,
        durability,
        rates,
    })
}

fn durability_text(durability: Durability) -> String {
    match durability {
        Durability::Periodic(interval) => format!("periodic {}", interval.as_nanos()),
        Durability::Strict { lease } => format!("strict {}", lease.as_nanos()),
    }
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    let (mode, nanos) = text
        .split_once(' ')
        .ok_or_else(|| format!("durability {text:?}"))?;
    let nanos: u64 = nanos
        .parse()
        .map_err(|_| format!("durability interval {nanos:?}"))?;
    let interval = Duration::from_nanos(nanos);
    match mode {
        "periodic" => Ok(Durability::Periodic(interval)),
        "strict" => Ok(Durability::Strict { lease: interval }),
        _ => Err(format!("durability mode {mode:?}")),
    }
}

/// Records that the limiter at `limiter` (absolute) is journaled in `journal`, with
/// `durability` and `rates`, in the [`state_dir`] (created, mode 0755 for root's and 0700
/// otherwise, if missing). Replaces an older record of the same limiter atomically.
pub(crate) fn write(
    limiter: &Path,
    journal: &Path,
    durability: Durability,
    rates: &[Rate],
) -> Result<JournalRecord, Error> {
    let dir = state_dir().ok_or_else(|| no_state_dir(limiter))?;
    let key = key(limiter).ok_or_else(|| too_long(limiter))?;
    let journal = absolute(journal)?;
    for path in [limiter, &journal] {
        if path.as_os_str().as_bytes().contains(&b'\n') {
            return Err(Error::Journal {
                path: path.to_path_buf(),
                reason: "a path with a line break cannot be recorded".into(),
            });
        }
    }
    let record = JournalRecord {
        record: dir.join(format!("{key}.{RECORD}")),
        limiter: limiter.to_path_buf(),
        journal,
        durability,
        rates: rates.to_vec(),
    };
    create_state_dir(&dir).map_err(|e| Error::io(&dir, "create the state directory", e))?;
    install_record(&dir, &record)?;
    Ok(record)
}

/// Writes `record` over its file, in place: the same state directory (a record found in
/// root's stays there), atomically.
pub(crate) fn rewrite(record: &JournalRecord) -> Result<(), Error> {
    let dir = record.record.parent().unwrap_or(Path::new("/"));
    install_record(dir, record)
}

fn install_record(dir: &Path, record: &JournalRecord) -> Result<(), Error> {
    let text = format!(
        "{FIRST_LINE}\n{RECORD} {}\n{JOURNAL} {}\ndurability {}\nrates {}\n",
        record.limiter.display(),
        record.journal.display(),
        durability_text(record.durability),
        record
            .rates
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    );
    install(dir, &record.record, text.as_bytes())
        .map_err(|(op, e)| Error::io(&record.record, op, e))
}

/// Writes `bytes` to a temporary file of its own in `dir` (readable by every user: whoever
/// opens the limiter must find it), flushed to disk, and renames it to `target`.
pub(super) fn install(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
) -> Result<(), (&'static str, io::Error)> {
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let temporary = dir.join(format!(".tmp-{}-{nanos:x}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temporary)
        .map_err(|e| ("create a temporary file", e))
        .and_then(|mut file| {
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .and_then(|()| file.write_all(bytes))
                .and_then(|()| file.sync_all())
                .map_err(|e| ("write", e))
        })
        .and_then(|()| fs::rename(&temporary, target).map_err(|e| ("rename into place", e)));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

fn create_state_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mode = if dir == Path::new(ROOT_STATE_DIR) {
        0o755
    } else {
        0o700
    };
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// Deletes `record` and then its journal directory's own files (databases, their
/// `-wal`/`-shm` files, locks and the reset mark; anything else stays, and the directory with
/// it). The record goes first: a journal left half-deleted by a failure is then only an
/// orphan, never a history restored in part.
pub(crate) fn forget(record: &JournalRecord) -> Result<(), Error> {
    match fs::remove_file(&record.record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io(&record.record, "remove the journal record", e));
        }
        _ => {}
    }
    remove_journal(&record.journal)
}

fn remove_journal(journal: &Path) -> Result<(), Error> {
    let entries = match fs::read_dir(journal) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(journal, "read the journal directory", e)),
    };
    let ours = |name: &OsStr| {
        let name = name.to_string_lossy();
        name == super::reset::MARK
            || [".sqlite", ".sqlite-wal", ".sqlite-shm", ".lock"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(journal, "read the journal directory", e))?;
        if ours(&entry.file_name()) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io(entry.path(), "remove", e));
                }
                _ => {}
            }
        }
    }
    // Left in place if anything else is in it.
    let _ = fs::remove_dir(journal);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_one_and_file_names() {
        let paths = [
            "/dev/shm/hostlimit/daily",
            "/dev/shm/hostlimit+daily",
            "/dev/shm/host limit/daily",
            "/a/b-c",
            "/a-b/c",
            "/a%2Fb",
        ];
        let keys: Vec<String> = paths.iter().map(|p| key(Path::new(p)).unwrap()).collect();
        assert_eq!(keys[0], "dev+shm+hostlimit+daily");
        for (i, k) in keys.iter().enumerate() {
            assert!(!k.contains('/') && k.len() <= 200, "{k}");
            for other in &keys[i + 1..] {
                assert_ne!(k, other);
            }
        }
        assert_eq!(key(Path::new(&format!("/{}", "x".repeat(300)))), None);
    }

    #[test]
    fn a_record_reads_back_and_garbage_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("r.limiter");
        let limiter = Path::new("/dev/shm/hostlimit/daily");
        let text = format!(
            "{FIRST_LINE}\nlimiter /dev/shm/hostlimit/daily\njournal /var/j\n\
             durability strict 5000000\nrates 10/h 90000tok/min\n"
        );
        let parsed = parse(&record, &text, limiter).unwrap();
        assert_eq!(parsed.journal, Path::new("/var/j"));
        assert_eq!(
            parsed.durability,
            Durability::Strict {
                lease: Duration::from_millis(5)
            }
        );
        assert_eq!(parsed.rates.len(), 2);
        assert_eq!(
            durability_text(parsed.durability),
            "strict 5000000",
            "written as read"
        );
        for bad in [
            String::new(),
            "hostlimit journal record 2\n".to_string(),
            text.replace("daily\n", "weekly\n"),
            text.replace("/var/j", "var/j"),
            text.replace("strict", "sometimes"),
            text.replace("10/h", "10/fortnight"),
            text.replace("rates 10/h 90000tok/min\n", ""),
        ] {
            assert!(parse(&record, &bad, limiter).is_err(), "{bad:?}");
        }
        fs::write(&record, "x".repeat(MAX_RECORD as usize + 1)).unwrap();
        let error = read(&record, fs::File::open(&record).unwrap(), limiter).unwrap_err();
        assert!(error.to_string().contains("too long"), "{error}");
    }
}
