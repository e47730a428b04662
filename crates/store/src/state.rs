//! Derived state in sled: the core's key–value state, the journal offset of
//! every record, and the watermark saying how much of the journal it holds.
//!
//! Keys beginning with `~` belong to this module; all others to
//! `fundtrail_core::state`.

use std::collections::BTreeMap;
use std::path::Path;

use fundtrail_core::state::{Kv, Row};
use fundtrail_core::Fault;
use fundtrail_tlog::{stored_hash_index, Hash, HashReader};

use crate::tree::PendingTree;

const WATERMARK_KEY: &[u8] = b"~w";
const SCHEMA_KEY: &[u8] = b"~s";
const OFFSET_PREFIX: &[u8] = b"~o";
const HASH_PREFIX: &[u8] = b"~h";
const LEAF_PREFIX: &[u8] = b"~l";

/// How much of the journal the derived state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermark {
    /// Records applied: the next record gets this seq.
    pub record_count: u64,
    /// Journal byte offset just past the last applied record.
    pub journal_end: u64,
    /// SHA-256 of the last applied record's bytes (zero when none): lets
    /// start-up check the journal still holds that very record.
    pub last_record_sha256: [u8; 32],
}

impl Watermark {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(&self.record_count.to_be_bytes());
        out.extend_from_slice(&self.journal_end.to_be_bytes());
        out.extend_from_slice(&self.last_record_sha256);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Watermark> {
        if bytes.len() != 48 {
            return None;
        }
        Some(Watermark {
            record_count: u64::from_be_bytes(bytes[0..8].try_into().ok()?),
            journal_end: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            last_record_sha256: bytes[16..48].try_into().ok()?,
        })
    }
}

/// Where a record's frame is in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    pub seq: u64,
    pub offset: u64,
}

