//! The write path as three threads, each waiting only on the one before:
//!
//! 1. the **sequencer** applies requests in order against state it holds
//!    in memory ([`SequencerState`]), numbers the records, extends the
//!    Merkle tree and writes its hashes and the records' journal offsets
//!    to the slot files (read only once the records are durable);
//! 2. the **journal writer** appends each batch with one `fdatasync`,
//!    publishes the new durable record count and answers the batch, while
//!    the sequencer is already applying the next one;
//! 3. the **indexer** commits what queries read (balances, registry,
//!    indexes) to the derived store in bulk, several batches at a time,
//!    and publishes how far it got ([`Progress`]). No client waits on it;
//!    a read that must see a write asks for it with `fundtrail-min-seq`.
//!
//! A batch is answered only after every batch before it is durable, so an
//! answer never rests on a write that might still fail.
//!
//! When another writer appended to a shared journal first (PostgreSQL,
//! without the lease), the refused batch wrote nothing. The journal writer
//! then holds that batch and every later one back, the sequencer stops
//! applying and asks for a resync, the writer reads the other writer's
//! records into the derived state, and the sequencer applies the held-back
//! requests again, in order, on the state they now meet. Their clients
//! only see a later answer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fundtrail_api::{effects_to_pb, pb};
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::clock::Clock;
use fundtrail_core::limits::{
    BATCH_BYTES_MAX, COMMIT_BATCH_RECORDS_MAX, FRAME_HEADER_BYTES, INDEX_COMMIT_RECORDS_MAX,
    RECORD_BYTES_MAX,
};
use fundtrail_core::model::Request;
use fundtrail_core::state::{key, Kv, MemoryKv, Row, Writes};
use fundtrail_core::{signing, Code, Error, Fault, Rejection};
use fundtrail_store::{JournalStore, PendingTree, RecordReader, StateStore, Superseded, Watermark};
use fundtrail_tlog::Hash;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::gate::{not_writing, stopped_by_fault, Stop, WriteGate};

/// Key prefixes the sequencer holds whole in memory: everything the rules
/// read on every request (registry, balances, lots, idempotency entries).
const HOT_PREFIXES: [u8; 10] = [
    b'l',
    key::ORG,
    key::KEY,
    key::ACCOUNT,
    key::SOURCE,
    key::PROJECT,
    key::HOUSEHOLD,
    key::LOT,
    key::IDEMPOTENCY,
    key::ORG_IDEMPOTENCY,
];

/// Where a key of derived state lives for the sequencer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Hot,
    /// The index prefixes ([`key::INDEX_PREFIXES`]): passed on to the
    /// indexer, nothing of them kept.
    WriteOnly,
    /// Read rarely (a reversal reads the movement it reverses): from the
    /// writes not yet indexed, else from the derived store.
    Cold,
}

fn class(key: &[u8]) -> Class {
    match key.first() {
        Some(p) if HOT_PREFIXES.contains(p) => Class::Hot,
        Some(p) if key::INDEX_PREFIXES.contains(p) => Class::WriteOnly,
        _ => Class::Cold,
    }
}

/// The state the sequencer applies requests against: the hot keys in
/// memory, cold keys written but not yet indexed, and the derived store
/// for older cold keys. Each accepted request's writes are taken in at
/// once, so the next request sees them.
pub(crate) struct SequencerState {
    /// Hot keys the rules read by exact key.
    points: HashMap<Vec<u8>, Vec<u8>>,
    /// Hot keys the rules scan in order: lots, oldest first.
    ordered: MemoryKv,
    /// Cold keys not yet known indexed: the value, and the record count
    /// after the batch that wrote it.
    cold: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    /// Cold keys by the batch that wrote them, oldest first, for pruning.
    cold_batches: VecDeque<(u64, Vec<Vec<u8>>)>,
    derived: Arc<dyn StateStore>,
}

/// Hot rows read per scan while loading.
const LOAD_CHUNK_ROWS: usize = 16_384;

impl SequencerState {
    /// Loads the hot keys from the derived store, which must be current
    /// (recovery has replayed the journal into it).
    pub(crate) fn load(derived: Arc<dyn StateStore>) -> Result<SequencerState, Fault> {
        let mut points = HashMap::new();
        let mut ordered = MemoryKv::new();
        for prefix in HOT_PREFIXES {
            let prefix = [prefix];
            let mut start = prefix.to_vec();
            loop {
                let rows = derived.scan(&prefix, &start, LOAD_CHUNK_ROWS)?;
                let full = rows.len() == LOAD_CHUNK_ROWS;
                if let Some((last, _)) = rows.last() {
                    start = last.clone();
                    start.push(0);
                }
                if scanned(&prefix) {
                    ordered.extend(rows);
                } else {
                    points.extend(rows);
                }
                if !full {
                    break;
                }
            }
        }
        Ok(SequencerState {
            points,
            ordered,
            cold: BTreeMap::new(),
            cold_batches: VecDeque::new(),
            derived,
        })
    }

