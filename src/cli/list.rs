//! `hostlimit list`: the limiters in the directory, one line each, with their rates.

use std::path::Path;

use serde::Serialize;

use crate::cli::exit::{Exit, Failure};
use crate::cli::report;
use crate::cli::{print_json, print_out};

#[derive(Serialize)]
struct ListJson {
    ok: bool,
    dir: String,
    limiters: Vec<EntryJson>,
}

#[derive(Serialize)]
struct EntryJson {
    name: String,
    path: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `hostlimit list`.
pub fn list(dir: &Path, json: bool) -> Result<Exit, Failure> {
    let snapshots = report::read_all(dir, &[])?;
    let entries: Vec<EntryJson> = snapshots
        .iter()
        .map(|snapshot| {
            let (rates, error) = match &snapshot.state {
                Ok(state) => (
                    Some(state.info.rates.iter().map(ToString::to_string).collect()),
                    None,
                ),
                Err(failure) => (None, Some(failure.message.clone())),
            };
            EntryJson {
                name: snapshot.target.name.clone(),
                path: snapshot.target.path.display().to_string(),
                valid: rates.is_some(),
                rates,
                error,
            }
        })
        .collect();
    if json {
        print_json(&ListJson {
            ok: true,
            dir: dir.display().to_string(),
            limiters: entries,
        })?;
        return Ok(Exit::Success);
    }
    if entries.is_empty() {
        print_out(&format!("no limiters in {}\n", dir.display()))?;
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            let what = match (&entry.rates, &entry.error) {
                (Some(rates), _) => rates.join(", "),
                (None, Some(error)) => format!("not a usable limiter: {error}"),
                (None, None) => String::new(),
            };
            vec![entry.name.clone(), what]
        })
        .collect();
    // Names left-aligned, then the rates: `table` right-aligns all but the first column.
    let width = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for row in &rows {
        text.push_str(&format!("{:<width$}  {}\n", row[0], row[1]));
    }
    print_out(&text)?;
    Ok(Exit::Success)
}
