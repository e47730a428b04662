//! The engine: recovery at start-up, the single sequencer with group commit,
//! and reads of committed state.
//!
//! Writes flow: handler decodes the payload and checks the signature (in
//! parallel, when the key is already committed) → sequencer applies requests
//! in order against the committed state plus the batch's earlier writes →
//! the batch's records are appended to the journal with one fdatasync →
//! derived state and watermark are committed to sled → every request in the
//! batch is answered. Readers see only records whose batch reached sled, so
//! nothing is ever shown that is not durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use fundtrail_api::{decode_request, effects_to_pb, pb};
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::limits::COMMIT_BATCH_RECORDS_MAX;
use fundtrail_core::model::{LedgerMeta, Request};
use fundtrail_core::state::{Kv, StateRead, Txn};
use fundtrail_core::{signing, Code, Rejection};
use fundtrail_store::journal::{JournalError, BATCH_BYTES_MAX};
use fundtrail_store::state::RecordLocation;
use fundtrail_store::{Journal, JournalReader, PendingTree, StateDb, Watermark};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoints::{CheckpointPolicy, Checkpoints};
use crate::genesis::LOG_KEY_FILE_NAME;
use fundtrail_tlog::HashReader;
use tracing::{info, warn};

/// Requests waiting for the sequencer. Senders wait when it is full.
const SEQUENCER_QUEUE_MAX: usize = 8_192;
/// Records replay applies per sled commit.
const REPLAY_COMMIT_RECORDS: u64 = 4_096;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Largest allowed |commit time − signing time|.
    pub skew_ms_max: u64,
    pub checkpoints: CheckpointPolicy,
    /// Replay the whole journal in the background after start-up and stop
    /// writes if it disagrees with the tree, the checkpoints or the state.
    pub scrub_on_start: bool,
}

impl EngineConfig {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            skew_ms_max: fundtrail_core::limits::SIGNING_SKEW_MS_DEFAULT,
            checkpoints: CheckpointPolicy::default(),
            scrub_on_start: true,
        }
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

struct Submission {
    signed: pb::SignedRequest,
    request: Request,
    verified_public_key: Option<[u8; 32]>,
    reply: oneshot::Sender<Result<Committed, Rejection>>,
}

