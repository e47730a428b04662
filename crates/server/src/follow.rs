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

use std::path::Path;

use fundtrail_store::journal::JOURNAL_FILE_NAME;

use crate::dirlock::DataDirLock;
use crate::engine::{open_file_stores, open_state, state_dir, Engine, EngineConfig, Stores};
use crate::genesis::LOG_KEY_FILE_NAME;
use crate::recovery::recover;
use crate::replica_status::{ReplicaReport, ReplicaStatus};
use crate::start::StartError;
use crate::upstream::{against_adopted, Source, Stop};
pub use crate::upstream::{NodeUpstream, Upstream};

/// Where a replica writes why it stopped following, in its data directory.
pub const EVIDENCE_FILE_NAME: &str = "follow-evidence.txt";

/// How long a replica waits before looking for a newer checkpoint.
pub const FOLLOW_POLL_MS: u64 = 200;

/// Opens the ledger in `config.data_dir` as a verifying replica of
/// `upstream` (its own data directory, never a writer's) and starts the
/// follower, unless recovery found the replica's own files wrong.
pub fn open(config: EngineConfig, upstream: Upstream) -> Result<Arc<Engine>, StartError> {
    let lock = DataDirLock::take(&config.data_dir)?;
    let stores = match &upstream {
        Upstream::Database(url) => open_replica_stores(&config.data_dir, url)?,
        Upstream::Node(node) => open_node_replica_stores(&config.data_dir, node)?,
    };
    let (engine, following) = Engine::open_replica(config, stores)?;
    engine.hold(lock);
    if let (Some(status), true) = (engine.replica_status_handle(), following) {
        let followed = engine.clone();
        let follower = std::thread::Builder::new()
            .name("follower".into())
            .spawn(move || run(followed, upstream, status))
            .map_err(|e| StartError::Unavailable(format!("cannot start the follower: {e}")))?;
        engine.keep_follower(follower);
    }
    Ok(engine)
}

/// Opens the ledger kept in the PostgreSQL database at `url` to read, as a
/// replica, and the derived state of `data_dir`. The journal reads only as
/// far as the state replayed (at least the genesis record); the follower
/// moves it on, a verified checkpoint at a time.
fn open_replica_stores(data_dir: &Path, url: &str) -> Result<Stores, StartError> {
    replica_data_dir(data_dir)?;
    if data_dir.join(JOURNAL_FILE_NAME).exists() {
        return Err(StartError::Config(format!(
            "{} holds a file journal; a replica needs a data directory of its own",
            data_dir.display()
        )));
    }
    let mut journal = fundtrail_pg::PgJournal::open(url, None)?;
    let state = open_state(&state_dir(data_dir), journal.ledger_id())?;
    let replayed = state.watermark()?.record_count;
    if !journal.read_up_to(replayed.max(1))? {
        return Err(StartError::Refused(format!(
            "the database holds fewer than the {replayed} records this replica replayed: it is an older copy of the ledger"
        )));
    }
    Ok(Stores {
        journal: Box::new(journal),
        state: Arc::new(state),
        shared_checkpoints: None,
    })
}

/// Opens, as a replica of another fundtrail node, the replica's own
/// journal file in `data_dir` (holding the records it verified; created
/// with the upstream's genesis record at the first start) and its derived
/// state.
fn open_node_replica_stores(
    data_dir: &Path,
    upstream: &NodeUpstream,
) -> Result<Stores, StartError> {
    replica_data_dir(data_dir)?;
    let path = data_dir.join(JOURNAL_FILE_NAME);
    if !path.exists() {
        crate::follow_node::fetch_genesis(upstream, &path).map_err(StartError::Unavailable)?;
    }
    open_file_stores(data_dir)
}

/// Refuses a writer's data directory (it holds the log's key) for a
/// replica, and creates a new one.
fn replica_data_dir(data_dir: &Path) -> Result<(), StartError> {
    if data_dir.join(LOG_KEY_FILE_NAME).exists() {
        return Err(StartError::Config(format!(
            "{} holds a ledger's log key; a replica needs a data directory of its own",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StartError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))
}

/// A source reading `upstream` for `engine`.
fn connect(upstream: &Upstream, engine: &Engine) -> Result<Box<dyn Source>, String> {
    Ok(match upstream {
        Upstream::Database(url) => Box::new(Tables::connect(url, engine)?),
        Upstream::Node(node) => Box::new(crate::follow_node::Node::connect(node, engine)?),
    })
}

/// Follows `upstream` until the engine stops or the upstream fails a check.
pub(crate) fn run(engine: Arc<Engine>, upstream: Upstream, status: Arc<ReplicaStatus>) {
    let name = upstream.name();
    let mut source: Option<Box<dyn Source>> = None;
    let mut upstream_newest = 0;
    while !engine.is_stopping() {
        let step = match &mut source {
            Some(source) => step(&engine, source.as_mut(), &mut upstream_newest),
            None => match connect(&upstream, &engine) {
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
