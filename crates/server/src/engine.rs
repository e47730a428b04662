//! The engine: recovery at start-up, the write path ([`crate::pipeline`]),
//! and reads of committed state.
//!
//! Writes flow: handler decodes the payload and checks the signature (in
//! parallel, when the key is already committed) → the sequencer applies
//! requests in order against its in-memory state → the journal writer
//! appends each batch with one fdatasync and answers it → the indexer
//! commits derived state for queries. Readers see only durable records:
//! proofs and record bytes up to [`Engine::record_count`], queries up to
//! [`Engine::indexed`].
//!
//! The engine sees storage only through [`JournalStore`] and [`StateStore`],
//! and time only through a [`Clock`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fundtrail_api::{decode_request, pb};
use fundtrail_core::clock::{Clock, SystemClock};
use fundtrail_core::limits::{
    CHECK_CHUNK_REQUESTS, SEQUENCER_QUEUE_MAX, VERIFYING_KEYS_CACHED_MAX,
};
use fundtrail_core::model::{LedgerMeta, Request};
use fundtrail_core::state::StateRead;
use fundtrail_core::{signing, Error, Fault, Rejection};
use fundtrail_store::header::FileKind;
use fundtrail_store::journal::JOURNAL_FILE_NAME;
use fundtrail_store::state::SCHEMA_VERSION;
use fundtrail_store::{Journal, JournalStore, RecordReader, StateDb, StateStore};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::access_log::AccessLog;
use crate::checkpoints::{self, CheckpointPolicy, CheckpointStore, Checkpoints};
use crate::checkpool::CheckPool;
use crate::gate::{not_writing, stopped_by_fault, Stop, WriteGate};
use crate::genesis::LOG_KEY_FILE_NAME;
use crate::pipeline::{
    self, Committed, Inbox, PipelineParts, Progress, SequencerState, Submission,
};
use crate::recovery::{read_if_intact, recover};
use crate::replica_status::ReplicaStatus;
use crate::start::StartError;
use crate::tokens::TokenSealer;
pub use fundtrail_verify::{checkpoint_origin, ledger_of_origin};
use tracing::{info, warn};

#[derive(Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Largest allowed |commit time − signing time|.
    pub skew_ms_max: u64,
    pub checkpoints: CheckpointPolicy,
    /// Where commit times and "today" come from.
    pub clock: Arc<dyn Clock>,
    /// A PostgreSQL connection string: the journal is kept there
    /// (docs/postgres.md) instead of in `journal.log`.
    pub journal_url: Option<String>,
    /// With `journal_url`: hold the database's writer lease this long at a
    /// time (renewed while the server runs); `None` writes without one.
    pub journal_lease_ms: Option<u64>,
    /// On a replica: the log's verifier key (`GetLogKey().vkey`) the
    /// genesis record it replays must name. Without it the first genesis
    /// seen is trusted.
    pub pinned_log_vkey: Option<String>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("skew_ms_max", &self.skew_ms_max)
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            skew_ms_max: fundtrail_core::limits::SIGNING_SKEW_MS_DEFAULT,
            checkpoints: CheckpointPolicy::default(),
            journal_url: None,
            journal_lease_ms: Some(JOURNAL_LEASE_MS_DEFAULT),
            pinned_log_vkey: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// How long a writer holds the database's lease at a time, by default: a
/// failed writer's successor waits at most this long.
pub const JOURNAL_LEASE_MS_DEFAULT: u64 = 10_000;

/// The stores an engine runs on.
pub struct Stores {
    pub journal: Box<dyn JournalStore>,
    pub state: Arc<dyn StateStore>,
    /// Where checkpoints are kept besides the data directory: the database
    /// of a journal kept in PostgreSQL.
    pub shared_checkpoints: Option<Box<dyn CheckpointStore>>,
}

/// Background threads the engine owns, joined at shutdown.
#[derive(Default)]
struct Threads {
    /// The sequencer, the journal writer and the indexer.
    pipeline: Vec<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
    scrub: Option<JoinHandle<()>>,
    follower: Option<JoinHandle<()>>,
}

/// A request handed to the sequencer, its answer to come; or refused.
pub(crate) type Pending = Result<oneshot::Receiver<Result<Committed, Rejection>>, Rejection>;

/// Requests being checked before the sequencer.
pub(crate) struct Check {
    count: usize,
    task: tokio::task::JoinHandle<Vec<Result<Checked, Rejection>>>,
}

/// A request that passed the checks made before the sequencer.
pub(crate) struct Checked {
    signed: pb::SignedRequest,
    request: Request,
    verified_public_key: Option<[u8; 32]>,
}