/// State shared by the handlers and the sequencer.
pub struct Engine {
    state: StateDb,
    reader: JournalReader,
    meta: LedgerMeta,
    /// Durable records: the next record gets this seq.
    record_count: Arc<AtomicU64>,
    /// Why writes are refused, if they are.
    read_only: Arc<Mutex<Option<String>>>,
    tx: mpsc::Sender<Submission>,
    checkpoints: Arc<Checkpoints>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn internal(message: String) -> Rejection {
    Rejection::unavailable(message)
}

/// The state directory inside a data directory.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}

impl Engine {
    /// Opens the ledger in `config.data_dir`: replays the journal past the
    /// state's watermark, cuts a torn tail, and starts the sequencer. Fails if
    /// there is no ledger there (see `genesis::init`).
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let mut journal =
            Journal::open(&config.data_dir).map_err(|e| format!("cannot open journal: {e}"))?;
        let state = StateDb::open(&state_dir(&config.data_dir))
            .map_err(|e| format!("cannot open state store: {e}"))?;
        let reader = journal
            .reader()
            .map_err(|e| format!("cannot open journal: {e}"))?;
        let recovery = recover(&mut journal, &state, &reader).map_err(|e| e.message)?;
        let watermark = state.watermark().map_err(|e| e.message)?;
        if watermark.record_count == 0 {
            return Err(format!(
                "{} holds no ledger; run `fundtrail init --data-dir {}` first",
                config.data_dir.display(),
                config.data_dir.display()
            ));
        }
        let meta = state
            .ledger()
            .map_err(|e| e.message)?
            .ok_or("the state has records but no ledger identity")?;
        let checkpoints = Arc::new(open_checkpoints(&config.data_dir, &meta)?);
        let recovery = match recovery {
            Some(reason) => Some(reason),
            None => check_checkpoint(&state, &reader, &checkpoints, watermark.record_count)?,
        };
        if recovery.is_none() {
            checkpoints
                .sign(watermark.record_count, &state)
                .map_err(|e| e.message)?;
        }
        if let Some(reason) = &recovery {
            warn!(%reason, "serving read-only");
        }
        info!(ledger_id = %meta.ledger_id, records = watermark.record_count, "ledger open");
        let record_count = Arc::new(AtomicU64::new(watermark.record_count));
        let read_only = Arc::new(Mutex::new(recovery));
        let (tx, rx) = mpsc::channel(SEQUENCER_QUEUE_MAX);
        let (checkpoint_due, checkpoint_wait) = std::sync::mpsc::channel::<()>();
        let checkpointer = Checkpointer {
            checkpoints: checkpoints.clone(),
            state: state.clone(),
            record_count: record_count.clone(),
            read_only: read_only.clone(),
            every_ms: config.checkpoints.every_ms,
        };
        std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || checkpointer.run(checkpoint_wait))
            .map_err(|e| format!("cannot start the checkpointer: {e}"))?;
        let sequencer = Sequencer {
            checkpoint_due,
            checkpoint_every_records: config.checkpoints.every_records.max(1),
            journal,
            state: state.clone(),
            record_count: record_count.clone(),
            read_only: read_only.clone(),
            skew_ms_max: config.skew_ms_max,
            watermark,
            last_commit_ms: 0,
        };
        std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || sequencer.run(rx))
            .map_err(|e| format!("cannot start the sequencer: {e}"))?;
        let engine = Arc::new(Engine {
            state,
            reader,
            meta,
            record_count,
            read_only,
            tx,
            checkpoints,
        });
        if config.scrub_on_start {
            let scrubbed = engine.clone();
            std::thread::Builder::new()
                .name("scrub".into())
                .spawn(move || {
                    let report = crate::verify::scrub(&scrubbed);
                    match report.problem {
                        Some(problem) => scrubbed.set_read_only(format!("scrub: {problem}")),
                        None => info!(
                            records = report.records_checked,
                            "scrub found the log intact"
                        ),
                    }
                })
                .map_err(|e| format!("cannot start the scrub: {e}"))?;
        }
        Ok(engine)
    }

    pub fn meta(&self) -> &LedgerMeta {
        &self.meta
    }

    pub fn state(&self) -> &StateDb {
        &self.state
    }

    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    pub fn journal_reader(&self) -> &JournalReader {
        &self.reader
    }

    /// Stops writes from now on, saying why.
    pub fn set_read_only(&self, reason: String) {
        warn!(%reason, "refusing writes from now on");
        if let Ok(mut slot) = self.read_only.lock() {
            slot.get_or_insert(reason);
        }
    }

    /// Number of durable records.
    pub fn record_count(&self) -> u64 {
        self.record_count.load(Ordering::Acquire)
    }

    /// Why writes are refused, if they are.
    pub fn read_only_reason(&self) -> Option<String> {
        self.read_only
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|_| Some("the engine failed".into()))
    }

    /// Posts one signed request; answers once its record is durable.
    pub async fn submit(&self, signed: pb::SignedRequest) -> Result<Committed, Rejection> {
        let answer = self.enqueue(signed).await?;
        self.await_answer(answer).await
    }

    /// Posts signed requests in order, each answered on its own.
    pub async fn submit_all(
        &self,
        requests: Vec<pb::SignedRequest>,
    ) -> Vec<Result<Committed, Rejection>> {
        // Queue them all first, in order, so they share commits; then wait.
        let mut pending = Vec::with_capacity(requests.len());
        for signed in requests {
            pending.push(self.enqueue(signed).await);
        }
        let mut results = Vec::with_capacity(pending.len());
        for answer in pending {
            results.push(match answer {
                Ok(answer) => self.await_answer(answer).await,
                Err(rejection) => Err(rejection),
            });
        }
        results
    }

    /// Checks what can be checked without the sequencer and queues the request.
    async fn enqueue(
        &self,
        signed: pb::SignedRequest,
    ) -> Result<oneshot::Receiver<Result<Committed, Rejection>>, Rejection> {
        if let Some(reason) = self.read_only_reason() {
            return Err(Rejection::unavailable(format!(
                "the ledger is not accepting writes: {reason}"
            )));
        }
        if signed.key_id.is_empty() {
            return Err(Rejection::unauthenticated(
                "key_id",
                "the request is not signed: key_id is missing",
            ));
        }
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
        let verified_public_key = match self.state.key(&signed.key_id)? {
            Some(key) => {
                signing::verify(&key.public_key, &signed.payload, &signed.signature)?;
                Some(key.public_key)
            }
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            signed,
            request,
            verified_public_key,
            reply,
        };
        self.tx
            .send(submission)
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
            let record = self.record(committed.seq)?;
            committed.commit_time_ms = record.commit_time_ms;
            committed.effects = record.effects.unwrap_or_default();
        }
        Ok(committed)
    }

    /// The exact bytes of durable record `seq`.
    pub fn record_bytes(&self, seq: u64) -> Result<Vec<u8>, Rejection> {
        let count = self.record_count();
        if seq >= count {
            return Err(Rejection::not_found(
                "seq",
                format!(
                    "record {seq} does not exist; the ledger holds {count} records (0 to {})",
                    count.saturating_sub(1)
                ),
            ));
        }
        let offset = self
            .state
            .record_offset(seq)?
            .ok_or_else(|| internal(format!("the state has no journal offset for record {seq}")))?;
        self.reader
            .read(offset)
            .map_err(|e| internal(format!("cannot read record {seq} from the journal: {e}")))
    }

    pub fn record(&self, seq: u64) -> Result<pb::Record, Rejection> {
        let bytes = self.record_bytes(seq)?;
        pb::Record::decode(bytes.as_slice())
            .map_err(|e| internal(format!("record {seq} in the journal does not decode: {e}")))
    }

    /// Record `seq` decoded for reading.
    pub fn entry(&self, seq: u64) -> Result<pb::Entry, Rejection> {
        let bytes = self.record_bytes(seq)?;
        let record = pb::Record::decode(bytes.as_slice())
            .map_err(|e| internal(format!("record {seq} in the journal does not decode: {e}")))?;
        let signed = record.request.unwrap_or_default();
        let body = pb::Request::decode(signed.payload.as_slice()).ok();
        let reversed_by_seq = self.state.movement(seq)?.and_then(|m| m.reversed_by);
        Ok(pb::Entry {
            seq: record.seq,
            commit_time_ms: record.commit_time_ms,
            request: Some(signed),
            body,
            effects: record.effects,
            record: bytes,
            reversed_by_seq,
        })
    }
}

