//! loom models of hostlimit's commit protocol: one test binary, run by `loom-tests/run.sh`.
//!
//! * `models`: the correct protocol under concurrency, every invariant checked in every
//!   explored execution;
//! * `crashes`: a thread killed before each of its shared-memory steps in turn;
//! * `broken`: deliberately broken variants of the protocol, each caught by an invariant.

#![cfg(loom)]

mod broken;
mod crashes;
mod models;
