//! `hostlimit set`: changing the rates of a limiter in use, keeping its history.

use hostlimit::Rate;
use serde::Serialize;

use crate::cli::exit::{Exit, Failure};
use crate::cli::target::Target;
use crate::cli::{print_json, print_out};

/// The `--json` document of `set`.
#[derive(Serialize)]
struct Set<'a> {
    ok: bool,
    limiter: &'a str,
    path: String,
    /// `set`, or `unchanged` when the limiter already had these rates.
    action: &'static str,
    old_rates: Vec<String>,
    rates: Vec<String>,
    /// Admissions the old file held.
    read: u64,
    /// Records the new file starts with (those inside a new window).
    kept: u64,
    old_capacity: u64,
    capacity: u64,
}

/// `hostlimit set`: gives the limiter `rates`, keeping the admissions inside the new windows.
pub fn set(target: &Target, rates: &[Rate], json: bool) -> Result<Exit, Failure> {
    let done =
        hostlimit::reconfigure(&target.path, rates).map_err(|e| Failure::about(target, e))?;
    let text = |rates: &[Rate]| rates.iter().map(ToString::to_string).collect::<Vec<_>>();
    if json {
        print_json(&Set {
            ok: true,
            limiter: &target.name,
            path: target.path.display().to_string(),
            action: if done.changed { "set" } else { "unchanged" },
            old_rates: text(&done.old_rates),
            rates: text(&done.new_rates),
            read: done.read,
            kept: done.kept,
            old_capacity: done.capacity.0,
            capacity: done.capacity.1,
        })?;
    } else if done.changed {
        print_out(&format!(
            "{}: {} -> {}; {} of {} recorded admissions still inside the new windows kept; \
             every process using it adopts the new rates at its next call\n",
            target.name,
            text(&done.old_rates).join(", "),
            text(&done.new_rates).join(", "),
            done.kept,
            done.read,
        ))?;
    } else {
        print_out(&format!(
            "{}: already limits {}; nothing changed\n",
            target.name,
            text(&done.new_rates).join(", ")
        ))?;
    }
    Ok(Exit::Success)
}
