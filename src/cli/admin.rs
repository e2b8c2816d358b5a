//! `create`, `reset` and `rm`: a limiter's life cycle.

use std::os::unix::fs::MetadataExt;

use hostlimit::{Builder, Error, OldFile};
use serde::Serialize;

use crate::cli::args::{JournalArgs, RateArgs};
use crate::cli::exit::{Exit, Failure, io_exit};
use crate::cli::mappers;
use crate::cli::target::Target;
use crate::cli::{print_err, print_json};

/// Parses permission bits written in octal: `0660`, `660`, `0o660`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "{text:?} is not a file mode; expected octal permission bits such as 0600 or 0660"
        )),
    }
}

/// Parses `--group`: a group name, or a number.
pub fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!(
            "no group {text:?} on this host (see `getent group`); give a group name or number"
        )),
        Err(e) => Err(format!("cannot look up group {text:?}: {e}")),
    }
}

/// The `--json` document of `create`, `reset` and `rm`.
#[derive(Serialize)]
struct Done<'a> {
    ok: bool,
    limiter: &'a str,
    path: String,
    /// What was done: `created`, `exists` (with the same rates), `reset`, `removed`.
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<Vec<String>>,
    /// Processes that still mapped the file (`--force`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    still_mapped_by: Vec<u32>,
    /// The limiter's journal directory, if it is journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<String>,
    /// What the command did to the journal: `recorded` (create), `marked_reset` (reset),
    /// `removed` or `kept` (rm).
    #[serde(skip_serializing_if = "Option::is_none")]
    journal_action: Option<&'static str>,
}

impl<'a> Done<'a> {
    fn new(target: &'a Target, action: &'static str) -> Done<'a> {
        Done {
            ok: true,
            limiter: &target.name,
            path: target.path.display().to_string(),
            action,
            rates: None,
            still_mapped_by: Vec::new(),
            journal: None,
            journal_action: None,
        }
    }
}

/// `hostlimit create`: creates the limiter, or checks that it already has these rates.
/// `builder` with the journal `journal` asks for, if any: `--journal-dir`, else the
/// limiter's recorded journal, else a directory named after it in the state directory.
pub fn with_journal(
    builder: Builder,
    journal: &JournalArgs,
    target: &Target,
) -> Result<Builder, Failure> {
    if !journal.wanted() {
        return Ok(builder);
    }
    #[cfg(feature = "journal")]
    {
        let dir = match &journal.journal_dir {
            Some(dir) => dir.clone(),
            None => match hostlimit::journal::recorded(&target.path) {
                Ok(Some(record)) => record.journal,
                Ok(None) => hostlimit::journal::default_journal_dir(&target.path)
                    .map_err(|e| Failure::about(target, e))?,
                Err(e) => return Err(Failure::about(target, e)),
            },
        };
        Ok(builder.journal(dir, journal.durability()))
    }
    #[cfg(not(feature = "journal"))]
    {
        let _ = builder;
        Err(Failure::new(
            Exit::Usage,
            format!(
                "{}: this hostlimit was built without the journal feature; --journal needs it",
                target.path.display()
            ),
        ))
    }
}

/// The limiter's journal directory, if it is journaled; an unreadable record is a failure
/// (whether the command would touch a journal cannot be told).
fn journal_of(target: &Target) -> Result<Option<String>, Failure> {
    #[cfg(feature = "journal")]
    {
        hostlimit::journal::recorded(&target.path)
            .map(|record| record.map(|r| r.journal.display().to_string()))
            .map_err(|e| Failure::about(target, e))
    }
    #[cfg(not(feature = "journal"))]
    {
        let _ = target;
        Ok(None)
    }
}

