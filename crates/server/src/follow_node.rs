//! Following another fundtrail node over gRPC (`serve --follow URL`): the
//! replica keeps its own journal file, holding only records whose leaf
//! hashes a checkpoint signed by the log covers.
//!
//! One step, for the upstream's newest checkpoint of size N:
//! 1. `ExportLog` streams records `have..N` into a staging file (so a long
//!    catch-up never sits in memory), signed by a key of an org that may
//!    export the whole log;
//! 2. the tree of the replica's `have` records, extended by their leaf
//!    hashes, must have the checkpoint's root: the records are the ones
//!    the log signed, and its tree extends the one the replica verified;
//! 3. only then are they appended to the journal, and replayed and adopted
//!    as any replica does (crate::follow drives it).
//!
//! The first start fetches record 0, the genesis, and trusts it for the
//! log key: every later checkpoint must be signed by that key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fundtrail_api::pb;
use fundtrail_client::{Client, ConnectOptions};
use fundtrail_core::limits::BATCH_BYTES_MAX;
use fundtrail_store::header::FileKind;
use fundtrail_store::journal::{Journal, JOURNAL_FILE_NAME};
use fundtrail_store::{JournalStore, RecordReader, StateStore};
use fundtrail_tlog::{Checkpoint, Frontier};
use std::sync::Arc;

use crate::engine::Engine;
use crate::recovery::recover;
use crate::upstream::{against_adopted, NodeUpstream, Source, Stop};

/// The staging file of one step, in the replica's data directory.
const STAGING_FILE_NAME: &str = "follow-staging.log";

/// Longest wait for the upstream's answer to a call, or for the next
/// record of an export: a stalled upstream is dropped and called again.
const FOLLOW_CALL_TIMEOUT_MS: u64 = 10_000;

/// Records appended to a file in one write: well inside a batch's bytes.
const APPEND_CHUNK_BYTES_MAX: u64 = BATCH_BYTES_MAX / 2;

/// The upstream node, and the replica's own journal.
pub(crate) struct Node {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// The replica's journal, to append verified records to. The engine
    /// holds another handle on the file, which never appends: a replica's
    /// write gate refuses every write.
    journal: Journal,
    reader: Arc<dyn RecordReader>,
    staging: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the follower's runtime: {e}"))
}

async fn connect(upstream: &NodeUpstream) -> Result<Client, String> {
    let options = ConnectOptions {
        tls: upstream.tls.clone(),
        reader: Some(upstream.reader.clone()),
        session: None,
    };
    Client::connect_with(&upstream.url, &options)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", upstream.url))
}

fn wait(e: impl std::fmt::Display) -> Stop {
    Stop::Wait(e.to_string())
}

/// Runs `call` on `runtime`, giving up after [`FOLLOW_CALL_TIMEOUT_MS`].
fn within<T, E: std::fmt::Display>(
    runtime: &tokio::runtime::Runtime,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    let limit = Duration::from_millis(FOLLOW_CALL_TIMEOUT_MS);
    // The timer is made inside the runtime, whose clock it needs.
    match runtime.block_on(async { tokio::time::timeout(limit, call).await }) {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the upstream did not answer within {FOLLOW_CALL_TIMEOUT_MS} ms"
        )),
    }
}

impl Node {
    pub(crate) fn connect(upstream: &NodeUpstream, engine: &Engine) -> Result<Node, String> {
        let runtime = runtime()?;
        let client = within(&runtime, connect(upstream))?;
        let ledger_id = &engine.meta().ledger_id;
        if client.ledger_id() != ledger_id {
            return Err(format!(
                "{} serves ledger {:?}, not {ledger_id:?}",
                upstream.url,
                client.ledger_id()
            ));
        }
        let path = engine.data_dir().join(JOURNAL_FILE_NAME);
        let journal =
            Journal::open(&path, FileKind::Journal, Some(ledger_id)).map_err(|e| e.to_string())?;
        let reader = JournalStore::reader(&journal).map_err(|e| e.to_string())?;
        Ok(Node {
            runtime,
            client,
            journal,
            reader,
            staging: engine.data_dir().join(STAGING_FILE_NAME),
        })
    }

    /// Streams records `start..end` into a new staging file and returns
    /// the tree of `start` records extended by them.
    fn stage(&mut self, state: &dyn StateStore, start: u64, end: u64) -> Result<Frontier, Stop> {
        let mut tree = Frontier::from_stored(start, state).map_err(wait)?;
        let _ = std::fs::remove_file(&self.staging);
        let mut staged = Journal::create(&self.staging, FileKind::Export, self.journal.ledger_id())
            .map_err(wait)?;
        let mut chunk = Chunk::default();
        let mut stream = within(
            &self.runtime,
            self.client
                .audit
                .export_log(pb::ExportLogRequest { start, end }),
        )
        .map_err(wait)?
        .into_inner();
        while let Some(item) = within(&self.runtime, stream.message()).map_err(wait)? {
            let index = tree.tree_size();
            if item.index != index {
                return Err(Stop::Wait(format!(
                    "the upstream sent record {} where {index} was due",
                    item.index
                )));
            }
            if item.record.is_empty() {
                return Err(Stop::Wait(format!(
                    "the upstream withheld record {index} (only its leaf hash came): the follow key's org may not read it whole. Following needs a key of a MIRROR org, the root org, or an audit office whose jurisdiction covers the whole ledger"
                )));
            }
            tree.push(fundtrail_tlog::record_hash(&item.record))
                .map_err(wait)?;
            if let Some(full) = chunk.add(item.record) {
                staged.append(&full).map_err(wait)?;
            }
            if index + 1 == end {
                break;
            }
        }
        staged.append(&chunk.take()).map_err(wait)?;
        if tree.tree_size() != end {
            return Err(Stop::Wait(format!(
                "the upstream's export ended at record {} of {end}",
                tree.tree_size()
            )));
        }
        Ok(tree)
    }