/// State shared by the handlers and the sequencer.
pub struct Engine {
    state: Arc<dyn StateStore>,
    reader: Arc<dyn RecordReader>,
    meta: LedgerMeta,
    clock: Arc<dyn Clock>,
    skew_ms_max: u64,
    /// Keys the pseudonyms of households a reader may not see.
    pseudonym_key: [u8; 32],
    access_log: AccessLog,
    tokens: TokenSealer,
    /// Registered keys, decompressed, by key id.
    verifying_keys: std::sync::RwLock<HashMap<String, ([u8; 32], ed25519_dalek::VerifyingKey)>>,
    /// Where requests are checked: a thread per core.
    checkers: CheckPool,
    /// Durable records: the next record gets this seq.
    record_count: Arc<AtomicU64>,
    /// Records the derived store holds (queries read there).
    indexed: Arc<Progress>,
    /// Counts the times another writer's records were replayed in.
    resyncs: Arc<crate::pipeline::Resyncs>,
    gate: WriteGate,
    /// The sequencer's queue; `None` once shut down.
    tx: Mutex<Option<mpsc::Sender<Inbox>>>,
    checkpoints: Arc<Checkpoints>,
    data_dir: PathBuf,
    /// On a replica, what it says about its following.
    replica: Option<Arc<ReplicaStatus>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Held from [`Engine::open`] until shutdown.
    data_dir_lock: Mutex<Option<crate::dirlock::DataDirLock>>,
    /// Set at shutdown: background work stops at its next step.
    stopping: Arc<AtomicBool>,
    threads: Mutex<Threads>,
}

/// The derived-state directory inside a data directory.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("derived")
}

/// Where derived state lived before schema 4 (sled alone): removed at
/// start-up, since it is rebuilt from the journal.
const LEGACY_STATE_DIR_NAME: &str = "state";

