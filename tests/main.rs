//! Integration tests: one binary, one module per concern (matklad, "Delete Cargo Integration
//! Tests"). Tests that need several processes re-execute this binary as workers on a real
//! limiter file in a temporary directory.

#[cfg(feature = "cli")]
mod chart;
#[cfg(feature = "cli")]
mod cli;
#[cfg(all(feature = "cli", feature = "journal"))]
mod durable;
mod hostile;
#[cfg(feature = "journal")]
mod journal;
mod lifecycle;
mod multiprocess;
mod open;
mod protocol;
mod readme;
mod reconfigure;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "cli")]
mod sharing;
mod support;
#[cfg(feature = "cli")]
mod top;
