//! Durable storage for fundtrail behind two narrow traits, as docs/design.md §2
//! draws them:
//!
//! - [`JournalStore`]: the truth. Appends a batch of records durably, reads
//!   one back by its location, scans from a location on. [`Journal`] keeps
//!   it in one file of framed, checksummed records made durable with one
//!   `fdatasync` per group-commit batch.
//! - [`StateStore`]: everything derived (balances, registry, indexes, the
//!   Merkle tree's stored hashes, record locations) with an "applied up to"
//!   [`Watermark`]. [`StateDb`] keeps the key–value part in fjall and the
//!   tree hashes and record offsets in [`slots`] files; all of it can be
//!   thrown away and rebuilt by replaying the journal (none of it is
//!   fsynced, so it never holds anything that is not also in the journal).
//!
//! The engine uses only the traits, so another journal and fault-injecting
//! test doubles (`faulty`, with the `test-support` feature) can sit behind
//! them.
//!
//! ```
//! use fundtrail_store::{header::FileKind, Journal, JournalStore};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("journal.log");
//! let mut journal = Journal::create(&path, FileKind::Journal, "fundtrail-demo").unwrap();
//! let at = JournalStore::append(&mut journal, &[b"record 0".to_vec()]).unwrap();
//! assert_eq!(JournalStore::reader(&journal).unwrap().read(at[0]).unwrap(), b"record 0");
//! ```

#[cfg(any(test, feature = "test-support"))]
pub mod faulty;
pub mod secret;
pub mod slots;
pub mod state;
pub mod tree;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use fundtrail_core::state::{Kv, Writes};
use fundtrail_core::Fault;
use fundtrail_tlog::{Hash, HashReader};

/// The file formats live in `fundtrail-format`; the store keeps them under
/// their old paths, and adds the journal's place behind [`JournalStore`].
pub use fundtrail_format::{header, journal};
pub use journal::{Frame, Journal, JournalError, JournalReader};
pub use state::{RecordLocation, StateDb, Watermark};
pub use tree::PendingTree;

/// Frames from a location on, ending at a clean end or at one bad frame.
pub type FrameIter<'a> = Box<dyn Iterator<Item = Result<Frame, JournalError>> + Send + 'a>;

/// The journal as the engine sees it.
pub trait JournalStore: Send {
    /// The ledger the journal belongs to.
    fn ledger_id(&self) -> &str;

    /// Appends `records` durably and returns each one's location. On an
    /// error nothing may be acknowledged: the journal may hold part of the
    /// batch, so the outcome is unknown and the caller stops writing.
    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>>;

    /// The location just past the last record.
    fn end(&self) -> u64;

    /// The records from `location` on, in order.
    fn scan(&self, location: u64) -> io::Result<FrameIter<'_>>;

    /// Cuts the journal at `location`, the end of the last good record.
    fn truncate(&mut self, location: u64) -> io::Result<()>;

    /// A reader that stays valid while the journal is appended to.
    fn reader(&self) -> io::Result<Arc<dyn RecordReader>>;

    /// After an append failed with [`Superseded`] (another writer appended
    /// first), reads and checks what the other writer appended, so that
    /// [`JournalStore::end`] and the next append follow it. A journal only
    /// this process writes is never superseded and has nothing to read.
    fn catch_up(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why an append was refused when another writer appended to the journal
/// since this one last read it: nothing of the refused batch was written,
/// so its requests may be checked again and retried after
/// [`JournalStore::catch_up`]. Carried inside an [`io::Error`].
#[derive(Debug, thiserror::Error)]
#[error("the journal holds {found} records, not the {expected} this writer applied against: another writer appended first")]
pub struct Superseded {
    pub expected: u64,
    pub found: u64,
}

impl Superseded {
    /// Whether `e` is a refusal because another writer appended first.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Superseded>())
    }
}

/// Reads one record by its location.
pub trait RecordReader: Send + Sync {
    fn read(&self, location: u64) -> Result<Vec<u8>, JournalError>;
}

/// Derived state as the engine sees it: key–value reads, the tree's stored
/// hashes, slot writes, and atomic batches that move the watermark.
pub trait StateStore: Kv + HashReader + Send + Sync {
    fn watermark(&self) -> Result<Watermark, Fault>;