/// Opens the file journal and the derived state of `data_dir`. A state of
/// another schema version or another ledger, or one whose slot files fell
/// short of its watermark, is thrown away, to be rebuilt from the journal.
pub fn open_file_stores(data_dir: &Path) -> Result<Stores, StartError> {
    let path = data_dir.join(JOURNAL_FILE_NAME);
    if !path.exists() {
        return Err(StartError::Config(format!(
            "{} holds no ledger; run `fundtrail init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let journal = Journal::open(&path, FileKind::Journal, None)
        .map_err(|e| StartError::from(e).during("cannot open journal"))?;
    open_stores(data_dir, Box::new(journal))
}

/// Opens the journal in the PostgreSQL database at `url` to write, and the
/// derived state of `data_dir`, which may not hold a file journal too.
///
/// Becoming the writer: takes the lease (when `lease_ms` is given), then
/// reads the newest checkpoint the database or this node's checkpoint log
/// holds, and has the journal check every record against it (see
/// [`fundtrail_pg::PgJournal::open_writer`]): a database that lost or
/// changed signed records is refused. Derived state holding records the
/// database lacks is not thrown away: the writer answered their clients
/// before indexing them, so the database lost acknowledged records, and
/// recovery keeps the ledger read-only, naming them.
pub fn open_pg_stores(
    data_dir: &Path,
    url: &str,
    lease_ms: Option<u64>,
) -> Result<Stores, StartError> {
    if data_dir.join(JOURNAL_FILE_NAME).exists() {
        return Err(StartError::Config(format!(
            "{} holds a file journal; a ledger kept in PostgreSQL needs a data directory of its own",
            data_dir.display()
        )));
    }
    let lease = lease_ms
        .map(|ms| fundtrail_pg::Lease::acquire(url, &fundtrail_pg::holder_name(), ms))
        .transpose()?;
    let shared = fundtrail_pg::PgCheckpoints::open(url)?;
    let checkpoint = newest_checkpoint(&shared, checkpoints::local_store(data_dir)?)?;
    let (journal, _) = fundtrail_pg::PgJournal::open_writer(url, None, lease, checkpoint)?;
    let mut stores = open_stores(data_dir, Box::new(journal))?;
    stores.shared_checkpoints = Some(Box::new(shared));
    Ok(stores)
}

/// A replica's own key (its access log, page tokens and household
/// pseudonyms; created at first start) and the checkpoints it adopted,
/// checked against the log key of the genesis record it replayed.
fn open_replica_keys(
    data_dir: &Path,
    meta: &LedgerMeta,
    pinned_log_vkey: Option<&str>,
) -> Result<(Checkpoints, [u8; 32], AccessLog, TokenSealer), StartError> {
    // The pin is checked before the replica writes anything of its own.
    let origin = checkpoint_origin(&meta.ledger_id);
    let log_key = ed25519_dalek::VerifyingKey::from_bytes(&meta.log_public_key).map_err(|e| {
        StartError::Refused(format!("the genesis record's log key is not a key: {e}"))
    })?;
    let verifier = fundtrail_tlog::NoteVerifier::new(&origin, log_key)
        .map_err(|e| StartError::Refused(format!("bad log key: {e}")))?;
    if let Some(pinned) = pinned_log_vkey.filter(|&pinned| pinned != verifier.vkey()) {
        return Err(StartError::Refused(format!(
            "the genesis record names the log key {}, not the pinned {pinned}: the upstream serves another ledger, or a forged one",
            verifier.vkey()
        )));
    }
    let path = data_dir.join(REPLICA_KEY_FILE_NAME);
    if !path.exists() {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        fundtrail_store::secret::write_secret_file(
            &path,
            fundtrail_core::keyfile::KeyFile::new("replica", &key)
                .to_json()
                .as_bytes(),
        )
        .map_err(|e| StartError::Unavailable(format!("cannot write {}: {e}", path.display())))?;
    }
    let (_, key) = read_key_file(&path)?;
    let pseudonym_key = fundtrail_core::access::pseudonym_key(&key.to_bytes());
    let tokens = TokenSealer::new(&fundtrail_core::access::derived_key(
        &key.to_bytes(),
        "page-token-key",
    ));
    let access_log = AccessLog::open(data_dir, &meta.ledger_id, &format!("{origin}/replica"), key)?;
    let checkpoints = Checkpoints::open_replica(data_dir, &meta.ledger_id, verifier, origin)?;
    Ok((checkpoints, pseudonym_key, access_log, tokens))
}

/// A replica's own key file in its data directory.
pub const REPLICA_KEY_FILE_NAME: &str = "replica.key";

/// The newest checkpoint in the database or the local checkpoint log, as
/// (size, root); refused when the two hold different checkpoints of the
/// newest size.
fn newest_checkpoint(
    shared: &dyn CheckpointStore,
    local: Option<Box<dyn CheckpointStore>>,
) -> Result<Option<(u64, fundtrail_tlog::Hash)>, StartError> {
    let in_db = checkpoints::newest_unchecked(shared)?;
    let here = local
        .map(|store| checkpoints::newest_unchecked(store.as_ref()))
        .transpose()?
        .flatten();
    match (in_db, here) {
        (Some(a), Some(b)) if a.0 == b.0 && a.1 != b.1 => Err(StartError::Refused(format!(
            "the database and this node's checkpoint log hold different checkpoints of {} records: the log was forked; do not write",
            a.0
        ))),
        (a, b) => Ok(a.max(b)),
    }
}

/// The derived state of `data_dir` next to `journal`.
fn open_stores(data_dir: &Path, journal: Box<dyn JournalStore>) -> Result<Stores, StartError> {
    let legacy = data_dir.join(LEGACY_STATE_DIR_NAME);
    if legacy.is_dir() {
        info!(state = %legacy.display(), "removing derived state of an older layout");
        remove_stale_state(&legacy)?;
    }
    let state = open_state(&state_dir(data_dir), journal.ledger_id())?;
    Ok(Stores {
        journal,
        state: Arc::new(state),
        shared_checkpoints: None,
    })
}

/// Why the derived state in `state` cannot be used, if it cannot.
fn stale_state(state: &StateDb, ledger_id: &str) -> Result<Option<String>, Fault> {
    Ok(match state.schema_version()? {
        None => None,
        Some(SCHEMA_VERSION) => match state.ledger()? {
            Some(meta) if meta.ledger_id != ledger_id => Some(format!(
                "it holds ledger {:?}, the journal ledger {ledger_id:?}",
                meta.ledger_id
            )),
            _ if !state.slots_complete()? => {
                Some("its tree-hash or record-offset file lost slots below its watermark".into())
            }
            _ => None,
        },
        Some(found) => Some(format!(
            "it was written with schema version {found}; this build writes {SCHEMA_VERSION}"
        )),
    })
}

pub(crate) fn open_state(dir: &Path, ledger_id: &str) -> Result<StateDb, StartError> {
    let open = || {
        StateDb::open(dir, ledger_id).map_err(|e| {
            StartError::Unavailable(format!("cannot open state store {}: {e}", dir.display()))
        })
    };
    let state = open()?;
    let state = match stale_state(&state, ledger_id)? {
        None => state,
        Some(why) => {
            info!(state = %dir.display(), %why, "rebuilding derived state from the journal");
            drop(state);
            remove_stale_state(dir)?;
            open()?
        }
    };
    if state.schema_version()?.is_none() {
        state.set_schema_version()?;
    }
    Ok(state)
}

/// Removes derived state that is rebuilt from the journal.
fn remove_stale_state(dir: &Path) -> Result<(), StartError> {
    std::fs::remove_dir_all(dir).map_err(|e| {
        StartError::Unavailable(format!(
            "cannot remove the stale state {}: {e}",
            dir.display()
        ))
    })
}

/// A key file's name and key.
fn read_key_file(
    path: &Path,
) -> Result<(fundtrail_core::keyfile::KeyFile, ed25519_dalek::SigningKey), StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Config(format!("cannot read {}: {e}", path.display())))?;
    fundtrail_core::keyfile::KeyFile::from_json(&text)
        .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))
}

