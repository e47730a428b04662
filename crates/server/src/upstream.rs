//! What a verifying replica follows, and the one way it reads any
//! upstream (`Source`): the follower (`crate::follow`) drives a source,
//! the PostgreSQL tables or another node (`crate::follow_node`) implement it.

use fundtrail_store::{JournalStore, RecordReader};
use fundtrail_tlog::Checkpoint;

use crate::engine::Engine;

/// What a verifying replica follows.
#[derive(Clone)]
pub enum Upstream {
    /// The tables of a ledger kept in PostgreSQL (a standby's, usually), at
    /// this connection string, read with a SELECT-only role.
    Database(String),
    /// Another fundtrail node (a writer or a replica), over gRPC.
    Node(Box<NodeUpstream>),
}

/// A fundtrail node to follow over gRPC.
#[derive(Clone)]
pub struct NodeUpstream {
    pub url: String,
    pub tls: fundtrail_client::TlsFiles,
    /// A key of an org that may export the whole log (a MIRROR org, the
    /// root org, or an audit office at `000000`): it signs the reads.
    pub reader: fundtrail_client::Signer,
}

impl Upstream {
    /// The upstream as the status names it: no password or key.
    pub fn name(&self) -> String {
        match self {
            Upstream::Database(url) => fundtrail_pg::target_of(url),
            Upstream::Node(node) => node.url.clone(),
        }
    }
}

/// Where a replica reads the upstream's checkpoints and records.
pub(crate) trait Source {
    /// The upstream's newest signed checkpoint, with any cosignatures.
    fn newest_note(&mut self) -> Result<Option<String>, Stop>;

    /// Makes the records up to `checkpoint`'s size readable from
    /// [`Source::journal`]; false when the upstream does not have them yet.
    fn fetch(&mut self, engine: &Engine, checkpoint: &Checkpoint, note: &str)
        -> Result<bool, Stop>;

    /// The journal recovery replays the fetched records from.
    fn journal(&mut self) -> (&mut dyn JournalStore, &dyn RecordReader);
}

/// Why one step of following did not advance.
pub(crate) enum Stop {
    /// The upstream is unreachable or behind: try again later.
    Wait(String),
    /// The upstream showed something that fails a check: stop for good.
    Evidence(String),
}

/// The upstream's checkpoint `note` of `size` records next to the one this
/// replica adopted at that size (or its newest): two signed checkpoints,
/// the evidence of a fork.
pub(crate) fn against_adopted(engine: &Engine, size: u64, note: &str) -> String {
    let adopted = engine
        .checkpoints()
        .get(size)
        .or_else(|| engine.checkpoints().latest())
        .map(|signed| signed.note_with_cosignatures())
        .unwrap_or_default();
    format!("The upstream's checkpoint:\n{note}\nThe checkpoint this replica adopted:\n{adopted}")
}
