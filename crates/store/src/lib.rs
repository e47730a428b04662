//! Durable storage for fundtrail: the journal file (the truth) and the
//! sled-backed derived state (balances, registry, indexes) with its
//! "applied up to" watermark.
//!
//! sled 0.34's `flush()` does not fsync, so sled alone cannot make
//! "acknowledged means durable" true. The [`journal::Journal`] is an
//! append-only file of framed, checksummed records made durable with one
//! `fdatasync` per group-commit batch; [`state::StateDb`] can be thrown away
//! and rebuilt by replaying the journal.

pub mod journal;
pub mod secret;
pub mod state;
pub mod tree;

pub use journal::{Journal, JournalReader};
pub use state::{StateDb, Watermark};
pub use tree::PendingTree;
