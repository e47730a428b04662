//! The Merkle tree's stored hashes (Go tlog's dense layout: every
//! tree hash at `stored_hash_index(level, n)`), and the hashes a batch adds
//! before it is committed.

use fundtrail_tlog::{
    stored_hash_count, stored_hash_index, stored_hashes, Error, Hash, HashReader,
};

/// Hashes appended by records not yet committed, over the committed tree.
pub struct PendingTree<'a> {
    db: &'a dyn HashReader,
    /// Records in the tree, committed and pending.
    record_count: u64,
    /// Stored-hash index of `hashes[0]`.
    first_index: u64,
    hashes: Vec<Hash>,
}

impl<'a> PendingTree<'a> {
    /// A pending append on top of the committed tree of `record_count` records.
    pub fn new(db: &'a dyn HashReader, record_count: u64) -> Self {
        PendingTree {
            db,
            record_count,
            first_index: stored_hash_count(record_count),
            hashes: Vec::new(),
        }
    }

    /// Appends record `record_count` (its exact bytes); O(log n) reads.
    pub fn append(&mut self, record: &[u8]) -> Result<(), Error> {
        let new = stored_hashes(self.record_count, record, self)?;
        self.hashes.extend(new);
        self.record_count += 1;
        assert_eq!(
            self.first_index + self.hashes.len() as u64,
            stored_hash_count(self.record_count),
            "stored hashes must match the tree size"
        );
        Ok(())
    }

    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// The stored-hash index of the first pending hash, and the pending hashes.
    pub fn into_parts(self) -> (u64, Vec<Hash>) {
        (self.first_index, self.hashes)
    }
}

/// The (seq, leaf hash) of records `seqs`, whose stored hashes are
/// `hashes` from stored-hash index `first_index` on (a pending tree's
/// parts).
pub fn leaves(seqs: std::ops::Range<u64>, first_index: u64, hashes: &[Hash]) -> Vec<(u64, Hash)> {
    seqs.map(|seq| {
        let at = stored_hash_index(0, seq) - first_index;
        let leaf = hashes
            .get(at as usize)
            .expect("the batch's tree holds each of its records' leaves");
        (seq, *leaf)
    })
    .collect()
}

impl HashReader for PendingTree<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        let mut out = Vec::with_capacity(indexes.len());
        for &index in indexes {
            if index < self.first_index {
                out.extend(self.db.read_hashes(&[index])?);
            } else {
                let hash = usize::try_from(index - self.first_index)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .ok_or(Error::MissingHash { index })?;
                out.push(*hash);
            }
        }
        Ok(out)
    }
}