    /// Appends the staged records to the journal, in chunks.
    fn commit_staged(&mut self) -> Result<(), Stop> {
        let staged = Journal::open(
            &self.staging,
            FileKind::Export,
            Some(self.journal.ledger_id()),
        )
        .map_err(wait)?;
        let mut chunk = Chunk::default();
        for frame in staged.scan(staged.first_offset()).map_err(wait)? {
            if let Some(full) = chunk.add(frame.map_err(wait)?.record) {
                self.journal.append(&full).map_err(wait)?;
            }
        }
        self.journal.append(&chunk.take()).map_err(wait)?;
        let _ = std::fs::remove_file(&self.staging);
        Ok(())
    }
}

impl Source for Node {
    fn newest_note(&mut self) -> Result<Option<String>, Stop> {
        let asked = self
            .client
            .audit
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 });
        let asked = async {
            match asked.await {
                Ok(answer) => Ok(Some(answer.into_inner().note)),
                Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                Err(status) => Err(status),
            }
        };
        within(&self.runtime, asked).map_err(wait)
    }

    fn fetch(
        &mut self,
        engine: &Engine,
        checkpoint: &Checkpoint,
        note: &str,
    ) -> Result<bool, Stop> {
        let state = engine.state();
        // Records appended before a restart or a failed replay come first.
        if let Err(fault) = recover(&mut self.journal, state, self.reader.as_ref()) {
            return Err(Stop::Wait(format!("the state store failed: {fault}")));
        }
        let have = state.watermark().map_err(wait)?.record_count;
        let size = checkpoint.tree_size;
        if have >= size {
            // Already held: adopting the checkpoint checks its root.
            return Ok(true);
        }
        let tree = self.stage(state, have, size)?;
        if tree.root() != checkpoint.root_hash {
            let _ = std::fs::remove_file(&self.staging);
            return Err(Stop::Evidence(format!(
                "the upstream's records {have} to {} do not give the root of its checkpoint of {size} records: they are not the records the log signed, or the log signed a tree that does not extend the {have} records this replica holds\n\n{}",
                size - 1,
                against_adopted(engine, size, note)
            )));
        }
        self.commit_staged()?;
        Ok(true)
    }

    fn journal(&mut self) -> (&mut dyn JournalStore, &dyn RecordReader) {
        (&mut self.journal, self.reader.as_ref())
    }
}

/// Records gathered for one append, at most [`APPEND_CHUNK_BYTES_MAX`].
#[derive(Default)]
struct Chunk {
    records: Vec<Vec<u8>>,
    bytes: u64,
}

impl Chunk {
    /// Adds `record`; returns the records gathered before it when it
    /// would not fit with them.
    fn add(&mut self, record: Vec<u8>) -> Option<Vec<Vec<u8>>> {
        let len = record.len() as u64 + 8;
        let full = (self.bytes + len > APPEND_CHUNK_BYTES_MAX).then(|| self.take());
        self.bytes += len;
        self.records.push(record);
        full
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }
}

/// Creates a replica's journal at `path` holding the upstream's genesis
/// record, trusted on first use: it names the log key every checkpoint
/// the replica adopts must be signed by.
pub(crate) fn fetch_genesis(upstream: &NodeUpstream, path: &Path) -> Result<(), String> {
    let upstream = upstream.clone();
    let path = path.to_path_buf();
    // Its own thread: the caller may run on a runtime's blocking pool.
    std::thread::spawn(move || {
        let runtime = runtime()?;
        within(&runtime, async {
            let mut client = connect(&upstream).await?;
            let mut stream = client
                .audit
                .export_log(pb::ExportLogRequest { start: 0, end: 1 })
                .await
                .map_err(|e| format!("cannot read the genesis record: {e}"))?
                .into_inner();
            let genesis = stream
                .message()
                .await
                .map_err(|e| format!("cannot read the genesis record: {e}"))?
                .filter(|item| item.index == 0 && !item.record.is_empty())
                .ok_or("the upstream sent no genesis record")?;
            let part = path.with_extension("part");
            let _ = std::fs::remove_file(&part);
            let mut journal = Journal::create(&part, FileKind::Journal, client.ledger_id())
                .map_err(|e| e.to_string())?;
            journal
                .append(&[genesis.record])
                .map_err(|e| e.to_string())?;
            std::fs::rename(&part, &path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            fundtrail_store::journal::sync_dir_of(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))
        })
    })
    .join()
    .map_err(|_| "fetching the genesis record panicked".to_string())?
}
