//! # How it works: the file format and the commit protocol
//!
//! This page is documentation only. The code it describes lives in `src/layout.rs` (the
//! format), `src/protocol.rs` and its files in `src/protocol/` (the protocol) and
//! `src/region.rs` (creating and mapping the file); their module docs go into more detail.
//!
//! ## The shared file
//!
//! A limiter is one file, by default `/dev/shm/hostlimit/NAME` (a tmpfs, so that sharing
//! never causes disk I/O). Every process maps the whole file and works on it with atomic
//! instructions only; no lock of any kind lives in it.
//!
//! | offset  | size           | content |
//! |---------|----------------|---------|
//! | 0       | 320            | header words, immutable after creation (below) |
//! | 1024    | 8              | the hint: sequence number of a recent record |
//! | 1152    | 8              | laps: how often the 32-bit sequence number wrapped |
//! | 1280    | 8              | journaled: the newest record known to be in the SQLite journal (journal flushers only) |
//! | 4096    | 64 × 128       | counter shards: 8 denial counters (one per rate), then the never-fits and the timed-out-waits counters, per shard; a process counts in shard `pid mod 64`. Statistics only: a counter no real use could reach (2^56 in one shard) is shown as implausible |
//! | 12288   | 16 × capacity  | the ring: one 128-bit admission record per slot |
//!
//! Header words (little-endian `u64`; word `i` at offset `8 i`):
//!
//! | word | field |
//! |------|-------|
//! | 0 | magic, `b"hostlim\x01"` |
//! | 1 | layout version (1) |
//! | 2 | FNV-1a checksum of words 3..40 |
//! | 3 | file size in bytes |
//! | 4 | ring capacity in slots (a power of two) |
//! | 5 | number of rates (1..=8) |
//! | 6 | clock id (7 = `CLOCK_BOOTTIME`) |
//! | 7, 8 | boot id of the boot the file was made in |
//! | 9 | inode of the creator's time namespace (`/proc/self/ns/time`) |
//! | 10, 11 | creation time: wall clock and file clock, ns |
//! | 12, 13 | creator pid and uid |
//! | 14 | unit labels, one byte per rate: 0 none, 1 tokens (`tok`), 2 bytes (`B`); names only, for display |
//! | 15 | bits 0..31 and 32..64: lineage, an id drawn when the limiter's first file was made and how often its rates were changed since ([`reconfigure`](crate::reconfigure)); bit 31: made with a journal (where it is, is recorded in the state directory, see `hostlimit::journal`); 0 in older files |
//! | 16 + 3i .. 18 + 3i | rate i: limit, window in ns, 0 = counts weight / 1 = counts requests |
//!
//! **Creation** is race-free: the file is made unnamed (`O_TMPFILE`) in the target directory,
//! sized, given its header and an empty ring, and only then linked into place with `linkat`.
//! Of several processes creating at once exactly one link succeeds; the others get `EEXIST`
//! and attach to the winner's file. A process that dies half-way leaves nothing behind.
//!
//! **Attaching** validates before touching any atomic: a regular file, at least the header
//! page long, magic, version, checksum, rates (each valid, capacity and size implied by them),
//! the file size, and the clock (clock id, boot id, time namespace must be this process's).
//! Opening with other rates is [`Error::ConfigMismatch`](crate::Error::ConfigMismatch);
//! [`Limiter::attach`](crate::Limiter::attach) adopts the file's rates.
//!
//! **Re-attaching.** Once a second each limiter compares `stat(path)` with the file it maps;
//! if the path now names another file (or none), it attaches to that (creating it if needed),
//! so two groups of processes never run two independent limiters under one name for more
//! than that interval. [`reset`](crate::reset) and [`remove`](crate::remove) go further: they
//! close the old log with a tombstone record, which every process sees at its very next call.
//! A reset exchanges the names of a fresh file and the old one (`renameat2` with
//! `RENAME_EXCHANGE`), a remove renames the file away, so that each closes exactly the file
//! it displaced, even when several race.
//!
//! **Changing the rates** ([`reconfigure`](crate::reconfigure), `hostlimit set`) takes an
//! exclusive `flock` on the old file, closes its log with a tombstone (so nothing more is
//! committed to it), reads every record its ring holds, and makes the new file with those
//! inside a new window as its starting history (at most as dense as the new rates allow, as a
//! journal's restore does), with the old lineage's id and the next generation; then it
//! exchanges the names, as a reset does, and lets go of the lock. A process that meets the
//! closed log while the path still names it waits while the lock is held (at most 5 s), then
//! attaches to the new file and, because its lineage succeeds the one it was on, adopts its
//! rates; a closed log nobody holds (the change's process died) is reported at once, and
//! running the change again finishes it.
//!
//! ## The ring and its records
//!
//! Each slot holds one admission record in 128 bits: the recorded timestamp (64 bits, ns of
//! the file's clock), the sequence number (32 bits) and the cumulative weight of all records
//! up to this one (32 bits). Record `k` lives in slot `k mod capacity`. Weights are never
//! added up one by one: the weight inside a window is the difference of two cumulative sums,
//! and the number of requests the difference of two sequence numbers, so an acquire of weight
//! 100,000 costs what an acquire of weight 1 does.
//!
//! The ring is sized from the rates: a rate of limit `L` and window `w` admits at most
//! `L × ⌈W / w⌉` records in any interval of the longest window `W`; the ring holds the
//! smallest such bound plus two, rounded up to a power of two. So it always reaches back past
//! the start of every window, and a full ring can never cause a false denial. Configurations
//! that would need more than 2^22 slots (64 MiB) are refused with
//! [`Error::TooLarge`](crate::Error::TooLarge); adding a rate that counts requests bounds the
//! records and so the ring.
//!
//! ## The commit protocol
//!
//! The newest record `n` is the one whose slot holds `n` while the next slot still holds
//! its previous lap, record `n + 1 - capacity`. An acquire:
//!
//! 0. if it repeats this process's last denial (same weight, before its retry time), loads
//!    the slot after the record that denial was computed on: if it still holds its previous
//!    lap, nothing was committed since, the log is the same, and so is the answer (the
//!    memo: one 16-byte process-local word, never in the file). Otherwise it goes on:
//! 1. finds `n`, starting from the hint and walking forward (a walk overtaken by a lap of
//!    commits goes on from the later record it found; on a ring that no process writes
//!    meanwhile, a walk reads each slot at most once, so garbage costs at most one lap);
//! 2. takes `t = max(now, timestamp of n)`, the timestamp it will record (with `now` kept
//!    within `1..=2^64 - 2`: time 0 belongs to the sentinel and the fake records of a new
//!    ring, before every admission, and `2^64 - 1` to the tombstone of a closed log);
//! 3. for every rate, finds the weight inside `(t - window, t]`. A rate that counts
//!    requests needs one load: fewer than `limit` records lie in the window exactly when
//!    record `n + 1 - limit` has a timestamp at or before `t - window` (timestamps never
//!    decrease along the log). A weight rate first tries the record its hint names: if that
//!    record lies between one and two windows back, the weight after it bounds the window's
//!    (and is below `2 * limit`, so its 32-bit difference is exact), and a request that fits
//!    under the bound is admitted without a search. Otherwise a galloping search from the
//!    hint finds the newest record at or before `t - window`;
//! 4. if a rate is full, re-reads the next slot: unchanged means no commit happened meanwhile,
//!    so the denial was computed on one state; it reports the rate that frees up last and the
//!    exact moment the request would fit;
//! 5. otherwise compare-exchanges the next slot (`lock cmpxchg16b`) from record
//!    `n + 1 - capacity` to the new record `n + 1`. **That single instruction is the commit**,
//!    for every rate at once. If it fails, someone else committed: start again.
//!
//! Nothing is written before the commit and nothing needs finishing after it (the hint is
//! only a hint), so a process killed or stopped at any instruction holds nothing and leaves
//! nothing half-done: the others never wait for it (lock-freedom), and capacity is neither
//! leaked nor invented.
//!
//! ## What is guaranteed, in recorded timestamps
//!
//! A record's timestamp is `max(the caller's clock reading, the previous record's
//! timestamp)` (a reading of 0 is recorded as 1 ns): timestamps never decrease along the log, and each lies between the moment the
//! caller read the clock and the moment of its commit. For every rate and every instant `t`,
//! the weight of the records with timestamps in `(t - window, t]` never exceeds the limit.
//! Because a process can be preempted between reading the clock and committing, an admission
//! may be recorded slightly earlier than it committed; in real time, the admissions that
//! commit within any interval of length `window` can exceed the limit only by those whose
//! read-to-commit delay straddled the interval's start.
//!
//! ## The journal: limits that survive a reboot
//!
//! With the `journal` feature (on by default) and `Builder::journal`, admissions are also
//! written to a SQLite database on disk. A limiter that has to *create* the shared file
//! (after a reboot, or after the file was deleted) first reads the journal and starts the
//! ring with the admissions still inside the longest window: records `1..=m` in slots
//! `1..=m`, written before the file is linked into place, with the hint and the journaled
//! word at `m`. Journaled timestamps carry the clock identity (boot id included) and the
//! wall-clock time; in the same boot they are restored exactly, from another boot through the
//! wall clock, clamped so that a wall clock that stepped back only makes them expire later.
//!
//! `Durability::Periodic` journals the ring from a background thread once per interval:
//! `try_acquire` never waits for SQLite, and a crash forgets at most the last interval.
//! `Durability::Strict` commits a lease ("weight X and N requests, until T") before handing
//! any of it out: a crash forgets nothing, and counts the unused remainder of the lease each
//! crashed process held as used. The journaled word lets processes share the work: a flusher
//! reads the ring from the record after it, writes the records in one `BEGIN IMMEDIATE`
//! transaction (`INSERT OR IGNORE` on the admission's identity, so a race writes nothing
//! twice), then raises it. Records the ring no longer holds were overwritten by a later lap,
//! which the ring's sizing puts outside every window for good: they need no journaling. The
//! `journal` module has the schema and the details.