pub fn create(
    target: &Target,
    rates: &RateArgs,
    journal: &JournalArgs,
    json: bool,
) -> Result<Exit, Failure> {
    if rates.rates.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "create needs at least one --rate, as in `{} create {} --rate 10/s`",
                crate::cli::program::ours(),
                target.name
            ),
        ));
    }
    let limiter = with_journal(rates.builder(), journal, target)?
        .open(&target.path)
        .map_err(|e| Failure::about(target, e))?;
    let info = limiter.info();
    let created = info.creator_pid == u64::from(std::process::id());
    if !created {
        same_permissions(target, rates)?;
    }
    if json {
        let mut done = Done::new(target, if created { "created" } else { "exists" });
        done.rates = Some(info.rates.iter().map(ToString::to_string).collect());
        done.journal = journal_of(target)?;
        done.journal_action = done.journal.as_ref().map(|_| "recorded");
        print_json(&done)?;
    }
    Ok(Exit::Success)
}

/// An existing limiter that `create` was asked for must have the mode given with `--mode`
/// and the group given with `--group`: `create` says so and fails rather than leave other
/// permissions than the user believes.
fn same_permissions(target: &Target, rates: &RateArgs) -> Result<(), Failure> {
    let path = target.path.display();
    let meta = std::fs::symlink_metadata(&target.path)
        .map_err(|e| Failure::new(io_exit(&e), format!("{path}: {e}")))?;
    let mode = meta.mode() & 0o777;
    let mode_differs = rates.mode.is_some_and(|asked| asked != mode);
    let group_differs = rates.group.is_some_and(|gid| gid != meta.gid());
    if !mode_differs && !group_differs {
        return Ok(());
    }
    let group = |gid: u32| match nix::unistd::Group::from_gid(gid.into()) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    };
    let asked = [
        rates.mode.map(|asked| format!("mode {asked:04o}")),
        rates.group.map(|gid| format!("group {}", group(gid))),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" and ");
    Err(Failure::new(
        Exit::Data,
        format!(
            "{path}: this limiter exists with mode {mode:04o} and group {}, not the {asked} \
             asked for; change it as its owner (chmod, chgrp), or create it with its own \
             permissions",
            group(meta.gid()),
        ),
    ))
}

/// `hostlimit reset`.
pub fn reset(target: &Target, force: bool, json: bool) -> Result<Exit, Failure> {
    #[cfg(feature = "redis")]
    if target.remote().is_some() {
        // Every client of a server is on another host: nothing to scan, nothing to force.
        target
            .attach()
            .and_then(|limiter| limiter.reset())
            .map_err(|e| Failure::about(target, e))?;
        let scan = Default::default();
        // The server keeps the log: there is no journal to speak of.
        return finish(target, "reset", &scan, (None, None), json);
    }
    let scan = refuse_if_mapped(
        target,
        force,
        "reset",
        "each of them moves to the fresh file at its next call",
    )?;
    let journal = journal_of(target)?;
    let old = hostlimit::reset(&target.path).map_err(|e| Failure::about(target, e))?;
    if let OldFile::Damaged(_) = &old {
        print_err(&format!(
            "{}: was {old}; it is a fresh limiter with the same rates now",
            target.path.display()
        ));
    }
    if let (Some(dir), false) = (&journal, json) {
        print_err(&format!(
            "{}: its journal {dir} forgets the admissions before the reset (it stays \
             journaled)",
            target.path.display()
        ));
    }
    let action = journal.as_ref().map(|_| "marked_reset");
    finish(target, "reset", &scan, (journal, action), json)
}

