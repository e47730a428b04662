//! Crash points, for tests that stop the server at one exact step. When
//! the environment variable [`CRASH_AT_ENV`] names a point, reaching it
//! aborts the process on the spot: no answer is sent, nothing more is
//! written or flushed, as if the machine had lost power. Unset (always, in
//! production) a point costs one load of a value read once.

use std::sync::OnceLock;

/// The environment variable that names the point to crash at.
pub const CRASH_AT_ENV: &str = "FUNDTRAIL_CRASH_AT";

/// After the journal made a batch durable, before any of its clients is
/// answered.
pub const AFTER_JOURNAL_COMMIT: &str = "after-journal-commit";

/// After a new checkpoint is in its first store (the database, for a
/// journal kept in PostgreSQL), before the others and before it is served.
pub const AFTER_CHECKPOINT_STORED: &str = "after-checkpoint-stored";

/// Aborts the process if the environment names `point`.
pub fn point(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(CRASH_AT_ENV).ok());
    if armed.as_deref() == Some(point) {
        eprintln!("{CRASH_AT_ENV}={point}: crashing here");
        std::process::abort();
    }
}
