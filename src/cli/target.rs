//! Which file a command works on: a limiter is named by a path (anything containing `/`) or
//! by a name in the limiter directory (`--dir`, else `$HOSTLIMIT_DIR`, else
//! `/dev/shm/hostlimit`). With the `redis` feature, `redis://HOST:PORT/DB#NAME` names the
//! limiter `NAME` on a Redis server instead.

use std::path::{Path, PathBuf};

use hostlimit::Limiter;

use crate::cli::exit::{Exit, Failure, io_exit};

/// A limiter as the user named it, and its file.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name as given (or the file name, for a directory listing).
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// The limiter directory: `--dir` wins over `$HOSTLIMIT_DIR`, which wins over the default.
pub fn directory(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(hostlimit::default_dir, Path::to_path_buf)
}

/// The scheme of a limiter on a Redis server.
#[cfg(feature = "redis")]
const REDIS_SCHEME: &str = "redis://";

impl Target {
    /// For `redis://HOST:PORT/DB#NAME`: the server's URL and the limiter's name.
    #[cfg(feature = "redis")]
    pub fn remote(&self) -> Option<(&str, &str)> {
        if !self.name.starts_with(REDIS_SCHEME) {
            return None;
        }
        self.name.rsplit_once('#')
    }

    /// Attaches to the limiter as it is: a file's rates, or those stored on the server.
    ///
    /// # Errors
    ///
    /// What [`Limiter::attach`] or [`Limiter::redis`]'s `connect` gives.
    #[cfg(feature = "redis")]
    pub fn attach(&self) -> Result<Limiter, hostlimit::Error> {
        self.remote_limiter()
            .unwrap_or_else(|| Limiter::attach(&self.path))
    }

    /// For a limiter on a Redis server, the connection to it with the rates stored there;
    /// `None` for a file.
    pub fn remote_limiter(&self) -> Option<Result<Limiter, hostlimit::Error>> {
        #[cfg(feature = "redis")]
        if let Some((url, name)) = self.remote() {
            return Some(Limiter::redis(url, name, &[]).connect());
        }
        None
    }
}

/// Resolves one limiter argument.
///
/// # Errors
///
/// A name that cannot be a limiter file name (exit 64).
pub fn resolve(dir: &Path, name: &str) -> Result<Target, Failure> {
    #[cfg(feature = "redis")]
    if name.starts_with(REDIS_SCHEME) {
        if !name.contains('#') {
            return Err(Failure::new(
                Exit::Usage,
                format!("{name}: name the limiter on the server: redis://HOST:PORT/DB#NAME"),
            ));
        }
        return Ok(Target {
            name: name.to_string(),
            path: PathBuf::from(name),
        });
    }
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        hostlimit::path_for(dir, name)?
    };
    Ok(Target {
        name: name.to_string(),
        path,
    })
}

/// Every entry of the limiter directory except hidden ones (the library's temporary files
/// start with `.`), sorted by name. The directory of named limiters holds none until the
/// first is created; any other missing directory is an error (it may be a typo).
///
/// # Errors
///
/// The directory does not exist (other than the directory of named limiters), or cannot be
/// read.
pub fn list(dir: &Path) -> Result<Vec<Target>, Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == hostlimit::default_dir() => {
            return Ok(Vec::new());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(
                Exit::NoInput,
                format!(
                    "{}: no such directory (no limiter was ever created there: check the \
                     spelling of --dir or $HOSTLIMIT_DIR)",
                    dir.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::new(
                io_exit(&e),
                format!(
                    "{}: read directory: {e}: it is {}; ask its owner for read and search \
                     permission, or name the limiters you may read (status NAME...)",
                    dir.display(),
                    whose(dir)
                ),
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                io_exit(&e),
                format!("{}: read directory: {e}", dir.display()),
            ));
        }
    };
    let mut targets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Failure::new(Exit::Io, format!("{}: read directory: {e}", dir.display()))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            targets.push(Target {
                name,
                path: entry.path(),
            });
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

/// Whose `path` is, in words: `owned by alice with group svc and mode 0700`.
fn whose(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return "of an owner and mode that cannot be read".into();
    };
    let user = match nix::unistd::User::from_uid(meta.uid().into()) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {}", meta.uid()),
    };
    let group = match nix::unistd::Group::from_gid(meta.gid().into()) {
        Ok(Some(group)) => group.name,
        _ => format!("gid {}", meta.gid()),
    };
    format!(
        "owned by {user} with group {group} and mode {:04o}",
        meta.mode() & 0o7777
    )
}

/// The named limiters, or every limiter in the directory if none is named.
///
/// # Errors
///
/// An invalid name, or an unreadable directory.
pub fn named_or_all(dir: &Path, names: &[String]) -> Result<Vec<Target>, Failure> {
    if names.is_empty() {
        list(dir)
    } else {
        names.iter().map(|name| resolve(dir, name)).collect()
    }
}
