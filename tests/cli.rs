//! The `hostlimit` command, run as a user would.
