//! The one switch that stops writes, and what a refused writer hears. The
//! write path closes it on a storage fault or a failed check; everything
//! that takes writes asks it first.

use std::sync::{Arc, Mutex};

use fundtrail_core::Rejection;
use tracing::warn;

/// The one switch that stops writes, with the reason. Once stopped, writes
/// stay stopped until the server restarts and recovery says otherwise.
#[derive(Clone)]
pub struct WriteGate {
    reason: Arc<Mutex<Option<String>>>,
    /// Whether writes are open, for those who watch (the health service).
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl WriteGate {
    pub(crate) fn new(reason: Option<String>) -> WriteGate {
        let (open, _) = tokio::sync::watch::channel(reason.is_none());
        WriteGate {
            reason: Arc::new(Mutex::new(reason)),
            open: Arc::new(open),
        }
    }

    /// Stops writes from now on, saying why; the first reason is kept.
    pub fn stop(&self, reason: String) {
        warn!(%reason, "refusing writes from now on");
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(reason);
        self.open.send_replace(false);
    }

    /// Follows whether writes are open.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// Why writes are refused, if they are.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_stopped(&self) -> bool {
        self.reason().is_some()
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
