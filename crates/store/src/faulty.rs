//! Fault-injecting doubles of the storage traits, for tests of what the
//! engine does when the disk fails: each wraps a real store and fails the
//! operations its [`Faults`] switches name, from the moment they are set.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fundtrail_core::state::{Kv, Row, Writes};
use fundtrail_core::Fault;
use fundtrail_tlog::{Hash, HashReader};

use crate::{FrameIter, JournalStore, RecordReader, StateStore, Watermark};

/// Switches shared between a test and its faulty stores.
#[derive(Debug, Default)]
pub struct Faults {
    /// The journal's append fails after writing its bytes, as a failed
    /// `fdatasync` does: the records may or may not be on disk.
    pub journal_sync: AtomicBool,
    /// Derived-state commits fail.
    pub state_commit: AtomicBool,
    /// Derived-state reads of keys that start with this prefix fail (an
    /// empty prefix: every read).
    pub state_read_prefix: Mutex<Option<Vec<u8>>>,
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    pub fn set(switch: &AtomicBool) {
        switch.store(true, Ordering::SeqCst);
    }

    /// Makes reads of keys under `prefix` fail from now on.
    pub fn fail_reads_under(&self, prefix: &[u8]) {
        *self
            .state_read_prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(prefix.to_vec());
    }

    fn read_fails(&self, key: &[u8]) -> bool {
        self.state_read_prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|prefix| key.starts_with(prefix))
    }

    fn on(switch: &AtomicBool) -> bool {
        switch.load(Ordering::SeqCst)
    }
}

/// A journal whose appends fail when `faults.journal_sync` is set.
pub struct FaultyJournal {
    pub inner: Box<dyn JournalStore>,
    pub faults: Arc<Faults>,
}

impl JournalStore for FaultyJournal {
    fn ledger_id(&self) -> &str {
        self.inner.ledger_id()
    }

    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        if Faults::on(&self.faults.journal_sync) {
            // The bytes reach the file; the sync that would make them
            // durable is what fails.
            self.inner.append(records)?;
            return Err(io::Error::other("injected: fdatasync failed"));
        }
        self.inner.append(records)
    }

    fn end(&self) -> u64 {
        self.inner.end()
    }

    fn scan(&self, location: u64) -> io::Result<FrameIter<'_>> {
        self.inner.scan(location)
    }

    fn truncate(&mut self, location: u64) -> io::Result<()> {
        self.inner.truncate(location)
    }

    fn reader(&self) -> io::Result<Arc<dyn RecordReader>> {
        self.inner.reader()
    }
}

/// Derived state whose commits or reads fail when the switches are set.
pub struct FaultyState {
    pub inner: Arc<dyn StateStore>,
    pub faults: Arc<Faults>,
}

impl FaultyState {
    fn read_fault(&self, key: &[u8]) -> Result<(), Fault> {
        if self.faults.read_fails(key) {
            return Err(Fault::io("the state store failed: an injected read fault"));
        }
        Ok(())
    }
}

impl Kv for FaultyState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        self.read_fault(key)?;
        self.inner.get(key)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        self.read_fault(start)?;
        self.inner.scan(prefix, start, limit)
    }
}

impl HashReader for FaultyState {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, fundtrail_tlog::Error> {
        self.inner.read_hashes(indexes)
    }
}

impl StateStore for FaultyState {
    fn watermark(&self) -> Result<Watermark, Fault> {
        self.inner.watermark()
    }

    fn write_slots(
        &self,
        first_index: u64,
        hashes: &[Hash],
        first_seq: u64,
        offsets: &[u64],
    ) -> Result<(), Fault> {
        self.inner
            .write_slots(first_index, hashes, first_seq, offsets)
    }

    fn commit_index(
        &self,
        writes: Writes,
        leaves: &[(u64, Hash)],
        watermark: Watermark,
    ) -> Result<(), Fault> {
        if Faults::on(&self.faults.state_commit) {
            return Err(Fault::io(
                "the state store failed: an injected commit fault",
            ));
        }
        self.inner.commit_index(writes, leaves, watermark)
    }

    fn record_location(&self, seq: u64) -> Result<Option<u64>, Fault> {
        self.inner.record_location(seq)
    }

    fn seq_of_leaf(&self, leaf_hash: &fundtrail_tlog::Hash) -> Result<Option<u64>, Fault> {
        self.inner.seq_of_leaf(leaf_hash)
    }

    fn dump(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Fault> {
        self.inner.dump()
    }

    fn flush(&self) -> Result<(), Fault> {
        self.inner.flush()
    }
}
