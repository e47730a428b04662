//! A verifying replica: follows a ledger by reading the tables it is kept
//! in (in PostgreSQL, a standby's usually), or another fundtrail node over
//! gRPC (crate::follow_node), and trusts nothing it reads. It moves from
//! one signed checkpoint to the next: it takes the newest checkpoint the
//! log signed, checks the signature against the log key of the genesis it
//! replayed, replays every record up to that size with the same code as
//! the server's own recovery (each signature, each key's authority, each
//! record's effects recomputed), and adopts the checkpoint only if its own
//! tree has that root there and extends the checkpoint adopted before.
//!
//! A record that fails a check, or a checkpoint its tree does not have,
//! stops the following for good: the replica keeps serving what it
//! verified, says why in its read-only reason, and writes the evidence
//! (the two checkpoints, or the record) to [`EVIDENCE_FILE_NAME`].

use std::sync::Arc;
use std::time::Duration;

use fundtrail_pg::{PgCheckpoints, PgJournal};
use fundtrail_store::{JournalStore, RecordReader};
use fundtrail_tlog::Checkpoint;
use tracing::{info, warn};

use crate::engine::{recover, Engine};

/// Where a replica writes why it stopped following, in its data directory.
pub const EVIDENCE_FILE_NAME: &str = "follow-evidence.txt";

