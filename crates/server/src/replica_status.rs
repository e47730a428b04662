//! What a verifying replica says about its following: the write path holds
//! it (a replica's read-only reason, its gauges), the follower sets it.

/// Where a replica stands, as `GetLedger` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaReport {
    /// For people: what it verified and what it waits for, or why it
    /// stopped. Its read-only reason.
    pub reason: String,
    /// The upstream, named without secrets.
    pub upstream: String,
    /// The size of the upstream's newest checkpoint seen (the lag is this
    /// minus the records verified).
    pub upstream_checkpoint_size: u64,
    /// The upstream failed a check: the replica follows no more.
    pub stopped: bool,
}

/// What a replica says about itself, as it changes.
pub struct ReplicaStatus(tokio::sync::watch::Sender<ReplicaReport>);

impl Default for ReplicaStatus {
    fn default() -> Self {
        ReplicaStatus(tokio::sync::watch::channel(ReplicaReport::default()).0)
    }
}

impl ReplicaStatus {
    pub fn get(&self) -> ReplicaReport {
        self.0.borrow().clone()
    }

    /// Changes to the status, as they happen.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<ReplicaReport> {
        self.0.subscribe()
    }

    pub(crate) fn set(&self, report: ReplicaReport) {
        self.0.send_replace(report);
    }
}
