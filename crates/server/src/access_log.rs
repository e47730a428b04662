//! The access log: who read what. Every authenticated read, refused ones
//! included, becomes an `AccessRecord` in `access.log`, a second
//! append-only log with its own RFC 9162 tree and checkpoints signed by the
//! log key under the name `<origin>/access`.
//!
//! One writer thread appends in groups, one fsync per group. A read that
//! revealed household data waits for its entry to be durable before it is
//! answered; other reads do not wait. The tree holds durable entries only,
//! so every signed access checkpoint covers entries on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::start::StartError;
use fundtrail_api::pb;
use fundtrail_core::limits::{ACCESS_LOG_GROUP_MAX, ACCESS_LOG_QUEUE_MAX, BATCH_BYTES_MAX};
use fundtrail_core::Fault;
use fundtrail_store::header::FileKind;
use fundtrail_store::journal::{JournalError, JournalReader};
use fundtrail_store::Journal;
use fundtrail_tlog::{
    prove_record, prove_tree, sign_checkpoint, tree_hash, Checkpoint, Hash, MemoryHashes,
    NoteSigner, NoteVerifier,
};
use prost::Message;
use tracing::{error, warn};

/// The access log's file name inside the data directory.
pub const ACCESS_LOG_FILE_NAME: &str = "access.log";

/// The durable entries: their tree, where each frame starts, and indexes
/// by household and by org.
#[derive(Default)]
struct Entries {
    tree: MemoryHashes,
    offsets: Vec<u64>,
    /// Entries naming an account, revealed or asked for.
    by_account: HashMap<String, Vec<u64>>,
    by_org: HashMap<String, Vec<u64>>,
}

impl Entries {
    fn add(&mut self, offset: u64, record: &pb::AccessRecord, bytes: &[u8]) -> Result<(), Fault> {
        assert_eq!(
            record.index,
            self.tree.tree_size(),
            "entries arrive in order"
        );
        self.tree
            .append(bytes)
            .map_err(|e| Fault::bug(format!("the access log's tree: {e}")))?;
        self.offsets.push(offset);
        let mut named: Vec<&String> = record
            .household_account_ids
            .iter()
            .chain(&record.account_ids)
            .collect();
        named.sort();
        named.dedup();
        for account in named {
            self.by_account
                .entry(account.clone())
                .or_default()
                .push(record.index);
        }
        self.by_org
            .entry(record.org_id.clone())
            .or_default()
            .push(record.index);
        Ok(())
    }
}

/// An entry on its way to the writer, and who waits for it.
struct Pending {
    record: pb::AccessRecord,
    durable: Option<mpsc::Sender<Result<(), Fault>>>,
}