impl Engine {
    /// Opens the ledger in `config.data_dir` on its file journal and derived
    /// state. Fails if there is no ledger there (see `genesis::init`).
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>, StartError> {
        let lock = crate::dirlock::DataDirLock::take(&config.data_dir)?;
        let stores = match &config.journal_url {
            Some(url) => open_pg_stores(&config.data_dir, url, config.journal_lease_ms)?,
            None => open_file_stores(&config.data_dir)?,
        };
        let engine = Engine::open_with(config, stores)?;
        engine.hold(lock);
        Ok(engine)
    }

    /// Keeps the data directory's lock until shutdown.
    pub(crate) fn hold(&self, lock: crate::dirlock::DataDirLock) {
        *self.data_dir_lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
    }

    /// Opens a writer's ledger on `stores`: replays the journal past the
    /// state's watermark, cuts a torn tail, checks the newest checkpoint,
    /// and starts the write path and the checkpointer.
    pub fn open_with(config: EngineConfig, stores: Stores) -> Result<Arc<Engine>, StartError> {
        Ok(Engine::open_on(config, stores, false)?.0)
    }

    /// Opens a verifying replica's ledger on `stores`, taking no writes;
    /// also says whether it may follow (recovery found nothing wrong).
    /// `crate::follow` starts the follower.
    pub(crate) fn open_replica(
        config: EngineConfig,
        stores: Stores,
    ) -> Result<(Arc<Engine>, bool), StartError> {
        Engine::open_on(config, stores, true)
    }

