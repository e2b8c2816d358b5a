//! Integration tests: one binary, one module per concern (matklad, "Delete Cargo Integration
//! Tests"). Tests that need several processes re-execute this binary as workers on a real
//! limiter file in a temporary directory.

#[cfg(feature = "cli")]
mod chart;
#[cfg(feature = "cli")]
mod cli;
mod hostile;
#[cfg(feature = "journal")]
mod journal;
mod lifecycle;
mod multiprocess;
mod open;
mod protocol;
mod readme;
#[cfg(feature = "redis")]
mod redis;
mod support;
#[cfg(feature = "cli")]
mod top;
