//! `create`, `reset` and `rm`: a limiter's life cycle.

use std::os::unix::fs::MetadataExt;

use hostlimit::{Error, Limiter, OldFile};
use serde::Serialize;

use crate::cli::args::RateArgs;
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
        }
    }
}

/// `hostlimit create`: creates the limiter, or checks that it already has these rates.
pub fn create(target: &Target, rates: &RateArgs, json: bool) -> Result<Exit, Failure> {
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
    let limiter = Limiter::builder(&rates.rates)
        .mode(rates.mode)
        .pace(rates.pacing())
        .open(&target.path)
        .map_err(|e| Failure::about(target, e))?;
    if json {
        let info = limiter.info();
        let created = info.creator_pid == u64::from(std::process::id());
        let mut done = Done::new(target, if created { "created" } else { "exists" });
        done.rates = Some(info.rates.iter().map(ToString::to_string).collect());
        print_json(&done)?;
    }
    Ok(Exit::Success)
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
        return finish(target, "reset", &scan, json);
    }
    let scan = refuse_if_mapped(
        target,
        force,
        "reset",
        "each of them moves to the fresh file at its next call",
    )?;
    let old = hostlimit::reset(&target.path).map_err(|e| Failure::about(target, e))?;
    if let OldFile::Damaged(_) = &old {
        print_err(&format!(
            "{}: was {old}; it is a fresh limiter with the same rates now",
            target.path.display()
        ));
    }
    finish(target, "reset", &scan, json)
}

/// `hostlimit rm`.
pub fn remove(target: &Target, force: bool, json: bool) -> Result<Exit, Failure> {
    let scan = refuse_if_mapped(
        target,
        force,
        "remove",
        "each of them re-creates the file with its own rates at its next call",
    )?;
    match hostlimit::remove(&target.path) {
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
    finish(target, "removed", &scan, json)
}

/// After a reset or removal: the note about other users' processes that could not be seen
/// (only now that the file proved to be a limiter), and the JSON document.
fn finish(
    target: &Target,
    action: &'static str,
    scan: &mappers::Scan,
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