/// Brings derived state up to the journal. Returns why writes must be
/// refused, if they must; errors only when the stores cannot be read at all.
fn recover(
    journal: &mut Journal,
    state: &StateDb,
    reader: &JournalReader,
) -> Result<Option<String>, Rejection> {
    let watermark = state.watermark()?;
    if watermark.record_count > 0 {
        let last = watermark.record_count - 1;
        let agrees = journal.end_offset() >= watermark.journal_end
            && state
                .record_offset(last)?
                .and_then(|offset| reader.read(offset).ok())
                .is_some_and(|bytes| signing::sha256(&bytes) == watermark.last_record_sha256);
        if !agrees {
            return Ok(Some(format!(
                "journal and state disagree: the state has applied {} records, but the journal no longer holds record {last} as applied (it was cut short or changed). Restore the journal; do not write until it is",
                watermark.record_count
            )));
        }
    }
    let mut scan = journal
        .scan(watermark.journal_end)
        .map_err(|e| internal(format!("cannot read the journal: {e}")))?;
    let mut watermark = watermark;
    let mut txn_writes = Txn::new(state);
    let mut tree = PendingTree::new(state, watermark.record_count);
    let mut locations = Vec::new();
    let mut replayed: u64 = 0;
    let mut problem = None;
    let mut torn_at = None;
    for frame in scan.by_ref() {
        let frame = match frame {
            Ok(frame) => frame,
            Err(JournalError::BadFrame { offset, reason }) => {
                torn_at = Some((offset, reason));
                break;
            }
            Err(JournalError::Io(e)) => {
                return Err(internal(format!("cannot read the journal: {e}")))
            }
        };
        let seq = watermark.record_count;
        if let Err(reason) = replay_record(&mut txn_writes, seq, &frame.record) {
            problem = Some(format!(
                "record {seq} (journal byte {}) cannot be replayed: {reason}",
                frame.offset
            ));
            break;
        }
        tree.append(&frame.record)
            .map_err(|e| internal(format!("cannot extend the Merkle tree: {e}")))?;
        locations.push(RecordLocation {
            seq,
            offset: frame.offset,
        });
        watermark = Watermark {
            record_count: seq + 1,
            journal_end: frame.offset
                + fundtrail_store::journal::FRAME_HEADER_BYTES
                + frame.record.len() as u64,
            last_record_sha256: signing::sha256(&frame.record),
        };
        replayed += 1;
        if replayed.is_multiple_of(REPLAY_COMMIT_RECORDS) {
            let writes = std::mem::replace(&mut txn_writes, Txn::new(state)).into_writes();
            let chunk =
                std::mem::replace(&mut tree, PendingTree::new(state, watermark.record_count));
            state.commit(writes, &std::mem::take(&mut locations), chunk, watermark)?;
        }
    }
    let journal_len = journal.end_offset();
    drop(scan);
    state.commit(txn_writes.into_writes(), &locations, tree, watermark)?;
    if replayed > 0 {
        info!(
            replayed,
            records = watermark.record_count,
            "replayed journal into state"
        );
    }
    if let Some(reason) = problem {
        return Ok(Some(reason));
    }
    if let Some((offset, reason)) = torn_at {
        let tail_bytes = journal_len - offset;
        if tail_bytes > BATCH_BYTES_MAX {
            return Ok(Some(format!(
                "the journal is damaged at byte {offset} ({reason}), {tail_bytes} bytes before its end: more than one batch, so not a torn write. Record {} onwards cannot be read",
                watermark.record_count
            )));
        }
        warn!(offset, tail_bytes, %reason, "cutting torn journal tail (never acknowledged)");
        journal
            .truncate(offset)
            .map_err(|e| internal(format!("cannot cut the torn journal tail: {e}")))?;
    }
    Ok(None)
}

