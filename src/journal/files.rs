//! The journal directory: one SQLite database per process, so that no process ever waits for
//! another's write lock, and a way to tell which databases still have a live writer.
//!
//! Each open journal writes only its own database, `PID-TAG.sqlite`, and holds an exclusive
//! `flock` on `PID-TAG.lock` for as long as it is open. The kernel drops that lock when the
//! process dies, however it dies, and never while it merely stops: a database whose lock can
//! be taken has no writer any more, and a process that takes the lock becomes the only one
//! allowed to fold that database into its own and delete it (a *claim*). The lock is a file of
//! its own, never the database: SQLite's POSIX locks on a database would be released by
//! closing any other descriptor of it in the same process.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

/// The extension of a journal database.
const DATABASE: &str = "sqlite";

/// The extension of a database's liveness lock.
const LOCK: &str = "lock";

/// A journal directory and this journal's own database in it.
#[derive(Debug)]
pub(super) struct Directory {
    path: PathBuf,
    own: PathBuf,
    /// Held until drop: says the own database has a live writer.
    lock: Option<Flock<File>>,
}

impl Directory {
    /// Opens (creating it if needed) the journal directory at `path`, and names this journal's
    /// own database in it, holding its lock. The error is in words for the user.
    pub fn open(path: &Path) -> Result<Directory, String> {
        if path.exists() && !path.is_dir() {
            return Err(
                "a file, not a journal directory (since schema version 2 a journal is a \
                 directory holding one SQLite database per process; move the file away)"
                    .into(),
            );
        }
        fs::create_dir_all(path).map_err(|e| format!("cannot create the directory: {e}"))?;
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for attempt in 0u128..64 {
            let tag = format!("{pid}-{:x}", nanos + attempt);
            let lock_path = path.join(format!("{tag}.{LOCK}"));
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", lock_path.display())),
            };
            // A claim of another process can hold it for an instant (it finds no database
            // and lets go): take another name.
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                return Ok(Directory {
                    path: path.to_path_buf(),
                    own: path.join(format!("{tag}.{DATABASE}")),
                    lock: Some(lock),
                });
            }
        }
        Err("cannot name a database of its own in it".into())
    }

    /// This journal's own database (it may not exist yet).
    pub fn own(&self) -> &Path {
        &self.own
    }

    /// Every database in the directory, this journal's own among them, in name order.
    pub fn databases(&self) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == DATABASE) {
                found.push(path);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Takes `database` over if no live process writes it (its lock is free) and it still
    /// exists; `None` if it is this journal's own, or has a writer, or is gone.
    pub fn claim(&self, database: &Path) -> Option<Claim> {
        if database == self.own {
            return None;
        }
        let lock_path = database.with_extension(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .ok()?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
        // Checked under the lock: a claim that deleted it let go only afterwards.
        database.exists().then(|| Claim {
            database: database.to_path_buf(),
            lock_path,
            _lock: lock,
        })
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // The database stays (its history is restored from it, and merged by a live process
        // later); the lock file goes while still locked, so nobody is left waiting on it.
        let _ = fs::remove_file(self.own.with_extension(LOCK));
        drop(self.lock.take());
    }
}

/// A database whose writer is gone, held by this process until it is removed.
#[derive(Debug)]
pub(super) struct Claim {
    database: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl Claim {
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// The database's stem (`PID-TAG`): how leases copied out of it remember where they
    /// came from.
    pub fn stem(&self) -> String {
        stem(&self.database)
    }

    /// Deletes the database (with SQLite's `-wal` and `-shm` files) and then its lock.
    pub fn remove(self) -> io::Result<()> {
        for suffix in ["-wal", "-shm", ""] {
            let mut name = self.database.as_os_str().to_owned();
            name.push(suffix);
            match fs::remove_file(PathBuf::from(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let _ = fs::remove_file(&self.lock_path);
        Ok(())
    }
}

/// A database's stem: `PID-TAG` for `PID-TAG.sqlite`.
pub(super) fn stem(database: &Path) -> String {
    database
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_journal_has_its_own_database_and_a_live_one_cannot_be_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let a = Directory::open(&path).unwrap();
        let b = Directory::open(&path).unwrap();
        assert_ne!(a.own(), b.own());
        for own in [a.own(), b.own()] {
            File::create(own).unwrap();
        }
        assert_eq!(a.databases().unwrap().len(), 2);
        // Alive: nobody can claim the other's database, nor its own.
        assert!(a.claim(b.own()).is_none() && a.claim(a.own()).is_none());
        let gone = b.own().to_path_buf();
        drop(b);
        let claim = a.claim(&gone).expect("a database without a writer");
        // Claimed: nobody else can claim it meanwhile.
        let c = Directory::open(&path).unwrap();
        assert!(c.claim(&gone).is_none());
        assert_eq!(claim.stem(), stem(&gone));
        claim.remove().unwrap();
        assert!(!gone.exists());
        assert!(
            c.claim(&gone).is_none(),
            "a removed database cannot be claimed"
        );
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        File::create(&path).unwrap();
        let error = Directory::open(&path).unwrap_err();
        assert!(error.contains("not a journal directory"), "{error}");
    }
}