    fn open_on(
        config: EngineConfig,
        stores: Stores,
        replica: bool,
    ) -> Result<(Arc<Engine>, bool), StartError> {
        let Stores {
            mut journal,
            state,
            shared_checkpoints,
        } = stores;
        let reader = journal
            .reader()
            .map_err(|e| StartError::Unavailable(format!("cannot open journal: {e}")))?;
        let recovery = recover(journal.as_mut(), state.as_ref(), reader.as_ref())
            .map_err(|fault| StartError::from(fault).during("cannot recover the ledger"))?;
        let watermark = state.watermark()?;
        if watermark.record_count == 0 {
            return Err(StartError::Config(format!(
                "{} holds no records; run `fundtrail init --data-dir {}`",
                config.data_dir.display(),
                config.data_dir.display()
            )));
        }
        let meta = state.ledger()?.ok_or_else(|| {
            StartError::Refused("the state has records but no ledger identity".into())
        })?;
        if meta.ledger_id != journal.ledger_id() {
            return Err(StartError::Refused(format!(
                "the journal's header names ledger {:?}, but its genesis record ledger {:?}",
                journal.ledger_id(),
                meta.ledger_id
            )));
        }
        let (checkpoints, pseudonym_key, access_log, tokens) = if replica {
            open_replica_keys(&config.data_dir, &meta, config.pinned_log_vkey.as_deref())?
        } else {
            open_checkpoints(&config.data_dir, &meta, shared_checkpoints)?
        };
        let checkpoints = Arc::new(checkpoints);
        let recovery = match recovery {
            Some(reason) => Some(reason),
            None => check_checkpoint(
                state.as_ref(),
                reader.as_ref(),
                &checkpoints,
                watermark.record_count,
            )
            .map_err(StartError::Unavailable)?,
        };
        if recovery.is_none() && !replica {
            checkpoints.sign(watermark.record_count, state.as_ref())?;
        }
        if let Some(reason) = &recovery {
            warn!(%reason, "serving read-only");
        }
        info!(ledger_id = %meta.ledger_id, records = watermark.record_count, "ledger open");
        // A replica serves what it verified: up to the newest checkpoint it
        // adopted (its state may hold more, replayed but not yet covered).
        let served = match checkpoints.latest().filter(|_| replica) {
            Some(adopted) => adopted.checkpoint.tree_size.min(watermark.record_count),
            None => watermark.record_count,
        };
        let replica_status = replica.then(|| Arc::new(ReplicaStatus::default()));
        let following = replica && recovery.is_none();
        let stopped = match (recovery, replica) {
            (None, true) => Some(Stop::Replica),
            (recovery, _) => recovery.map(Stop::Recovery),
        };
        let record_count = Arc::new(AtomicU64::new(served));
        let gate = WriteGate::new(stopped);
        let (tx, rx) = mpsc::channel(SEQUENCER_QUEUE_MAX);
        let (checkpoint_due, checkpoint_wait) = std::sync::mpsc::channel::<()>();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let checkpointer = Checkpointer {
            metrics: metrics.clone(),
            clock: config.clock.clone(),
            checkpoints: checkpoints.clone(),
            state: state.clone(),
            record_count: record_count.clone(),
            gate: gate.clone(),
            every_ms: config.checkpoints.every_ms,
        };
        let checkpointer = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || checkpointer.run(checkpoint_wait))
            .map_err(|e| StartError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        let indexed = Arc::new(Progress::new(served));
        let resyncs = Arc::new(crate::pipeline::Resyncs::default());
        let sequencer_state = SequencerState::load(state.clone())
            .map_err(|e| StartError::from(e).during("cannot load the sequencer's state"))?;
        let pipeline = pipeline::start(
            PipelineParts {
                state: sequencer_state,
                derived: state.clone(),
                journal,
                gate: gate.clone(),
                clock: config.clock.clone(),
                skew_ms_max: config.skew_ms_max,
                watermark,
                record_count: record_count.clone(),
                indexed: indexed.clone(),
                checkpoint_due,
                checkpoint_every_records: config.checkpoints.every_records,
                reader: reader.clone(),
                wake: tx.downgrade(),
                resyncs: resyncs.clone(),
                metrics: metrics.clone(),
            },
            rx,
        )
        .map_err(StartError::Unavailable)?;
        let engine = Arc::new(Engine {
            state,
            reader,
            meta,
            clock: config.clock.clone(),
            skew_ms_max: config.skew_ms_max,
            pseudonym_key,
            access_log,
            tokens,
            verifying_keys: Default::default(),
            checkers: CheckPool::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
                .map_err(StartError::Unavailable)?,
            record_count,
            indexed,
            resyncs,
            gate,
            tx: Mutex::new(Some(tx)),
            checkpoints,
            data_dir: config.data_dir.clone(),
            replica: replica_status.clone(),
            metrics,
            data_dir_lock: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Threads {
                pipeline,
                checkpointer: Some(checkpointer),
                scrub: None,
                follower: None,
            }),
        });
        Ok((engine, following))
    }

    /// Joins `scrub` at shutdown (and at [`Engine::join_scrub`]).
    pub(crate) fn keep_scrub(&self, scrub: JoinHandle<()>) {
        self.lock_threads().scrub = Some(scrub);
    }

    /// Joins `follower` at shutdown.
    pub(crate) fn keep_follower(&self, follower: JoinHandle<()>) {
        self.lock_threads().follower = Some(follower);
    }

    /// How often another writer's records were replayed in: a scrub that
    /// saw them change compares nothing.
    pub(crate) fn resyncs(&self) -> &crate::pipeline::Resyncs {
        &self.resyncs
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Threads> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops taking writes, lets the sequencer answer what it holds, stops
    /// the checkpointer and the scrub, joins their threads and flushes the
    /// state. Reads keep working. Safe to call more than once.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        let threads = std::mem::take(&mut *self.lock_threads());
        // The sequencer ends when its queue closes, each later stage of the
        // pipeline when the one before it has; the checkpointer when the
        // journal writer is gone; the scrub at its next record.
        for handle in threads.pipeline.into_iter().chain(
            [threads.checkpointer, threads.scrub, threads.follower]
                .into_iter()
                .flatten(),
        ) {
            if handle.join().is_err() {
                warn!("a background thread panicked");
            }
        }
        self.access_log.shutdown();
        if let Err(e) = self.state.flush() {
            warn!(reason = %e, "cannot flush the state store");
        }
        // Nothing more is written here: another server may open it.
        self.data_dir_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Waits for the start-up scrub to finish (at once if there is none).
    pub fn join_scrub(&self) {
        let scrub = self.lock_threads().scrub.take();
        if let Some(handle) = scrub {
            if handle.join().is_err() {
                warn!("the scrub thread panicked");
            }
        }
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn meta(&self) -> &LedgerMeta {
        &self.meta
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Why the ledger takes no writes, if it takes none: on a replica, what
    /// it says about its following (how far it verified, or why it stopped).
    pub fn read_only_reason(&self) -> Option<String> {
        match &self.replica {
            Some(status) => Some(status.get().reason)
                .filter(|s| !s.is_empty())
                .or(self.gate.reason()),
            None => self.gate.reason(),
        }
    }

    /// The gauges' values now, for a metrics scrape.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        crate::metrics::Gauges {
            records: self.record_count(),
            queue_depth: self.queue_depth(),
            read_only: self.read_only_reason().is_some(),
            writes_stopped: self.gate.stopped().map(|why| why.name()),
            checkpoint_size: self
                .checkpoints
                .latest()
                .map_or(0, |signed| signed.checkpoint.tree_size),
            replica: self.replica_status().map(|status| {
                let report = status.get();
                crate::metrics::ReplicaGauges {
                    upstream_checkpoint_size: report.upstream_checkpoint_size,
                    stopped: report.stopped,
                }
            }),
        }
    }

    /// The metrics `/metrics` serves.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Requests waiting for the sequencer.
    pub fn queue_depth(&self) -> usize {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// On a replica, what it says about its following.
    /// On a replica, its status, for the follower to keep.
    pub(crate) fn replica_status_handle(&self) -> Option<Arc<ReplicaStatus>> {
        self.replica.clone()
    }

    pub fn replica_status(&self) -> Option<&ReplicaStatus> {
        self.replica.as_deref()
    }

    /// A replica verified up to `count` records: queries see them.
    pub(crate) fn advance_replica(&self, count: u64) {
        self.record_count.store(count, Ordering::Release);
        self.indexed.advance(count);
    }

    pub fn state(&self) -> &dyn StateStore {
        self.state.as_ref()
    }

    /// Seals page tokens that may name what a reader may not see.
    pub fn tokens(&self) -> &TokenSealer {
        &self.tokens
    }

    /// Who read what.
    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// The pseudonym under which readers who may not see household account
    /// `account_id` see it.
    pub fn household_pseudonym(&self, account_id: &str) -> String {
        fundtrail_core::access::pseudonym(&self.pseudonym_key, account_id)
    }

    /// Largest allowed distance between a signature's time and the clock.
    pub fn skew_ms_max(&self) -> u64 {
        self.skew_ms_max
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// The switch that stops writes.
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    /// Number of durable records.
    pub fn record_count(&self) -> u64 {
        self.record_count.load(Ordering::Acquire)
    }

    /// How many records the derived store (what queries read) holds: at
    /// most [`Engine::record_count`], a few batches behind it under load.
    pub fn indexed(&self) -> &Progress {
        &self.indexed
    }

    /// Posts one signed request; answers once its record is durable.
    pub async fn submit(
        self: &Arc<Self>,
        signed: pb::SignedRequest,
    ) -> Result<Committed, Rejection> {
        // With its key cached, one request is checked on the async worker:
        // one signature (~50 µs) costs about what a hop to the blocking pool
        // does. A key read from the store goes to the pool.
        let checked = if self.key_cached(&signed.key_id) {
            self.check(signed)?
        } else {
            self.check_all(vec![signed])
                .await
                .pop()
                .expect("one checked per request")?
        };
        let answer = self.queue(checked).await?;
        self.await_answer(answer).await
    }

    /// Posts signed requests in order, each answered on its own.
    pub async fn submit_all(
        self: &Arc<Self>,
        requests: Vec<pb::SignedRequest>,
    ) -> Vec<Result<Committed, Rejection>> {
        // Queue them all first, in order, so they share commits; then wait.
        let pending = self.enqueue_all(requests).await;
        let mut results = Vec::with_capacity(pending.len());
        for answer in pending {
            results.push(self.answer(answer).await);
        }
        results
    }

    /// Checks `requests` a chunk at a time on as many cores as there are,
    /// and hands them to the sequencer in order: the sequencer starts on
    /// the first chunk while later ones are being verified.
    pub(crate) async fn enqueue_all(
        self: &Arc<Self>,
        requests: Vec<pb::SignedRequest>,
    ) -> Vec<Pending> {
        let mut checks = Vec::new();
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let chunk: Vec<_> = requests.by_ref().take(CHECK_CHUNK_REQUESTS).collect();
            checks.push(self.spawn_check(chunk));
        }
        let mut pending = Vec::new();
        for check in checks {
            pending.extend(self.enqueue_checked(check).await);
        }
        pending
    }

    /// Starts checking `requests` (at most one chunk per core runs at once).
    pub(crate) fn spawn_check(self: &Arc<Self>, requests: Vec<pb::SignedRequest>) -> Check {
        let engine = self.clone();
        let count = requests.len();
        Check {
            count,
            task: tokio::spawn(async move { engine.check_all(requests).await }),
        }
    }

    /// Hands the requests of a finished check to the sequencer, in order.
    pub(crate) async fn enqueue_checked(&self, check: Check) -> Vec<Pending> {
        let checked = check
            .task
            .await
            .unwrap_or_else(|e| check_unfinished(check.count, e));
        let mut pending = Vec::with_capacity(checked.len());
        for checked in checked {
            pending.push(match checked {
                Ok(checked) => self.queue(checked).await,
                Err(rejection) => Err(rejection),
            });
        }
        pending
    }

    /// The answer to a request handed to the sequencer (or refused before).
    pub(crate) async fn answer(&self, pending: Pending) -> Result<Committed, Rejection> {
        self.await_answer(pending?).await
    }

    /// Checks requests on the checking threads: key reads touch the store
    /// and an Ed25519 check costs ~50 µs, neither for the async workers.
    async fn check_all(
        self: &Arc<Self>,
        requests: Vec<pb::SignedRequest>,
    ) -> Vec<Result<Checked, Rejection>> {
        let engine = self.clone();
        let count = requests.len();
        let checked = self
            .checkers
            .run(move || {
                requests
                    .into_iter()
                    .map(|signed| {
                        // A check that panics is a bug; it fails its own
                        // request, not the others of its chunk.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            engine.check(signed)
                        }))
                        .unwrap_or_else(|_| check_unfinished(1, "the check failed").remove(0))
                    })
                    .collect()
            })
            .await;
        checked.unwrap_or_else(|| check_unfinished(count, "the check stopped"))
    }

    /// Checks what can be checked without the sequencer.
    fn check(&self, signed: pb::SignedRequest) -> Result<Checked, Rejection> {
        if let Some(reason) = self.gate.reason() {
            return Err(not_writing(&reason));
        }
        if signed.key_id.is_empty() {
            return Err(Rejection::unauthenticated(
                "key_id",
                "the request is not signed: key_id is missing",
            ));
        }
        signing::check_key_id("key_id", &signed.key_id)?;
        if signed.signature.is_empty() {
            return Err(Rejection::unauthenticated(
                "signature",
                "the request is not signed: signature is missing",
            ));
        }
        let request = decode_request(&signed.payload)?;
        // Check the signature here, in parallel with other handlers, when the
        // key is already committed; keys never change once registered (the id
        // is a hash of the key). Otherwise the sequencer checks it.
        let verified_public_key = match self.verifying_key(&signed.key_id)? {
            Some((public_key, key)) => {
                signing::verify_with(&key, &signed.payload, &signed.signature)?;
                Some(public_key)
            }
            None => None,
        };
        Ok(Checked {
            signed,
            request,
            verified_public_key,
        })
    }

    fn key_cached(&self, key_id: &str) -> bool {
        self.verifying_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key_id)
    }

    /// The registered key `key_id`, decompressed, if derived state holds it:
    /// from the cache, else read and cached (a key never changes once
    /// registered; whether it is revoked the sequencer checks).
    fn verifying_key(
        &self,
        key_id: &str,
    ) -> Result<Option<([u8; 32], ed25519_dalek::VerifyingKey)>, Rejection> {
        let cached = self
            .verifying_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .copied();
        if let Some(found) = cached {
            return Ok(Some(found));
        }
        let key = self.state.key(key_id).map_err(|fault| {
            self.gate.stop(Stop::StoreFailed(fault.clone()));
            stopped_by_fault()
        })?;
        let Some(key) = key else { return Ok(None) };
        let found = (key.public_key, signing::verifying_key(&key.public_key)?);
        let mut keys = self
            .verifying_keys
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if keys.len() >= VERIFYING_KEYS_CACHED_MAX {
            keys.clear();
        }
        keys.insert(key_id.to_string(), found);
        Ok(Some(found))
    }

    /// Hands a checked request to the sequencer.
    async fn queue(
        &self,
        checked: Checked,
    ) -> Result<oneshot::Receiver<Result<Committed, Rejection>>, Rejection> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            signed: checked.signed,
            request: checked.request,
            verified_public_key: checked.verified_public_key,
            reply,
        };
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Rejection::unavailable("the ledger is shutting down"))?;
        tx.send(Inbox::Submit(submission))
            .await
            .map_err(|_| Rejection::unavailable("the sequencer has stopped"))?;
        Ok(answer)
    }

    async fn await_answer(
        &self,
        answer: oneshot::Receiver<Result<Committed, Rejection>>,
    ) -> Result<Committed, Rejection> {
        let mut committed = answer
            .await
            .map_err(|_| Rejection::unavailable("the sequencer stopped before answering"))??;
        if committed.duplicate {
            let record = self.record(committed.seq).map_err(|e| match e {
                Error::Refused(rejection) => rejection,
                Error::Fault(fault) => {
                    self.gate.stop(Stop::StoreFailed(
                        fault.during("the journal cannot be read"),
                    ));
                    stopped_by_fault()
                }
            })?;
            committed.commit_time_ms = record.commit_time_ms;
            committed.effects = record.effects.unwrap_or_default();
        }
        Ok(committed)
    }

    /// The exact bytes of durable record `seq`.
    pub fn record_bytes(&self, seq: u64) -> Result<Vec<u8>, Error> {
        let count = self.record_count();
        if seq >= count {
            return Err(Rejection::not_found(
                "seq",
                format!(
                    "record {seq} does not exist; the ledger holds {count} records (0 to {})",
                    count.saturating_sub(1)
                ),
            )
            .into());
        }
        let location = self.state.record_location(seq)?.ok_or_else(|| {
            Fault::corrupt(format!(
                "the state has no journal location for record {seq}"
            ))
        })?;
        Ok(self
            .reader
            .read(location)
            .map_err(|e| Fault::io(format!("cannot read record {seq} from the journal: {e}")))?)
    }

    pub fn record(&self, seq: u64) -> Result<pb::Record, Error> {
        let bytes = self.record_bytes(seq)?;
        Ok(pb::Record::decode(bytes.as_slice()).map_err(|e| {
            Fault::corrupt(format!("record {seq} in the journal does not decode: {e}"))
        })?)
    }
}

