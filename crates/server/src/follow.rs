//! A verifying replica: follows a ledger kept in PostgreSQL by reading its
//! tables (a standby's, usually) and trusts nothing it reads. It moves from
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
use fundtrail_store::JournalStore;
use tracing::{info, warn};

use crate::engine::{recover, Engine};

/// Where a replica writes why it stopped following, in its data directory.
pub const EVIDENCE_FILE_NAME: &str = "follow-evidence.txt";

/// How long a replica waits before looking for a newer checkpoint.
pub const FOLLOW_POLL_MS: u64 = 200;

/// What a replica says about itself, as its read-only reason.
pub struct ReplicaStatus(tokio::sync::watch::Sender<String>);

impl Default for ReplicaStatus {
    fn default() -> Self {
        ReplicaStatus(tokio::sync::watch::channel(String::new()).0)
    }
}

impl ReplicaStatus {
    pub fn get(&self) -> String {
        self.0.borrow().clone()
    }

    /// Changes to the status, as they happen.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<String> {
        self.0.subscribe()
    }

    fn set(&self, status: String) {
        self.0.send_replace(status);
    }
}

/// Why one step of following did not advance.
enum Stop {
    /// The upstream is unreachable or behind: try again later.
    Wait(String),
    /// The upstream showed something that fails a check: stop for good.
    Evidence(String),
}

/// Follows the database at `url` until the engine stops or the upstream
/// fails a check.
pub(crate) fn run(engine: Arc<Engine>, url: String, status: Arc<ReplicaStatus>) {
    let upstream = fundtrail_pg::target_of(&url);
    let mut follower = None;
    while !engine.is_stopping() {
        let step = match &mut follower {
            Some(follower) => step(&engine, follower),
            None => match Follower::connect(&url, &engine) {
                Ok(connected) => {
                    follower = Some(connected);
                    continue;
                }
                Err(why) => Err(Stop::Wait(why)),
            },
        };
        let verified = engine.record_count();
        match step {
            Ok(advanced) => {
                // The lag is the difference of the two sizes.
                let newest = follower.as_ref().map_or(verified, |f| f.upstream_newest);
                status.set(format!(
                    "a replica of {upstream}: it takes no writes; verified up to the checkpoint of {verified} records; the upstream's newest checkpoint is of {newest} records"
                ));
                if advanced {
                    continue;
                }
            }
            Err(Stop::Wait(why)) => {
                status.set(format!(
                    "a replica of {upstream}: it takes no writes; verified up to the checkpoint of {verified} records; cannot follow now: {why}"
                ));
                follower = None;
            }
            Err(Stop::Evidence(evidence)) => {
                warn!(%evidence, "stopped following");
                let path = engine.data_dir().join(EVIDENCE_FILE_NAME);
                if let Err(e) = std::fs::write(&path, &evidence) {
                    warn!(error = %e, "cannot write the evidence file");
                }
                status.set(format!(
                    "a replica of {upstream} that stopped following at the checkpoint of {verified} records: the upstream failed a check (evidence in {EVIDENCE_FILE_NAME}): {}",
                    evidence.lines().next().unwrap_or_default()
                ));
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(FOLLOW_POLL_MS));
    }
}

/// The upstream's tables, read.
struct Follower {
    /// The size of the newest checkpoint the upstream showed.
    upstream_newest: u64,
    journal: PgJournal,
    reader: Arc<dyn fundtrail_store::RecordReader>,
    checkpoints: PgCheckpoints,
}

impl Follower {
    fn connect(url: &str, engine: &Engine) -> Result<Follower, String> {
        let journal =
            PgJournal::open(url, Some(&engine.meta().ledger_id)).map_err(|e| e.to_string())?;
        let reader = journal.reader().map_err(|e| e.to_string())?;
        let checkpoints = PgCheckpoints::open(url).map_err(|e| e.to_string())?;
        Ok(Follower {
            upstream_newest: 0,
            journal,
            reader,
            checkpoints,
        })
    }
}

/// Moves to the upstream's newest checkpoint if it is newer than the one
/// verified; says whether it did.
fn step(engine: &Engine, follower: &mut Follower) -> Result<bool, Stop> {
    let wait = |e: &dyn std::fmt::Display| Stop::Wait(e.to_string());
    let Some(note) = follower.checkpoints.newest_note().map_err(|e| wait(&e))? else {
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
    let checkpoint = fundtrail_tlog::Checkpoint::parse(&opened.text).map_err(|e| {
        Stop::Evidence(format!(
            "the upstream's newest checkpoint is malformed: {e}\n\n{note}"
        ))
    })?;
    follower.upstream_newest = checkpoint.tree_size;
    let verified = engine.record_count();
    if checkpoint.tree_size <= verified {
        // Not newer: it must still be a checkpoint of this replica's tree.
        let root = fundtrail_tlog::tree_hash(checkpoint.tree_size, engine.state())
            .map_err(|e| Stop::Wait(e.to_string()))?;
        if root != checkpoint.root_hash {
            let adopted = engine
                .checkpoints()
                .get(checkpoint.tree_size)
                .or_else(|| engine.checkpoints().latest())
                .map(|signed| signed.note_with_cosignatures())
                .unwrap_or_default();
            return Err(Stop::Evidence(format!(
                "the log signed two different checkpoints: the upstream's of {} records has another root than this replica's verified tree\n\nThe upstream's checkpoint:\n{note}\nThe checkpoint this replica adopted:\n{adopted}",
                checkpoint.tree_size
            )));
        }
        return Ok(false);
    }
    if !follower
        .journal
        .read_up_to(checkpoint.tree_size)
        .map_err(|e| wait(&e))?
    {
        // A standby that has the checkpoint row has every record before
        // it; one that does not yet has neither.
        return Ok(false);
    }
    let state = engine.state();
    match recover(&mut follower.journal, state, follower.reader.as_ref()) {
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
    info!(
        records = adopted.checkpoint.tree_size,
        "verified up to a new checkpoint"
    );
    Ok(true)
}