    /// Takes in the writes of the request that leaves `record_count`
    /// records.
    fn absorb(&mut self, writes: &Writes, record_count: u64) {
        let mut cold_keys = Vec::new();
        for (key, value) in writes {
            match class(key) {
                Class::Hot if scanned(key) => match value {
                    Some(value) => {
                        self.ordered.insert(key.clone(), value.clone());
                    }
                    None => {
                        self.ordered.remove(key);
                    }
                },
                Class::Hot => match value {
                    Some(value) => {
                        self.points.insert(key.clone(), value.clone());
                    }
                    None => {
                        self.points.remove(key);
                    }
                },
                Class::WriteOnly => {}
                Class::Cold => {
                    self.cold.insert(key.clone(), (record_count, value.clone()));
                    cold_keys.push(key.clone());
                }
            }
        }
        if !cold_keys.is_empty() {
            self.cold_batches.push_back((record_count, cold_keys));
        }
    }

    /// Forgets cold writes the derived store holds by now.
    fn prune(&mut self, indexed_count: u64) {
        while let Some((count, _)) = self.cold_batches.front() {
            if *count > indexed_count {
                break;
            }
            let (count, keys) = self.cold_batches.pop_front().expect("front exists");
            for key in keys {
                if self.cold.get(&key).is_some_and(|(at, _)| *at <= count) {
                    self.cold.remove(&key);
                }
            }
        }
    }
}

impl Kv for SequencerState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        match class(key) {
            Class::Hot if scanned(key) => Ok(self.ordered.get(key).cloned()),
            Class::Hot => Ok(self.points.get(key).cloned()),
            Class::WriteOnly => Err(write_only_read(key)),
            Class::Cold => match self.cold.get(key) {
                Some((_, value)) => Ok(value.clone()),
                None => self.derived.get(key),
            },
        }
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        match class(prefix) {
            Class::Hot if scanned(prefix) => Kv::scan(&self.ordered, prefix, start, limit),
            _ => Err(write_only_read(prefix)),
        }
    }
}

/// Whether the rules scan keys like `key` in order (the sequencer keeps
/// those sorted, and the rest in a hash map).
fn scanned(key: &[u8]) -> bool {
    key.first() == Some(&key::LOT)
}

/// The rules read a key the sequencer does not hold whole: a change to the
/// rules that this module must follow (stops writes rather than misread).
fn write_only_read(key: &[u8]) -> Fault {
    Fault::bug(format!(
        "the rules read {}, which the sequencer does not hold in memory",
        fundtrail_core::state::describe_key(key)
    ))
}

/// How far a stage has got, for those who wait on it.
pub struct Progress {
    count: Mutex<u64>,
    changed: Condvar,
    watch: tokio::sync::watch::Sender<u64>,
}

impl Progress {
    pub(crate) fn new(count: u64) -> Progress {
        Progress {
            count: Mutex::new(count),
            changed: Condvar::new(),
            watch: tokio::sync::watch::channel(count).0,
        }
    }