/// The answers to `count` requests whose check was cut short by `why`.
fn check_unfinished(count: usize, why: impl std::fmt::Display) -> Vec<Result<Checked, Rejection>> {
    (0..count)
        .map(|_| {
            Err(Rejection::unavailable(format!(
                "the request check did not finish: {why}"
            )))
        })
        .collect()
}

/// Loads the log's signing key from the data directory, checks it is the key
/// genesis named, and opens the checkpoint log and the access log.
fn open_checkpoints(
    data_dir: &Path,
    meta: &LedgerMeta,
    shared: Option<Box<dyn CheckpointStore>>,
) -> Result<(Checkpoints, [u8; 32], AccessLog, TokenSealer), StartError> {
    let path = data_dir.join(LOG_KEY_FILE_NAME);
    let (_, key) = read_key_file(&path).map_err(|e| e.during("the log key"))?;
    if key.verifying_key().to_bytes() != meta.log_public_key {
        return Err(StartError::Config(format!(
            "{} is not the log key named in this ledger's genesis record",
            path.display()
        )));
    }
    let pseudonym_key = fundtrail_core::access::pseudonym_key(&key.to_bytes());
    let tokens = TokenSealer::new(&fundtrail_core::access::derived_key(
        &key.to_bytes(),
        "page-token-key",
    ));
    let origin = checkpoint_origin(&meta.ledger_id);
    let access_log = AccessLog::open(data_dir, &meta.ledger_id, &origin, key.clone())?;
    let signer = fundtrail_tlog::NoteSigner::new(&origin, key)
        .map_err(|e| StartError::Config(format!("bad log key: {e}")))?;
    Ok((
        Checkpoints::open(data_dir, &meta.ledger_id, signer, origin, shared)?,
        pseudonym_key,
        access_log,
        tokens,
    ))
}

