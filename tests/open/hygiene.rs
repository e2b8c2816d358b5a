//! File hygiene: private files, exact modes whatever the umask, directories made only when
//! asked, symbolic links and world-writable directories refused, unusable directories
//! explained.

use super::*;

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