/// Applies one journal record to `txn`, checking it is record `seq`, that
/// its signature and authority hold, and that recomputing its effects gives
/// exactly what the record says.
pub fn replay_record<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    seq: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let record = pb::Record::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    if record.seq != seq {
        return Err(format!("it says it is record {}", record.seq));
    }
    let signed = record.request.ok_or("it holds no request")?;
    let request = decode_request(&signed.payload).map_err(|e| e.message)?;
    let ctx = Context {
        seq,
        commit_time_ms: record.commit_time_ms,
        key_id: &signed.key_id,
        payload: &signed.payload,
        signature: &signed.signature,
        verified_public_key: None,
        skew_ms_max: None,
    };
    match apply(txn, &ctx, &request).map_err(|e| e.message)? {
        Outcome::Duplicate { seq: first } => Err(format!("it repeats record {first}")),
        Outcome::Accepted { effects, writes } => {
            if Some(effects_to_pb(&effects)) != record.effects {
                return Err("its stored effects differ from the recomputed ones".into());
            }
            txn.extend(writes);
            Ok(())
        }
    }
}

struct Sequencer {
    checkpoint_due: std::sync::mpsc::Sender<()>,
    checkpoint_every_records: u64,
    journal: Journal,
    state: StateDb,
    record_count: Arc<AtomicU64>,
    read_only: Arc<Mutex<Option<String>>>,
    skew_ms_max: u64,
    watermark: Watermark,
    last_commit_ms: i64,
}

