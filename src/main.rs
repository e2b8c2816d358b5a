//! The `hostlimit` command (placeholder until the CLI lands).
fn main() {}