/// Checks the journal against the signed checkpoints: it must hold at least
/// as many records as the newest, the tree must have the root of every one
/// at its size, and every record after the newest must still hash to its
/// stored leaf hash. Returns why writes must
/// be refused, if they must.
fn check_checkpoint(
    state: &dyn StateStore,
    reader: &dyn RecordReader,
    checkpoints: &Checkpoints,
    record_count: u64,
) -> Result<Option<String>, String> {
    let Some(latest) = checkpoints.latest() else {
        return Ok(None);
    };
    let signed = &latest.checkpoint;
    if record_count < signed.tree_size {
        return Ok(Some(format!(
            "the journal holds {record_count} records but the log signed a checkpoint of {} records: records {record_count} to {} are missing",
            signed.tree_size,
            signed.tree_size - 1
        )));
    }
    // Every checkpoint ever published, not only the newest: each must be a
    // prefix of this one tree (with one tree, that is what a consistency
    // proof from it to every later one shows).
    for published in checkpoints.all() {
        let published = &published.checkpoint;
        let root =
            fundtrail_tlog::tree_hash(published.tree_size, state).map_err(|e| e.to_string())?;
        if root != published.root_hash {
            return Ok(Some(format!(
                "records before {} were changed: the tree no longer has the root of the signed checkpoint of that size",
                published.tree_size
            )));
        }
    }
    for seq in signed.tree_size..record_count {
        let stored = state
            .read_hashes(&[fundtrail_tlog::stored_hash_index(0, seq)])
            .map_err(|e| e.to_string())?;
        let current = match state.record_location(seq).map_err(|e| e.to_string())? {
            Some(location) => read_if_intact(reader, location).map_err(|e| e.to_string())?,
            None => None,
        }
        .map(|bytes| fundtrail_tlog::record_hash(&bytes));
        if current.as_ref() != stored.first() {
            return Ok(Some(format!(
                "record {seq} in the journal was changed after it was written"
            )));
        }
    }
    Ok(None)
}

