//! What `status` shows of a limiter's journal: its header's journaled flag and its journal
//! record (where the journal is, and how it is written), in words and in JSON.

use std::path::Path;

use hostlimit::FileInfo;
use serde::Serialize;

use crate::cli::exit::Failure;
use crate::cli::target::Target;
use crate::cli::time::format_duration;

/// A limiter's journal as `status` shows it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct JournalView {
    /// Journaled: the header's flag is set, or a journal record names the limiter.
    pub journaled: bool,
    /// The journal directory, from the record.
    pub dir: Option<String>,
    /// `periodic` or `strict`, from the record.
    pub durability: Option<&'static str>,
    /// The flush interval (periodic) or lease length (strict), in ns.
    pub interval_ns: Option<u64>,
    /// The record file.
    pub record: Option<String>,
    /// Why the record could not be read, or that none was found for a journaled file.
    pub problem: Option<String>,
}

impl JournalView {
    /// The journal of the limiter at `path`, whose file says `info`.
    pub fn of(path: &Path, info: &FileInfo) -> JournalView {
        #[cfg_attr(not(feature = "journal"), allow(unused_mut))]
        let mut view = JournalView {
            journaled: info.journaled,
            ..JournalView::default()
        };
        #[cfg(feature = "journal")]
        match hostlimit::journal::recorded(path) {
            Ok(Some(record)) => {
                let (durability, interval) = match record.durability {
                    hostlimit::Durability::Strict { lease } => ("strict", lease),
                    hostlimit::Durability::Periodic(interval) => ("periodic", interval),
                    _ => ("other", std::time::Duration::ZERO),
                };
                view.journaled = true;
                view.dir = Some(record.journal.display().to_string());
                view.durability = Some(durability);
                view.interval_ns = Some(crate::cli::time::nanos(interval));
                view.record = Some(record.record.display().to_string());
            }
            Ok(None) if info.journaled => {
                view.problem = Some(format!(
                    "made with a journal, but no journal record of it is found (state \
                     directory {})",
                    hostlimit::journal::state_dir()
                        .map_or_else(|| "unknown".into(), |d| d.display().to_string())
                ));
            }
            Ok(None) => {}
            Err(error) => view.problem = Some(error.to_string()),
        }
        #[cfg(not(feature = "journal"))]
        let _ = path;
        view
    }

    /// One line for `status` (with its indent and newline), or nothing for a limiter that
    /// is not journaled.
    pub fn line(&self) -> String {
        match (&self.dir, &self.problem) {
            (Some(dir), _) => format!(
                "  journal {dir} ({}, {} {})\n",
                self.durability.unwrap_or("?"),
                if self.durability == Some("strict") {
                    "leases of"
                } else {
                    "every"
                },
                format_duration(std::time::Duration::from_nanos(
                    self.interval_ns.unwrap_or(0)
                )),
            ),
            (None, Some(problem)) => format!("  journal: {problem}\n"),
            (None, None) => String::new(),
        }
    }
}

/// A missing limiter that is journaled is not gone for good: `failure` (no such limiter)
/// says so, and when its next opener brings it back.
pub fn explain_missing(target: &Target, failure: Failure) -> Failure {
    #[cfg(feature = "journal")]
    if failure.exit == crate::cli::exit::Exit::NoInput
        && let Ok(Some(record)) = hostlimit::journal::recorded(&target.path)
    {
        let message = format!(
            "{}; it is journaled (journal {}): the next process to open it re-creates it with \
             its history",
            failure.message,
            record.journal.display()
        );
        return Failure::new(crate::cli::exit::Exit::NoInput, message);
    }
    #[cfg(not(feature = "journal"))]
    let _ = target;
    failure
}
