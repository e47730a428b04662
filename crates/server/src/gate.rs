//! The one switch that stops writes, and what a refused writer hears. The
//! write path closes it on a storage fault or a failed check; everything
//! that takes writes asks it first.

use std::sync::{Arc, Mutex};

use fundtrail_core::{Fault, FaultKind, Rejection};
use tracing::warn;

/// Why writes stopped. Each says, for people, what happened (its
/// `Display`); the variant says what kind of thing it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Recovery at start-up found the journal damaged, cut short or
    /// disagreeing with the state or a signed checkpoint.
    Recovery(String),
    /// The ledger is a verifying replica: it takes no writes at all.
    Replica,
    /// A store failed (the state store, the journal, the tree, the
    /// checkpoint log): the fault's kind says what mends it, its message
    /// which store and how.
    StoreFailed(Fault),
    /// A stage of the write path ended (the journal writer, the indexer).
    StageEnded(&'static str),
    /// Reading another writer's records into the state failed.
    Resync(String),
    /// The scrub found a record, a checkpoint or the state wrong.
    Scrub(String),
    /// Stopped by hand (an operator, a test).
    Asked(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::StoreFailed(fault) => write!(f, "{fault}"),
            Stop::Recovery(reason) | Stop::Resync(reason) | Stop::Asked(reason) => {
                f.write_str(reason)
            }
            Stop::Replica => f.write_str("a replica: it takes no writes"),
            Stop::StageEnded(stage) => write!(f, "the {stage} has stopped"),
            Stop::Scrub(problem) => write!(f, "scrub: {problem}"),
        }
    }
}

impl Stop {
    /// What stopped writes, as the `fundtrail_writes_stopped` metric labels
    /// it: what an operator's alert tells apart.
    pub fn name(&self) -> &'static str {
        match self {
            Stop::Recovery(_) => "recovery",
            Stop::Replica => "replica",
            Stop::StoreFailed(fault) => match fault.kind {
                FaultKind::Io => "store_io",
                FaultKind::Corrupt => "store_corrupt",
                FaultKind::TooNew => "store_too_new",
                FaultKind::Bug => "bug",
            },
            Stop::StageEnded(_) => "stage_ended",
            Stop::Resync(_) => "resync",
            Stop::Scrub(_) => "scrub",
            Stop::Asked(_) => "asked",
        }
    }

    /// Every name [`Stop::name`] gives, so the metric has a series for each.
    pub const NAMES: [&'static str; 10] = [
        "recovery",
        "replica",
        "store_io",
        "store_corrupt",
        "store_too_new",
        "bug",
        "stage_ended",
        "resync",
        "scrub",
        "asked",
    ];
}

/// The one switch that stops writes, with the reason. Once stopped, writes
/// stay stopped until the server restarts and recovery says otherwise.
#[derive(Clone)]
pub struct WriteGate {
    stopped: Arc<Mutex<Option<Stop>>>,
    /// Whether writes are open, for those who watch (the health service).
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl WriteGate {
    pub(crate) fn new(stopped: Option<Stop>) -> WriteGate {
        let (open, _) = tokio::sync::watch::channel(stopped.is_none());
        WriteGate {
            stopped: Arc::new(Mutex::new(stopped)),
            open: Arc::new(open),
        }
    }

    /// Stops writes from now on, saying why; the first reason is kept.
    pub fn stop(&self, why: Stop) {
        warn!(reason = %why, "refusing writes from now on");
        let mut slot = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(why);
        self.open.send_replace(false);
    }

    /// Follows whether writes are open.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// Why writes are refused, if they are.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why writes are refused, in words, if they are.
    pub fn reason(&self) -> Option<String> {
        self.stopped().map(|why| why.to_string())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped().is_some()
    }
}

/// The refusal of a write while writes are stopped.
pub(crate) fn not_writing(reason: &str) -> Rejection {
    Rejection::unavailable(format!("the ledger is not accepting writes: {reason}"))
}

/// What a client hears when a storage fault stopped writes before its
/// request was recorded.
pub(crate) fn stopped_by_fault() -> Rejection {
    Rejection::unavailable(
        "the ledger's store failed and it stopped taking writes; the request was not recorded. Retry later with the same idempotency key",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stop_has_a_metric_series() {
        let stops = [
            Stop::Recovery(String::new()),
            Stop::Replica,
            Stop::StoreFailed(Fault::io("")),
            Stop::StoreFailed(Fault::corrupt("")),
            Stop::StoreFailed(Fault::new(FaultKind::TooNew, "")),
            Stop::StoreFailed(Fault::bug("")),
            Stop::StageEnded("journal writer"),
            Stop::Resync(String::new()),
            Stop::Scrub(String::new()),
            Stop::Asked(String::new()),
        ];
        let names: Vec<&str> = stops.iter().map(Stop::name).collect();
        assert_eq!(names, Stop::NAMES);
    }
}