/// `hostlimit rm`.
pub fn remove(
    target: &Target,
    force: bool,
    keep_journal: bool,
    json: bool,
) -> Result<Exit, Failure> {
    let journal = journal_of(target)?;
    let action = journal
        .as_ref()
        .map(|_| if keep_journal { "kept" } else { "removed" });
    // A journaled limiter whose file is gone: its journal is what is left to remove.
    #[cfg(feature = "journal")]
    if journal.is_some() && !keep_journal && std::fs::symlink_metadata(&target.path).is_err() {
        hostlimit::journal::forget(&target.path).map_err(|e| Failure::about(target, e))?;
        if !json {
            print_err(&format!(
                "{}: no file; removed its journal {}",
                target.path.display(),
                journal.as_deref().unwrap_or_default()
            ));
        }
        return finish(
            target,
            "removed",
            &mappers::Scan::default(),
            (journal, action),
            json,
        );
    }
    let scan = refuse_if_mapped(
        target,
        force,
        "remove",
        if journal.is_some() && !keep_journal {
            "each of them re-creates the file with its own rates at its next call, without \
             the journal's history"
        } else {
            "each of them re-creates the file with its own rates at its next call"
        },
    )?;
    let removed = if keep_journal {
        hostlimit::remove_keeping_journal(&target.path)
    } else {
        hostlimit::remove(&target.path)
    };
    match removed {
        Ok(OldFile::Limiter) => {}
        Ok(old) => print_err(&format!("removed {}, {old}", target.path.display())),
        // The library removes only hostlimit files; the user may insist.
        Err(Error::Corrupt { reason, .. }) if reason.starts_with("not a ") => {
            let path = target.path.display();
            if !force {
                return Err(Failure::new(
                    Exit::Data,
                    format!("{path}: {reason}; remove it anyway with --force"),
                ));
            }
            std::fs::remove_file(&target.path)
                .map_err(|e| Failure::new(io_exit(&e), format!("{path}: {e}")))?;
            print_err(&format!("removed {path}, which was {reason}"));
        }
        Err(error) => return Err(Failure::about(target, error)),
    }
    if let (Some(dir), false) = (&journal, json) {
        print_err(&if keep_journal {
            format!(
                "{}: removed; its journal {dir} is kept, and the next process to open it \
                 re-creates it with the journal's history",
                target.path.display()
            )
        } else {
            format!("{}: removed, and its journal {dir}", target.path.display())
        });
    }
    finish(target, "removed", &scan, (journal, action), json)
}

/// After a reset or removal: the note about other users' processes that could not be seen
/// (only now that the file proved to be a limiter), and the JSON document.
fn finish(
    target: &Target,
    action: &'static str,
    scan: &mappers::Scan,
    (journal, journal_action): (Option<String>, Option<&'static str>),
    json: bool,
) -> Result<Exit, Failure> {
    if scan.mappers.is_empty() && scan.unreadable > 0 && scan.shared {
        print_err(&format!(
            "note: {} is shared with other users, and the maps of {} of their processes \
             could not be read; they may still use it",
            target.path.display(),
            scan.unreadable
        ));
    }
    if json {
        let mut done = Done::new(target, action);
        done.still_mapped_by = scan.mappers.iter().map(|m| m.pid).collect();
        done.journal = journal;
        done.journal_action = journal_action;
        print_json(&done)?;
    }
    Ok(Exit::Success)
}

/// Refuses (exit 75) while another process maps the file, unless `force`; says which.
fn refuse_if_mapped(
    target: &Target,
    force: bool,
    verb: &str,
    consequence: &str,
) -> Result<mappers::Scan, Failure> {
    let path = target.path.display();
    let meta = std::fs::symlink_metadata(&target.path).map_err(|e| {
        let exit = io_exit(&e);
        if exit == Exit::NoInput {
            Failure::missing(target, false)
        } else {
            Failure::new(exit, format!("{path}: {e}"))
        }
    })?;
    let mut scan = mappers::scan(&meta);
    scan.shared = meta.mode() & 0o066 != 0;
    if scan.mappers.is_empty() {
        return Ok(scan);
    }
    let who = scan.describe();
    if force {
        print_err(&format!(
            "{path}: {verb} while still mapped by {who}: {consequence}"
        ));
        Ok(scan)
    } else {
        Err(Failure::new(
            Exit::TempFail,
            format!(
                "{path}: still mapped by {who}; stop them first, or {verb} anyway with --force \
                 ({consequence})"
            ),
        )
        .with(
            "still_mapped_by",
            scan.mappers.iter().map(|m| m.pid).collect::<Vec<_>>(),
        ))
    }
}