    pub fn get(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn advance(&self, count: u64) {
        let mut held = self.count.lock().unwrap_or_else(|e| e.into_inner());
        assert!(count >= *held, "progress never goes back");
        *held = count;
        self.changed.notify_all();
        self.watch.send_replace(count);
    }

    /// Blocks until the count reaches `count` or `timeout` passes; says
    /// whether it did.
    pub fn wait_blocking(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut held = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *held < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self
                .changed
                .wait_timeout(held, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Waits until the count reaches `count` or `timeout` passes; says
    /// whether it did.
    pub async fn wait(&self, count: u64, timeout: Duration) -> bool {
        let mut watch = self.watch.subscribe();
        tokio::time::timeout(timeout, watch.wait_for(|&n| n >= count))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A request accepted into the log.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: u64,
    pub commit_time_ms: i64,
    pub duplicate: bool,
    pub effects: pb::Effects,
}

pub(crate) struct Submission {
    pub signed: pb::SignedRequest,
    pub request: Request,
    pub verified_public_key: Option<[u8; 32]>,
    pub reply: oneshot::Sender<Result<Committed, Rejection>>,
}

/// One request's result within a batch, before the batch is durable.
type Answer = Result<Committed, Rejection>;

/// What the sequencer's queue carries.
// Boxing the request would cost an allocation per request for a variant
// that is almost never sent.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Inbox {
    Submit(Submission),
    /// The journal writer asks for a resync (see the module's comment);
    /// sent only to wake a sequencer waiting on an empty queue.
    Wake,
}

/// A request as the sequencer took it, kept until its batch is durable so
/// that it can be applied again after a resync.
struct Resubmit {
    signed: pb::SignedRequest,
    request: fundtrail_core::model::Request,
    verified_public_key: Option<[u8; 32]>,
}

impl Resubmit {
    fn into_submission(self, reply: oneshot::Sender<Answer>) -> Submission {
        Submission {
            signed: self.signed,
            request: self.request,
            verified_public_key: self.verified_public_key,
            reply,
        }
    }
}

/// What the sequencer hands the journal writer.
enum ToJournal {
    Batch(Applied),
    /// Every batch sent before this was applied on state another writer
    /// has overtaken: catch up, then answer with the state to go on from.
    Resync(std::sync::mpsc::Sender<Result<Resynced, String>>),
}

/// The journal and derived state after a resync, and the requests to
/// apply again, oldest first.
struct Resynced {
    watermark: Watermark,
    /// The commit time of the newest record: commit times never go back.
    last_commit_ms: i64,
    held: Vec<(oneshot::Sender<Answer>, Resubmit)>,
}

/// Resyncs in a row (without a batch written in between) before the
/// writer gives up and stops writing. Each resync means the other writer
/// committed, so the ledger moves on; this only bounds a writer that never
/// wins, whose clients meanwhile hear UNAVAILABLE at their deadlines. Two
/// writers under full load lose to each other often: give one the lease.
const RESYNCS_IN_A_ROW_MAX: u32 = 1_000;

/// How long a resync waits for the indexer to finish this writer's own
/// durable batches.
const RESYNC_INDEX_WAIT_MS: u64 = 60_000;

/// A batch the sequencer applied, on its way to the journal.
struct Applied {
    first_seq: u64,
    records: Vec<Vec<u8>>,
    /// Where each record will sit in the journal.
    offsets: Vec<u64>,
    /// Each accepted request's writes, in order.
    writes: Vec<Writes>,
    leaves: Vec<(u64, Hash)>,
    watermark: Watermark,
    replies: Vec<(oneshot::Sender<Answer>, Answer)>,
    /// The request of each reply, in the same order.
    resubmits: Vec<Resubmit>,
}

/// A durable batch on its way to the indexer.
struct Durable {
    writes: Vec<Writes>,
    leaves: Vec<(u64, Hash)>,
    watermark: Watermark,
}

struct Sequencer {
    state: SequencerState,
    derived: Arc<dyn StateStore>,
    gate: WriteGate,
    clock: Arc<dyn Clock>,
    skew_ms_max: u64,
    /// Applied, not necessarily durable yet.
    watermark: Watermark,
    last_commit_ms: i64,
    indexed: Arc<Progress>,
    /// Submissions taken from the queue and not yet applied, oldest first.
    pending: VecDeque<Submission>,
    to_journal: SyncSender<ToJournal>,
    /// Set by the journal writer when another writer appended first.
    superseded: Arc<AtomicBool>,
}

/// What applying a batch builds up.
struct Batch<'s> {
    first_seq: u64,
    commit_time_ms: i64,
    writes: Vec<Writes>,
    tree: PendingTree<'s>,
    records: Vec<Vec<u8>>,
    offsets: Vec<u64>,
    /// Journal offset where the next record's frame will start.
    journal_end: u64,
    bytes: u64,
    replies: Vec<(oneshot::Sender<Answer>, Answer)>,
    resubmits: Vec<Resubmit>,
}

/// A submission that did not fit the batch's bytes.
struct Full(Box<Submission>);

/// Batches applied ahead of the one being written: the depth of the pipe.
const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Durable batches waiting for the indexer before the writer waits.
const BATCHES_UNINDEXED_MAX: usize = 64;

/// What the write path starts from.
pub(crate) struct PipelineParts {
    pub state: SequencerState,
    pub derived: Arc<dyn StateStore>,
    pub journal: Box<dyn JournalStore>,
    pub gate: WriteGate,
    pub clock: Arc<dyn Clock>,
    pub skew_ms_max: u64,
    /// Applied, durable and indexed: recovery leaves all three equal.
    pub watermark: Watermark,
    pub record_count: Arc<AtomicU64>,
    pub indexed: Arc<Progress>,
    pub checkpoint_due: std::sync::mpsc::Sender<()>,
    pub checkpoint_every_records: u64,
    /// Reads the journal's records, for a resync.
    pub reader: Arc<dyn RecordReader>,
    /// The sequencer's queue, to wake it for a resync (weak: the queue
    /// still closes when the engine drops its sender).
    pub wake: mpsc::WeakSender<Inbox>,
    /// Marks resyncs: another writer's records replayed into the state.
    pub resyncs: Arc<Resyncs>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A sequence counter around resyncs, so a reader of the derived state (the
/// scrub) can tell whether another writer's records were replayed while it
/// read: odd while a resync runs, and two higher after each one.
#[derive(Debug, Default)]
pub struct Resyncs(AtomicU64);

impl Resyncs {
    /// The counter now, to pass to [`Resyncs::quiet_since`] later.
    pub fn stamp(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether no resync ran at any time since `stamp` was taken.
    pub fn quiet_since(&self, stamp: u64) -> bool {
        stamp.is_multiple_of(2) && self.stamp() == stamp
    }

    fn begin(&self) {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        assert!(before.is_multiple_of(2), "one resync at a time");
    }

    fn end(&self) {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        assert!(!before.is_multiple_of(2), "a resync ends after it begins");
    }
}

/// Starts the sequencer, the journal writer and the indexer. The
/// sequencer ends when `submissions` closes, and each later stage when the
/// one before it has ended.
pub(crate) fn start(
    parts: PipelineParts,
    submissions: mpsc::Receiver<Inbox>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let (to_journal, journal_rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT_MAX);
    let (to_indexer, indexer_rx) = std::sync::mpsc::sync_channel(BATCHES_UNINDEXED_MAX);
    let superseded = Arc::new(AtomicBool::new(false));
    let sequencer = Sequencer {
        state: parts.state,
        derived: parts.derived.clone(),
        gate: parts.gate.clone(),
        clock: parts.clock,
        skew_ms_max: parts.skew_ms_max,
        watermark: parts.watermark,
        last_commit_ms: 0,
        indexed: parts.indexed.clone(),
        pending: VecDeque::new(),
        to_journal,
        superseded: superseded.clone(),
    };
    let writer = JournalWriter {
        journal: parts.journal,
        gate: parts.gate.clone(),
        record_count: parts.record_count,
        checkpoint_due: parts.checkpoint_due,
        checkpoint_every_records: parts.checkpoint_every_records.max(1),
        to_indexer,
        superseded,
        held: Vec::new(),
        resyncs_in_a_row: 0,
        resyncs: parts.resyncs,
        metrics: parts.metrics,
        derived: parts.derived.clone(),
        reader: parts.reader,
        indexed: parts.indexed.clone(),
        wake: parts.wake,
    };
    let indexer = Indexer {
        derived: parts.derived,
        gate: parts.gate,
        indexed: parts.indexed,
    };
    let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .map_err(|e| format!("cannot start the {name}: {e}"))
    };
    Ok(vec![
        spawn("indexer", Box::new(move || indexer.run(indexer_rx)))?,
        spawn("journal writer", Box::new(move || writer.run(journal_rx)))?,
        spawn("sequencer", Box::new(move || sequencer.run(submissions)))?,
    ])
}

impl Sequencer {
    fn run(mut self, mut rx: mpsc::Receiver<Inbox>) {
        loop {
            if self.pending.is_empty() && !self.superseded.load(Ordering::Acquire) {
                match rx.blocking_recv() {
                    Some(Inbox::Submit(first)) => self.pending.push_back(first),
                    Some(Inbox::Wake) => {}
                    None => break,
                }
            }
            while self.pending.len() < COMMIT_BATCH_RECORDS_MAX {
                match rx.try_recv() {
                    Ok(Inbox::Submit(next)) => self.pending.push_back(next),
                    Ok(Inbox::Wake) => {}
                    Err(_) => break,
                }
            }
            if self.superseded.load(Ordering::Acquire) {
                self.resync();
            }
            if !self.pending.is_empty() {
                self.apply_batch();
            }
        }
        info!("sequencer stopped");
    }

    /// Another writer appended first: stops applying, has the journal
    /// writer catch up (after every batch already sent, all of which it
    /// holds back), then goes on from the state it reports, the held-back
    /// requests first.
    fn resync(&mut self) {
        let (done, answer) = std::sync::mpsc::channel();
        let resynced = match self.to_journal.send(ToJournal::Resync(done)) {
            Ok(()) => answer
                .recv()
                .unwrap_or_else(|_| Err("the journal writer stopped during a resync".into())),
            Err(_) => Err("the journal writer has stopped".into()),
        };
        let resynced = resynced.and_then(|resynced| {
            let state = SequencerState::load(self.derived.clone())
                .map_err(|e| format!("cannot reload the sequencer's state: {e}"))?;
            Ok((resynced, state))
        });
        match resynced {
            Ok((resynced, state)) => {
                info!(
                    records = resynced.watermark.record_count,
                    retried = resynced.held.len(),
                    "caught up with another writer; applying the held-back requests again"
                );
                self.state = state;
                self.watermark = resynced.watermark;
                self.last_commit_ms = self.last_commit_ms.max(resynced.last_commit_ms);
                for (reply, resubmit) in resynced.held.into_iter().rev() {
                    self.pending.push_front(resubmit.into_submission(reply));
                }
            }
            Err(reason) => {
                // Whatever held the flag is gone; the gate answers from now on.
                self.superseded.store(false, Ordering::Release);
                self.gate.stop(Stop::Resync(reason));
            }
        }
    }

    /// Applies pending submissions in order until the batch is full (in
    /// records or in bytes), writes the tree's new hashes and the records'
    /// offsets to the slot files, and hands the batch to the journal
    /// writer. Submissions that did not fit stay pending.
    fn apply_batch(&mut self) {
        if let Some(reason) = self.gate.reason() {
            for submission in self.pending.drain(..) {
                let _ = submission.reply.send(Err(not_writing(&reason)));
            }
            return;
        }
        self.state.prune(self.indexed.get());
        // Commit times never go backwards, whatever the clock does.
        let commit_time_ms = self.clock.now_ms().max(self.last_commit_ms);
        let first_seq = self.watermark.record_count;
        let mut batch = Batch {
            first_seq,
            commit_time_ms,
            writes: Vec::new(),
            tree: PendingTree::new(self.derived.as_ref(), first_seq),
            records: Vec::new(),
            offsets: Vec::new(),
            journal_end: self.watermark.journal_end,
            bytes: 0,
            replies: Vec::new(),
            resubmits: Vec::new(),
        };
        while batch.replies.len() < COMMIT_BATCH_RECORDS_MAX {
            let Some(submission) = self.pending.pop_front() else {
                break;
            };
            if let Err(Full(submission)) = apply_one(
                &mut batch,
                &mut self.state,
                submission,
                &self.gate,
                self.skew_ms_max,
            ) {
                self.pending.push_front(*submission);
                break;
            }
            if self.gate.is_stopped() {
                break;
            }
        }
        let Batch {
            writes,
            tree,
            records,
            offsets,
            journal_end,
            mut replies,
            resubmits,
            ..
        } = batch;
        let (first_index, hashes) = tree.into_parts();
        let mut applied = Applied {
            first_seq,
            leaves: fundtrail_store::tree::leaves(
                first_seq..first_seq + records.len() as u64,
                first_index,
                &hashes,
            ),
            records,
            offsets,
            writes,
            watermark: self.watermark,
            replies: Vec::new(),
            resubmits,
        };
        if let Some(last) = applied.records.last() {
            if let Err(fault) =
                self.derived
                    .write_slots(first_index, &hashes, first_seq, &applied.offsets)
            {
                self.gate.stop(Stop::StoreFailed(fault));
                for (_, answer) in replies.iter_mut() {
                    *answer = Err(stopped_by_fault());
                }
                applied.records.clear();
            } else {
                applied.watermark = Watermark {
                    record_count: first_seq + applied.records.len() as u64,
                    journal_end,
                    last_record_sha256: signing::sha256(last),
                };
                self.watermark = applied.watermark;
                self.last_commit_ms = commit_time_ms;
            }
        }
        applied.replies = replies;
        if let Err(std::sync::mpsc::SendError(ToJournal::Batch(unsent))) =
            self.to_journal.send(ToJournal::Batch(applied))
        {
            let why = Stop::StageEnded("journal writer");
            let reason = why.to_string();
            self.gate.stop(why);
            for (reply, _) in unsent.replies {
                let _ = reply.send(Err(not_writing(&reason)));
            }
        }
        if self.gate.is_stopped() {
            // A fault stopped writes mid-batch: what was not applied is refused.
            let reason = self.gate.reason().unwrap_or_default();
            for submission in self.pending.drain(..) {
                let _ = submission.reply.send(Err(not_writing(&reason)));
            }
        }
    }
}

/// Applies one submission to the batch. A refusal is answered as such; a
/// storage fault stops writes; a record that would not fit the batch's
/// bytes is handed back.
fn apply_one(
    batch: &mut Batch,
    state: &mut SequencerState,
    submission: Submission,
    gate: &WriteGate,
    skew_ms_max: u64,
) -> Result<(), Full> {
    let seq = batch.first_seq + batch.records.len() as u64;
    let ctx = Context {
        seq,
        commit_time_ms: batch.commit_time_ms,
        key_id: &submission.signed.key_id,
        payload: &submission.signed.payload,
        signature: &submission.signed.signature,
        verified_public_key: submission.verified_public_key,
        skew_ms_max: Some(skew_ms_max),
    };
    let answer = match apply(&*state, &ctx, &submission.request) {
        Err(Error::Refused(rejection)) => Err(rejection),
        Err(Error::Fault(fault)) => {
            gate.stop(Stop::StoreFailed(fault.during(format_args!(
                "the state store failed while applying a request for record {seq}"
            ))));
            Err(stopped_by_fault())
        }
        Ok(Outcome::Duplicate { seq }) => Ok(Committed {
            seq,
            commit_time_ms: 0,
            duplicate: true,
            effects: pb::Effects::default(),
        }),
        Ok(Outcome::Accepted { effects, writes }) => {
            let effects = effects_to_pb(&effects);
            let record = pb::Record {
                seq,
                commit_time_ms: batch.commit_time_ms,
                request: Some(submission.signed.clone()),
                effects: Some(effects.clone()),
            }
            .encode_to_vec();
            let frame_bytes = (FRAME_HEADER_BYTES + record.len()) as u64;
            if record.len() > RECORD_BYTES_MAX {
                Err(record_too_large(record.len()))
            } else if batch.bytes + frame_bytes > BATCH_BYTES_MAX {
                return Err(Full(Box::new(submission)));
            } else if let Err(e) = batch.tree.append(&record) {
                gate.stop(Stop::StoreFailed(Fault::io(format!(
                    "the Merkle tree cannot be extended: {e}"
                ))));
                Err(stopped_by_fault())
            } else {
                batch.bytes += frame_bytes;
                batch.offsets.push(batch.journal_end);
                batch.journal_end += frame_bytes;
                batch.records.push(record);
                state.absorb(&writes, seq + 1);
                batch.writes.push(writes);
                Ok(Committed {
                    seq,
                    commit_time_ms: batch.commit_time_ms,
                    duplicate: false,
                    effects,
                })
            }
        }
    };
    let Submission {
        signed,
        request,
        verified_public_key,
        reply,
    } = submission;
    batch.replies.push((reply, answer));
    batch.resubmits.push(Resubmit {
        signed,
        request,
        verified_public_key,
    });
    Ok(())
}

fn record_too_large(bytes: usize) -> Rejection {
    Rejection::new(
        Code::ResourceExhausted,
        "",
        format!(
            "the record would be {bytes} bytes, more than the {RECORD_BYTES_MAX} one record may hold: the movement is spread over too many lots; name the sources to spend (earmarks) or split the amount"
        ),
    )
}

/// The answer when the journal write failed after it may have reached disk.
fn outcome_unknown() -> Rejection {
    Rejection::unavailable(
        "outcome unknown: the journal write failed after it may have reached disk, and the ledger stopped taking writes. Once it is back, retry with the same idempotency key: you will get the first result if the request was recorded",
    )
}

struct JournalWriter {
    journal: Box<dyn JournalStore>,
    gate: WriteGate,
    /// Durable records: the next record gets this seq.
    record_count: Arc<AtomicU64>,
    checkpoint_due: std::sync::mpsc::Sender<()>,
    checkpoint_every_records: u64,
    to_indexer: SyncSender<Durable>,
    /// Set when another writer appended first, until the resync.
    superseded: Arc<AtomicBool>,
    /// Requests of batches held back since, oldest first.
    held: Vec<(oneshot::Sender<Answer>, Resubmit)>,
    resyncs_in_a_row: u32,
    resyncs: Arc<Resyncs>,
    derived: Arc<dyn StateStore>,
    reader: Arc<dyn RecordReader>,
    indexed: Arc<Progress>,
    wake: mpsc::WeakSender<Inbox>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl JournalWriter {
    fn run(mut self, rx: Receiver<ToJournal>) {
        for message in rx {
            match message {
                ToJournal::Batch(applied) => self.write(applied),
                ToJournal::Resync(done) => {
                    let resynced = self.resync();
                    if let Err(reason) = &resynced {
                        self.gate.stop(Stop::Resync(reason.clone()));
                    }
                    if let Err(std::sync::mpsc::SendError(unsent)) = done.send(resynced) {
                        for (reply, _) in unsent.map(|r| r.held).unwrap_or_default() {
                            let _ = reply.send(Err(not_writing("the sequencer has stopped")));
                        }
                    }
                }
            }
        }
        info!("journal writer stopped");
    }

    /// Holds back a batch applied on state another writer overtook.
    fn hold(&mut self, replies: Vec<(oneshot::Sender<Answer>, Answer)>, resubmits: Vec<Resubmit>) {
        assert_eq!(replies.len(), resubmits.len(), "one request per reply");
        self.held
            .extend(replies.into_iter().map(|(reply, _)| reply).zip(resubmits));
    }

    /// Reads what the other writer appended into the journal's head and
    /// the derived state (as recovery does at start-up), once the indexer
    /// has finished this writer's own durable batches.
    fn resync(&mut self) -> Result<Resynced, String> {
        self.resyncs.begin();
        let resynced = self.replay_other_writer();
        self.resyncs.end();
        resynced
    }

    fn replay_other_writer(&mut self) -> Result<Resynced, String> {
        // The sequencer waits for the answer: nothing more arrives meanwhile.
        self.superseded.store(false, Ordering::Release);
        let held = std::mem::take(&mut self.held);
        let refuse = |reason: String, held: Vec<(oneshot::Sender<Answer>, Resubmit)>| {
            for (reply, _) in held {
                let _ = reply.send(Err(not_writing(&reason)));
            }
            Err(reason)
        };
        let durable = self.record_count.load(Ordering::Acquire);
        let wait = Duration::from_millis(RESYNC_INDEX_WAIT_MS);
        if !self.indexed.wait_blocking(durable, wait) {
            return refuse(
                "the indexer did not finish in time to catch up with another writer".into(),
                held,
            );
        }
        if let Err(e) = self.journal.catch_up() {
            return refuse(format!("cannot catch up with another writer: {e}"), held);
        }
        let recovered = crate::recovery::recover(
            self.journal.as_mut(),
            self.derived.as_ref(),
            self.reader.as_ref(),
        );
        let watermark = match recovered {
            Ok(None) => self.derived.watermark(),
            Ok(Some(problem)) => return refuse(problem, held),
            Err(fault) => Err(fault),
        };
        let watermark = match watermark {
            Ok(watermark) => watermark,
            Err(fault) => return refuse(format!("the state store failed: {fault}"), held),
        };
        assert_eq!(
            watermark.journal_end,
            self.journal.end(),
            "recovery reached the head"
        );
        let last_commit_ms = match self.last_commit_ms(watermark.record_count) {
            Ok(ms) => ms,
            Err(reason) => return refuse(reason, held),
        };
        self.record_count
            .store(watermark.record_count, Ordering::Release);
        self.indexed.advance(watermark.record_count);
        let _ = self.checkpoint_due.send(());
        Ok(Resynced {
            watermark,
            last_commit_ms,
            held,
        })
    }

    /// The commit time of record `record_count - 1`.
    fn last_commit_ms(&self, record_count: u64) -> Result<i64, String> {
        let last = record_count
            .checked_sub(1)
            .expect("a ledger holds its genesis record");
        let location = self
            .derived
            .record_location(last)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("record {last} has no location after a resync"))?;
        let bytes = self.reader.read(location).map_err(|e| e.to_string())?;
        pb::Record::decode(bytes.as_slice())
            .map(|record| record.commit_time_ms)
            .map_err(|e| format!("record {last} does not decode: {e}"))
    }

    /// Appends the batch's records with one fdatasync, then answers every
    /// request in it. After a failed batch nothing more is written: the
    /// answers of later batches may rest on it.
    fn write(&mut self, applied: Applied) {
        let Applied {
            first_seq,
            records,
            offsets,
            writes,
            leaves,
            watermark,
            mut replies,
            resubmits,
        } = applied;
        if self.superseded.load(Ordering::Acquire) {
            // Applied on state another writer overtook: not written.
            self.hold(replies, resubmits);
            return;
        }
        if let Some(reason) = self.gate.reason() {
            // Not written: what the batch accepted, and what it found, may
            // rest on a batch that failed.
            for (reply, answer) in replies {
                let _ = reply.send(answer.and(Err(not_writing(&reason))));
            }
            return;
        }
        if !records.is_empty() {
            assert_eq!(
                self.journal.end(),
                offsets[0],
                "the sequencer placed the batch where the journal ends"
            );
            let started = std::time::Instant::now();
            let appended = self.journal.append(&records);
            match &appended {
                Ok(_) => self.metrics.committed(records.len(), started.elapsed()),
                Err(e) if !Superseded::is(e) => self.metrics.commit_failed(),
                Err(_) => {}
            }
            match appended {
                Err(e) if Superseded::is(&e) && self.resyncs_in_a_row < RESYNCS_IN_A_ROW_MAX => {
                    info!(error = %e, "another writer appended first; holding the batch back to resync");
                    self.resyncs_in_a_row += 1;
                    self.superseded.store(true, Ordering::Release);
                    self.hold(replies, resubmits);
                    // Wakes a sequencer waiting on an empty queue; a full
                    // queue means it is busy and sees the flag anyway.
                    if let Some(queue) = self.wake.upgrade() {
                        let _ = queue.try_send(Inbox::Wake);
                    }
                    return;
                }
                Ok(locations) => {
                    crate::crash::point(crate::crash::AFTER_JOURNAL_COMMIT);
                    self.resyncs_in_a_row = 0;
                    assert_eq!(locations, offsets, "records sit where the sequencer said");
                    assert_eq!(self.journal.end(), watermark.journal_end);
                    let next_seq = watermark.record_count;
                    self.record_count.store(next_seq, Ordering::Release);
                    if first_seq / self.checkpoint_every_records
                        != next_seq / self.checkpoint_every_records
                    {
                        let _ = self.checkpoint_due.send(());
                    }
                    // Durable now: answered before the indexer may hold
                    // this thread up (queries wait for it, writes need not).
                    for (reply, answer) in replies.drain(..) {
                        let _ = reply.send(answer);
                    }
                    let durable = Durable {
                        writes,
                        leaves,
                        watermark,
                    };
                    if self.to_indexer.send(durable).is_err() {
                        self.gate.stop(Stop::StageEnded("indexer"));
                    }
                }
                Err(e) => {
                    // The bytes may or may not be on disk: neither "recorded"
                    // nor "not recorded" is true. Restart decides, by replay.
                    self.gate.stop(Stop::StoreFailed(Fault::io(format!(
                        "the journal could not be made durable: {e}; restart the server to recover"
                    ))));
                    for (_, answer) in replies.iter_mut() {
                        if matches!(answer, Ok(c) if !c.duplicate) {
                            *answer = Err(outcome_unknown());
                        }
                    }
                }
            }
        }
        for (reply, answer) in replies {
            let _ = reply.send(answer);
        }
    }
}

struct Indexer {
    derived: Arc<dyn StateStore>,
    gate: WriteGate,
    indexed: Arc<Progress>,
}

impl Indexer {
    /// Commits durable batches to the derived store, merging those that
    /// queued up into one commit. After a failed commit it stops: a later
    /// batch alone would leave a hole below the watermark.
    fn run(self, rx: Receiver<Durable>) {
        // Background work: queries wait for it only when they ask to.
        crate::checkpool::lower_priority();
        while let Ok(first) = rx.recv() {
            let Durable {
                writes,
                mut leaves,
                mut watermark,
            } = first;
            let mut merged = Writes::new();
            for w in writes {
                merged.extend(w);
            }
            while leaves.len() < INDEX_COMMIT_RECORDS_MAX {
                let Ok(next) = rx.try_recv() else { break };
                for w in next.writes {
                    merged.extend(w);
                }
                leaves.extend(next.leaves);
                watermark = next.watermark;
            }
            let count = watermark.record_count;
            match self.derived.commit_index(merged, &leaves, watermark) {
                Ok(()) => self.indexed.advance(count),
                Err(fault) => {
                    self.gate.stop(Stop::StoreFailed(fault));
                    break;
                }
            }
        }
        info!("indexer stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::Resyncs;

    #[test]
    fn a_stamp_is_quiet_only_if_no_resync_ran_or_was_running() {
        let resyncs = Resyncs::default();
        let idle = resyncs.stamp();
        assert!(resyncs.quiet_since(idle));
        resyncs.begin();
        let during = resyncs.stamp();
        assert!(!resyncs.quiet_since(idle), "a resync began after the stamp");
        assert!(
            !resyncs.quiet_since(during),
            "the stamp fell inside a resync"
        );
        resyncs.end();
        assert!(!resyncs.quiet_since(during));
        let after = resyncs.stamp();
        assert!(resyncs.quiet_since(after));
    }
}