fn hash_key(index: u64) -> Vec<u8> {
    let mut key = HASH_PREFIX.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn leaf_key(leaf_hash: &Hash) -> Vec<u8> {
    let mut key = LEAF_PREFIX.to_vec();
    key.extend_from_slice(leaf_hash);
    key
}

fn offset_key(seq: u64) -> Vec<u8> {
    let mut key = OFFSET_PREFIX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The layout of derived state this build writes: key schema and value
/// encodings. Bump it whenever either changes; a server that finds another
/// version rebuilds the state from the journal instead of misreading it.
/// 1: the layout before versions were stored. 2: rules versions in the
/// ledger identity, org-scoped idempotency entries. 3: the seq of each leaf
/// hash, for inclusion proofs by leaf hash.
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
}

fn unavailable(e: sled::Error) -> Fault {
    Fault::new(format!("the state store failed: {e}"))
}

impl StateDb {
    pub fn open(path: &Path) -> sled::Result<StateDb> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        Ok(StateDb { db })
    }

    /// The schema version the state was written with: `None` when the state
    /// is empty, 1 for a state from before versions were stored.
    pub fn schema_version(&self) -> Result<Option<u32>, Fault> {
        match self.db.get(SCHEMA_KEY).map_err(unavailable)? {
            Some(bytes) => {
                let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| {
                    Fault::new("the state's schema version is corrupt; rebuild the state")
                })?;
                Ok(Some(u32::from_be_bytes(bytes)))
            }
            None if self.db.is_empty() => Ok(None),
            None => Ok(Some(1)),
        }
    }

    /// Marks an empty state as written with [`SCHEMA_VERSION`].
    pub fn set_schema_version(&self) -> Result<(), Fault> {
        assert!(
            self.db.is_empty(),
            "only an empty state gets a schema version"
        );
        self.db
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
            .map_err(unavailable)?;
        Ok(())
    }

    pub fn watermark(&self) -> Result<Watermark, Fault> {
        match self.db.get(WATERMARK_KEY).map_err(unavailable)? {
            None => Ok(Watermark::default()),
            Some(bytes) => Watermark::decode(&bytes).ok_or_else(|| {
                Fault::new("the state watermark is corrupt; rebuild the state from the journal")
            }),
        }
    }

    /// Commits a batch of applied records atomically: the core's writes, the
    /// records' journal offsets, the Merkle tree hashes they add and the new
    /// watermark. Not fsynced: the journal is the durable copy and start-up
    /// replays past the watermark.
    pub fn commit(
        &self,
        writes: fundtrail_core::state::Writes,
        locations: &[RecordLocation],
        tree: PendingTree,
        watermark: Watermark,
    ) -> Result<(), Fault> {
        assert_eq!(
            tree.record_count(),
            watermark.record_count,
            "the tree holds every applied record"
        );
        let mut batch = sled::Batch::default();
        let (first_index, hashes) = tree.into_parts();
        for (i, hash) in hashes.iter().enumerate() {
            batch.insert(hash_key(first_index + i as u64), &hash[..]);
        }
        for (key, value) in writes {
            assert!(!key.starts_with(b"~"), "core keys never start with ~");
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        for location in locations {
            batch.insert(offset_key(location.seq), &location.offset.to_be_bytes());
            let leaf = stored_hash_index(0, location.seq) - first_index;
            let leaf_hash = hashes
                .get(leaf as usize)
                .expect("the batch's tree holds each of its records' leaves");
            // The first record with a leaf hash keeps it: two records with
            // the same bytes cannot exist (each has its own seq).
            batch.insert(leaf_key(leaf_hash), &location.seq.to_be_bytes());
        }
        batch.insert(WATERMARK_KEY, watermark.encode());
        self.db.apply_batch(batch).map_err(unavailable)
    }

    /// The journal offset of record `seq`'s frame.
    pub fn record_offset(&self, seq: u64) -> Result<Option<u64>, Fault> {
        let Some(bytes) = self.db.get(offset_key(seq)).map_err(unavailable)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| Fault::new(format!("the stored offset of record {seq} is corrupt")))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// The seq of the record whose leaf hash is `leaf_hash`.
    pub fn seq_of_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, Fault> {
        let Some(bytes) = self.db.get(leaf_key(leaf_hash)).map_err(unavailable)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| Fault::new("a stored leaf index is corrupt"))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// Up to `limit` (key, value) pairs with `prefix`, starting at `start`
    /// (which must begin with `prefix`).
    pub fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        let mut out = Vec::new();
        for item in self.db.range(start.to_vec()..) {
            let (key, value) = item.map_err(unavailable)?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// Every key and value, in key order: for comparing two states.
    pub fn dump(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Fault> {
        let mut out = BTreeMap::new();
        for item in self.db.iter() {
            let (key, value) = item.map_err(unavailable)?;
            out.insert(key.to_vec(), value.to_vec());
        }
        Ok(out)
    }

    /// Flushes sled's own files (used at clean shutdown).
    pub fn flush(&self) -> Result<(), Fault> {
        self.db.flush().map(|_| ()).map_err(unavailable)
    }
}

impl HashReader for StateDb {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, fundtrail_tlog::Error> {
        indexes
            .iter()
            .map(|&index| {
                let value = self
                    .db
                    .get(hash_key(index))
                    .map_err(|e| fundtrail_tlog::Error::Storage(Box::new(e)))?
                    .ok_or(fundtrail_tlog::Error::MissingHash { index })?;
                value.as_ref().try_into().map_err(|_| {
                    fundtrail_tlog::Error::Storage("a stored tree hash is not 32 bytes".into())
                })
            })
            .collect()
    }
}

impl Kv for StateDb {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        Ok(self.db.get(key).map_err(unavailable)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        StateDb::scan(self, prefix, start, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_read_back_with_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state")).unwrap();
        assert_eq!(db.watermark().unwrap(), Watermark::default());
        let mut writes = BTreeMap::new();
        writes.insert(b"a1".to_vec(), Some(b"v".to_vec()));
        let watermark = Watermark {
            record_count: 1,
            journal_end: 40,
            last_record_sha256: [9; 32],
        };
        let mut tree = PendingTree::new(&db, 0);
        tree.append(b"record 0").unwrap();
        db.commit(
            writes,
            &[RecordLocation { seq: 0, offset: 0 }],
            tree,
            watermark,
        )
        .unwrap();
        assert_eq!(
            fundtrail_tlog::tree_hash(1, &db).unwrap(),
            fundtrail_tlog::record_hash(b"record 0")
        );
        assert_eq!(db.watermark().unwrap(), watermark);
        assert_eq!(db.get(b"a1").unwrap(), Some(b"v".to_vec()));
        assert_eq!(db.record_offset(0).unwrap(), Some(0));
        assert_eq!(db.record_offset(1).unwrap(), None);
        assert_eq!(db.scan(b"a", b"a", 10).unwrap().len(), 1);
    }
}