/// How long a replica waits before looking for a newer checkpoint.
pub const FOLLOW_POLL_MS: u64 = 200;

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

    fn set(&self, report: ReplicaReport) {
        self.0.send_replace(report);
    }
}

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
    fn name(&self) -> String {
        match self {
            Upstream::Database(url) => fundtrail_pg::target_of(url),
            Upstream::Node(node) => node.url.clone(),
        }
    }

    fn connect(&self, engine: &Engine) -> Result<Box<dyn Source>, String> {
        Ok(match self {
            Upstream::Database(url) => Box::new(Tables::connect(url, engine)?),
            Upstream::Node(node) => Box::new(crate::follow_node::Node::connect(node, engine)?),
        })
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

/// Follows `upstream` until the engine stops or the upstream fails a check.
pub(crate) fn run(engine: Arc<Engine>, upstream: Upstream, status: Arc<ReplicaStatus>) {
    let name = upstream.name();
    let mut source: Option<Box<dyn Source>> = None;
    let mut upstream_newest = 0;
    while !engine.is_stopping() {
        let step = match &mut source {
            Some(source) => step(&engine, source.as_mut(), &mut upstream_newest),
            None => match upstream.connect(&engine) {
                Ok(connected) => {
                    source = Some(connected);
                    continue;
                }
                Err(why) => Err(Stop::Wait(why)),
            },
        };
        let verified = engine.record_count();
        let report = |reason: String, stopped| ReplicaReport {
            reason,
            upstream: name.clone(),
            upstream_checkpoint_size: upstream_newest.max(verified),
            stopped,
        };
        match step {
            Ok(advanced) => {
                status.set(report(
                    format!(
                        "a replica of {name}: it takes no writes; verified up to the checkpoint of {verified} records; the upstream's newest checkpoint is of {} records",
                        upstream_newest.max(verified)
                    ),
                    false,
                ));
                if advanced {
                    continue;
                }
            }
            Err(Stop::Wait(why)) => {
                status.set(report(
                    format!(
                        "a replica of {name}: it takes no writes; verified up to the checkpoint of {verified} records; cannot follow now: {why}"
                    ),
                    false,
                ));
                source = None;
            }
            Err(Stop::Evidence(evidence)) => {
                warn!(%evidence, "stopped following");
                let path = engine.data_dir().join(EVIDENCE_FILE_NAME);
                if let Err(e) = std::fs::write(&path, &evidence) {
                    warn!(error = %e, "cannot write the evidence file");
                }
                status.set(report(
                    format!(
                        "a replica of {name} that stopped following at the checkpoint of {verified} records: the upstream failed a check (evidence in {EVIDENCE_FILE_NAME}): {}",
                        evidence.lines().next().unwrap_or_default()
                    ),
                    true,
                ));
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(FOLLOW_POLL_MS));
    }
}

/// The upstream's tables, read.
struct Tables {
    journal: PgJournal,
    reader: Arc<dyn RecordReader>,
    checkpoints: PgCheckpoints,
}

impl Tables {
    fn connect(url: &str, engine: &Engine) -> Result<Tables, String> {
        let journal =
            PgJournal::open(url, Some(&engine.meta().ledger_id)).map_err(|e| e.to_string())?;
        let reader = journal.reader().map_err(|e| e.to_string())?;
        let checkpoints = PgCheckpoints::open(url).map_err(|e| e.to_string())?;
        Ok(Tables {
            journal,
            reader,
            checkpoints,
        })
    }
}

impl Source for Tables {
    fn newest_note(&mut self) -> Result<Option<String>, Stop> {
        self.checkpoints
            .newest_note()
            .map_err(|e| Stop::Wait(e.to_string()))
    }

    fn fetch(&mut self, _: &Engine, checkpoint: &Checkpoint, _: &str) -> Result<bool, Stop> {
        // A standby that has the checkpoint row has every record before
        // it; one that does not yet has neither.
        self.journal
            .read_up_to(checkpoint.tree_size)
            .map_err(|e| Stop::Wait(e.to_string()))
    }

    fn journal(&mut self) -> (&mut dyn JournalStore, &dyn RecordReader) {
        (&mut self.journal, self.reader.as_ref())
    }
}

/// Moves to the upstream's newest checkpoint if it is newer than the one
/// verified; says whether it did.
fn step(engine: &Engine, source: &mut dyn Source, upstream_newest: &mut u64) -> Result<bool, Stop> {
    let Some(note) = source.newest_note()? else {
        return Ok(false);
    };
    let opened = fundtrail_tlog::open_note(
        &note,
        &[engine.checkpoints().verifier() as &dyn fundtrail_tlog::Verifier],
    )
    .map_err(|e| {
        Stop::Evidence(format!(
            "the upstream's newest checkpoint is not signed by the log: {e}\n\n{note}"
        ))
    })?;
    let checkpoint = Checkpoint::parse(&opened.text).map_err(|e| {
        Stop::Evidence(format!(
            "the upstream's newest checkpoint is malformed: {e}\n\n{note}"
        ))
    })?;
    *upstream_newest = checkpoint.tree_size;
    let verified = engine.record_count();
    if checkpoint.tree_size <= verified {
        // Not newer: it must still be a checkpoint of this replica's tree.
        let root = fundtrail_tlog::tree_hash(checkpoint.tree_size, engine.state())
            .map_err(|e| Stop::Wait(e.to_string()))?;
        if root != checkpoint.root_hash {
            return Err(Stop::Evidence(format!(
                "the log signed two different checkpoints: the upstream's of {} records has another root than this replica's verified tree\n\n{}",
                checkpoint.tree_size,
                against_adopted(engine, checkpoint.tree_size, &note)
            )));
        }
        return Ok(false);
    }
    if !source.fetch(engine, &checkpoint, &note)? {
        return Ok(false);
    }
    let state = engine.state();
    let (journal, reader) = source.journal();
    match recover(journal, state, reader) {
        Ok(None) => {}
        Ok(Some(problem)) => {
            return Err(Stop::Evidence(format!(
                "{problem}\n\nThe checkpoint that covers it:\n{note}"
            )))
        }
        Err(fault) => return Err(Stop::Wait(format!("the state store failed: {fault}"))),
    }
    let adopted = engine.checkpoints().adopt(&note, state).map_err(|why| {
        let before = engine
            .checkpoints()
            .latest()
            .map(|signed| signed.note_with_cosignatures())
            .unwrap_or_default();
        Stop::Evidence(format!(
            "{why}\n\nThe upstream's checkpoint:\n{note}\nThe checkpoint adopted before:\n{before}"
        ))
    })?;
    engine.advance_replica(adopted.checkpoint.tree_size);
    engine.metrics().checkpointed(engine.clock().now_ms());
    info!(
        records = adopted.checkpoint.tree_size,
        "verified up to a new checkpoint"
    );
    Ok(true)
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