/// Signs checkpoints: when the sequencer says enough records arrived, and
/// otherwise every `every_ms` when the tree grew.
struct Checkpointer {
    metrics: Arc<crate::metrics::Metrics>,
    clock: Arc<dyn Clock>,
    checkpoints: Arc<Checkpoints>,
    state: Arc<dyn StateStore>,
    record_count: Arc<AtomicU64>,
    gate: WriteGate,
    every_ms: u64,
}

impl Checkpointer {
    fn run(self, due: std::sync::mpsc::Receiver<()>) {
        let every = std::time::Duration::from_millis(self.every_ms.max(1));
        // Wakes when the sequencer says N records arrived, or every T ms;
        // ends when the sequencer is gone.
        use std::sync::mpsc::RecvTimeoutError::Timeout;
        while let Ok(()) | Err(Timeout) = due.recv_timeout(every) {
            if self.gate.is_stopped() {
                continue;
            }
            let tree_size = self.record_count.load(Ordering::Acquire);
            match self.checkpoints.sign(tree_size, self.state.as_ref()) {
                Ok(Some(_)) => self.metrics.checkpointed(self.clock.now_ms()),
                Ok(None) => {}
                Err(e) => self
                    .gate
                    .stop(Stop::StoreFailed(e.during("cannot sign a checkpoint"))),
            }
        }
    }
}