pub struct AccessLog {
    queue: Mutex<Option<SyncSender<Pending>>>,
    entries: Arc<Mutex<Entries>>,
    reader: JournalReader,
    signer: NoteSigner,
    origin: String,
    /// Set when an append failed: household reads stop until a restart.
    failed: Arc<Mutex<Option<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The access log's checkpoint origin for a ledger's origin.
pub fn access_origin(origin: &str) -> String {
    format!("{origin}/access")
}

impl AccessLog {
    /// Opens (or creates) `access.log` in `data_dir`, re-reads every entry
    /// and starts the writer. A torn last group is cut; damage further in
    /// refuses to open.
    pub fn open(
        data_dir: &Path,
        ledger_id: &str,
        origin: &str,
        key: ed25519_dalek::SigningKey,
    ) -> Result<AccessLog, StartError> {
        let path = data_dir.join(ACCESS_LOG_FILE_NAME);
        let mut journal = Journal::open_or_create(&path, FileKind::AccessLog, ledger_id)?;
        let entries = read_entries(&mut journal)?;
        let origin = access_origin(origin);
        let signer = NoteSigner::new(&origin, key)
            .map_err(|e| StartError::Config(format!("bad log key: {e}")))?;
        let reader = journal.reader().map_err(|e| {
            StartError::Unavailable(format!("cannot read {ACCESS_LOG_FILE_NAME}: {e}"))
        })?;
        let entries = Arc::new(Mutex::new(entries));
        let failed = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::sync_channel(ACCESS_LOG_QUEUE_MAX);
        let writer = Writer {
            journal,
            entries: entries.clone(),
            failed: failed.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| {
                StartError::Unavailable(format!("cannot start the access-log writer: {e}"))
            })?;
        Ok(AccessLog {
            queue: Mutex::new(Some(tx)),
            entries,
            reader,
            signer,
            origin,
            failed,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Records one read. With `durable`, returns once the entry is on disk;
    /// an entry that cannot be kept is a fault, and the read must not be
    /// answered.
    pub fn record(&self, record: pb::AccessRecord, durable: bool) -> Result<(), Fault> {
        if let Some(reason) = self.failed.lock().expect("poisoned").clone() {
            return Err(Fault::io(format!(
                "the access log cannot be written ({reason})"
            )));
        }
        let (reply, done) = match durable {
            true => {
                let (tx, rx) = mpsc::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let queue = self.queue.lock().expect("poisoned").clone();
        let Some(queue) = queue else {
            return Err(Fault::io("the access log is shut down"));
        };
        queue
            .send(Pending {
                record,
                durable: reply,
            })
            .map_err(|_| Fault::io("the access-log writer has stopped"))?;
        match done {
            Some(done) => done
                .recv()
                .map_err(|_| Fault::io("the access-log writer stopped before writing"))?,
            None => Ok(()),
        }
    }

    /// Signs a checkpoint of every durable entry.
    pub fn checkpoint(&self) -> Result<(Checkpoint, String), Fault> {
        let entries = self.entries.lock().expect("poisoned");
        let tree_size = entries.tree.tree_size();
        let root_hash = tree_hash(tree_size, &entries.tree)
            .map_err(|e| Fault::bug(format!("the access log's tree: {e}")))?;
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root_hash,
        };
        let note = sign_checkpoint(&checkpoint, &self.signer)
            .map_err(|e| Fault::bug(format!("cannot sign the access checkpoint: {e}")))?;
        Ok((checkpoint, note))
    }

    /// Indexes of the entries naming account `household` (or by `org`), from
    /// `start_index` on, at most `limit`.
    pub fn find(
        &self,
        household: Option<&str>,
        org: Option<&str>,
        start_index: u64,
        limit: usize,
    ) -> Vec<u64> {
        let entries = self.entries.lock().expect("poisoned");
        let list = match (household, org) {
            (Some(h), _) => entries.by_account.get(h),
            (None, Some(o)) => entries.by_org.get(o),
            (None, None) => None,
        };
        list.map(|l| {
            // Each list is in index order.
            let from = l.partition_point(|&i| i < start_index);
            l[from..].iter().copied().take(limit).collect()
        })
        .unwrap_or_default()
    }

    /// The exact bytes of entry `index` and its proof in the tree of
    /// `tree_size` entries.
    pub fn entry(&self, index: u64, tree_size: u64) -> Result<(Vec<u8>, Vec<Hash>), Fault> {
        let (offset, proof) = {
            let entries = self.entries.lock().expect("poisoned");
            let offset = *entries
                .offsets
                .get(index as usize)
                .ok_or_else(|| Fault::corrupt(format!("no access-log entry {index}")))?;
            let proof = prove_record(tree_size, index, &entries.tree)
                .map_err(|e| Fault::bug(format!("the access log's tree: {e}")))?;
            (offset, proof)
        };
        let bytes = self
            .reader
            .read(offset)
            .map_err(|e| Fault::io(format!("cannot read {ACCESS_LOG_FILE_NAME}: {e}")))?;
        Ok((bytes, proof))
    }

    /// Proof that the tree of `second` entries extends the tree of `first`.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, String> {
        let entries = self.entries.lock().expect("poisoned");
        let size = entries.tree.tree_size();
        if second > size || first > second {
            return Err(format!(
                "the access log holds {size} entries: ask for first_size ≤ second_size ≤ {size}"
            ));
        }
        prove_tree(second, first, &entries.tree).map_err(|e| e.to_string())
    }

    /// Stops the writer after it has written what is queued.
    pub fn shutdown(&self) {
        self.queue.lock().expect("poisoned").take();
        if let Some(writer) = self.writer.lock().expect("poisoned").take() {
            let _ = writer.join();
        }
    }
}

/// Re-reads every entry of `access.log`.
fn read_entries(journal: &mut Journal) -> Result<Entries, StartError> {
    let mut entries = Entries::default();
    let scan = journal
        .scan(0)
        .map_err(|e| StartError::Unavailable(format!("cannot read {ACCESS_LOG_FILE_NAME}: {e}")))?;
    let mut torn = None;
    for frame in scan {
        match frame {
            Ok(frame) => {
                let record = pb::AccessRecord::decode(frame.record.as_slice()).map_err(|e| {
                    StartError::Refused(format!("{ACCESS_LOG_FILE_NAME} holds an entry that does not decode at byte {}: {e}", frame.offset))
                })?;
                if record.index != entries.tree.tree_size() {
                    return Err(StartError::Refused(format!(
                        "{ACCESS_LOG_FILE_NAME} holds entry {} where entry {} belongs",
                        record.index,
                        entries.tree.tree_size()
                    )));
                }
                entries
                    .add(frame.offset, &record, &frame.record)
                    .map_err(StartError::from)?;
            }
            Err(JournalError::BadFrame { offset, reason }) => torn = Some((offset, reason)),
            Err(e) => {
                return Err(StartError::Unavailable(format!(
                    "cannot read {ACCESS_LOG_FILE_NAME}: {e}"
                )))
            }
        }
    }
    if let Some((offset, reason)) = torn {
        let tail_bytes = journal.end_offset() - offset;
        if tail_bytes > BATCH_BYTES_MAX {
            return Err(StartError::Refused(format!(
                "{ACCESS_LOG_FILE_NAME} is damaged at byte {offset} ({reason}), {tail_bytes} bytes before its end: not a torn write"
            )));
        }
        warn!(offset, tail_bytes, %reason, "cutting the access log's torn tail");
        journal.truncate(offset).map_err(|e| {
            StartError::Unavailable(format!("cannot cut the access log's torn tail: {e}"))
        })?;
    }
    Ok(entries)
}

/// The one thread that appends to `access.log`.
struct Writer {
    journal: Journal,
    entries: Arc<Mutex<Entries>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Pending>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < ACCESS_LOG_GROUP_MAX {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let result = self.append(&mut group);
            if let Err(fault) = &result {
                error!(%fault, "the access log cannot be written");
                *self.failed.lock().expect("poisoned") = Some(fault.to_string());
            }
            for pending in group {
                if let Some(reply) = pending.durable {
                    let _ = reply.send(result.clone());
                }
            }
        }
    }

    /// Numbers, writes and fsyncs one group, then adds it to the tree.
    fn append(&mut self, group: &mut [Pending]) -> Result<(), Fault> {
        if let Some(reason) = self.failed.lock().expect("poisoned").clone() {
            return Err(Fault::io(format!(
                "the access log cannot be written ({reason})"
            )));
        }
        let first = self.entries.lock().expect("poisoned").tree.tree_size();
        let mut bytes = Vec::with_capacity(group.len());
        for (i, pending) in group.iter_mut().enumerate() {
            pending.record.index = first + i as u64;
            bytes.push(pending.record.encode_to_vec());
        }
        let offsets = self
            .journal
            .append(&bytes)
            .map_err(|e| Fault::io(format!("cannot append to {ACCESS_LOG_FILE_NAME}: {e}")))?;
        let mut entries = self.entries.lock().expect("poisoned");
        for ((pending, bytes), offset) in group.iter().zip(&bytes).zip(offsets) {
            entries.add(offset, &pending.record, bytes)?;
        }
        Ok(())
    }
}