    /// Writes tree hashes from stored-hash index `first_index` on and the
    /// journal offsets of records from `first_seq` on. Readers may read
    /// them once the records are durable; slots past the watermark are
    /// written over by whatever becomes durable there.
    fn write_slots(
        &self,
        first_index: u64,
        hashes: &[Hash],
        first_seq: u64,
        offsets: &[u64],
    ) -> Result<(), Fault>;

    /// Commits the core's writes of applied records, the seq of each
    /// record's leaf hash, and the watermark, atomically.
    fn commit_index(
        &self,
        writes: Writes,
        leaves: &[(u64, Hash)],
        watermark: Watermark,
    ) -> Result<(), Fault>;

    /// Commits a batch of applied records: their slots, then their index
    /// writes with the watermark (what start-up replay does in one step).
    fn commit(
        &self,
        writes: Writes,
        locations: &[RecordLocation],
        tree: PendingTree,
        watermark: Watermark,
    ) -> Result<(), Fault> {
        assert_eq!(
            tree.record_count(),
            watermark.record_count,
            "the tree holds every applied record"
        );
        let (first_index, hashes) = tree.into_parts();
        let first_seq = locations.first().map_or(watermark.record_count, |l| l.seq);
        let offsets: Vec<u64> = locations
            .iter()
            .enumerate()
            .map(|(i, l)| {
                assert_eq!(l.seq, first_seq + i as u64, "locations are consecutive");
                l.offset
            })
            .collect();
        self.write_slots(first_index, &hashes, first_seq, &offsets)?;
        let seqs = first_seq..first_seq + locations.len() as u64;
        let leaves = tree::leaves(seqs, first_index, &hashes);
        self.commit_index(writes, &leaves, watermark)
    }

    /// The journal location of record `seq`.
    fn record_location(&self, seq: u64) -> Result<Option<u64>, Fault>;

    /// The seq of the record whose leaf hash is `leaf_hash`.
    fn seq_of_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, Fault>;

    /// Every key and value (the store's own keys, starting with `~`,
    /// included), in key order: for comparing two states.
    fn dump(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Fault>;

    /// Makes the state's own files current (at clean shutdown).
    fn flush(&self) -> Result<(), Fault>;
}

impl JournalStore for Journal {
    fn ledger_id(&self) -> &str {
        Journal::ledger_id(self)
    }

    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        Journal::append(self, records)
    }

    fn end(&self) -> u64 {
        self.end_offset()
    }

    fn scan(&self, location: u64) -> io::Result<FrameIter<'_>> {
        Ok(Box::new(Journal::scan(self, location)?))
    }

    fn truncate(&mut self, location: u64) -> io::Result<()> {
        Journal::truncate(self, location)
    }

    fn reader(&self) -> io::Result<Arc<dyn RecordReader>> {
        Ok(Arc::new(Journal::reader(self)?))
    }
}

impl RecordReader for JournalReader {
    fn read(&self, location: u64) -> Result<Vec<u8>, JournalError> {
        JournalReader::read(self, location)
    }
}

impl StateStore for StateDb {
    fn watermark(&self) -> Result<Watermark, Fault> {
        StateDb::watermark(self)
    }

    fn write_slots(
        &self,
        first_index: u64,
        hashes: &[Hash],
        first_seq: u64,
        offsets: &[u64],
    ) -> Result<(), Fault> {
        StateDb::write_slots(self, first_index, hashes, first_seq, offsets)
    }

    fn commit_index(
        &self,
        writes: Writes,
        leaves: &[(u64, Hash)],
        watermark: Watermark,
    ) -> Result<(), Fault> {
        StateDb::commit_index(self, writes, leaves, watermark)
    }

    fn record_location(&self, seq: u64) -> Result<Option<u64>, Fault> {
        self.record_offset(seq)
    }

    fn seq_of_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, Fault> {
        StateDb::seq_of_leaf(self, leaf_hash)
    }

    fn dump(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Fault> {
        StateDb::dump(self)
    }

    fn flush(&self) -> Result<(), Fault> {
        StateDb::flush(self)
    }
}
