//! `create`, `reset` and `rm`: a limiter's life cycle.

use std::os::unix::fs::MetadataExt;

use hostlimit::{Error, Limiter, OldFile, Rate};

use crate::cli::exit::{Exit, Failure, io_exit};
use crate::cli::mappers;
use crate::cli::print_err;
use crate::cli::target::Target;

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

/// `hostlimit create`: creates the limiter, or checks that it already has these rates.
pub fn create(target: &Target, rates: &[Rate], mode: u32) -> Result<Exit, Failure> {
    Limiter::builder(rates).mode(mode).open(&target.path)?;
    Ok(Exit::Success)
}

/// `hostlimit reset`.
pub fn reset(target: &Target, force: bool) -> Result<Exit, Failure> {
    refuse_if_mapped(
        target,
        force,
        "reset",
        "each of them moves to the fresh file at its next call",
    )?;
    if let old @ OldFile::Damaged(_) = hostlimit::reset(&target.path)? {
        print_err(&format!(
            "{}: was {old}; it is a fresh limiter with the same rates now",
            target.path.display()
        ));
    }
    Ok(Exit::Success)
}

/// `hostlimit rm`.
pub fn remove(target: &Target, force: bool) -> Result<Exit, Failure> {
    refuse_if_mapped(
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
        Err(error) => return Err(error.into()),
    }
    Ok(Exit::Success)
}

/// Refuses (exit 75) while another process maps the file, unless `force`; says which.
fn refuse_if_mapped(
    target: &Target,
    force: bool,
    verb: &str,
    consequence: &str,
) -> Result<(), Failure> {
    let path = target.path.display();
    let meta = std::fs::symlink_metadata(&target.path).map_err(|e| {
        let exit = io_exit(&e);
        if exit == Exit::NoInput {
            Failure::new(exit, format!("{path}: no such limiter"))
        } else {
            Failure::new(exit, format!("{path}: {e}"))
        }
    })?;
    let scan = mappers::scan(&meta);
    if scan.mappers.is_empty() {
        if scan.unreadable > 0 && meta.mode() & 0o066 != 0 {
            print_err(&format!(
                "note: {path} is shared with other users, and the maps of {} of their \
                 processes could not be read; they may still use it",
                scan.unreadable
            ));
        }
        return Ok(());
    }
    let who = scan.describe();
    if force {
        print_err(&format!(
            "{path}: {verb} while still mapped by {who}: {consequence}"
        ));
        Ok(())
    } else {
        Err(Failure::new(
            Exit::TempFail,
            format!(
                "{path}: still mapped by {who}; stop them first, or {verb} anyway with --force \
                 ({consequence})"
            ),
        ))
    }
}