impl Sequencer {
    fn set_read_only(&self, reason: String) {
        warn!(%reason, "refusing writes from now on");
        if let Ok(mut slot) = self.read_only.lock() {
            slot.get_or_insert(reason);
        }
    }

    fn is_read_only(&self) -> bool {
        self.read_only.lock().map(|r| r.is_some()).unwrap_or(true)
    }

    fn run(mut self, mut rx: mpsc::Receiver<Submission>) {
        let mut batch = Vec::with_capacity(COMMIT_BATCH_RECORDS_MAX);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < COMMIT_BATCH_RECORDS_MAX {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit_batch(std::mem::take(&mut batch));
        }
        info!("sequencer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<Submission>) {
        if self.is_read_only() {
            for submission in batch {
                let _ = submission.reply.send(Err(Rejection::unavailable(
                    "the ledger is not accepting writes",
                )));
            }
            return;
        }
        // Commit times never go backwards, whatever the wall clock does.
        let commit_time_ms = now_ms().max(self.last_commit_ms);
        let first_seq = self.watermark.record_count;
        let mut next_seq = first_seq;
        let mut txn = Txn::new(&self.state);
        let mut tree = PendingTree::new(&self.state, first_seq);
        let mut tree_error: Option<String> = None;
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for submission in batch {
            let Submission {
                signed,
                request,
                verified_public_key,
                reply,
            } = submission;
            let ctx = Context {
                seq: next_seq,
                commit_time_ms,
                key_id: &signed.key_id,
                payload: &signed.payload,
                signature: &signed.signature,
                verified_public_key,
                skew_ms_max: Some(self.skew_ms_max),
            };
            let answer = match apply(&txn, &ctx, &request) {
                Err(rejection) => Err(rejection),
                Ok(Outcome::Duplicate { seq }) => Ok(Committed {
                    seq,
                    commit_time_ms: 0,
                    duplicate: true,
                    effects: pb::Effects::default(),
                }),
                Ok(Outcome::Accepted { effects, writes }) => {
                    let effects = effects_to_pb(&effects);
                    let record = pb::Record {
                        seq: next_seq,
                        commit_time_ms,
                        request: Some(signed.clone()),
                        effects: Some(effects.clone()),
                    };
                    let record = record.encode_to_vec();
                    if let Err(e) = tree.append(&record) {
                        tree_error.get_or_insert(e.to_string());
                    }
                    records.push(record);
                    txn.extend(writes);
                    next_seq += 1;
                    Ok(Committed {
                        seq: ctx.seq,
                        commit_time_ms,
                        duplicate: false,
                        effects,
                    })
                }
            };
            replies.push((reply, answer));
        }
        let appended = match tree_error {
            Some(e) => Err(std::io::Error::other(format!(
                "the Merkle tree cannot be extended: {e}"
            ))),
            None if records.is_empty() => Ok(Vec::new()),
            None => self.journal.append(&records),
        };
        if !records.is_empty() {
            let writes = txn.into_writes();
            match appended {
                Ok(offsets) => {
                    let locations: Vec<RecordLocation> = offsets
                        .iter()
                        .enumerate()
                        .map(|(i, &offset)| RecordLocation {
                            seq: first_seq + i as u64,
                            offset,
                        })
                        .collect();
                    let last = records.last().expect("records is not empty");
                    self.watermark = Watermark {
                        record_count: next_seq,
                        journal_end: self.journal.end_offset(),
                        last_record_sha256: signing::sha256(last),
                    };
                    assert_eq!(
                        self.watermark.record_count - first_seq,
                        records.len() as u64,
                        "one seq per record, no gaps"
                    );
                    self.last_commit_ms = commit_time_ms;
                    // The records are durable now; a failure to update derived
                    // state only stops further writes (start-up replays them).
                    if let Err(e) = self.state.commit(writes, &locations, tree, self.watermark) {
                        self.set_read_only(format!("the state store failed: {}", e.message));
                    }
                    self.record_count.store(next_seq, Ordering::Release);
                    if first_seq / self.checkpoint_every_records
                        != next_seq / self.checkpoint_every_records
                    {
                        let _ = self.checkpoint_due.send(());
                    }
                }
                Err(e) => {
                    self.set_read_only(format!(
                        "the journal could not be written: {e}; restart the server to recover"
                    ));
                    for (_, answer) in replies.iter_mut() {
                        if matches!(answer, Ok(c) if c.seq >= first_seq) {
                            *answer = Err(Rejection::new(
                                Code::Unavailable,
                                "",
                                "the journal could not be written; the request was not recorded",
                            ));
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

/// The origin line (and note key name) of this ledger's checkpoints.
pub fn checkpoint_origin(ledger_id: &str) -> String {
    format!("fundtrail/{ledger_id}")
}

/// Loads the log's signing key from the data directory, checks it is the key
/// genesis named, and opens the checkpoint log.
fn open_checkpoints(data_dir: &Path, meta: &LedgerMeta) -> Result<Checkpoints, String> {
    let path = data_dir.join(LOG_KEY_FILE_NAME);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the log key {}: {e}", path.display()))?;
    let (_, key) = fundtrail_core::keyfile::KeyFile::from_json(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if key.verifying_key().to_bytes() != meta.log_public_key {
        return Err(format!(
            "{} is not the log key named in this ledger's genesis record",
            path.display()
        ));
    }
    let origin = checkpoint_origin(&meta.ledger_id);
    let signer =
        fundtrail_tlog::NoteSigner::new(&origin, key).map_err(|e| format!("bad log key: {e}"))?;
    Checkpoints::open(data_dir, signer, origin)
}

/// Checks the journal against the newest signed checkpoint: it must hold at
/// least that many records, the tree must have that root, and every record
/// after it must still hash to its stored leaf hash. Returns why writes must
/// be refused, if they must.
fn check_checkpoint(
    state: &StateDb,
    reader: &JournalReader,
    checkpoints: &Checkpoints,
    record_count: u64,
) -> Result<Option<String>, String> {
    let Some(latest) = checkpoints.latest().map_err(|e| e.message)? else {
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
    let root = fundtrail_tlog::tree_hash(signed.tree_size, state).map_err(|e| e.to_string())?;
    if root != signed.root_hash {
        return Ok(Some(format!(
            "records before {} were changed: the tree no longer has the root of the signed checkpoint of that size",
            signed.tree_size
        )));
    }
    for seq in signed.tree_size..record_count {
        let stored = state
            .read_hashes(&[fundtrail_tlog::stored_hash_index(0, seq)])
            .map_err(|e| e.to_string())?;
        let offset = state.record_offset(seq).map_err(|e| e.message)?;
        let current = offset
            .and_then(|offset| reader.read(offset).ok())
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
    checkpoints: Arc<Checkpoints>,
    state: StateDb,
    record_count: Arc<AtomicU64>,
    read_only: Arc<Mutex<Option<String>>>,
    every_ms: u64,
}

impl Checkpointer {
    fn run(self, due: std::sync::mpsc::Receiver<()>) {
        let every = std::time::Duration::from_millis(self.every_ms.max(1));
        // Wakes when the sequencer says N records arrived, or every T ms;
        // ends when the sequencer is gone.
        use std::sync::mpsc::RecvTimeoutError::Timeout;
        while let Ok(()) | Err(Timeout) = due.recv_timeout(every) {
            if self.read_only.lock().map(|r| r.is_some()).unwrap_or(true) {
                continue;
            }
            let tree_size = self.record_count.load(Ordering::Acquire);
            if let Err(e) = self.checkpoints.sign(tree_size, &self.state) {
                warn!(reason = %e.message, "cannot sign a checkpoint; refusing writes");
                if let Ok(mut slot) = self.read_only.lock() {
                    slot.get_or_insert(e.message);
                }
            }
        }
    }
}
